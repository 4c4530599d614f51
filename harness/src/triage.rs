/*!
Triage of a failed pod: what a person needs to get from a red cell to "here is why". Guest core
dumps are collected and symbolised with gdb-multiarch against the unstripped twin of the binary
that crashed; the tails of the process logs and of the syscall traces are kept; and the exact
`harness debug` command that reproduces the run is spelled out.

The cores come from the pod's `cores/` folder, where every backend's lifecycle moves them (see
`backend::cores`).
*/

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::backend::PodRun;
use crate::build;
use crate::target::Arch;

/// A guest that died with a core dump, symbolised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crash {
    /// The program's file name (`fixture-job`, `sidecar`, ...).
    pub program: String,
    /// The signal as gdb names it (`SIGSEGV, Segmentation fault`).
    pub signal: String,
    /// gdb's `bt` frames, `#0 ...` first.
    pub backtrace: Vec<String>,
    /// Where the core was kept.
    pub core: PathBuf,
}

/// Everything a failing cell's report shows beyond the diff.
#[derive(Debug, Clone, Default)]
pub struct Triage {
    /// `container: exit` for every container, init containers first.
    pub exits: Vec<String>,
    pub crashes: Vec<Crash>,
    /// (log name, last lines) for each container's output and the build log.
    pub log_tails: Vec<(String, Vec<String>)>,
    /// (trace file name, last lines) of the syscall traces, when the run was traced.
    pub strace_tails: Vec<(String, Vec<String>)>,
    /// The pod's folder, kept for inspection.
    pub pod_dir: Option<PathBuf>,
    /// The emulator the run used.
    pub emulator: String,
    /// The command that reruns this cell under the debugger.
    pub reproduce: String,
}

impl Triage {
    /// Triage of a pod run: exits, symbolised cores, log and trace tails.
    pub fn from_pod(run: &PodRun, arch: Arch, fixture: &str) -> Triage {
        let mut t = Triage {
            emulator: run.emulation.clone(),
            pod_dir: Some(run.pod_dir.clone()),
            ..Default::default()
        };
        for c in run.init.iter().chain(&run.containers) {
            t.exits.push(format!("{}: exit {}", c.name, c.exit));
            // A container that ended well has nothing to tell here beyond the diff.
            if c.exit.success() {
                continue;
            }
            for (stream, bytes) in [("stdout", &c.stdout), ("stderr", &c.stderr)] {
                if !bytes.is_empty() {
                    t.log_tails
                        .push((format!("{} {stream}", c.name), tail(bytes, TAIL)));
                }
            }
        }
        for (name, data) in &run.logs {
            if name.ends_with("log.txt") {
                t.log_tails.push((format!("logs/{name}"), tail(data, TAIL)));
            }
        }
        for core in &run.cores {
            match symbolise(arch, core) {
                Ok(c) => t.crashes.push(c),
                Err(e) => t.crashes.push(Crash {
                    program: core_program(core, ""),
                    signal: format!("unknown (could not symbolise: {e:#})"),
                    backtrace: vec![],
                    core: core.clone(),
                }),
            }
        }
        if let Some(d) = &run.trace_dir {
            t.strace_tails = strace_tails(d);
        }
        let container = t.crashes.first().map(|c| crash_container(run, &c.program));
        t.reproduce = reproduce_command(fixture, arch, container.as_deref());
        t
    }

    /// The container to look at first: the one whose process crashed, else the first one that
    /// did not exit 0.
    pub fn suspect(&self, run: &PodRun) -> Option<String> {
        if let Some(c) = self.crashes.first() {
            return Some(crash_container(run, &c.program));
        }
        run.init
            .iter()
            .chain(&run.containers)
            .find(|c| !c.exit.success() && c.exit != crate::exit::Exit::NotStarted)
            .map(|c| c.name.clone())
    }

    /// The report's text for this triage (markdown).
    pub fn markdown(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(s, "- emulator: {}", self.emulator);
        let _ = writeln!(s, "- exits: {}", self.exits.join("; "));
        for c in &self.crashes {
            let _ = writeln!(
                s,
                "- crash: `{}` died from {} (core {})",
                c.program,
                c.signal,
                c.core.display()
            );
            s.push_str("\n```\n");
            for f in c.backtrace.iter().take(FRAMES) {
                let _ = writeln!(s, "{f}");
            }
            if c.backtrace.len() > FRAMES {
                let _ = writeln!(s, "... {} more frames", c.backtrace.len() - FRAMES);
            }
            s.push_str("```\n");
        }
        for (name, lines) in self.log_tails.iter().chain(&self.strace_tails) {
            let _ = writeln!(s, "- last lines of {name}:\n```");
            for l in lines {
                let _ = writeln!(s, "{l}");
            }
            s.push_str("```\n");
        }
        if let Some(d) = &self.pod_dir {
            let _ = writeln!(s, "- pod folder: {}", d.display());
        }
        let _ = writeln!(s, "- reproduce: `{}`", self.reproduce);
        s
    }
}

