//! Output throughput of entrypoint against the same program piped through `cat`.
//!
//! A writer (this binary re-executed with `ENTRYPOINT_BENCH_WRITE=<bytes>`) prints build-log-like
//! lines in 1 MiB writes. It runs (a) as `writer | cat`, (b) as `writer | tee <file>`, the same
//! work entrypoint does (stdout plus a file), and (c) wrapped by entrypoint, which writes
//! everything to stdout and its process log. The bench reads stdout in every case, and reports
//! MiB/s and the ratios entrypoint/cat (the brief's target: at least 0.9 at 1 GiB) and
//! entrypoint/tee.
//!
//! `ENTRYPOINT_BENCH_BYTES` sets the size (default 256 MiB; use 1073741824 for the 1 GiB
//! figure), `ENTRYPOINT_BENCH_RUNS` the number of runs per side (default 3, best one counts),
//! `ENTRYPOINT_BENCH_DIR` where the process log goes (default: the system temp dir).

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WRITE_VAR: &str = "ENTRYPOINT_BENCH_WRITE";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Writer mode: `n` bytes of numbered lines on stdout, in 1 MiB writes.
fn write_output(n: u64) -> io::Result<()> {
    let mut chunk = Vec::with_capacity(1 << 20);
    let mut i = 0u64;
    while chunk.len() < (1 << 20) {
        writeln!(
            chunk,
            "build log line {i:08}: compiling something interesting"
        )?;
        i += 1;
    }
    chunk.truncate(1 << 20);
    let mut out = io::stdout().lock();
    let mut left = n;
    while left > 0 {
        let take = left.min(chunk.len() as u64) as usize;
        out.write_all(&chunk[..take])?;
        left -= take as u64;
    }
    out.flush()
}

/// Reads `child`'s stdout to EOF, waits for it, and returns (bytes, elapsed since `start`).
fn drain(mut child: Child, start: Instant) -> io::Result<(u64, Duration)> {
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut buf = vec![0u8; 128 * 1024];
    let mut total = 0u64;
    loop {
        let n = stdout.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    let status = child.wait()?;
    assert!(status.success(), "{status}");
    Ok((total, start.elapsed()))
}

/// `writer | <filter...>`, timed until the filter's output is drained.
fn run_piped(me: &Path, n: u64, filter: &[&std::ffi::OsStr]) -> io::Result<Duration> {
    let start = Instant::now();
    let mut writer = Command::new(me)
        .env(WRITE_VAR, n.to_string())
        .stdout(Stdio::piped())
        .spawn()?;
    let filter = Command::new(filter[0])
        .args(&filter[1..])
        .stdin(writer.stdout.take().expect("piped"))
        .stdout(Stdio::piped())
        .spawn()?;
    let (bytes, elapsed) = drain(filter, start)?;
    assert!(writer.wait()?.success());
    assert_eq!(bytes, n);
    Ok(elapsed)
}

fn run_entrypoint(me: &Path, n: u64, dir: &Path) -> io::Result<Duration> {
    let log = dir.join("process-log.txt");
    let marker = dir.join("marker-file.txt");
    let opts = serde_json::json!({
        "args": [me],
        "process_log": log,
        "marker_file": marker,
    });
    let start = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_entrypoint"))
        .env("ENTRYPOINT_OPTIONS", opts.to_string())
        .env(WRITE_VAR, n.to_string())
        .stdout(Stdio::piped())
        .spawn()?;
    let (bytes, elapsed) = drain(child, start)?;
    assert_eq!(bytes, n);
    assert_eq!(std::fs::metadata(&log)?.len(), n);
    std::fs::remove_file(&log)?;
    Ok(elapsed)
}

fn mib_per_s(n: u64, d: Duration) -> f64 {
    n as f64 / (1024.0 * 1024.0) / d.as_secs_f64()
}

fn main() -> io::Result<()> {
    if let Some(n) = std::env::var(WRITE_VAR).ok().and_then(|v| v.parse().ok()) {
        return write_output(n);
    }
    // `cargo test --benches` runs benches in test mode: keep that quick.
    let quick = std::env::args().any(|a| a == "--test");
    let n = if quick {
        8 << 20
    } else {
        env_u64("ENTRYPOINT_BENCH_BYTES", 256 << 20)
    };
    let runs = if quick {
        1
    } else {
        env_u64("ENTRYPOINT_BENCH_RUNS", 3).max(1)
    };
    let me = std::env::current_exe()?;
    let dir = std::env::var_os("ENTRYPOINT_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(dir)?;

    let tee_file = dir.path().join("tee-output.txt");
    let mut best_cat = Duration::MAX;
    let mut best_tee = Duration::MAX;
    let mut best_ep = Duration::MAX;
    for _ in 0..runs {
        best_cat = best_cat.min(run_piped(&me, n, &["cat".as_ref()])?);
        best_tee = best_tee.min(run_piped(&me, n, &["tee".as_ref(), tee_file.as_os_str()])?);
        std::fs::remove_file(&tee_file)?;
        best_ep = best_ep.min(run_entrypoint(&me, n, dir.path())?);
    }
    let (cat, tee, ep) = (
        mib_per_s(n, best_cat),
        mib_per_s(n, best_tee),
        mib_per_s(n, best_ep),
    );
    println!(
        "entrypoint throughput, {} MiB, best of {runs}, log in {}:\n  \
         writer | cat        {cat:>6.0} MiB/s ({best_cat:.2?})\n  \
         writer | tee <file> {tee:>6.0} MiB/s ({best_tee:.2?})\n  \
         entrypoint          {ep:>6.0} MiB/s ({best_ep:.2?})\n  \
         ratio vs cat {:.2}x, vs tee {:.2}x",
        n >> 20,
        dir.path().display(),
        ep / cat,
        ep / tee
    );
    Ok(())
}
