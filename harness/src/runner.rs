/*!
Runs a built binary for an arch: natively for amd64 (unless a qemu is asked for: debugging amd64
goes through `qemu-x86_64-static` for the same strace and gdbstub), under `qemu-<arch>-static`
otherwise. Emulator settings are passed as qemu flags, never as `QEMU_*` variables, and any
`QEMU_*` in our own environment is removed, so neither the guest nor the children it starts see
them.
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
    /// qemu's `-D`: where its log (the syscall trace) goes; `%d` becomes the guest's pid.
    log_file: Option<PathBuf>,
    /// qemu's `-g`: wait for gdb on this port before the first instruction.
    gdb_port: Option<u16>,
}

impl Runner {
    /// A runner for `arch`, with its emulator found on PATH (or `qemu` overriding it).
    pub fn new(arch: Arch, qemu: Option<PathBuf>) -> Result<Self> {
        let emulator = match (&arch.target().qemu, qemu) {
            (None, Some(path)) => Some(path),
            (None, None) => None,
            (Some(_), Some(path)) => Some(path),
            (Some(name), None) => Some(which(name).with_context(|| {
                format!("{name} not found on PATH: run `qemu/provision` first")
            })?),
        };
        Ok(Runner {
            arch,
            emulator,
            strace: false,
            log_file: None,
            gdb_port: None,
        })
    }

    /// A runner for `arch` that always emulates, amd64 included: the debugging features
    /// (syscall trace, gdbstub, guest core dumps) are qemu's.
    pub fn emulated(arch: Arch, qemu: Option<PathBuf>) -> Result<Self> {
        let qemu = match (qemu, &arch.target().qemu) {
            (Some(p), _) => Some(p),
            (None, Some(_)) => None,
            (None, None) => Some(
                which("qemu-x86_64-static")
                    .context("qemu-x86_64-static not found on PATH: run `qemu/provision` first")?,
            ),
        };
        Runner::new(arch, qemu)
    }

    /// Traces the guest's system calls (qemu's `-strace`), to stderr or the log file.
    pub fn with_strace(mut self) -> Self {
        self.strace = true;
        self
    }

    /// Sends qemu's log (the syscall trace) to `path`; `%d` in it becomes the guest's pid.
    pub fn with_log_file(mut self, path: PathBuf) -> Self {
        self.log_file = Some(path);
        self
    }

    /// Makes the guest wait for gdb on `port` before its first instruction.
    pub fn with_gdb(mut self, port: u16) -> Self {
        self.gdb_port = Some(port);
        self
    }

    /// The page size the guest sees: the host's, since qemu-user is not asked for another.
    pub fn guest_page_size(&self) -> u64 {
        // SAFETY: sysconf only reads a configuration value.
        let p = unsafe { nix::libc::sysconf(nix::libc::_SC_PAGESIZE) };
        u64::try_from(p).unwrap_or(4096)
    }

    /// The emulator flags this runner passes, after the emulator and before the binary.
    pub fn emulator_args(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.strace {
            v.push("-strace".to_string());
        }
        if let Some(p) = &self.log_file {
            v.push("-D".to_string());
            v.push(p.display().to_string());
        }
        if let Some(port) = self.gdb_port {
            v.push("-g".to_string());
            v.push(port.to_string());
        }
        v
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
                if !self.emulator_args().is_empty() {
                    bail!(
                        "syscall traces and the gdbstub are emulator features; {} runs natively \
                         (use Runner::emulated)",
                        self.arch
                    );
                }
                Command::new(bin)
            }
            Some(emu) => {
                let mut c = Command::new(emu);
                c.args(self.emulator_args());
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

pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