/// Which container ran the program that crashed: the test command and entrypoint live in a test
/// container, a utility in the container named after it (or the first that runs it).
fn crash_container(run: &PodRun, program: &str) -> String {
    let named = run
        .init
        .iter()
        .chain(&run.containers)
        .find(|c| c.name == program);
    if let Some(c) = named {
        return c.name.clone();
    }
    run.containers
        .iter()
        .find(|c| c.name != "sidecar")
        .map(|c| c.name.clone())
        .unwrap_or_else(|| program.to_string())
}

/// How many backtrace frames the report shows (the runtime's start-up frames follow).
const FRAMES: usize = 10;

/// How many lines a tail keeps.
pub const TAIL: usize = 12;

/// The program a core belongs to: from qemu's file name, else from gdb's "generated by" line.
fn core_program(core: &Path, gdb_out: &str) -> String {
    let name = core.file_name().unwrap_or_default().to_string_lossy();
    if let Some(rest) = name.strip_prefix("qemu_") {
        // qemu_<program>_<yyyymmdd>-<hhmmss>_<pid>.core; the program may contain '_'.
        let parts: Vec<&str> = rest.trim_end_matches(".core").rsplitn(3, '_').collect();
        if parts.len() == 3 {
            return parts[2].to_string();
        }
    }
    gdb_out
        .lines()
        .find_map(|l| l.strip_prefix("Core was generated by `"))
        .and_then(|l| l.split([' ', '\'']).next())
        .and_then(|p| Path::new(p).file_name())
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// Symbolises `core` with gdb-multiarch against the unstripped lab binary it came from.
pub fn symbolise(arch: Arch, core: &Path) -> Result<Crash> {
    let program = core_program(core, "");
    let debug = build::debug_binary(arch, &program);
    let mut cmd = Command::new("gdb-multiarch");
    cmd.args(["-nx", "-q", "-batch", "-ex", "set pagination off"]);
    if debug.is_file() {
        cmd.arg(&debug);
    }
    let out = cmd
        .arg(core)
        .args(["-ex", "bt 30"])
        .output()
        .context("could not run gdb-multiarch: run `qemu/provision` first")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    Ok(parse_gdb(core, &text))
}

fn parse_gdb(core: &Path, text: &str) -> Crash {
    let signal = text
        .lines()
        .find_map(|l| l.strip_prefix("Program terminated with signal "))
        .map(|s| s.trim_end_matches('.').to_string())
        .unwrap_or_else(|| "unknown signal".into());
    let mut backtrace: Vec<String> = Vec::new();
    for l in text.lines() {
        if l.starts_with('#') {
            // `bt` after the core load repeats frame #0: keep one of each.
            if backtrace.iter().any(|b| b == l) {
                continue;
            }
            backtrace.push(l.to_string());
        }
    }
    Crash {
        program: core_program(core, text),
        signal,
        backtrace,
        core: core.to_path_buf(),
    }
}

/// The last `n` lines of `bytes`, lossily decoded.
pub fn tail(bytes: &[u8], n: usize) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(std::string::ToString::to_string)
        .collect()
}

/// Tails of every syscall trace file in `dir` (names `<container>.<process>.strace.<pid>`).
pub fn strace_tails(dir: &Path) -> Vec<(String, Vec<String>)> {
    let Ok(rd) = fs::read_dir(dir) else {
        return vec![];
    };
    let mut files: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains(".strace"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let data = fs::read(&p).unwrap_or_default();
            (p.display().to_string(), tail(&data, TAIL))
        })
        .collect()
}

/// The command that reruns a fixture on an arch under the debugger.
pub fn reproduce_command(fixture: &str, arch: Arch, container: Option<&str>) -> String {
    let mut s = format!("cargo run -p harness -- debug {fixture} --arch {arch}");
    if let Some(c) = container {
        s.push_str(&format!(" --container {c}"));
    }
    s.push_str(" --strace");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_from_qemu_core_names() {
        let p = Path::new("/x/qemu_fixture-job_20261127-205309_10945.core");
        assert_eq!(core_program(p, ""), "fixture-job");
        let p = Path::new("/x/qemu_a_b_20261127-205309_1.core");
        assert_eq!(core_program(p, ""), "a_b");
        let gdb = "Core was generated by `/t/lab/amd64/sidecar --x'.\n";
        assert_eq!(core_program(Path::new("/x/core"), gdb), "sidecar");
    }

    #[test]
    fn gdb_output_gives_signal_and_unique_frames() {
        let text = "\
[New LWP 1]
Core was generated by `./c crash'.
Program terminated with signal SIGSEGV, Segmentation fault.
#0  0x0000000001000996 in touch (p=0x0) at c.c:4
4\tvoid touch(int *p){ *p = 1; }
#0  0x0000000001000996 in touch (p=0x0) at c.c:4
#1  0x0000000001000a10 in main () at c.c:5
";
        let c = parse_gdb(Path::new("/x/qemu_c_20261127-205309_10945.core"), text);
        assert_eq!(c.signal, "SIGSEGV, Segmentation fault");
        assert_eq!(c.backtrace.len(), 2);
        assert!(c.backtrace[0].contains("in touch"));
        assert_eq!(c.program, "c");
    }

    #[test]
    fn tails_keep_the_last_lines() {
        assert_eq!(tail(b"a\nb\nc\n", 2), vec!["b", "c"]);
        assert_eq!(tail(b"", 2), Vec::<String>::new());
    }
}
