/*!
sidecar's run (upstream `pkg/sidecar/run.go` and `cmd/sidecar/main.go`): read JOB_SPEC, wait for
every entry's marker, then censor, and upload the build logs, finished.json, sidecar's own log and
the configured items.

The first SIGINT/SIGTERM either only logs a warning (`ignore_interrupts`) or starts a best-effort
upload that reports the job as ABORTED while the wait goes on; when the markers resolve, a
best-effort upload still in flight is dropped and the final upload runs. sidecar is never ended by
those signals: it must get its upload out, and only SIGKILL stops it.

Exit status: 0, even when the upload fails or JOB_SPEC is unusable (reported in the log only); 1
when `entry_error` is set and a container failed.
*/

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use pod_utils::downwardapi::{self, JobSpec, SpecError};
use pod_utils::gcs::UploadConfig;
use pod_utils::gcsupload::{self, Substitute, Substitutes, UploadError, UploadSource};
use pod_utils::wrapper::{self, MarkerResult};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::buildlog::{LogContent, build_logs};
use crate::finished::{Finished, JobResult};
use crate::logfile::LogFile;
use crate::metadata::{MetadataError, combine_metadata, withheld_key};
use crate::options::Validated;

/// The object name of sidecar's own log.
pub const LOG_FILE_NAME: &str = "sidecar-logs.json";
/// The object name of the job's final status.
pub const FINISHED_FILE_NAME: &str = "finished.json";

/// A container that was aborted (entrypoint's `AbortedErrorCode`).
const ABORTED_ERROR_CODE: i32 = 130;
/// A container skipped because an earlier step failed (entrypoint's `PreviousErrorCode`).
const PREVIOUS_ERROR_CODE: i32 = 1130;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("could not resolve job spec: {0}")]
    Spec(#[from] SpecError),
    #[error("could not start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("failed to upload to GCS: {0}")]
    Upload(#[source] UploadError),
}

/// What the markers said, taken together (upstream's `wait` return values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitOutcome {
    /// Every marker was read and holds 0.
    pub passed: bool,
    /// Some marker holds 130.
    pub aborted: bool,
    /// Markers other than 0 and 1130, including unreadable ones (-1).
    pub failures: usize,
}

impl WaitOutcome {
    /// Combines marker results; each distinct marker path counts once, as upstream keys its
    /// results by path.
    pub fn from_results<'a>(results: impl IntoIterator<Item = &'a MarkerResult>) -> Self {
        let mut outcome = WaitOutcome {
            passed: true,
            aborted: false,
            failures: 0,
        };
        for r in results {
            outcome.passed &= r.err.is_none() && r.return_code == 0;
            outcome.aborted |= r.return_code == ABORTED_ERROR_CODE;
            if r.return_code != 0 && r.return_code != PREVIOUS_ERROR_CODE {
                outcome.failures += 1;
            }
        }
        outcome
    }
}

/// Waits for every entry's marker (upstream `wait`). Returns early, counting unresolved
/// markers as failures, once `cancel` is set.
pub fn wait(entries: &[wrapper::Options], cancel: &AtomicBool) -> WaitOutcome {
    let mut paths: Vec<PathBuf> = Vec::with_capacity(entries.len());
    for e in entries {
        let p = PathBuf::from(&e.marker_file);
        if !paths.contains(&p) {
            paths.push(p);
        }
    }
    WaitOutcome::from_results(&wrapper::wait_for_markers(&paths, cancel))
}

/// How a run ended, before it becomes an exit status.
#[derive(Debug)]
pub struct RunOutcome {
    pub failures: usize,
    /// Whether the job status was reported.
    pub report: Result<(), RunError>,
}

