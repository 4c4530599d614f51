/*!
Censoring secrets out of what sidecar uploads (upstream `pkg/sidecar/censor.go`), run before each
upload when `censoring_options` is set.

Secrets are loaded from the secret directories; any loading error disables censoring entirely, as
upstream. Then every process log, and every regular file under the upload items that the
include/exclude globs select, is rewritten with its secrets masked; gzip'd tarballs are unpacked,
censored and repacked. Files are censored concurrently (`censoring_concurrency` workers) and a
failure on one file never stops the others: all failures are returned together, in the order the
files were found, with Go's aggregate wording.

Deviations from upstream (each pinned by a test): a concurrency or buffer size of zero or less
(which hangs or panics upstream) falls back to one worker or the default buffer; special files
(FIFOs, sockets, devices) under the items are skipped rather than opened, since opening a FIFO
would hang; see `stream` and `archive` for the rest.
*/

pub mod archive;
pub mod aside;
mod glob;
mod ini;
pub mod replacer;
mod secrets;
mod skip;
pub mod stream;
pub mod targz;
mod walk;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, mpsc};
use std::time::Instant;

use crate::options::CensoringOptions;

pub use crate::goerr::{PathError, RenameError};
pub use archive::{ArchiveError, Placed};
pub use aside::Aside;
pub use glob::GlobError;
pub use replacer::{BuildError, Censorer};
pub use secrets::SecretsError;
pub use stream::{DEFAULT_BUFFER_SIZE, FileError};

use glob::Glob;
use walk::{Visit, lossy, walk};

/// Upstream's default number of files censored at once.
pub const DEFAULT_CONCURRENCY: usize = 10;

/// More threads than this would only contend for the same disks; upstream's goroutines are
/// cheap enough not to need a cap, threads are not.
const MAX_WORKERS: usize = 256;

