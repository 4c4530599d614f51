/*!
THE arch table. Its rows live in `qemu/targets.tsv`, which the provisioning script reads too, so
the mapping from our arch names to Rust triples, Debian arches, cross tools, qemu binaries and ELF
machines is written once. [`elf`] checks a binary against its arch's row.
*/

pub mod elf;

use std::fmt;
use std::str::FromStr;

const TABLE: &str = include_str!("../../../qemu/targets.tsv");

/// One of the four arches tetrapod ships.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arch {
    Amd64,
    Arm64,
    Ppc64le,
    S390x,
}

pub const ALL: [Arch; 4] = [Arch::Amd64, Arch::Arm64, Arch::Ppc64le, Arch::S390x];

/// A row of the table.
#[derive(Debug, Clone)]
pub struct Target {
    pub arch: Arch,
    /// Rust target triple.
    pub triple: String,
    /// Debian's name for the arch (ppc64el).
    pub debian: String,
    /// GNU triple: the prefix of the cross gcc, strip and gdb sysroot.
    pub gnu: String,
    /// qemu-user binary, `None` for the host arch.
    pub qemu: Option<String>,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
            Arch::Ppc64le => "ppc64le",
            Arch::S390x => "s390x",
        }
    }

    /// This arch's row of the table, parsed once for all arches.
    pub fn target(self) -> &'static Target {
        static ROWS: std::sync::OnceLock<Vec<Target>> = std::sync::OnceLock::new();
        let rows = ROWS.get_or_init(|| ALL.iter().map(|&a| parse_row(a)).collect());
        &rows[ALL
            .iter()
            .position(|&a| a == self)
            .expect("ALL holds every arch")]
    }

    /// The ELF machine and byte order a binary for this arch must have.
    pub fn elf(self) -> (object::Architecture, object::Endianness) {
        use object::{Architecture as A, Endianness as E};
        match self {
            Arch::Amd64 => (A::X86_64, E::Little),
            Arch::Arm64 => (A::Aarch64, E::Little),
            Arch::Ppc64le => (A::PowerPc64, E::Little),
            Arch::S390x => (A::S390x, E::Big),
        }
    }

    /// Docker's platform string.
    pub fn platform(self) -> &'static str {
        match self {
            Arch::Amd64 => "linux/amd64",
            Arch::Arm64 => "linux/arm64",
            Arch::Ppc64le => "linux/ppc64le",
            Arch::S390x => "linux/s390x",
        }
    }

    /// The OCI/Docker `architecture` of an image config or index entry (Go's GOARCH).
    pub fn oci_architecture(self) -> &'static str {
        self.platform()
            .strip_prefix("linux/")
            .expect("every platform is linux/<arch>")
    }

    /// The OCI `variant`: only arm64 has one that matters (`v8`, what registries and engines
    /// report for 64-bit ARM).
    pub fn oci_variant(self) -> Option<&'static str> {
        match self {
            Arch::Arm64 => Some("v8"),
            Arch::Amd64 | Arch::Ppc64le | Arch::S390x => None,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The table is compiled in, so a missing or short row is a build mistake the unit tests catch.
fn parse_row(arch: Arch) -> Target {
    let row = TABLE
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .find(|f| f[0] == arch.name() && f.len() >= 5)
        .unwrap_or_else(|| panic!("qemu/targets.tsv has no full row for {}", arch.name()));
    Target {
        arch,
        triple: row[1].to_string(),
        debian: row[2].to_string(),
        gnu: row[3].to_string(),
        qemu: (row[4] != "-").then(|| row[4].to_string()),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown arch {0:?}: expected amd64, arm64, ppc64le, s390x or all")]
pub struct UnknownArch(String);

impl FromStr for Arch {
    type Err = UnknownArch;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL.into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| UnknownArch(s.to_string()))
    }
}

/// The value of `--arch`: one arch or `all`, in table order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection(pub Vec<Arch>);

impl FromStr for Selection {
    type Err = UnknownArch;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_selection(s).map(Selection)
    }
}

/// Parses `--arch` values: one arch or `all`.
pub fn parse_selection(s: &str) -> Result<Vec<Arch>, UnknownArch> {
    if s == "all" {
        Ok(ALL.to_vec())
    } else {
        Ok(vec![s.parse()?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_arch_has_a_row() {
        for a in ALL {
            let t = a.target();
            assert_eq!(t.arch, a);
            assert!(t.triple.ends_with("-unknown-linux-gnu"), "{}", t.triple);
            assert_eq!(t.qemu.is_none(), a == Arch::Amd64);
        }
        assert_eq!(Arch::Ppc64le.target().debian, "ppc64el");
        assert_eq!(
            Arch::S390x.target().qemu.as_deref(),
            Some("qemu-s390x-static")
        );
    }

    #[test]
    fn oci_platform_names() {
        let got: Vec<_> = ALL
            .iter()
            .map(|a| (a.oci_architecture(), a.oci_variant()))
            .collect();
        assert_eq!(
            got,
            [
                ("amd64", None),
                ("arm64", Some("v8")),
                ("ppc64le", None),
                ("s390x", None)
            ]
        );
        for a in ALL {
            assert_eq!(a.platform(), format!("linux/{}", a.oci_architecture()));
        }
    }

    #[test]
    fn selection() {
        assert_eq!(parse_selection("all").unwrap(), ALL);
        assert_eq!(parse_selection("s390x").unwrap(), [Arch::S390x]);
        assert_eq!(
            parse_selection("mips").unwrap_err().to_string(),
            r#"unknown arch "mips": expected amd64, arm64, ppc64le, s390x or all"#
        );
    }
}
