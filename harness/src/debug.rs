/*!
`harness debug`: from a red matrix cell to "here is why". Reruns one fixture's pod on one arch,
compares it with the golden, symbolises any guest core dump, and then, on request:

- `--strace`: reruns the pod with qemu's syscall trace of the suspect container (its own process
  and the test command it starts), saved beside the run;
- `--gdb`: reruns the pod with the suspect process stopped in qemu's gdbstub, prints the exact
  gdb-multiarch command and waits for the pod to end (or, with `--gdb-batch`, drives gdb itself
  to the crash and prints the session).
*/

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::backend::{self, GdbStop, PodRun, RunOptions};
use crate::fixture;
use crate::pod::{self, Image, Pod};
use crate::runner::Runner;
use crate::target::Arch;
use crate::triage::{self, Triage};
use crate::{build, compare, git};

#[derive(Debug, Clone, Default)]
pub struct DebugArgs {
    pub fixture: String,
    pub arch: Option<Arch>,
    /// The container to trace or stop; default: the one that crashed or failed.
    pub container: Option<String>,
    pub strace: bool,
    pub gdb: bool,
    /// Drive gdb-multiarch here with these commands after `continue` (e.g. `bt`).
    pub gdb_batch: Option<Vec<String>>,
    pub qemu: Option<PathBuf>,
}

/// What a debug session found.
pub struct DebugReport {
    pub text: String,
    /// The first difference from the golden, `None` when the run matched it.
    pub difference: Option<String>,
    pub triage: Triage,
    /// The gdb session transcript, with `--gdb-batch`.
    pub gdb_transcript: Option<String>,
}

/// The emulator binary for `arch` given `--qemu`: a file, or a folder holding `qemu-<cpu>` or
/// `qemu-<cpu>-static` (the distribution's newer qemu-user drops the suffix).
pub fn resolve_qemu(arch: Arch, qemu: Option<&Path>) -> Result<Option<PathBuf>> {
    let Some(q) = qemu else { return Ok(None) };
    if !q.is_dir() {
        return Ok(Some(q.to_path_buf()));
    }
    let base = match &arch.target().qemu {
        Some(name) => name.trim_end_matches("-static").to_string(),
        None => "qemu-x86_64".to_string(),
    };
    for name in [base.clone(), format!("{base}-static")] {
        let p = q.join(&name);
        if p.is_file() {
            return Ok(Some(p));
        }
    }
    bail!("no {base} or {base}-static in {}", q.display())
}