/// Why censoring did not fully succeed.
#[derive(Debug, thiserror::Error)]
pub enum CensorError {
    /// Nothing was censored.
    #[error("could not load secrets: {0}")]
    LoadSecrets(#[source] SecretsError),
    /// Nothing was censored.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Some files could not be censored; the others were.
    #[error("{}", aggregate(.0))]
    Failures(Vec<Failure>),
}

impl CensorError {
    /// The per-file failures (empty when censoring never started).
    pub fn failures(&self) -> &[Failure] {
        match self {
            CensorError::Failures(f) => f,
            _ => &[],
        }
    }
}

/// One file or walk that failed.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("{0}")]
    Walk(PathError),
    #[error("could not determine if we should censor path: {0}")]
    Glob(GlobError),
    #[error("could not determine content type of {path}: {source}")]
    Sniff { path: String, source: SniffError },
    #[error("could not censor archive {path}: {source}")]
    Archive { path: String, source: ArchiveError },
    #[error(transparent)]
    File(#[from] FileError),
}

#[derive(Debug, thiserror::Error)]
pub enum SniffError {
    #[error("could not open file to check content type: {0}")]
    Open(PathError),
    #[error("could not read file to check content type: {0}")]
    Read(PathError),
}

/// Go's `kerrors.NewAggregate(...).Error()`: one message alone, several as `[a, b]`, repeated
/// messages once.
fn aggregate(failures: &[Failure]) -> String {
    let mut seen: Vec<String> = Vec::new();
    for f in failures {
        let msg = f.to_string();
        if !seen.contains(&msg) {
            seen.push(msg);
        }
    }
    if seen.len() == 1 {
        return seen.remove(0);
    }
    format!("[{}]", seen.join(", "))
}

/// What a censoring pass did.
#[derive(Debug)]
pub struct Report {
    /// Files that could not be rewritten in place (their directory is not sidecar's to write),
    /// each with the censored copy to upload instead.
    pub copies: BTreeMap<PathBuf, PathBuf>,
    /// Files that could not be censored, with why: they must not be uploaded as they are.
    pub withheld: BTreeMap<PathBuf, String>,
    pub result: Result<(), CensorError>,
    /// Holds the copies; dropping the report removes them.
    _aside: Aside,
}

/// Censors `process_logs` (always) and the selected files under `items` in place; a file whose
/// directory is not writable is censored into a copy under `tmp` instead (see [`aside`]).
pub fn censor(
    opts: &CensoringOptions,
    process_logs: &[PathBuf],
    items: &[PathBuf],
    tmp: &Path,
) -> Report {
    tracing::info!("Starting to censor data");
    let start = Instant::now();
    let aside = Aside::new(tmp);
    let mut copies = BTreeMap::new();
    let mut withheld = BTreeMap::new();
    let result = run(
        opts,
        process_logs,
        items,
        &aside,
        &mut copies,
        &mut withheld,
    );
    let took = i64::try_from(start.elapsed().as_nanos()).unwrap_or(i64::MAX);
    tracing::info!(
        duration = %pod_utils::duration::format(took),
        "Finished censoring data"
    );
    Report {
        copies,
        withheld,
        result,
        _aside: aside,
    }
}

enum Job {
    File(PathBuf),
    Gzip(PathBuf),
    Zip(PathBuf),
}

fn run(
    opts: &CensoringOptions,
    process_logs: &[PathBuf],
    items: &[PathBuf],
    aside: &Aside,
    copies: &mut BTreeMap<PathBuf, PathBuf>,
    withheld: &mut BTreeMap<PathBuf, String>,
) -> Result<(), CensorError> {
    let concurrency = match opts.censoring_concurrency {
        None => DEFAULT_CONCURRENCY,
        Some(n) if n >= 1 => usize::try_from(n).unwrap_or(DEFAULT_CONCURRENCY),
        Some(n) => {
            tracing::warn!(
                concurrency = n,
                "Censoring concurrency must be positive, using 1."
            );
            1
        }
    };
    tracing::debug!(concurrency, "Censoring artifacts.");
    let secrets = secrets::load(&opts.secret_directories, &opts.ini_filenames)
        .map_err(CensorError::LoadSecrets)?;
    tracing::debug!(secrets = secrets.len(), "Loaded secrets to censor.");
    let min_len = opts.minimum_secret_length.unwrap_or(0);
    tracing::debug!(
        minimum_secret_length = min_len,
        "Using minimum secret length for censoring."
    );
    let censorer = Censorer::new(&secrets, usize::try_from(min_len).unwrap_or(0))?;
    drop(secrets);
    let buffer_size = buffer_size(opts.censoring_buffer_size, censorer.largest_secret());
    tracing::debug!(buffer_size, "Determined censoring buffer size.");
    let globs = Globs::new(opts);

    let (tx, rx) = mpsc::sync_channel::<(usize, Job)>(concurrency);
    let rx = Mutex::new(rx);
    let found: Mutex<Vec<(usize, Vec<Failure>)>> = Mutex::new(Vec::new());
    let copied: Mutex<Vec<(PathBuf, PathBuf)>> = Mutex::new(Vec::new());
    let withhold: Mutex<Vec<(PathBuf, String)>> = Mutex::new(Vec::new());
    let record = |seq: usize, done: Done| {
        if let Some(c) = done.copy {
            copied
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(c);
        }
        if let (Some(path), false) = (&done.path, done.failures.iter().all(vanished)) {
            // Fails closed: a file that could not be censored is not uploaded as it is.
            withhold
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((path.clone(), aggregate(&done.failures)));
        }
        if !done.failures.is_empty() {
            found
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((seq, done.failures));
        }
    };
    std::thread::scope(|s| {
        let mut workers = 0;
        for _ in 0..concurrency.min(MAX_WORKERS) {
            let spawned = std::thread::Builder::new()
                .name("censor".to_string())
                .spawn_scoped(s, || {
                    // Allocated on first use and kept for the worker's later files; zeroed
                    // pages cost nothing until a large file touches them.
                    let mut buf: Vec<u8> = Vec::new();
                    loop {
                        let next = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                        let Ok((seq, job)) = next else {
                            break;
                        };
                        if buf.len() != buffer_size {
                            buf = vec![0; buffer_size];
                        }
                        record(seq, run_job(job, &censorer, &mut buf, aside));
                    }
                });
            match spawned {
                Ok(_) => workers += 1,
                Err(e) => {
                    tracing::warn!(error = %e, workers, "Could not start more censoring workers.");
                    break;
                }
            }
        }
        let seq = Cell::new(0);
        let next = || {
            let n = seq.get();
            seq.set(n + 1);
            n
        };
        // Without any worker the files are censored here, one by one.
        let inline_buf = std::cell::RefCell::new(Vec::new());
        let submit = |job: Job| {
            if workers == 0 {
                let mut buf = inline_buf.borrow_mut();
                if buf.len() != buffer_size {
                    *buf = vec![0; buffer_size];
                }
                record(next(), run_job(job, &censorer, &mut buf, aside));
            } else {
                // Workers only stop once the sender is gone, so sending cannot fail.
                let _ = tx.send((next(), job));
            }
        };
        let fail = |f: Failure| {
            record(
                next(),
                Done {
                    failures: vec![f],
                    copy: None,
                    path: None,
                },
            );
        };
        for log in process_logs {
            submit(Job::File(log.clone()));
        }
        for item in items {
            let _ = walk::<Infallible>(item, &mut |node| {
                let meta = match node.meta {
                    Ok(m) => m,
                    Err(e) => {
                        fail(Failure::Walk(e));
                        return Ok(Visit::Continue);
                    }
                };
                let ft = meta.file_type();
                if ft.is_dir() || ft.is_symlink() {
                    return Ok(Visit::Continue);
                }
                if !ft.is_file() {
                    tracing::debug!(path = %lossy(node.path), "Skipping special file.");
                    return Ok(Visit::Continue);
                }
                match globs.should_censor(node.rel) {
                    Ok(true) => {}
                    Ok(false) => return Ok(Visit::Continue),
                    Err(e) => {
                        fail(Failure::Glob(e));
                        return Ok(Visit::Continue);
                    }
                }
                match sniff(node.path) {
                    Ok(Sniffed::Gzip) => {
                        tracing::debug!(path = %lossy(node.path), "Censoring archive.");
                        submit(Job::Gzip(node.path.to_path_buf()));
                    }
                    Ok(Sniffed::Zip) => submit(Job::Zip(node.path.to_path_buf())),
                    Ok(Sniffed::Plain) => {
                        tracing::debug!(path = %lossy(node.path), "Censoring file.");
                        submit(Job::File(node.path.to_path_buf()));
                    }
                    Err(source) => {
                        record(
                            next(),
                            Done {
                                failures: vec![Failure::Sniff {
                                    path: lossy(node.path),
                                    source,
                                }],
                                copy: None,
                                path: Some(node.path.to_path_buf()),
                            },
                        );
                    }
                }
                Ok(Visit::Continue)
            });
        }
        drop(tx);
    });

    copies.extend(copied.into_inner().unwrap_or_else(PoisonError::into_inner));
    withheld.extend(
        withhold
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner),
    );
    let mut found = found.into_inner().unwrap_or_else(PoisonError::into_inner);
    found.sort_by_key(|(seq, _)| *seq);
    let failures: Vec<Failure> = found.into_iter().flat_map(|(_, f)| f).collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(CensorError::Failures(failures))
    }
}

