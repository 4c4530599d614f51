/*!
Readable progress for the lab build: one cargo builds five programs for four arches, and its
scroll of `Compiling` lines says neither how far each arch is nor how long it has taken. cargo
runs with `--message-format=json`; each finished crate is counted against its arch's total
(the crates `cargo tree` lists for that target), and a line such as

`lab build: amd64 120/232 · arm64 97/232 · ppc64le 95/232 · s390x 91/232 · host 61 · 3m10s`

is printed when the counts move (at most every 5 s) and every 30 s while they do not (a long link).
*/

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::target::Arch;

/// Crates built for one arch, out of how many.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Count {
    arch: Arch,
    done: usize,
    total: Option<usize>,
}

#[derive(Debug)]
pub struct Progress {
    counts: Vec<Count>,
    /// Build scripts and proc macros: compiled for the host, shared by every arch.
    host: usize,
    start: Instant,
    last_print: Option<Instant>,
    last_line: String,
}

impl Progress {
    /// `totals` from [`totals`]; an arch without one shows its count alone.
    pub fn new(arches: &[Arch], totals: &[Option<usize>]) -> Self {
        let mut p = Progress {
            counts: arches
                .iter()
                .zip(totals.iter().chain(std::iter::repeat(&None)))
                .map(|(&arch, &total)| Count {
                    arch,
                    done: 0,
                    total,
                })
                .collect(),
            host: 0,
            start: Instant::now(),
            last_print: None,
            last_line: String::new(),
        };
        // Nothing to say until a count moves.
        p.last_line = p.line();
        p
    }

    /// Counts one line of cargo's JSON output; other lines are ignored.
    pub fn message(&mut self, line: &str) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            return;
        };
        if v.get("reason").and_then(|r| r.as_str()) != Some("compiler-artifact") {
            return;
        }
        let Some(file) = v
            .get("filenames")
            .and_then(|f| f.get(0))
            .and_then(|f| f.as_str())
        else {
            return;
        };
        // Cross artifacts live under `<target-dir>/<triple>/`, host ones do not.
        let file = Path::new(file);
        match self.counts.iter_mut().find(|c| {
            file.components()
                .any(|p| p.as_os_str() == c.arch.target().triple.as_str())
        }) {
            Some(c) => c.done += 1,
            None => self.host += 1,
        }
    }

    /// The status line (see the module doc).
    pub fn line(&self) -> String {
        let mut parts: Vec<String> = self
            .counts
            .iter()
            .map(|c| match c.total {
                Some(t) => format!("{} {}/{}", c.arch, c.done.min(t), t),
                None => format!("{} {}", c.arch, c.done),
            })
            .collect();
        parts.push(format!("host {}", self.host));
        let s = self.start.elapsed().as_secs();
        parts.push(format!("{}m{:02}s", s / 60, s % 60));
        format!("lab build: {}", parts.join(" · "))
    }

    /// Prints the line when it changed (at most every 5 s) or every 30 s regardless.
    fn tick(&mut self, out: &mut impl Write) {
        let now = Instant::now();
        let since = self.last_print.map(|t| now - t);
        let line = self.line();
        let changed = strip_elapsed(&line) != strip_elapsed(&self.last_line);
        let due = match since {
            None => changed,
            Some(d) => (changed && d >= Duration::from_secs(5)) || d >= Duration::from_secs(30),
        };
        if due {
            let _ = writeln!(out, "{line}");
            self.last_print = Some(now);
            self.last_line = line;
        }
    }
}

fn strip_elapsed(line: &str) -> &str {
    line.rsplit_once(" · ").map_or(line, |(head, _)| head)
}

