/*!
The catalogue of arch pitfalls the lab checks. Each entry is acted out by `fixture-job pitfall
NAME naive|clean` on every arch (lab trials `<arch>::pitfall::<name>`): the clean variant must
match one golden everywhere, and the naive variant must differ from it exactly on the arches where
the pitfall bites, so a trial fails both when our idea of an arch is wrong and when the lab stops
being able to see the bug. Our own sources are also scanned for the naive spellings
(`sources_are_arch_clean`).
*/

use crate::target::Arch;

pub struct Pitfall {
    pub name: &'static str,
    /// What goes wrong, in one line.
    pub what: &'static str,
    /// Source spellings of the naive variant that our utilities must not contain.
    pub forbidden: &'static [&'static str],
    /// Whether the naive variant gives a different result from the clean one on an arch with
    /// these facts. A field, not a lookup by name: a new pitfall cannot go without one.
    pub bites: fn(ArchFacts) -> bool,
}

pub const CATALOGUE: &[Pitfall] = &[
    Pitfall {
        name: "byte-order",
        what: "integers hashed or written in native byte order differ on big-endian s390x",
        forbidden: &["to_ne_bytes", "from_ne_bytes"],
        bites: |f| f.big_endian,
    },
    Pitfall {
        name: "char-sign",
        what: "C `char` is signed on x86-64 and unsigned on arm64, ppc64le and s390x",
        forbidden: &[
            "as c_char",
            "as std::ffi::c_char",
            "as libc::c_char",
            "as i8",
        ],
        // The clean checksum reads bytes as unsigned; a signed `char` changes it.
        bites: |f| f.char_signed,
    },
    Pitfall {
        name: "page-size",
        what: "4096 is not the page size on 64 KiB-page kernels (common on ppc64le)",
        forbidden: &["PAGE_SIZE: usize = 4096", "page_size = 4096"],
        bites: |f| f.page_size != 4096,
    },
    Pitfall {
        name: "hashmap-order",
        what: "HashMap iteration order is random per process, so outputs built from it differ run to run",
        forbidden: &["HashMap<String, serde_json::Value>"],
        bites: |_| true,
    },
    Pitfall {
        name: "usize-width",
        what: "usize written into data is 4 bytes on 32-bit targets (none of the four lab arches)",
        forbidden: &[
            "usize).to_le_bytes",
            "usize).to_be_bytes",
            "len().to_le_bytes",
            "len().to_be_bytes",
        ],
        bites: |f| f.pointer_bits != 64,
    },
];

/// The facts about an arch a pitfall depends on.
#[derive(Debug, Clone, Copy)]
pub struct ArchFacts {
    pub big_endian: bool,
    /// C `char` is signed (the psABI says so for x86-64 only, among the four).
    pub char_signed: bool,
    /// The page size the guest sees.
    pub page_size: u64,
    pub pointer_bits: u32,
}

impl ArchFacts {
    pub fn of(arch: Arch, page_size: u64) -> ArchFacts {
        ArchFacts {
            big_endian: arch.elf().1 == object::Endianness::Big,
            char_signed: matches!(arch, Arch::Amd64),
            page_size,
            pointer_bits: 64,
        }
    }
}

/// The catalogue entry called `name`.
pub fn named(name: &str) -> Option<&'static Pitfall> {
    CATALOGUE.iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The naive spellings do not occur in the utilities' sources (tests included: a test that
    /// writes native order would pass on the host and prove nothing).
    #[test]
    fn sources_are_arch_clean() {
        let root = crate::build::workspace_root().join("utilities");
        let mut files = Vec::new();
        collect_rs(&root, &mut files);
        assert!(files.len() > 20, "found only {} sources", files.len());
        let mut found = Vec::new();
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            for (n, line) in text.lines().enumerate() {
                for p in CATALOGUE {
                    for bad in p.forbidden {
                        if line.contains(bad) {
                            found.push(format!("{}:{}: {} ({bad})", f.display(), n + 1, p.name));
                        }
                    }
                }
            }
        }
        assert!(
            found.is_empty(),
            "arch pitfalls in our sources:\n{}",
            found.join("\n")
        );
    }

    fn collect_rs(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                collect_rs(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    #[test]
    fn where_each_pitfall_bites() {
        let f = |arch| ArchFacts::of(arch, 4096);
        let bites = |name, facts| (named(name).expect("in the catalogue").bites)(facts);
        assert!(bites("byte-order", f(Arch::S390x)));
        assert!(!bites("byte-order", f(Arch::Ppc64le)));
        assert!(bites("char-sign", f(Arch::Amd64)));
        assert!(!bites("char-sign", f(Arch::Arm64)));
        assert!(bites("page-size", ArchFacts::of(Arch::Ppc64le, 65536)));
        assert!(!bites("page-size", f(Arch::Ppc64le)));
        assert!(bites("hashmap-order", f(Arch::Amd64)));
        assert!(!bites("usize-width", f(Arch::S390x)));
        assert!(named("no-such-pitfall").is_none());
        for p in CATALOGUE {
            assert!(
                fixture_job::pitfall::NAMES.contains(&p.name),
                "{} is not acted out by fixture-job",
                p.name
            );
        }
        assert_eq!(CATALOGUE.len(), fixture_job::pitfall::NAMES.len());
    }
}