/// Runs sidecar and returns its exit status (upstream `main` after validation).
pub fn run(opts: Validated, log: &LogFile) -> i32 {
    let entry_error = opts.entry_error;
    let outcome = run_job(opts, log);
    if let Err(e) = &outcome.report {
        tracing::error!(error = %e, "Failed to report job status");
    }
    if outcome.failures > 0 && entry_error {
        pod_utils::fatal!("{} containers failed", outcome.failures);
        return 1;
    }
    0
}

/// Upstream's `Options.Run`.
pub fn run_job(opts: Validated, log: &LogFile) -> RunOutcome {
    let spec = match downwardapi::resolve_spec_from_env() {
        Ok(spec) => spec,
        Err(e) => {
            return RunOutcome {
                failures: 0,
                report: Err(e.into()),
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return RunOutcome {
                failures: 0,
                report: Err(RunError::Runtime(e)),
            };
        }
    };
    let job = Job {
        opts,
        spec,
        log,
        censoring: Arc::new(Mutex::new(())),
    };
    runtime.block_on(job.supervise())
}

/// Everything one run shares between the best-effort and the final upload.
struct Job<'a> {
    opts: Validated,
    spec: JobSpec,
    log: &'a LogFile,
    /// Held while files are being censored: a best-effort pass that is still rewriting files
    /// when the final one starts must finish first, or both would rewrite the same file.
    censoring: Arc<Mutex<()>>,
}