/// The sliding-window size: the configured size (default 10 MiB), raised to hold two of the
/// longest pattern. Zero or less (a hang or a panic upstream) means the default.
fn buffer_size(configured: Option<i64>, largest: usize) -> usize {
    let configured = configured.unwrap_or(DEFAULT_BUFFER_SIZE as i64);
    let raised = configured.max(i64::try_from(largest.saturating_mul(2)).unwrap_or(i64::MAX));
    if raised <= 0 {
        return DEFAULT_BUFFER_SIZE;
    }
    usize::try_from(raised).unwrap_or(DEFAULT_BUFFER_SIZE)
}

/// One job's result: what failed, the file it was about (withheld when anything failed), and
/// the censored copy made for a file that could not be rewritten in place (original, copy).
struct Done {
    failures: Vec<Failure>,
    copy: Option<(PathBuf, PathBuf)>,
    path: Option<PathBuf>,
}

fn run_job(job: Job, censorer: &Censorer, buf: &mut [u8], aside: &Aside) -> Done {
    let mut done = Done {
        failures: Vec::new(),
        copy: None,
        path: None,
    };
    match job {
        Job::File(path) => {
            match stream::censor_file(&path, censorer, buf) {
                Ok(()) => {}
                Err(e) if e.is_permission() => {
                    match stream::censor_copy(&path, censorer, buf, aside) {
                        Ok(copy) => {
                            copied_aside(&path, &copy, &e);
                            done.copy = Some((path.clone(), copy));
                        }
                        Err(again) => done
                            .failures
                            .extend([Failure::File(e), Failure::File(again)]),
                    }
                }
                Err(e) => done.failures.push(Failure::File(e)),
            }
            done.path = Some(path);
        }
        Job::Gzip(path) => {
            match censor_gzip_file(&path, censorer, buf, aside) {
                Ok(Placed::InPlace) => {}
                Ok(Placed::Aside(copy)) => {
                    copied_aside(&path, &copy, &"its directory is not writable");
                    done.copy = Some((path.clone(), copy));
                }
                Err(f) => done.failures.push(f),
            }
            done.path = Some(path);
        }
        Job::Zip(path) => {
            done.failures.push(Failure::Archive {
                path: lossy(&path),
                source: ArchiveError::Zip,
            });
            done.path = Some(path);
        }
    }
    done
}

