//! Censoring throughput with 100 secrets, next to a plain read/write copy of the same file with
//! the same buffer, measured in the same run. Not a timed test: it prints numbers.
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

fn copy(from: &Path, to: &Path, buf: &mut [u8]) {
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

fn best_of(runs: usize, mut f: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
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
    let size = fs::metadata(&input).unwrap().len() as f64 / 1e6;
    let mut buf = vec![0u8; DEFAULT_BUFFER_SIZE];

    let copy_time = best_of(runs, || {
        copy(&input, &dir.path().join("copy.log"), &mut buf)
    });
    let work = dir.path().join("work.log");
    // Only the censoring is timed; the copy before each run restores the input.
    let mut censor_only = Duration::MAX;
    for _ in 0..runs {
        fs::copy(&input, &work).unwrap();
        let t = Instant::now();
        censor_file(&work, &censorer, &mut buf).unwrap();
        censor_only = censor_only.min(t.elapsed());
    }
    let mut mem = fs::read(&input).unwrap();
    let scan_time = best_of(runs, || censorer.censor(&mut mem));

    let rate = |d: Duration| size / d.as_secs_f64();
    println!(
        "censor bench: {size:.1} MB, 100 secrets ({} patterns up to {} bytes), buffer {} MiB, best of {runs}",
        secrets.len() * 3,
        censorer.largest_secret(),
        DEFAULT_BUFFER_SIZE >> 20
    );
    println!("  plain copy (read/write)  {:>8.1} MB/s", rate(copy_time));
    println!(
        "  censor_file              {:>8.1} MB/s  ({:.2}x the copy's time)",
        rate(censor_only),
        censor_only.as_secs_f64() / copy_time.as_secs_f64()
    );
    println!("  in-memory scan           {:>8.1} MB/s", rate(scan_time));
    let censored = fs::read(&work).unwrap();
    assert_eq!(censored.len(), fs::metadata(&input).unwrap().len() as usize);
    assert!(
        censored.windows(8).any(|w| w == b"XXXXXXXX"),
        "secrets were planted"
    );
}