pub fn debug(args: &DebugArgs) -> Result<DebugReport> {
    let arch = args.arch.context("debug takes one --arch")?;
    let f = fixture::find(&args.fixture)?;
    let qemu = resolve_qemu(arch, args.qemu.as_deref())?;
    let wants_emulator = args.strace || args.gdb || args.gdb_batch.is_some();
    let runner = if wants_emulator {
        Runner::emulated(arch, qemu)?
    } else {
        Runner::new(arch, qemu)?
    };
    let repos = git::build_all(&f)?;
    let pod = pod::decorate::decorate(&f, &repos)?;
    let golden = compare::golden(&format!("fixture__{}", f.name))
        .or_else(|| compare::golden(&format!("selftest__{}", f.name)));

    let mut out = String::new();
    let _ = writeln!(
        out,
        "# harness debug {} on {arch}\n\n{}\n",
        f.name, f.description
    );
    let _ = writeln!(out, "emulator: {}", runner.emulator_version()?);

    let plain = RunOptions {
        tag: Some("debug"),
        ..Default::default()
    };
    // The plain run is the lab's own case runner, so its text is what the lab compares.
    let outcome = crate::cases::Case::Fixture(Box::new(f.clone())).run(&runner, &plain)?;
    let got = outcome.text;
    let first = outcome.pod.context("a fixture's run leaves a pod")?;
    let difference = match &golden {
        Some(want) => compare::first_difference(want, &got),
        None => Some("no golden for this fixture".into()),
    };
    let mut triage = Triage::from_pod(&first, arch, &f.name);
    let _ = writeln!(
        out,
        "golden: {}",
        match &difference {
            None => "matches".to_string(),
            Some(d) => format!("differs: {d}"),
        }
    );
    out.push_str(&triage.markdown());
    let suspect = args
        .container
        .clone()
        .or_else(|| triage.suspect(&first))
        .unwrap_or_else(|| test_container(&pod));
    if !pod
        .init_containers
        .iter()
        .chain(&pod.containers)
        .any(|c| c.name == suspect)
    {
        bail!("the pod has no container {suspect}");
    }
    let _ = writeln!(out, "\nsuspect container: {suspect}");

    if args.strace {
        let opts = RunOptions {
            strace: Some(suspect.clone()),
            ..Default::default()
        };
        let traced = backend::run(&pod, &runner, &opts)?;
        let dir = traced.trace_dir.clone().unwrap_or_default();
        let _ = writeln!(
            out,
            "\n## syscall trace of {suspect}\n\nsaved in {}",
            dir.display()
        );
        for (name, lines) in triage::strace_tails(&dir) {
            let _ = writeln!(out, "\n{name} (last {} lines):\n```", lines.len());
            for l in lines {
                let _ = writeln!(out, "{l}");
            }
            out.push_str("```\n");
        }
        triage.strace_tails = triage::strace_tails(&dir);
    }

    let mut gdb_transcript = None;
    if args.gdb || args.gdb_batch.is_some() {
        let child = stops_child(&pod, &suspect, &triage);
        let program = if child {
            "fixture-job".to_string()
        } else {
            container_program(&pod, &suspect)
        };
        let debug_bin = build::debug_binary(arch, &program);
        let port = testsupport::free_port()?;
        let opts = RunOptions {
            gdb: Some(GdbStop {
                container: suspect.clone(),
                port,
                child,
            }),
            no_deadline: true,
            ..Default::default()
        };
        let cmd = gdb_command(&debug_bin, port);
        let _ = writeln!(
            out,
            "\n## gdb\n\n{} of {suspect} waits for gdb on port {port}; attach with:\n\n    {cmd}\n",
            if child {
                "the test command"
            } else {
                "the process"
            },
        );
        print!("{out}");
        out.clear();
        let pod2 = pod.clone();
        let runner2 = runner.clone();
        let handle = std::thread::spawn(move || backend::run(&pod2, &runner2, &opts));
        if let Some(cmds) = &args.gdb_batch {
            wait_for_port(port, Duration::from_secs(120))?;
            let transcript = run_gdb_batch(&debug_bin, port, cmds)?;
            let _ = writeln!(out, "gdb session:\n```\n{transcript}```");
            gdb_transcript = Some(transcript);
        } else {
            eprintln!("harness: waiting for the pod to end (Ctrl-C to stop)");
        }
        let run: PodRun = handle
            .join()
            .map_err(|_| anyhow::anyhow!("the pod run under gdb panicked"))??;
        let _ = writeln!(
            out,
            "pod under gdb ended: {}",
            run.init
                .iter()
                .chain(&run.containers)
                .map(|c| format!("{}: exit {}", c.name, c.exit))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    Ok(DebugReport {
        text: out,
        difference,
        triage,
        gdb_transcript,
    })
}

/// The first container that runs a test command.
fn test_container(pod: &Pod) -> String {
    pod.containers
        .iter()
        .find(|c| c.name != "sidecar")
        .map(|c| c.name.clone())
        .unwrap_or_else(|| "test".into())
}

/// The program a container's own process runs.
fn container_program(pod: &Pod, name: &str) -> String {
    let c = pod
        .init_containers
        .iter()
        .chain(&pod.containers)
        .find(|c| c.name == name);
    match c {
        // A test container's command is the entrypoint copied into the tools volume.
        Some(c) if c.command.is_some() && c.image == Image::FixtureJob => "entrypoint".into(),
        Some(c) => match c.image {
            Image::Utility(u) => u.to_string(),
            Image::FixtureJob => "fixture-job".into(),
        },
        None => name.to_string(),
    }
}

/// Whether gdb should stop the test command rather than the container's own process: for a
/// test container, unless what crashed was entrypoint itself.
fn stops_child(pod: &Pod, container: &str, triage: &Triage) -> bool {
    let is_test = container_program(pod, container) == "entrypoint";
    let entrypoint_crashed = triage.crashes.iter().any(|c| c.program == "entrypoint");
    is_test && !entrypoint_crashed
}

pub fn gdb_command(debug_bin: &Path, port: u16) -> String {
    format!(
        "gdb-multiarch -q {} -ex 'target remote 127.0.0.1:{port}' -ex continue",
        debug_bin.display()
    )
}

/// Waits until something listens on `port`. Read from /proc/net/tcp{,6} rather than by
/// connecting: qemu's gdbstub takes the first connection as its debugger, and a probe that
/// hangs up would let the guest run on unobserved.
fn wait_for_port(port: u16, limit: Duration) -> Result<()> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if listening(port) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("nothing listened on port {port} within {limit:?}")
}

fn listening(port: u16) -> bool {
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|f| {
        std::fs::read_to_string(f)
            .map(|t| listening_in(&t, port))
            .unwrap_or(false)
    })
}

