/*!
Running the test command (upstream `pkg/entrypoint/run.go`): set up the process log and the
output tee, supervise the child, write the exit-code marker and pick the exit code.

The run is a small event loop on one channel: the child-waiter thread, the previous-marker
watcher and the signal thread all send [`Event`]s, and the calling thread alone decides codes
and logs, so entrypoint's own log lines never race with the decision they describe. The loop
is in `supervise`, the output in `pump`, starting the child in `start`.

This module must not exit the process: it returns codes and `lib.rs` exits.
*/

use std::fmt;
use std::fs::{self, File};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::mpsc::{self, Sender};

use pod_utils::logging::LogSink;
use pod_utils::wrapper;

use crate::Options;
use crate::copy::PathError;
use crate::pump::{LogWriter, SharedOutput};
use crate::signals::register_signals;
use crate::supervise::{Event, supervise};

/// Something went wrong in entrypoint itself (upstream `InternalErrorCode`).
pub const INTERNAL_ERROR_CODE: i32 = 127;
/// The run was interrupted by SIGINT/SIGTERM (upstream `AbortedErrorCode`).
pub const ABORTED_ERROR_CODE: i32 = 130;
/// The previous step failed, so this one did not run (upstream `PreviousErrorCode`, 1000 + 130;
/// it exits as 106 after the OS truncates it to 8 bits).
pub const PREVIOUS_ERROR_CODE: i32 = 1130;

/// Upstream's `Options.Run`: execute, write the marker, pick the exit code.
pub(crate) fn run(o: &Options, sink: &LogSink) -> i32 {
    let stdout = io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map(File::from)
        .ok();
    run_with(o, sink, stdout, &register_signals)
}

/// [`run`] with the stdout and signal source supplied (tests use a file and injected events).
pub(crate) fn run_with(
    o: &Options,
    sink: &LogSink,
    stdout: Option<File>,
    register: &dyn Fn(Sender<Event>) -> io::Result<()>,
) -> i32 {
    let Executed { code, err } = execute_process(o, sink, stdout, register);
    // By now the log output is stdout (or still stderr if the tee never started), as upstream.
    if let Some(e) = err {
        tracing::error!(error = %e, "Error executing test process");
    }
    let marker = Path::new(&o.wrapper.marker_file);
    if let Err(e) = wrapper::write_marker(marker, &o.wrapper.container_name, code) {
        tracing::error!(error = %e, "Error writing exit code to marker file");
        return INTERNAL_ERROR_CODE;
    }
    if o.always_zero { 0 } else { code }
}

/// Points the log sink at the tee for the duration of the run, then at stdout (upstream's
/// deferred `logrus.SetOutput(os.Stdout)`).
struct SinkGuard<'a> {
    sink: &'a LogSink,
    stdout: Option<File>,
}

impl Drop for SinkGuard<'_> {
    fn drop(&mut self) {
        match self.stdout.take() {
            Some(f) => self.sink.replace(f),
            None => self.sink.replace(io::sink()),
        };
    }
}

/// What `ExecuteProcess` returns: the marker code and, when something went wrong (including a
/// non-zero exit), upstream's error text for the "Error executing test process" line.
pub(crate) struct Executed {
    pub(crate) code: i32,
    pub(crate) err: Option<String>,
}

impl Executed {
    pub(crate) fn internal(err: impl fmt::Display) -> Self {
        Executed {
            code: INTERNAL_ERROR_CODE,
            err: Some(err.to_string()),
        }
    }
}