/// Censors a gzip file (a tar.gz member by member, else its uncompressed bytes) through a temp
/// file beside it, or into a copy from `aside` when its directory is not writable.
fn censor_gzip_file(
    path: &Path,
    censorer: &Censorer,
    buf: &mut [u8],
    aside: &Aside,
) -> Result<Placed, Failure> {
    use std::io::Write;
    let name = lossy(path);
    let mut input = File::open(path)
        .map_err(|e| Failure::File(FileError::Open(PathError::new("open", &name, e))))?;
    let dir = walk::parent_dir(path);
    let (temp, in_aside) = match aside::temp_file_in(&dir, "tmp-censor") {
        Ok(t) => (t, false),
        Err(e) if aside::is_permission(&e) => (
            aside
                .file()
                .map_err(|e| Failure::File(FileError::TempFile(e)))?,
            true,
        ),
        Err(e) => {
            return Err(Failure::File(FileError::TempFile(PathError::new(
                "open",
                lossy(&dir.join("tmp-censor*")),
                e,
            ))));
        }
    };
    let archive_err = |source: ArchiveError| Failure::Archive {
        path: name.clone(),
        source,
    };
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, temp.as_file());
    targz::censor_gzip(&mut input, &mut out, censorer, buf, &name)
        .map_err(|e| archive_err(e.into()))?;
    out.flush()
        .map_err(|e| archive_err(targz::TarGzError::Write(e).into()))?;
    drop(out);
    let temp_name = lossy(temp.path());
    let rename_err = |source| {
        Failure::File(FileError::Rename(RenameError {
            from: temp_name.clone(),
            to: name.clone(),
            source,
        }))
    };
    if in_aside {
        return temp
            .into_temp_path()
            .keep()
            .map(Placed::Aside)
            .map_err(|e| rename_err(e.error));
    }
    stream::put_in_place(temp, path).map_err(rename_err)?;
    Ok(Placed::InPlace)
}

/// A file that is not there (a process log never written): nothing of it can be uploaded, so
/// there is nothing to withhold; the build log says why instead.
fn vanished(f: &Failure) -> bool {
    let source = match f {
        Failure::File(FileError::Open(e)) => &e.source,
        Failure::Sniff {
            source: SniffError::Open(e),
            ..
        } => &e.source,
        _ => return false,
    };
    source.kind() == ErrorKind::NotFound
}

fn copied_aside(path: &Path, copy: &Path, why: &dyn std::fmt::Display) {
    tracing::info!(
        path = %lossy(path),
        copy = %lossy(copy),
        reason = %why,
        "Could not censor in place, uploading a censored copy instead."
    );
}

