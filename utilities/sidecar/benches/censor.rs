//! Censoring throughput with 100 secrets, next to a plain read/write copy of the same file with
//! the same buffer, measured in the same run. Not a timed test: it prints numbers. Besides wall
//! time it reports this thread's on-CPU time (from /proc/thread-self/schedstat), which stays
//! meaningful on a machine shared with other jobs.
//!
//! `cargo bench -p sidecar --bench censor`; `TETRAPOD_BENCH_MB` sets the file size (default 256).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use sidecar::censor::Censorer;
use sidecar::censor::stream::{DEFAULT_BUFFER_SIZE, censor_file};

/// A small deterministic generator (xorshift), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

fn secrets(rng: &mut Rng) -> Vec<Vec<u8>> {
    (0..100)
        .map(|_| {
            let len = 16 + rng.below(48) as usize;
            let mut s: Vec<u8> = (0..len)
                .map(|_| ALNUM[rng.below(ALNUM.len() as u64) as usize])
                .collect();
            s.push(b'\n');
            s
        })
        .collect()
}

/// Log-like text with a secret every ~64 KiB.
fn write_input(path: &Path, mb: usize, secrets: &[Vec<u8>], rng: &mut Rng) {
    let words = [
        "INFO",
        "running",
        "test",
        "pkg/foo",
        "ok",
        "PASS",
        "--- FAIL",
        "2026-11-27T17:00:00Z",
        "level=debug",
        "msg=\"connecting\"",
        "duration=1.5s",
        "GET",
        "/api/v1/pods",
        "200",
    ];
    let mut out = std::io::BufWriter::new(File::create(path).unwrap());
    let target = mb * 1024 * 1024;
    let mut written = 0;
    let mut since = 0;
    while written < target {
        let mut line = String::new();
        for _ in 0..(6 + rng.below(10)) {
            line.push_str(words[rng.below(words.len() as u64) as usize]);
            line.push(' ');
        }
        if since > 64 * 1024 {
            let s = &secrets[rng.below(secrets.len() as u64) as usize];
            line.push_str(std::str::from_utf8(&s[..s.len() - 1]).unwrap());
            since = 0;
        }
        line.push('\n');
        out.write_all(line.as_bytes()).unwrap();
        written += line.len();
        since += line.len();
    }
    out.flush().unwrap();
}

fn copy_file(from: &Path, to: &Path, buf: &mut [u8]) {
    let mut i = File::open(from).unwrap();
    let mut o = File::create(to).unwrap();
    loop {
        let n = i.read(buf).unwrap();
        if n == 0 {
            break;
        }
        o.write_all(&buf[..n]).unwrap();
    }
}

/// This thread's time on a CPU so far, when the kernel reports it.
fn cpu_time() -> Option<Duration> {
    let text = fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Best wall time and best on-CPU time over `runs`; `setup` runs untimed before each.
fn best_of(
    runs: usize,
    mut setup: impl FnMut(),
    mut f: impl FnMut(),
) -> (Duration, Option<Duration>) {
    let mut wall = Duration::MAX;
    let mut cpu: Option<Duration> = None;
    for _ in 0..runs {
        setup();
        let (t, c) = (Instant::now(), cpu_time());
        f();
        wall = wall.min(t.elapsed());
        if let (Some(before), Some(after)) = (c, cpu_time()) {
            let d = after.saturating_sub(before);
            cpu = Some(cpu.map_or(d, |b| b.min(d)));
        }
    }
    (wall, cpu)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then stay quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let mb: usize = std::env::var("TETRAPOD_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 4 } else { 256 });
    let runs = if quick { 1 } else { 3 };
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let secrets = secrets(&mut rng);
    let censorer = Censorer::new(&secrets, 0).unwrap();
    let input = dir.path().join("input.log");
    write_input(&input, mb, &secrets, &mut rng);
    File::open(&input).unwrap().sync_all().unwrap();
    let size = fs::metadata(&input).unwrap().len() as f64 / 1e6;
    let mut buf = vec![0u8; DEFAULT_BUFFER_SIZE];

    let copy = best_of(
        runs,
        || {},
        || copy_file(&input, &dir.path().join("copy.log"), &mut buf),
    );
    let work = dir.path().join("work.log");
    // The copy before each run restores the input and is not timed. It is synced, so the
    // timed run does not pay for writing back the restore's dirty pages.
    let censor = best_of(
        runs,
        || {
            fs::copy(&input, &work).unwrap();
            File::open(&work).unwrap().sync_all().unwrap();
        },
        || censor_file(&work, &censorer, &mut buf).unwrap(),
    );
    let mut mem = fs::read(&input).unwrap();
    let scan = best_of(runs, || {}, || censorer.censor(&mut mem));

    let rate = |d: Duration| size / d.as_secs_f64();
    let show = |name: &str, (wall, cpu): (Duration, Option<Duration>)| {
        let cpu = cpu.map_or("n/a".to_string(), |c| format!("{:.1}", rate(c)));
        println!(
            "  {name:<24} {:>8.1} MB/s wall  {cpu:>8} MB/s on-CPU",
            rate(wall)
        );
    };
    println!(
        "censor bench: {size:.1} MB, 100 secrets ({} patterns up to {} bytes), buffer {} MiB, best of {runs}",
        secrets.len() * 3,
        censorer.largest_secret(),
        DEFAULT_BUFFER_SIZE >> 20
    );
    show("plain copy (read/write)", copy);
    show("censor_file", censor);
    show("in-memory scan", scan);
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "  censor_file / copy time: {:.2}x wall{}",
        ratio(censor.0, copy.0),
        match (censor.1, copy.1) {
            (Some(c), Some(p)) => format!(", {:.2}x on-CPU", ratio(c, p)),
            _ => String::new(),
        }
    );
    let censored = fs::read(&work).unwrap();
    assert_eq!(censored.len(), fs::metadata(&input).unwrap().len() as usize);
    assert!(
        censored.windows(8).any(|w| w == b"XXXXXXXX"),
        "secrets were planted"
    );
}
