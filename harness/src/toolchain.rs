/*!
The toolchain record written by `qemu/provision` (`$TETRAPOD_CACHE/toolchain.json`): which
compiler builds the lab's binaries, which qemu runs them. Every lab run reports it.
*/

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Toolchain {
    /// `debian` (rustc-web unpacked privately) or `rustup` (installed targets).
    pub mode: String,
    /// The rustc to put in `RUSTC` for every arch's build.
    pub rustc: String,
    pub rustc_version: String,
    pub rustc_commit_hash: String,
    pub rustc_release: String,
    pub llvm_version: String,
    pub qemu_version: String,
    /// A second qemu-user build (the distribution's backports) for `--qemu`, if provisioned.
    #[serde(default)]
    pub alt_qemu_dir: String,
    /// Debian's libssl-dev unpacked per Debian arch (`<dir>/<debian arch>/usr/...`), linked
    /// instead of compiling OpenSSL; empty when provisioning found no version for every arch.
    #[serde(default)]
    pub openssl_dir: String,
    /// Its Debian version (`3.0.20-1~deb12u2`), the same for every arch.
    #[serde(default)]
    pub openssl_version: String,
    pub targets: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ToolchainError {
    #[error("no cross toolchain at {0}: run `qemu/provision` first")]
    Missing(PathBuf),
    #[error("toolchain record {0} is unreadable ({1}): run `qemu/provision` again")]
    Corrupt(PathBuf, String),
    #[error("toolchain record names {0}, which no longer runs: run `qemu/provision` again")]
    Stale(String),
}

pub use testsupport::cache_dir;

impl Toolchain {
    /// Reads and sanity-checks the record.
    pub fn load() -> Result<Self, ToolchainError> {
        let path = cache_dir().join("toolchain.json");
        let text =
            std::fs::read_to_string(&path).map_err(|_| ToolchainError::Missing(path.clone()))?;
        let tc: Toolchain = serde_json::from_str(&text)
            .map_err(|e| ToolchainError::Corrupt(path, e.to_string()))?;
        if !std::path::Path::new(&tc.rustc).exists() {
            return Err(ToolchainError::Stale(tc.rustc));
        }
        Ok(tc)
    }
}
