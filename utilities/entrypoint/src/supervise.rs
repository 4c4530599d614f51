/*!
Supervising the child (steps 5-7 of upstream's `ExecuteProcess`): the previous marker, the
start, then the wait with its timeout and grace period. Every wait is [`wait_until`] on the one
event channel, so the calling thread alone decides codes and logs.
*/

use std::fs::File;
use std::io::{self, Write};
use std::ops::ControlFlow;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, pipe2};
use pod_utils::duration;
use pod_utils::wrapper::{self, MarkerResult};

use crate::Options;
use crate::pump::{SharedOutput, pump};
use crate::run::{ABORTED_ERROR_CODE, Executed, INTERNAL_ERROR_CODE, PREVIOUS_ERROR_CODE};
use crate::signals::go_signal_name;
use crate::start::start;

/// What the run loop waits for.
#[derive(Debug)]
pub(crate) enum Event {
    /// SIGINT or SIGTERM reached entrypoint.
    Interrupt(Signal),
    /// The previous step's marker was read (or could not be).
    PreviousMarker(MarkerResult),
    /// The child was reaped and its output pipe reached EOF (Go's `cmd.Wait`).
    Exited,
}

/// `nanos` after `from`; `None` (wait without a deadline) past what an `Instant` can hold.
fn deadline(from: Instant, nanos: i64) -> Option<Instant> {
    from.checked_add(Duration::from_nanos(nanos.max(0) as u64))
}

