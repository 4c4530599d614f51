/*!
Builds the lab's binaries for each arch with the ONE provisioned compiler, then checks every ELF
header (machine, byte order, static) before anyone runs it. Output:
`target/lab/<arch>/<bin>` (stripped, what images ship) and `target/lab/<arch>/debug/<bin>`
(unstripped, with line tables, for backtraces and gdb).
*/

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::target::Arch;
use crate::toolchain::Toolchain;
use anyhow::{Context, Result, bail};

mod progress;

pub use crate::target::elf::{ElfError, ElfInfo, check_elf, elf_info};

/// Everything the lab builds for every arch: the utilities (`utility::ALL`, a test keeps the two
/// in step) and the fixture job program.
pub const LAB_PROGRAMS: &[&str] = &[
    "clonerefs",
    "initupload",
    "entrypoint",
    "sidecar",
    "fixture-job",
];

/// The cargo profile used: release, with symbols kept (see the workspace Cargo.toml).
const PROFILE: &str = "lab";

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("harness lives one level below the workspace root")
        .to_path_buf()
}

/// `target/lab`, or `$CARGO_TARGET_DIR/lab`.
pub fn lab_dir() -> PathBuf {
    target_dir().join("lab")
}

/// The cross builds' cargo target dir: in the tool cache, outside the work tree, so every clone
/// on a machine shares the compiled dependencies (OpenSSL and libgit2 for four arches are slow).
fn cross_target_dir() -> PathBuf {
    std::env::var_os("TETRAPOD_CROSS_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::toolchain::cache_dir().join("cross-target"))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Where the stripped binary `bin` for `arch` is placed.
pub fn binary(arch: Arch, bin: &str) -> PathBuf {
    lab_dir().join(arch.name()).join(bin)
}

/// Where its unstripped twin is.
pub fn debug_binary(arch: Arch, bin: &str) -> PathBuf {
    lab_dir().join(arch.name()).join("debug").join(bin)
}

/// Builds every lab binary for `arches` in one cargo invocation (cargo schedules across targets),
/// then strips, places and checks them.
pub fn build(tc: &Toolchain, arches: &[Arch]) -> Result<()> {
    build_with(tc, arches, false)
}

/// [`build`], optionally with cargo's `--timings` report (written under the cross target dir's
/// `cargo-timings/`, whose path is printed): where a cold build's minutes go, per crate and arch.
pub fn build_with(tc: &Toolchain, arches: &[Arch], timings: bool) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let totals = progress::totals(&cargo, &workspace_root(), LAB_PROGRAMS, arches);
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(workspace_root())
        .args(["build", "--locked", "--quiet", "--profile", PROFILE])
        // Counted into readable progress lines instead of cargo's scroll (see `progress`).
        .arg("--message-format=json-render-diagnostics")
        .arg("--target-dir")
        .arg(cross_target_dir())
        .env("RUSTC", &tc.rustc)
        // Build scripts that probe test tools skip it here (no tests are built).
        .env("TETRAPOD_LAB_BUILD", "1")
        // The outer cargo (when we run inside `cargo test`) may have set these for itself.
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET");
    if timings {
        cmd.arg("--timings");
    }
    for bin in LAB_PROGRAMS {
        cmd.args(["--bin", bin]);
    }
    for &arch in arches {
        let t = arch.target();
        let upper = t.triple.to_uppercase().replace('-', "_");
        let lower = t.triple.replace('-', "_");
        cmd.args(["--target", &t.triple]);
        // Static glibc executables: they are copied into arbitrary images of their arch.
        cmd.env(
            format!("CARGO_TARGET_{upper}_RUSTFLAGS"),
            "-C target-feature=+crt-static",
        );
        cmd.env(
            format!("CARGO_TARGET_{upper}_LINKER"),
            format!("{}-gcc", t.gnu),
        );
        cmd.env(format!("CC_{lower}"), format!("{}-gcc", t.gnu));
        cmd.env(format!("AR_{lower}"), format!("{}-ar", t.gnu));
        // Debian's static OpenSSL for this arch instead of openssl-src's build from source
        // (openssl-sys reads these target-prefixed; libgit2 and libssh2 follow its headers).
        if let Some(ssl) = prebuilt_openssl_root(tc, arch) {
            cmd.env(format!("{upper}_OPENSSL_NO_VENDOR"), "1")
                .env(format!("{upper}_OPENSSL_STATIC"), "1")
                .env(
                    format!("{upper}_OPENSSL_LIB_DIR"),
                    ssl.join("usr/lib").join(&t.gnu),
                )
                .env(
                    format!("{upper}_OPENSSL_INCLUDE_DIR"),
                    ssl.join("usr/include"),
                );
        }
    }
    let status = progress::run(cmd, progress::Progress::new(arches, &totals))
        .context("could not start cargo for the lab build")?;
    if !status.success() {
        bail!("lab build failed ({status}) for {}", names(arches));
    }
    for &arch in arches {
        let t = arch.target();
        // What the SBOM says of the OpenSSL linked in (see `prebuilt_openssl`).
        let record = lab_dir().join(arch.name()).join(OPENSSL_RECORD);
        std::fs::create_dir_all(lab_dir().join(arch.name()))?;
        match prebuilt_openssl_root(tc, arch) {
            Some(_) => std::fs::write(&record, &tc.openssl_version)?,
            None => match std::fs::remove_file(&record) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            },
        }
        for bin in LAB_PROGRAMS {
            let built = cross_target_dir().join(&t.triple).join(PROFILE).join(bin);
            let debug = debug_binary(arch, bin);
            let stripped = binary(arch, bin);
            std::fs::create_dir_all(debug.parent().expect("has parent"))?;
            copy_replace(&built, &debug)?;
            let tmp = stripped.with_extension("strip-tmp");
            let status = Command::new(format!("{}-strip", t.gnu))
                .arg("--strip-all")
                .arg("-o")
                .arg(&tmp)
                .arg(&built)
                .status()
                .with_context(|| format!("could not run {}-strip", t.gnu))?;
            if !status.success() {
                bail!("{}-strip failed on {}", t.gnu, built.display());
            }
            std::fs::rename(&tmp, &stripped)?;
            check_elf(&stripped, arch)?;
            check_elf(&debug, arch)?;
        }
    }
    Ok(())
}

/// Beside an arch's binaries: the Debian version of the libssl-dev they link, when they do.
const OPENSSL_RECORD: &str = "openssl-debian-version";

/// The unpacked libssl-dev for `arch`, if provisioning made one.
fn prebuilt_openssl_root(tc: &Toolchain, arch: Arch) -> Option<PathBuf> {
    if tc.openssl_dir.is_empty() {
        return None;
    }
    let root = Path::new(&tc.openssl_dir).join(&arch.target().debian);
    root.join("usr/lib")
        .join(&arch.target().gnu)
        .join("libcrypto.a")
        .exists()
        .then_some(root)
}

/// The Debian version of the libssl-dev the last lab build linked for `arch`, or `None` when
/// it compiled OpenSSL from openssl-src.
pub fn prebuilt_openssl(arch: Arch) -> Option<String> {
    std::fs::read_to_string(lab_dir().join(arch.name()).join(OPENSSL_RECORD))
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn names(arches: &[Arch]) -> String {
    arches
        .iter()
        .map(|a| a.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Copies through a temp file so a running reader never sees a half-written binary.
fn copy_replace(from: &Path, to: &Path) -> Result<()> {
    let tmp = to.with_extension("copy-tmp");
    std::fs::copy(from, &tmp).with_context(|| format!("copy {}", from.display()))?;
    std::fs::rename(&tmp, to)?;
    Ok(())
}