/// Upstream's `ExecuteProcess`: the code that goes into the marker, and what went wrong.
/// `register` hooks up SIGINT/SIGTERM to the event channel (tests inject events instead).
fn execute_process(
    o: &Options,
    sink: &LogSink,
    stdout: Option<File>,
    register: &dyn Fn(Sender<Event>) -> io::Result<()>,
) -> Executed {
    if !o.artifact_dir.is_empty() {
        if let Err(e) = fs::DirBuilder::new()
            .recursive(true)
            .mode(0o777)
            .create(&o.artifact_dir)
        {
            let e = PathError::new("mkdir", Path::new(&o.artifact_dir))(e);
            return Executed::internal(format!(
                "could not create artifact directory({}): {e}",
                o.artifact_dir
            ));
        }
    }
    let log_path = Path::new(&o.wrapper.process_log);
    let log = match File::create(log_path) {
        Ok(f) => f,
        Err(e) => {
            let e = PathError::new("open", log_path)(e);
            return Executed::internal(format!(
                "could not create process logfile({}): {e}",
                o.wrapper.process_log
            ));
        }
    };
    let restore_to = stdout.as_ref().and_then(|f| f.try_clone().ok());
    // The log is written on its own thread, fed through a pipe, so writing the file overlaps
    // delivering the output to stdout. Without a pipe or thread, it is written in line.
    let (log, writer) = match LogWriter::spawn(&log) {
        Ok((pipe, writer)) => (pipe, Some(writer)),
        Err(_) => (log, None),
    };
    let output = SharedOutput::new(stdout, log);
    sink.replace(output.clone());
    let _restore = SinkGuard {
        sink,
        stdout: restore_to,
    };

    let (tx, rx) = mpsc::channel();
    if let Err(e) = register(tx.clone()) {
        tracing::warn!(error = %e, "Could not register for SIGINT and SIGTERM");
    }
    let executed = supervise(o, &output, &tx, &rx);
    let errors = std::mem::take(&mut output.lock().errors);
    for e in errors {
        tracing::warn!(error = %e, "Could not write process output");
    }
    if let Some(writer) = writer {
        // Closing our end lets the writer reach EOF; waiting for it means the process log is
        // complete before the marker is written.
        drop(output.lock().log.take());
        if let Some(e) = writer.finish() {
            tracing::warn!(error = %e, "Could not write process output");
        }
    }
    executed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::case;

    #[test]
    fn success() {
        let out = case(&["true"]).run();
        assert_eq!(out.code, 0);
        assert_eq!(out.log, "");
        assert_eq!(out.marker.as_deref(), Some("0"));
        assert_eq!(out.execute_error(), None);
    }

    #[test]
    fn always_zero_keeps_the_marker_code() {
        let mut c = case(&["sh", "-c", "exit 7"]);
        c.opts.always_zero = true;
        let out = c.run();
        assert_eq!((out.code, out.marker.as_deref()), (0, Some("7")));
    }

    #[test]
    fn marker_write_failure_is_127_even_with_always_zero() {
        let mut c = case(&["true"]);
        c.opts.always_zero = true;
        c.opts.wrapper.marker_file = c.path("missing/marker").display().to_string();
        let out = c.run();
        assert_eq!((out.code, out.marker), (127, None));
    }

    #[test]
    fn artifact_dir_is_created() {
        let mut c = case(&["true"]);
        c.opts.artifact_dir = c.path("a/b/artifacts").display().to_string();
        assert_eq!(c.run().code, 0);
        assert!(c.path("a/b/artifacts").is_dir());
    }

    #[test]
    fn artifact_dir_failure_is_127_without_a_process_log() {
        let mut c = case(&["true"]);
        fs::write(c.path("file"), "").unwrap();
        c.opts.artifact_dir = c.path("file/artifacts").display().to_string();
        let out = c.run();
        assert_eq!((out.code, out.marker.as_deref()), (127, Some("127")));
        assert!(!c.path("process-log.txt").exists());
        // Logged before any tee: on stderr.
        assert_eq!(
            out.execute_error(),
            Some(format!(
                "could not create artifact directory({0}): mkdir {0}: not a directory",
                c.opts.artifact_dir
            ))
        );
        assert!(out.stderr.contains("Error executing test process"));
    }

    #[test]
    fn process_log_failure_is_127() {
        let mut c = case(&["true"]);
        c.opts.wrapper.process_log = c.path("missing/log").display().to_string();
        let out = c.run();
        assert_eq!((out.code, out.marker.as_deref()), (127, Some("127")));
    }
}