impl Job<'_> {
    async fn supervise(&self) -> RunOutcome {
        let mut interrupts = Interrupts::register();
        let cancel = Arc::new(AtomicBool::new(false));
        let mut waiting = {
            let entries = self.opts.entries.clone();
            let cancel = Arc::clone(&cancel);
            tokio::task::spawn_blocking(move || wait(&entries, &cancel))
        };

        let waited = tokio::select! {
            done = &mut waiting => done,
            sig = interrupts.first() => {
                if self.opts.ignore_interrupts {
                    tracing::warn!("Received an interrupt: {sig}, ignoring...");
                    (&mut waiting).await
                } else {
                    tracing::error!("Received an interrupt: {sig}, cancelling...");
                    let best_effort = self.best_effort_upload();
                    tokio::pin!(best_effort);
                    tokio::select! {
                        // The markers resolved first: drop the best-effort upload.
                        done = &mut waiting => done,
                        () = &mut best_effort => (&mut waiting).await,
                    }
                }
            }
        };
        // Nothing waits any more; later signals stay caught, and so ignored.
        cancel.store(true, Ordering::SeqCst);
        let outcome = waited.unwrap_or_else(|e| {
            tracing::error!(error = %e, "Waiting for the markers failed");
            WaitOutcome {
                passed: false,
                aborted: false,
                failures: self.opts.entries.len(),
            }
        });
        RunOutcome {
            failures: outcome.failures,
            report: self.report(outcome.passed, outcome.aborted).await,
        }
    }

    async fn best_effort_upload(&self) {
        match self.report(false, true).await {
            Ok(()) => tracing::error!("Best-effort upload was successful"),
            Err(e) => tracing::error!(error = %e, "Failed to perform best-effort upload"),
        }
    }

    /// preUpload, then the upload of this outcome.
    async fn report(&self, passed: bool, aborted: bool) -> Result<(), RunError> {
        // Held until the upload is done: it owns the censored copies the upload reads.
        let censored = self.pre_upload().await;
        let mut substitutes = Substitutes::default();
        let mut withheld = BTreeMap::new();
        if let Some(report) = &censored {
            for (original, copy) in &report.copies {
                substitutes.insert(original, Substitute::Copy(copy.clone()));
            }
            for (path, why) in &report.withheld {
                substitutes.insert(path, Substitute::Withhold);
                withheld.insert(path.clone(), why.clone());
            }
        }
        self.do_upload(passed, aborted, &substitutes, &withheld)
            .await
    }

    /// Upstream's `preUpload`: the deprecation warning, then censoring when configured. A
    /// censoring failure is only a warning: uploading uncensored beats uploading nothing. The
    /// report holds the censored copies of files that could not be rewritten in place.
    async fn pre_upload(&self) -> Option<crate::censor::Report> {
        if self.opts.deprecated_wrapper {
            tracing::warn!(
                "Using deprecated wrapper_options instead of entries. Please update prow/pod-utils/decorate before June 2019"
            );
        }
        let censoring = self.opts.censoring.clone()?;
        let CensorTargets {
            process_logs,
            items,
        } = CensorTargets::of(&self.opts);
        let lock = Arc::clone(&self.censoring);
        // Censoring reads and rewrites whole files: keep it off the async workers.
        let censored = tokio::task::spawn_blocking(move || {
            let _held = lock
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            crate::censor::censor(&censoring, &process_logs, &items, &std::env::temp_dir())
        })
        .await;
        match censored {
            Ok(report) => {
                if let Err(e) = &report.result {
                    tracing::warn!(error = %e, "Failed to censor data");
                }
                Some(report)
            }
            Err(e) => {
                tracing::warn!(error = %e, "Failed to censor data");
                None
            }
        }
    }

    /// Upstream's `doUpload`.
    async fn do_upload(
        &self,
        passed: bool,
        aborted: bool,
        substitutes: &Substitutes,
        withheld: &BTreeMap<PathBuf, String>,
    ) -> Result<(), RunError> {
        let entries = &self.opts.entries;
        let mut extra: Vec<(String, UploadSource)> = build_logs(entries)
            .into_iter()
            .map(|l| {
                let source = match l.content {
                    LogContent::File(p) => UploadSource::File(p),
                    LogContent::Note(n) => UploadSource::Bytes(n.into_bytes()),
                };
                (l.name, source)
            })
            .collect();
        let mut metadata = combine_metadata(entries);
        // Censoring fails closed: what it withheld is named in finished.json, never dropped
        // silently.
        for (path, why) in withheld {
            metadata
                .errors
                .insert(withheld_key(path), MetadataError::Withheld(why.clone()));
        }

        let _finished_uploading = FinishedUploading::start();
        extra.push((
            LOG_FILE_NAME.to_string(),
            UploadSource::File(self.log.detach().to_path_buf()),
        ));
        let finished = Finished {
            timestamp: unix_now(),
            passed,
            metadata: &metadata,
            result: JobResult::from_outcome(passed, aborted),
            revision: self.spec.revision(),
        };
        extra.push((
            FINISHED_FILE_NAME.to_string(),
            UploadSource::Bytes(finished.to_json().into_bytes()),
        ));
        gcsupload::run_with(
            &self.opts.gcs_options,
            &self.spec,
            extra,
            substitutes,
            &UploadConfig::default(),
        )
        .await
        .map_err(RunError::Upload)
    }
}

/// The files censoring looks at: every entry's process log, and the upload items.
#[derive(Debug, PartialEq, Eq)]
struct CensorTargets {
    process_logs: Vec<PathBuf>,
    items: Vec<PathBuf>,
}

impl CensorTargets {
    /// Upstream skips the deprecated `wrapper_options` entry's log here, so it would be
    /// uploaded uncensored; every entry's log is censored instead.
    fn of(opts: &Validated) -> Self {
        CensorTargets {
            process_logs: opts
                .entries
                .iter()
                .map(|e| PathBuf::from(&e.process_log))
                .collect(),
            items: opts.gcs_options.items.iter().map(PathBuf::from).collect(),
        }
    }
}

/// Logs "Starting to upload" now and "Finished uploading" with the elapsed time when dropped,
/// which also covers an upload cancelled mid-way.
struct FinishedUploading(Instant);

impl FinishedUploading {
    fn start() -> Self {
        tracing::info!("Starting to upload");
        FinishedUploading(Instant::now())
    }
}

