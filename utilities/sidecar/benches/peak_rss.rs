/*!
Peak memory of one sidecar run that censors and uploads a large build log (default 1 GiB) in
local-output mode. Not a pass/fail test: it prints the child's peak RSS (`ru_maxrss` from
`getrusage(RUSAGE_CHILDREN)`) and wall time. The target is at most 64 MiB.

    cargo bench -p sidecar --bench peak_rss
    TETRAPOD_BENCH_LOG_MIB=256 cargo bench -p sidecar --bench peak_rss

The log repeats a 4 KiB block of text with a secret in every block, so the censoring engine has
real work; the artifacts directory holds a second, 64 MiB file.
*/

use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

fn main() {
    // `cargo bench` passes `--bench`; a filter that does not name us means "not this one".
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args
        .iter()
        .any(|a| !a.starts_with('-') && !"peak_rss".contains(a.as_str()))
    {
        return;
    }
    let mib: u64 = std::env::var("TETRAPOD_BENCH_LOG_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);

    let root = tempfile::tempdir().expect("temp dir");
    let logs = root.path().join("logs");
    let secrets = root.path().join("secrets");
    let output = root.path().join("output");
    let artifacts = logs.join("artifacts");
    for d in [&logs, &secrets, &output, &artifacts] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let secret = "s3cr3t-t0k3n-value";
    std::fs::write(secrets.join("token"), secret).expect("secret");

    let started = Instant::now();
    write_log(&logs.join("process-log.txt"), mib << 20, secret);
    write_log(&artifacts.join("big.txt"), 64 << 20, secret);
    eprintln!(
        "wrote {mib} MiB log + 64 MiB artifact in {:.1?}",
        started.elapsed()
    );
    std::fs::write(logs.join("marker-file.txt"), "0").expect("marker");

    let options = serde_json::json!({
        "gcs_options": {
            "items": [artifacts],
            "local_output_dir": output,
            "dry_run": false,
        },
        "entries": [{
            "args": ["/bin/test"],
            "container_name": "test",
            "process_log": logs.join("process-log.txt"),
            "marker_file": logs.join("marker-file.txt"),
            "metadata_file": artifacts.join("metadata.json"),
        }],
        "censoring_options": {"secret_directories": [secrets]},
    });
    let job_spec = r#"{"type":"periodic","job":"bench","buildid":"1","prowjobid":"p"}"#;

    let started = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_sidecar"))
        .env("SIDECAR_OPTIONS", options.to_string())
        .env("JOB_SPEC", job_spec)
        .stderr(Stdio::null())
        .status()
        .expect("run sidecar");
    let elapsed = started.elapsed();
    let peak_kib = children_max_rss_kib();

    let uploaded = std::fs::metadata(output.join("build-log.txt"))
        .map(|m| m.len())
        .unwrap_or(0);
    let censored = first_block_censored(&output.join("build-log.txt"), secret);
    println!(
        "sidecar peak_rss: {:.1} MiB (target <= 64 MiB), wall {:.1?}, log {mib} MiB, \
         build-log.txt {} MiB uploaded, censored: {censored}, exit {:?}",
        peak_kib as f64 / 1024.0,
        elapsed,
        uploaded >> 20,
        status.code()
    );
}

/// `size` bytes of log text with `secret` once in every 4 KiB block.
fn write_log(path: &Path, size: u64, secret: &str) {
    let mut block = String::with_capacity(4096);
    let mut line = 0;
    while block.len() < 4096 - 200 {
        block.push_str(&format!(
            "I1127 17:00:00.000000 {line:>5} runner.go:42] step {line} ok, token={secret}\n"
        ));
        line += 1;
    }
    while block.len() < 4095 {
        block.push('.');
    }
    block.push('\n');
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).expect("create"));
    let mut written = 0;
    while written < size {
        w.write_all(block.as_bytes()).expect("write");
        written += block.len() as u64;
    }
    w.flush().expect("flush");
}

fn first_block_censored(path: &Path, secret: &str) -> bool {
    use std::io::Read;
    let mut buf = vec![0; 4096];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut buf))
        .map(|()| !String::from_utf8_lossy(&buf).contains(secret))
        .unwrap_or(false)
}

/// The largest peak RSS of any waited-for child, in KiB (Linux reports `ru_maxrss` in KiB).
fn children_max_rss_kib() -> i64 {
    // SAFETY: getrusage only writes into the zeroed struct we own.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) != 0 {
            return -1;
        }
        usage.ru_maxrss
    }
}
