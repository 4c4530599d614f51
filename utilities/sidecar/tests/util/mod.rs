/*!
Support for the sidecar black-box tests: a sandbox directory per test laid out like the pod's
`/logs` volume, the options and JOB_SPEC that point sidecar at it, and helpers to read what it
wrote to the local output directory.
*/

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const JOB_SPEC: &str = r#"{"type":"postsubmit","job":"job","buildid":"build","prowjobid":"id","refs":{"org":"org","repo":"repo","base_ref":"main","base_sha":"abc123"}}"#;

/// One test's files: `logs/` (markers, process logs, artifacts), `output/` (the local output
/// dir) and `tmp/` (TMPDIR, to see sidecar's temp log file come and go).
pub struct Sandbox {
    _root: tempfile::TempDir,
    pub logs: PathBuf,
    pub output: PathBuf,
    pub tmp: PathBuf,
}

impl Sandbox {
    pub fn new() -> Self {
        let root = tempfile::tempdir().expect("temp dir");
        let logs = root.path().join("logs");
        let output = root.path().join("output");
        let tmp = root.path().join("tmp");
        for d in [&logs, &output, &tmp] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        Sandbox {
            _root: root,
            logs,
            output,
            tmp,
        }
    }

    /// A wrapper entry whose files live in `logs/`, named after the container.
    pub fn entry(&self, container: &str) -> Value {
        let p = |suffix: &str| {
            self.logs
                .join(format!("{container}-{suffix}"))
                .to_string_lossy()
                .into_owned()
        };
        json!({
            "args": ["/bin/test", container],
            "container_name": container,
            "process_log": p("log.txt"),
            "marker_file": p("marker.txt"),
            "metadata_file": p("metadata.json"),
        })
    }

    /// SIDECAR_OPTIONS in local-output mode for these entries; `extra` keys are merged in.
    pub fn options(&self, entries: &[Value], extra: Value) -> String {
        let mut o = json!({
            "gcs_options": {
                "items": [self.logs.join("artifacts").to_string_lossy()],
                "local_output_dir": self.output.to_string_lossy(),
                "dry_run": false,
            },
            "entries": entries,
        });
        if let (Some(o), Value::Object(extra)) = (o.as_object_mut(), extra) {
            o.extend(extra);
        }
        o.to_string()
    }

    pub fn command(&self, options: &str) -> Command {
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("sidecar"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("TMPDIR", &self.tmp)
            .env("SIDECAR_OPTIONS", options)
            .env("JOB_SPEC", JOB_SPEC);
        cmd
    }

    pub fn spawn(&self, options: &str) -> Child {
        self.command(options)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sidecar")
    }

    pub fn output_file(&self, name: &str) -> String {
        let p = self.output.join(name);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
    }

    pub fn finished(&self) -> Value {
        serde_json::from_str(&self.output_file("finished.json")).expect("finished.json is JSON")
    }

    /// The files under `output/`, relative and sorted.
    pub fn output_tree(&self) -> Vec<String> {
        let mut files = Vec::new();
        walk(&self.output, &self.output, &mut files);
        files.sort();
        files
    }

    /// sidecar's temp log files still in TMPDIR.
    pub fn leftover_temp_logs(&self) -> Vec<String> {
        std::fs::read_dir(&self.tmp)
            .expect("read tmp")
            .filter_map(std::result::Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("sidecar-logs"))
            .collect()
    }

    pub fn write_marker(&self, container: &str, code: i32) {
        let marker = self.logs.join(format!("{container}-marker.txt"));
        pod_utils::wrapper::write_marker(&marker, container, code).expect("write marker");
    }

    pub fn write_log(&self, container: &str, content: &str) {
        std::fs::write(self.logs.join(format!("{container}-log.txt")), content).expect("write log");
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(std::result::Result::ok)
    {
        let p = e.path();
        if p.is_dir() {
            walk(root, &p, out);
        } else if let Ok(rel) = p.strip_prefix(root) {
            out.push(rel.to_string_lossy().into_owned());
        }
    }
}

/// The JSON log lines in `text` (sidecar's stderr or sidecar-logs.json).
pub fn log_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line: {l}: {e}")))
        .collect()
}

pub fn messages(text: &str) -> Vec<String> {
    log_lines(text)
        .iter()
        .map(|l| l["msg"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub fn eventually(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid` has handlers installed for SIGINT and SIGTERM (the `SigCgt` mask), i.e.
/// whether sending one now tests sidecar rather than the default action.
pub fn catches_interrupts(pid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let caught = status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .unwrap_or(0);
    let bit = |sig: u32| 1u64 << (sig - 1);
    caught & bit(2) != 0 && caught & bit(15) != 0
}

pub fn send_signal(pid: u32, name: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill -{name} {pid}");
}

/// Waits for `child` to exit within `timeout`, returning its status and stderr.
pub fn finish(mut child: Child, timeout: Duration) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            let mut err = String::new();
            if let Some(mut s) = child.stderr.take() {
                use std::io::Read;
                let _ = s.read_to_string(&mut err);
            }
            return (status, err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("sidecar did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
