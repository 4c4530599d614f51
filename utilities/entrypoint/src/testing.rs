/*!
Test support for the run: one upstream `TestOptions_Run` case in a temp dir, run through
`run_with` with stdout, stderr and the process log captured and interrupts injected.
*/

use std::fs::{self, File};
use std::io;
use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use pod_utils::duration;
use pod_utils::logging::{JsonLayer, LogSink};
use serde_json::Value;
use tracing_subscriber::layer::SubscriberExt;

use crate::Options;
use crate::run::run_with;
use crate::supervise::Event;

/// One upstream `TestOptions_Run` case in a temp dir.
pub(crate) struct Case {
    dir: tempfile::TempDir,
    pub(crate) opts: Options,
    /// Deliver the interrupt only once the child created `ready` (so its traps are set).
    pub(crate) wait_ready: bool,
}

pub(crate) struct Outcome {
    pub(crate) code: i32,
    /// The process log, split into child text and parsed entrypoint log lines.
    pub(crate) log: String,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) marker: Option<String>,
}

impl Outcome {
    /// The `msg`s of entrypoint's own JSON lines in the process log, with their levels.
    pub(crate) fn messages(&self) -> Vec<(String, String)> {
        self.log
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| {
                let v: Value = serde_json::from_str(l).expect("JSON log line");
                assert_eq!(v["component"], "entrypoint");
                (
                    v["level"].as_str().unwrap().to_string(),
                    v["msg"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// The error of the "Error executing test process" line, which upstream logs after the
    /// tee is gone (on stdout, or stderr if the tee never started).
    pub(crate) fn execute_error(&self) -> Option<String> {
        let lines = self.stdout.lines().chain(self.stderr.lines());
        let found: Vec<String> = lines
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v["msg"] == "Error executing test process")
            .map(|v| v["error"].as_str().unwrap().to_string())
            .collect();
        assert!(found.len() <= 1, "{found:?}");
        found.into_iter().next()
    }

    /// The process log without entrypoint's own lines.
    pub(crate) fn child_output(&self) -> String {
        self.log
            .split_inclusive('\n')
            .filter(|l| !l.starts_with('{'))
            .collect()
    }
}

pub(crate) fn case(args: &[&str]) -> Case {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options {
        timeout: duration::parse("10s").unwrap(),
        grace_period: duration::parse("1s").unwrap(),
        ..Options::default()
    };
    opts.wrapper.args = args.iter().map(std::string::ToString::to_string).collect();
    opts.wrapper.process_log = dir.path().join("process-log.txt").display().to_string();
    opts.wrapper.marker_file = dir.path().join("marker-file.txt").display().to_string();
    Case {
        dir,
        opts,
        wait_ready: false,
    }
}

impl Case {
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn run(&self) -> Outcome {
        self.run_interrupted(None)
    }

    /// Runs with `interrupt` delivered (as an event, and so to the child by entrypoint)
    /// after the given delay.
    pub(crate) fn run_interrupted(&self, interrupt: Option<(u64, Signal)>) -> Outcome {
        let stderr_path = self.path("stderr");
        let sink = LogSink::new(File::create(&stderr_path).unwrap());
        let layer = JsonLayer {
            component: "entrypoint",
            sink: sink.clone(),
        };
        let stdout_path = self.path("stdout");
        let stdout = File::create(&stdout_path).unwrap();
        let ready = self.wait_ready.then(|| self.path("ready"));
        let register = move |tx: Sender<Event>| -> io::Result<()> {
            if let Some((ms, sig)) = interrupt {
                let ready = ready.clone();
                thread::spawn(move || {
                    thread::sleep(Duration::from_millis(ms));
                    let start = Instant::now();
                    while ready.as_ref().is_some_and(|r| !r.exists())
                        && start.elapsed() < Duration::from_secs(10)
                    {
                        thread::sleep(Duration::from_millis(10));
                    }
                    let _ = tx.send(Event::Interrupt(sig));
                });
            }
            Ok(())
        };
        let subscriber = tracing_subscriber::registry().with(layer);
        let code = tracing::subscriber::with_default(subscriber, || {
            run_with(&self.opts, &sink, Some(stdout), &register)
        });
        Outcome {
            code,
            log: fs::read_to_string(&self.opts.wrapper.process_log).unwrap_or_default(),
            stdout: fs::read_to_string(stdout_path).unwrap(),
            stderr: fs::read_to_string(stderr_path).unwrap(),
            marker: fs::read_to_string(&self.opts.wrapper.marker_file).ok(),
        }
    }
}

pub(crate) fn msg(level: &str, m: &str) -> (String, String) {
    (level.to_string(), m.to_string())
}
