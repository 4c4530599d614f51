/*!
Runs a built binary for an arch: natively for amd64, under `qemu-<arch>-static` otherwise.
Emulator settings are passed as qemu flags, never as `QEMU_*` variables, and any `QEMU_*` in our
own environment is removed, so neither the guest nor the children it starts see them.
*/

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::build::check_elf;
use crate::target::Arch;

#[derive(Debug, Clone)]
pub struct Runner {
    pub arch: Arch,
    /// The emulator, `None` when the arch is the host's.
    pub emulator: Option<PathBuf>,
    strace: bool,
}

impl Runner {
    /// A runner for `arch`, with its emulator found on PATH (or `qemu` overriding it).
    pub fn new(arch: Arch, qemu: Option<PathBuf>) -> Result<Self> {
        let emulator = match (arch.target().qemu, qemu) {
            (None, _) => None,
            (Some(_), Some(path)) => Some(path),
            (Some(name), None) => Some(which(&name).with_context(|| {
                format!("{name} not found on PATH: run `qemu/provision` first")
            })?),
        };
        Ok(Runner {
            arch,
            emulator,
            strace: false,
        })
    }

    /// Traces the guest's system calls to stderr (qemu's `-strace`).
    pub fn with_strace(mut self) -> Self {
        self.strace = true;
        self
    }

    /// The emulator's own version line, or "native".
    pub fn emulator_version(&self) -> Result<String> {
        let Some(emu) = &self.emulator else {
            return Ok("native".to_string());
        };
        let out = Command::new(emu).arg("--version").output()?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string())
    }

    /// A command that runs `bin` (checked to be a static ELF of this arch) for this arch.
    pub fn command(&self, bin: &Path) -> Result<Command> {
        check_elf(bin, self.arch)?;
        let mut cmd = match &self.emulator {
            None => {
                if self.strace {
                    bail!(
                        "syscall tracing is an emulator feature; {} runs natively",
                        self.arch
                    );
                }
                Command::new(bin)
            }
            Some(emu) => {
                let mut c = Command::new(emu);
                if self.strace {
                    c.arg("-strace");
                }
                c.arg(bin);
                c
            }
        };
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("QEMU_") {
                cmd.env_remove(k);
            }
        }
        Ok(cmd)
    }
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