/// Whether a /proc/net/tcp table has a socket in LISTEN (`0A`) on `port`.
fn listening_in(table: &str, port: u16) -> bool {
    let want = format!(":{port:04X}");
    table.lines().skip(1).any(|l| {
        let mut f = l.split_whitespace();
        let local = f.nth(1).unwrap_or_default();
        let state = f.nth(1).unwrap_or_default();
        local.ends_with(&want) && state == "0A"
    })
}

/// Runs gdb-multiarch in batch mode against the stopped guest: connect, continue to the crash,
/// then `cmds`; returns what gdb printed.
fn run_gdb_batch(debug_bin: &Path, port: u16, cmds: &[String]) -> Result<String> {
    let mut cmd = Command::new("gdb-multiarch");
    cmd.args(["-nx", "-q", "-batch", "-ex", "set pagination off"])
        .arg(debug_bin)
        .args(["-ex", &format!("target remote 127.0.0.1:{port}")])
        .args(["-ex", "continue"]);
    for c in cmds {
        cmd.args(["-ex", c]);
    }
    // Ends the guest: gdb in batch mode would otherwise leave it stopped.
    cmd.args(["-ex", "kill"]);
    let out = cmd.output().context("could not run gdb-multiarch")?;
    let mut t = String::from_utf8_lossy(&out.stdout).into_owned();
    t.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_sockets_are_found_by_port() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:04D2 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1
";
        assert!(listening_in(t, 1234));
        assert!(!listening_in(t, 8080), "established, not listening");
        assert!(!listening_in(t, 4321));
    }

    #[test]
    fn qemu_folders_resolve_with_or_without_suffix() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("qemu-s390x"), b"").unwrap();
        let got = resolve_qemu(Arch::S390x, Some(d.path())).unwrap();
        assert_eq!(got, Some(d.path().join("qemu-s390x")));
        std::fs::write(d.path().join("qemu-aarch64-static"), b"").unwrap();
        let got = resolve_qemu(Arch::Arm64, Some(d.path())).unwrap();
        assert_eq!(got, Some(d.path().join("qemu-aarch64-static")));
        assert!(resolve_qemu(Arch::Ppc64le, Some(d.path())).is_err());
        let file = d.path().join("qemu-s390x");
        assert_eq!(resolve_qemu(Arch::S390x, Some(&file)).unwrap(), Some(file));
        assert_eq!(resolve_qemu(Arch::S390x, None).unwrap(), None);
    }
}