/// The run loop's one wait: hands each event to `handle` until it breaks, and returns what it
/// broke with; `None` once `deadline` passes (`None`: no deadline). A disconnected channel
/// counts as the deadline too; it cannot happen while the caller holds a sender.
fn wait_until<T>(
    rx: &Receiver<Event>,
    deadline: Option<Instant>,
    mut handle: impl FnMut(Event) -> ControlFlow<T>,
) -> Option<T> {
    loop {
        let event = match deadline {
            Some(d) => rx.recv_timeout(d.saturating_duration_since(Instant::now())),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match event {
            Ok(event) => {
                if let ControlFlow::Break(t) = handle(event) {
                    return Some(t);
                }
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
        }
    }
}

/// Steps 5-7 of `ExecuteProcess`: previous marker, start, wait.
pub(crate) fn supervise(
    o: &Options,
    output: &SharedOutput,
    tx: &Sender<Event>,
    rx: &Receiver<Event>,
) -> Executed {
    if !o.previous_marker.is_empty() {
        let r = wait_for_previous(PathBuf::from(&o.previous_marker), tx, rx);
        if let Some(err) = r.err {
            return Executed::internal(format!(
                "wait for previous marker {}: {err}",
                o.previous_marker
            ));
        }
        if r.return_code != 0 {
            tracing::info!("Skipping as previous step exited {}", r.return_code);
            return Executed {
                code: PREVIOUS_ERROR_CODE,
                err: None,
            };
        }
    }

    let (read_end, write_end) = match pipe2(OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => {
            return Executed::internal(format!(
                "could not start the process: pipe: {}",
                io::Error::from(e)
            ));
        }
    };
    let child = match start(&o.wrapper.args, write_end) {
        Ok(c) => c,
        Err(e) => {
            // Upstream writes this to the process log only, with no newline.
            let text = format!("could not start the process: {e}");
            let mut out = output.lock();
            if let Some(log) = &mut out.log {
                if let Err(e) = log.write_all(text.as_bytes()) {
                    return Executed::internal(format!("{text}, {e}"));
                }
            }
            return Executed::internal(text);
        }
    };
    let started = Instant::now();
    let child = Supervised {
        pid: Pid::from_raw(child.id() as i32),
        state: Arc::default(),
    }
    .watch(child, read_end, output.clone(), tx.clone());
    let child = match child {
        Ok(c) => c,
        Err(e) => return Executed::internal(format!("could not start the output threads: {e}")),
    };

    let timeout = o.effective_timeout();
    let grace = o.effective_grace_period();
    let ended = wait_until(rx, deadline(started, timeout), |event| match event {
        Event::Exited => {
            let code = child.code();
            ControlFlow::Break(Executed {
                code,
                // Go's ExitError text: "exit status 12", "signal: killed".
                err: (code != 0).then(|| format!("wrapped process failed: {}", child.state_text())),
            })
        }
        Event::Interrupt(sig) => {
            tracing::error!("Entrypoint received interrupt: {}", go_signal_name(sig));
            child.gracefully_terminate(Some(sig), grace, rx);
            ControlFlow::Break(Executed {
                code: if o.propagate_error_code {
                    child.code()
                } else {
                    ABORTED_ERROR_CODE
                },
                err: Some("process aborted".into()),
            })
        }
        Event::PreviousMarker(_) => ControlFlow::Continue(()),
    });
    // We hold a sender, so the channel cannot disconnect: this is the timeout.
    ended.unwrap_or_else(|| {
        tracing::error!(
            "Process did not finish before {} timeout",
            duration::format(timeout)
        );
        child.gracefully_terminate(None, grace, rx);
        Executed {
            code: if o.propagate_error_code {
                child.code()
            } else {
                INTERNAL_ERROR_CODE
            },
            err: Some("process timed out".into()),
        }
    })
}

/// Waits for `previous_marker` on a helper thread; the first SIGINT/SIGTERM cancels the wait.
fn wait_for_previous(path: PathBuf, tx: &Sender<Event>, rx: &Receiver<Event>) -> MarkerResult {
    let cancel = Arc::new(AtomicBool::new(false));
    let (c, t) = (cancel.clone(), tx.clone());
    let spawned = thread::Builder::new()
        .name("previous-marker".into())
        .spawn(move || {
            let r = wrapper::wait_for_markers(&[path], &c);
            let r = r.into_iter().next().unwrap_or(MarkerResult {
                return_code: -1,
                err: Some("no result".into()),
            });
            let _ = t.send(Event::PreviousMarker(r));
        });
    if let Err(e) = spawned {
        return MarkerResult {
            return_code: -1,
            err: Some(format!("could not start the marker watcher: {e}")),
        };
    }
    let marker = wait_until(rx, None, |event| match event {
        Event::PreviousMarker(r) => ControlFlow::Break(r),
        Event::Interrupt(sig) => {
            tracing::error!("Received interrupt {}, cancelling...", go_signal_name(sig));
            cancel.store(true, Ordering::SeqCst);
            ControlFlow::Continue(())
        }
        Event::Exited => ControlFlow::Continue(()),
    });
    // Unreachable while the caller holds a sender; report it as a cancelled wait.
    marker.unwrap_or_else(|| MarkerResult {
        return_code: -1,
        err: Some("cancelled: context canceled".into()),
    })
}

/// The running child as the run loop sees it: its PID and, once reaped, how it ended.
struct Supervised {
    pid: Pid,
    /// Go's `ProcessState`: set when the child is reaped.
    state: Arc<Mutex<Option<ExitStatus>>>,
}

impl Supervised {
    /// Starts the pump and the waiter; the waiter sends [`Event::Exited`] once the child is
    /// reaped AND its output reached EOF, as Go's `cmd.Wait`.
    fn watch(
        self,
        mut child: Child,
        read_end: OwnedFd,
        output: SharedOutput,
        tx: Sender<Event>,
    ) -> io::Result<Self> {
        let pump = thread::Builder::new()
            .name("output".into())
            .spawn(move || pump(File::from(read_end), output))?;
        let slot = self.state.clone();
        thread::Builder::new().name("wait".into()).spawn(move || {
            // wait() only fails for a child that is not ours; it then stays "not reaped" (-1).
            if let Ok(status) = child.wait() {
                *slot
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(status);
            }
            let _ = pump.join();
            let _ = tx.send(Event::Exited);
        })?;
        Ok(self)
    }

    fn state(&self) -> Option<ExitStatus> {
        *self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The code for the marker (Go's `ExitCode()`): the exit status, or -1 if killed by a
    /// signal or not reaped.
    fn code(&self) -> i32 {
        self.state().and_then(|s| s.code()).unwrap_or(-1)
    }

    /// Go's `ProcessState.String()`: `exit status 12`, `signal: killed`.
    fn state_text(&self) -> String {
        match self.state() {
            None => "process not reaped".into(),
            Some(s) => match (s.code(), s.signal()) {
                (Some(c), _) => format!("exit status {c}"),
                (None, Some(n)) => {
                    let name = Signal::try_from(n)
                        .map(go_signal_name)
                        .map(str::to_string)
                        .unwrap_or_else(|_| format!("signal {n}"));
                    let core = if s.core_dumped() {
                        " (core dumped)"
                    } else {
                        ""
                    };
                    format!("signal: {name}{core}")
                }
                (None, None) => s.to_string(),
            },
        }
    }

    /// Signals the child's PID only (no process group, as upstream). A child already reaped is
    /// left alone, so a reused PID is never hit; that is not worth a log line (upstream logs Go's
    /// "process already finished" when it loses that race).
    fn signal(&self, sig: Signal, what: &str) {
        if self.state().is_some() {
            return;
        }
        if let Err(e) = kill(self.pid, sig) {
            tracing::error!(error = %io::Error::from(e), "{what}");
        }
    }

    /// Upstream's `gracefullyTerminate`: SIGINT (plus the received signal, if any), then up to
    /// `grace` for the child to finish, then SIGKILL without waiting further.
    fn gracefully_terminate(&self, received: Option<Signal>, grace: i64, rx: &Receiver<Event>) {
        self.signal(Signal::SIGINT, "Could not interrupt process after timeout");
        if let Some(sig) = received {
            let what = format!(
                "Could not send signal {} to process after timeout",
                go_signal_name(sig)
            );
            self.signal(sig, &what);
        }
        let exited = wait_until(rx, deadline(Instant::now(), grace), |event| match event {
            Event::Exited => ControlFlow::Break(()),
            // Later signals are swallowed, as upstream.
            Event::Interrupt(_) | Event::PreviousMarker(_) => ControlFlow::Continue(()),
        });
        if exited.is_some() {
            // Upstream logs this at error level too.
            tracing::error!(
                "Process gracefully exited before {} grace period",
                duration::format(grace)
            );
        } else {
            tracing::error!(
                "Process did not exit before {} grace period",
                duration::format(grace)
            );
            self.signal(Signal::SIGKILL, "Could not kill process after grace period");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{case, msg};
    use std::fs;
    use std::sync::mpsc;

    #[test]
    fn wait_until_skips_continued_events_and_stops_at_the_deadline() {
        let (tx, rx) = mpsc::channel();
        tx.send(Event::PreviousMarker(MarkerResult {
            return_code: 0,
            err: None,
        }))
        .unwrap();
        tx.send(Event::Exited).unwrap();
        let skip_markers = |e| match e {
            Event::PreviousMarker(_) => ControlFlow::Continue(()),
            e => ControlFlow::Break(e),
        };
        let soon = deadline(Instant::now(), 50 * duration::MILLISECOND);
        let got = wait_until(&rx, soon, skip_markers);
        assert!(matches!(got, Some(Event::Exited)), "{got:?}");
        let start = Instant::now();
        let soon = deadline(Instant::now(), 50 * duration::MILLISECOND);
        assert!(wait_until(&rx, soon, skip_markers).is_none());
        assert!(start.elapsed() >= Duration::from_millis(50));
        drop(tx);
        assert!(wait_until(&rx, None, skip_markers).is_none());
    }

    #[test]
    fn failure_code_is_recorded() {
        let out = case(&["sh", "-c", "exit 12"]).run();
        assert_eq!((out.code, out.marker.as_deref()), (12, Some("12")));
        let out = case(&["sh", "-c", "echo test; exit 12"]).run();
        assert_eq!((out.code, out.marker.as_deref()), (12, Some("12")));
        assert_eq!(out.log, "test\n");
        assert_eq!(
            out.execute_error().as_deref(),
            Some("wrapped process failed: exit status 12")
        );
    }

    #[test]
    fn killed_by_a_signal_is_minus_one() {
        let out = case(&["sh", "-c", "kill -9 $$"]).run();
        assert_eq!((out.code, out.marker.as_deref()), (-1, Some("-1")));
        assert_eq!(
            out.execute_error().as_deref(),
            Some("wrapped process failed: signal: killed")
        );
    }

    #[test]
    fn waits_for_output_eof_like_go() {
        // A grandchild holding stdout keeps entrypoint waiting, as Go's cmd.Wait does.
        let out = case(&["sh", "-c", "(sleep 0.3; echo late) & echo early"]).run();
        assert_eq!(out.code, 0);
        assert_eq!(out.log, "early\nlate\n");
    }

    #[test]
    fn timeout_with_graceful_exit() {
        let mut c = case(&["sleep", "5"]);
        c.opts.timeout = duration::SECOND;
        let start = Instant::now();
        let out = c.run();
        assert!(start.elapsed() < Duration::from_secs(3));
        assert_eq!((out.code, out.marker.as_deref()), (127, Some("127")));
        assert_eq!(
            out.messages(),
            [
                msg("error", "Process did not finish before 1s timeout"),
                msg("error", "Process gracefully exited before 1s grace period"),
            ]
        );
        // Entrypoint's own lines also reach stdout; the error line comes after the tee.
        assert!(out.stdout.starts_with(&out.log));
        assert_eq!(out.execute_error().as_deref(), Some("process timed out"));
    }

    #[test]
    fn timeout_with_child_ignoring_sigint() {
        let mut c = case(&["sh", "-c", "trap '' INT; sleep 5 >/dev/null"]);
        c.opts.timeout = duration::SECOND;
        let start = Instant::now();
        let out = c.run();
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "{:?}",
            start.elapsed()
        );
        assert_eq!((out.code, out.marker.as_deref()), (127, Some("127")));
        assert_eq!(
            out.messages(),
            [
                msg("error", "Process did not finish before 1s timeout"),
                msg("error", "Process did not exit before 1s grace period"),
            ]
        );
    }

    #[test]
    fn timeout_with_propagation_uses_the_childs_code() {
        let mut c = case(&[
            "sh",
            "-c",
            "trap 'kill $!; exit 4' INT; sleep 5 >/dev/null 2>&1 & wait",
        ]);
        c.opts.timeout = duration::SECOND / 2;
        c.opts.propagate_error_code = true;
        let out = c.run();
        assert_eq!((out.code, out.marker.as_deref()), (4, Some("4")));
        // Killed after the grace period and never reaped in time: -1.
        let mut c = case(&["sh", "-c", "trap '' INT; sleep 5 >/dev/null"]);
        c.opts.timeout = duration::SECOND / 2;
        c.opts.grace_period = duration::SECOND / 2;
        c.opts.propagate_error_code = true;
        let out = c.run();
        assert_eq!((out.code, out.marker.as_deref()), (-1, Some("-1")));
    }

    #[test]
    fn previous_failure_skips_the_command() {
        let mut c = case(&["touch", "ran"]);
        fs::write(c.path("previous"), "9").unwrap();
        c.opts.previous_marker = c.path("previous").display().to_string();
        c.opts.wrapper.args[1] = c.path("ran").display().to_string();
        let out = c.run();
        assert_eq!((out.code, out.marker.as_deref()), (1130, Some("1130")));
        assert_eq!(
            out.messages(),
            [msg("info", "Skipping as previous step exited 9")]
        );
        assert!(!c.path("ran").exists());
    }

    #[test]
    fn previous_success_runs_the_command() {
        for (args, want) in [(["sh", "-c", "exit 0"], 0), (["sh", "-c", "exit 3"], 3)] {
            let mut c = case(&args);
            fs::write(c.path("previous"), "0").unwrap();
            c.opts.previous_marker = c.path("previous").display().to_string();
            let out = c.run();
            assert_eq!(out.code, want);
            assert_eq!(out.marker, Some(want.to_string()));
        }
    }

    #[test]
    fn previous_marker_written_later_is_waited_for() {
        let mut c = case(&["sh", "-c", "exit 5"]);
        let previous = c.path("previous");
        c.opts.previous_marker = previous.display().to_string();
        let writer = thread::spawn(move || {
            thread::sleep(Duration::from_millis(200));
            wrapper::write_marker(&previous, "first", 0).unwrap();
        });
        let out = c.run();
        writer.join().unwrap();
        assert_eq!(out.code, 5);
    }

    #[test]
    fn interrupt_cancels_the_previous_marker_wait() {
        let mut c = case(&["true"]);
        c.opts.previous_marker = c.path("never").display().to_string();
        let out = c.run_interrupted(Some((100, Signal::SIGINT)));
        assert_eq!((out.code, out.marker.as_deref()), (127, Some("127")));
        let msgs = out.messages();
        assert_eq!(
            msgs[0],
            msg("error", "Received interrupt interrupt, cancelling...")
        );
        assert_eq!(msgs.len(), 1);
        assert_eq!(
            out.execute_error(),
            Some(format!(
                "wait for previous marker {}: cancelled: context canceled",
                c.opts.previous_marker
            ))
        );
    }

    #[test]
    fn sigterm_with_and_without_propagation() {
        for (propagate, want) in [(true, 3), (false, 130)] {
            let mut c = case(&["sh", "-c", ""]);
            let script = format!(
                "trap 'kill $!; exit 3' INT TERM; sleep 10 >/dev/null 2>&1 & touch {}; wait",
                c.path("ready").display()
            );
            c.opts.wrapper.args[2] = script;
            c.wait_ready = true;
            c.opts.grace_period = 0;
            c.opts.propagate_error_code = propagate;
            let out = c.run_interrupted(Some((300, Signal::SIGTERM)));
            assert_eq!(out.code, want, "propagate={propagate}");
            assert_eq!(out.execute_error().as_deref(), Some("process aborted"));
            assert_eq!(out.marker, Some(want.to_string()));
            assert_eq!(
                out.messages(),
                [
                    msg("error", "Entrypoint received interrupt: terminated"),
                    msg("error", "Process gracefully exited before 15s grace period"),
                ]
            );
        }
    }
}