/// How many crates cargo builds for each arch: the distinct packages `cargo tree` lists for
/// `programs` on that target, proc macros aside (they are host crates). `None` where cargo tree
/// fails; the build itself then reports what is wrong.
pub fn totals(
    cargo: &std::ffi::OsStr,
    root: &Path,
    programs: &[&str],
    arches: &[Arch],
) -> Vec<Option<usize>> {
    arches
        .iter()
        .map(|arch| {
            let mut cmd = Command::new(cargo);
            cmd.current_dir(root)
                .args(["tree", "--locked", "-e", "normal", "--prefix", "none"])
                .args(["--target", &arch.target().triple]);
            for p in programs {
                cmd.args(["-p", p]);
            }
            let out = cmd.stderr(Stdio::null()).output().ok()?;
            out.status
                .success()
                .then(|| count_tree(&String::from_utf8_lossy(&out.stdout)))
        })
        .collect()
}

fn count_tree(tree: &str) -> usize {
    let mut seen = std::collections::BTreeSet::new();
    for line in tree.lines() {
        let line = line.trim_end_matches(" (*)");
        if line.is_empty() || line.ends_with("(proc-macro)") {
            continue;
        }
        seen.insert(line);
    }
    seen.len()
}

/// Runs `cmd` (a cargo build given `--message-format=json-render-diagnostics`), counting its
/// JSON on stdout and printing progress to stderr; cargo's own stderr (errors, warnings) passes
/// through. Returns cargo's status.
pub fn run(mut cmd: Command, progress: Progress) -> std::io::Result<std::process::ExitStatus> {
    let mut child = cmd.stdout(Stdio::piped()).spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let progress = Arc::new(Mutex::new(progress));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ticker = {
        let (progress, done) = (progress.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(500));
                if let Ok(mut p) = progress.lock() {
                    p.tick(&mut std::io::stderr());
                }
            }
        })
    };
    for line in std::io::BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if let Ok(mut p) = progress.lock() {
            p.message(&line);
        }
    }
    let status = child.wait();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = ticker.join();
    if let Ok(p) = progress.lock() {
        eprintln!("{} (done)", p.line());
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(path: &str) -> String {
        serde_json::json!({"reason": "compiler-artifact", "filenames": [path]}).to_string()
    }

    #[test]
    fn artifacts_count_towards_their_arch_or_the_host() {
        let mut p = Progress::new(&[Arch::Amd64, Arch::S390x], &[Some(3), None]);
        p.message(&artifact("/c/s390x-unknown-linux-gnu/lab/deps/liba.rlib"));
        p.message(&artifact("/c/x86_64-unknown-linux-gnu/lab/deps/libb.rlib"));
        p.message(&artifact("/c/lab/build/c-123/build_script_build-123"));
        p.message(r#"{"reason":"build-script-executed"}"#);
        p.message("not json");
        let line = p.line();
        assert!(
            line.starts_with("lab build: amd64 1/3 · s390x 1 · host 1 · "),
            "{line}"
        );
    }

    #[test]
    fn a_count_never_exceeds_its_total() {
        let mut p = Progress::new(&[Arch::Arm64], &[Some(1)]);
        for _ in 0..3 {
            p.message(&artifact("/c/aarch64-unknown-linux-gnu/lab/deps/x"));
        }
        assert!(p.line().contains("arm64 1/1"), "{}", p.line());
    }

    #[test]
    fn the_tree_counts_distinct_packages_without_proc_macros() {
        let tree = "clonerefs v0.1.0 (/w/utilities/clonerefs)\nlibc v0.2.1\nserde_derive v1.0.0 (proc-macro)\nlibc v0.2.1 (*)\n\nlog v0.4.0\n";
        assert_eq!(count_tree(tree), 3);
    }

    #[test]
    fn prints_when_counts_move_and_not_in_between() {
        let mut p = Progress::new(&[Arch::Amd64], &[Some(9)]);
        let mut out = Vec::new();
        p.tick(&mut out);
        assert!(out.is_empty(), "nothing built, nothing to say yet");
        p.message(&artifact("/c/x86_64-unknown-linux-gnu/lab/deps/x"));
        p.tick(&mut out);
        p.message(&artifact("/c/x86_64-unknown-linux-gnu/lab/deps/y"));
        p.tick(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 1, "throttled to one line: {text}");
        assert!(text.contains("amd64 1/9"), "{text}");
    }
}