impl Drop for FinishedUploading {
    fn drop(&mut self) {
        let nanos = i64::try_from(self.0.elapsed().as_nanos()).unwrap_or(i64::MAX);
        tracing::info!(
            duration = %pod_utils::duration::format(nanos),
            "Finished uploading"
        );
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// SIGINT and SIGTERM, caught for the rest of the process's life once registered.
struct Interrupts {
    interrupt: Option<Signal>,
    terminate: Option<Signal>,
}

impl Interrupts {
    fn register() -> Self {
        let catch = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "Could not catch {name}");
                None
            }
        };
        Interrupts {
            interrupt: catch(SignalKind::interrupt(), "SIGINT"),
            terminate: catch(SignalKind::terminate(), "SIGTERM"),
        }
    }

    /// Resolves at the first signal with Go's name for it; never, if neither is caught.
    async fn first(&mut self) -> &'static str {
        async fn recv(s: &mut Option<Signal>) {
            match s {
                Some(s) => {
                    // `None` means the stream ended, which tokio never does for a registered
                    // signal; treat it as never firing.
                    if s.recv().await.is_none() {
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending::<()>().await,
            }
        }
        tokio::select! {
            () = recv(&mut self.interrupt) => "interrupt",
            () = recv(&mut self.terminate) => "terminated",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    const PASS: &str = "0";
    const FAIL: &str = "1";
    const ABORTED: &str = "130";
    const SKIP: &str = "1130";

    struct Case {
        name: &'static str,
        markers: &'static [&'static str],
        missing: bool,
        want: WaitOutcome,
    }

    const fn outcome(passed: bool, aborted: bool, failures: usize) -> WaitOutcome {
        WaitOutcome {
            passed,
            aborted,
            failures,
        }
    }

    const CASES: &[Case] = &[
        Case {
            name: "pass, not abort when 1 item passes",
            markers: &[PASS],
            missing: false,
            want: outcome(true, false, 0),
        },
        Case {
            name: "pass when all items pass",
            markers: &[PASS, PASS, PASS],
            missing: false,
            want: outcome(true, false, 0),
        },
        Case {
            name: "fail, not abort when 1 item fails",
            markers: &[FAIL],
            missing: false,
            want: outcome(false, false, 1),
        },
        Case {
            name: "fail when any item fails",
            markers: &[PASS, FAIL, PASS],
            missing: false,
            want: outcome(false, false, 1),
        },
        Case {
            name: "abort and fail when 1 item aborts",
            markers: &[ABORTED],
            missing: false,
            want: outcome(false, true, 1),
        },
        Case {
            name: "abort when any item aborts",
            markers: &[PASS, ABORTED, FAIL],
            missing: false,
            want: outcome(false, true, 2),
        },
        Case {
            name: "fail when marker does not exist",
            markers: &[PASS],
            missing: true,
            want: outcome(false, false, 1),
        },
        Case {
            name: "count all failures",
            markers: &[PASS, FAIL, ABORTED, SKIP, FAIL, PASS],
            missing: false,
            want: outcome(false, true, 3),
        },
    ];

    fn entries(dir: &Path, n: usize, missing: bool) -> Vec<wrapper::Options> {
        let mut entries: Vec<wrapper::Options> = (0..n)
            .map(|i| wrapper::Options {
                marker_file: dir
                    .join(format!("marker-{i}.txt"))
                    .to_string_lossy()
                    .into_owned(),
                ..Default::default()
            })
            .collect();
        if missing {
            entries.push(wrapper::Options {
                marker_file: dir
                    .join("missing-marker.txt")
                    .to_string_lossy()
                    .into_owned(),
                ..Default::default()
            });
        }
        entries
    }

    /// Sets `cancel` after `after`, as the Go tests cancel their context.
    fn cancel_later(cancel: &Arc<AtomicBool>, after: Duration) {
        let cancel = Arc::clone(cancel);
        std::thread::spawn(move || {
            std::thread::sleep(after);
            cancel.store(true, Ordering::SeqCst);
        });
    }

    // Upstream TestWait: markers exist before the wait starts.
    #[test]
    fn wait_for_existing_markers() {
        let mut cases: Vec<(&str, Vec<&str>, bool, WaitOutcome)> = CASES
            .iter()
            .map(|c| (c.name, c.markers.to_vec(), c.missing, c.want))
            .collect();
        cases.push((
            "fail when marker cannot be read",
            vec![PASS, "not-an-exit-code", PASS],
            false,
            outcome(false, false, 1),
        ));
        for (name, markers, missing, want) in cases {
            let dir = tempfile::tempdir().unwrap();
            let entries = entries(dir.path(), markers.len(), missing);
            for (e, m) in entries.iter().zip(&markers) {
                std::fs::write(&e.marker_file, m).unwrap();
            }
            let cancel = Arc::new(AtomicBool::new(false));
            if missing {
                cancel_later(&cancel, Duration::ZERO);
            }
            assert_eq!(wait(&entries, &cancel), want, "{name}");
        }
    }

    // Upstream TestWaitParallelContainers: markers are written (atomically, as entrypoint
    // does) while the wait runs.
    #[test]
    fn wait_for_markers_written_in_parallel() {
        std::thread::scope(|scope| {
            for case in CASES {
                scope.spawn(move || {
                    let dir = tempfile::tempdir().unwrap();
                    let entries = entries(dir.path(), case.markers.len(), case.missing);
                    let cancel = Arc::new(AtomicBool::new(false));
                    let waiter = {
                        let entries = entries.clone();
                        let cancel = Arc::clone(&cancel);
                        std::thread::spawn(move || wait(&entries, &cancel))
                    };
                    for (e, m) in entries.iter().zip(case.markers) {
                        let code: i32 = m.parse().unwrap();
                        wrapper::write_marker(Path::new(&e.marker_file), "test", code).unwrap();
                    }
                    if case.missing {
                        cancel_later(&cancel, Duration::from_secs(1));
                    }
                    assert_eq!(waiter.join().unwrap(), case.want, "{}", case.name);
                });
            }
        });
    }

    #[test]
    fn a_marker_shared_by_two_entries_counts_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut entries = entries(dir.path(), 1, false);
        entries.push(entries[0].clone());
        std::fs::write(&entries[0].marker_file, FAIL).unwrap();
        let cancel = AtomicBool::new(false);
        assert_eq!(wait(&entries, &cancel), outcome(false, false, 1));
    }

    // Deviation: upstream leaves the deprecated wrapper_options entry's log uncensored.
    #[test]
    fn censoring_covers_the_deprecated_wrapper_entry_too() {
        let raw: crate::options::Options = serde_json::from_str(
            r#"{"gcs_options":{"items":["/logs/artifacts"],"local_output_dir":"/out"},
                "wrapper_options":{"process_log":"/logs/old.txt","marker_file":"/logs/m1"},
                "entries":[{"process_log":"/logs/new.txt","marker_file":"/logs/m2"}],
                "censoring_options":{}}"#,
        )
        .unwrap();
        let opts = raw.validate().unwrap();
        assert!(opts.deprecated_wrapper);
        assert_eq!(
            CensorTargets::of(&opts),
            CensorTargets {
                process_logs: vec!["/logs/old.txt".into(), "/logs/new.txt".into()],
                items: vec!["/logs/artifacts".into()],
            }
        );
    }

    #[test]
    fn unreadable_markers_fail_but_skipped_ones_only_unpass() {
        let r = |code: i32, err: Option<&str>| MarkerResult {
            return_code: code,
            err: err.map(String::from),
        };
        assert_eq!(
            WaitOutcome::from_results(&[r(-1, Some("bad read: x")), r(1130, None)]),
            outcome(false, false, 1)
        );
        assert_eq!(
            WaitOutcome::from_results(&[r(1130, None)]),
            outcome(false, false, 0)
        );
    }
}
