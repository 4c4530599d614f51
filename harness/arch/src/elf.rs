/*!
What an ELF header says about a binary, and the check every lab binary and image passes: a
static 64-bit ELF of its arch's machine and byte order.
*/

use std::path::{Path, PathBuf};

use object::Object;

use crate::Arch;

/// What an ELF header says about a binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfInfo {
    pub architecture: object::Architecture,
    pub endianness: object::Endianness,
    pub is_64: bool,
    /// No program interpreter and no DT_NEEDED: runs without a loader or shared libraries.
    pub is_static: bool,
}

/// Why a binary is not what its arch needs.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a 64-bit ELF file: {source}", path.display())]
    NotElf {
        path: PathBuf,
        source: object::read::Error,
    },
    #[error("{} is {got:?}, expected {want:?} for {arch}", path.display())]
    WrongArch {
        path: PathBuf,
        got: (object::Architecture, object::Endianness),
        want: (object::Architecture, object::Endianness),
        arch: Arch,
    },
    #[error("{} is dynamically linked; lab binaries must be static", path.display())]
    Dynamic { path: PathBuf },
}

pub fn elf_info(path: &Path) -> Result<ElfInfo, ElfError> {
    use object::read::elf::{Dyn, ElfFile64, ProgramHeader};
    let data = std::fs::read(path).map_err(|source| ElfError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let file =
        ElfFile64::<object::Endianness>::parse(&*data).map_err(|source| ElfError::NotElf {
            path: path.to_path_buf(),
            source,
        })?;
    let endian = file.endian();
    let mut is_static = true;
    for ph in file.elf_program_headers() {
        if ph.p_type(endian) == object::elf::PT_INTERP {
            is_static = false;
        }
        // A static-pie binary has a dynamic section, but never a DT_NEEDED library.
        if let Ok(Some(dynamic)) = ph.dynamic(endian, &*data) {
            if dynamic
                .iter()
                .any(|d| d.d_tag(endian) == u64::from(object::elf::DT_NEEDED))
            {
                is_static = false;
            }
        }
    }
    Ok(ElfInfo {
        architecture: file.architecture(),
        endianness: file.endianness(),
        is_64: file.is_64(),
        is_static,
    })
}

/// Checks that `path` is a static 64-bit ELF for `arch`.
pub fn check_elf(path: &Path, arch: Arch) -> Result<(), ElfError> {
    let info = elf_info(path)?;
    let want = arch.elf();
    if (info.architecture, info.endianness) != want || !info.is_64 {
        return Err(ElfError::WrongArch {
            path: path.to_path_buf(),
            got: (info.architecture, info.endianness),
            want,
            arch,
        });
    }
    if !info.is_static {
        return Err(ElfError::Dynamic {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_file_is_not_an_elf_and_says_so_in_one_line() {
        let dir = std::env::temp_dir().join(format!("tetrapod-arch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("script");
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        let err = check_elf(&p, Arch::S390x).unwrap_err().to_string();
        assert!(err.contains("is not a 64-bit ELF file"), "{err}");
        assert!(!err.contains('\n'), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_running_test_binary_is_not_s390x() {
        // The host is amd64 here; its test binary has another machine (or is dynamic).
        let me = std::env::current_exe().unwrap();
        assert!(check_elf(&me, Arch::S390x).is_err());
        let info = elf_info(&me).unwrap();
        assert!(info.is_64);
    }
}