/// What a file holds, judged as Go's `http.DetectContentType` would from its first 512 bytes:
/// gzip (`1F 8B 08`), zip (`PK\x03\x04`) or anything else.
enum Sniffed {
    Gzip,
    Zip,
    Plain,
}

fn sniff(path: &Path) -> Result<Sniffed, SniffError> {
    let name = lossy(path);
    let mut f = File::open(path).map_err(|e| SniffError::Open(PathError::new("open", &name, e)))?;
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(SniffError::Read(PathError::new("read", &name, e))),
        }
    }
    let head = &head[..n];
    Ok(if head.starts_with(&[0x1f, 0x8b, 0x08]) {
        Sniffed::Gzip
    } else if head.starts_with(b"PK\x03\x04") {
        Sniffed::Zip
    } else {
        Sniffed::Plain
    })
}

/// The include/exclude globs, compiled once.
struct Globs {
    exclude: Vec<Result<Glob, GlobError>>,
    include: Vec<Result<Glob, GlobError>>,
}

impl Globs {
    fn new(opts: &CensoringOptions) -> Globs {
        let compile = |v: &[String]| v.iter().map(|p| Glob::new(p)).collect();
        Globs {
            exclude: compile(&opts.exclude_directories),
            include: compile(&opts.include_directories),
        }
    }

    /// Excluded wins; then included; with no include globs everything else is censored.
    fn should_censor(&self, rel: &[u8]) -> Result<bool, GlobError> {
        for g in &self.exclude {
            if g.as_ref().map_err(Clone::clone)?.matches(rel) {
                return Ok(false);
            }
        }
        for g in &self.include {
            if g.as_ref().map_err(Clone::clone)?.matches(rel) {
                return Ok(true);
            }
        }
        Ok(self.include.is_empty())
    }
}

/// Upstream's `shouldCensor` for one relative path.
pub fn should_censor(opts: &CensoringOptions, rel: &str) -> Result<bool, GlobError> {
    Globs::new(opts).should_censor(rel.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_censor_precedence() {
        let opts = |inc: &[&str], exc: &[&str]| CensoringOptions {
            include_directories: inc.iter().map(std::string::ToString::to_string).collect(),
            exclude_directories: exc.iter().map(std::string::ToString::to_string).collect(),
            ..Default::default()
        };
        let p = "/usr/bin/bash";
        assert!(should_censor(&opts(&[], &[]), p).unwrap());
        assert!(!should_censor(&opts(&["/tmp/**/*"], &[]), p).unwrap());
        assert!(should_censor(&opts(&["/usr/**/*"], &[]), p).unwrap());
        assert!(!should_censor(&opts(&["/usr/**/*"], &["/usr/bin/**/*"]), p).unwrap());
        assert!(!should_censor(&opts(&[], &["/usr/bin/**/*"]), p).unwrap());
    }

    #[test]
    fn buffer_size_rules() {
        assert_eq!(buffer_size(None, 0), DEFAULT_BUFFER_SIZE);
        assert_eq!(buffer_size(Some(1), 12), 24);
        assert_eq!(buffer_size(Some(100), 12), 100);
        // Odd sizes stay odd: every file then fails, as upstream.
        assert_eq!(buffer_size(Some(101), 12), 101);
        // Zero or negative without secrets would hang or panic upstream.
        assert_eq!(buffer_size(Some(0), 0), DEFAULT_BUFFER_SIZE);
        assert_eq!(buffer_size(Some(-5), 0), DEFAULT_BUFFER_SIZE);
        assert_eq!(buffer_size(Some(-5), 3), 6);
    }

    #[test]
    fn aggregate_wording() {
        let f = |s: &str| {
            Failure::Walk(PathError::new(
                "lstat",
                s,
                std::io::Error::from_raw_os_error(2),
            ))
        };
        assert_eq!(aggregate(&[f("/a")]), "lstat /a: no such file or directory");
        assert_eq!(
            aggregate(&[f("/a"), f("/b"), f("/a")]),
            "[lstat /a: no such file or directory, lstat /b: no such file or directory]"
        );
        assert_eq!(
            aggregate(&[f("/a"), f("/a")]),
            "lstat /a: no such file or directory"
        );
    }
}
