/*!
Running a set of uploads (upstream `pkg/pod-utils/gcs/upload.go`): every target in parallel with
at most four writes at once, each tried up to four times with 1 s, 4 s and 9 s pauses, all
errors collected. The same executor serves buckets and local export.

Per object, the first chunk decides two headers as upstream's lazy writer does: whether to gzip
(`compress_file_types`, more than 1 KiB, not gzip already) and, with no type from the name, the
sniffed Content-Type Google's and gocloud's clients would set.
*/

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io::{self, Cursor, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flate2::Compression;
use flate2::read::GzEncoder;
use futures_util::future::join_all;
use tokio::sync::Semaphore;

use super::metadata::{self, MediaTypes, WriterOptions};
use super::store::{DEFAULT_CHUNK_SIZE, Destination, StoreError, WriteError};

/// Go's `io.Copy` buffer: how much of a file the first write sees.
const FIRST_FILE_CHUNK: u64 = 32 * 1024;
/// Objects whose first write is at most this many bytes are never compressed.
const COMPRESS_THRESHOLD: usize = 1024;
const GZIP_SNIFF: &str = "application/x-gzip";

/// What to upload: bytes in memory, or a file opened (again) at each attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Data(Bytes),
    File(PathBuf),
}

/// One object to write (upstream `UploadFunc`): its source and the headers from its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub source: Source,
    pub options: WriterOptions,
}

impl Upload {
    pub fn data(data: impl Into<Bytes>) -> Self {
        Upload {
            source: Source::Data(data.into()),
            options: WriterOptions::default(),
        }
    }

    pub fn file(path: impl Into<PathBuf>) -> Self {
        Upload {
            source: Source::File(path.into()),
            options: WriterOptions::default(),
        }
    }

    pub fn with_options(mut self, options: WriterOptions) -> Self {
        self.options = options;
        self
    }
}

/// Destination path under the bucket (or export dir) → what goes there.
pub type Targets = BTreeMap<String, Upload>;

/// How uploads are paced. The defaults are upstream's; tests shrink the retry unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadConfig {
    /// Tries per object.
    pub attempts: u32,
    /// After failed attempt `i` the upload sleeps `i² × retry_unit`.
    pub retry_unit: Duration,
    /// Writes in flight at once.
    pub concurrency: usize,
    /// Bytes per request for objects too large for one.
    pub chunk_size: usize,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            attempts: 4,
            retry_unit: Duration::from_secs(1),
            concurrency: 4,
            chunk_size: DEFAULT_CHUNK_SIZE,
        }
    }
}

/// An object that could not be written after every attempt.
#[derive(Debug)]
pub struct ObjectFailure {
    pub dest: String,
    pub file: bool,
    pub error: WriteError,
}

impl fmt::Display for ObjectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.file {
            write!(f, "upload error: {}", self.error)
        } else {
            write!(f, "{}", self.error)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("new opener: {0}")]
    Opener(StoreError),
    #[error("encountered errors during upload: [{}]", join_failures(.0))]
    Failed(Vec<ObjectFailure>),
}

fn join_failures(f: &[ObjectFailure]) -> String {
    f.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Uploads every target to `dest` (upstream `Upload` and `LocalExport`; compression applies to
/// buckets only).
pub async fn upload(
    dest: &Destination,
    targets: Targets,
    compress_file_types: &[String],
    types: &MediaTypes,
    cfg: &UploadConfig,
) -> Result<(), UploadError> {
    let dest = dest.clone().with_chunk_size(cfg.chunk_size);
    let jobs: Vec<(String, Upload)> = targets.into_iter().collect();
    let names: Vec<String> = jobs.iter().map(|(d, _)| d.clone()).collect();
    let (dest, jobs_ref) = (&dest, &jobs);
    let failures = run_all(
        &names,
        cfg,
        |d| dest.full_path(d),
        |i| {
            let (d, u) = &jobs_ref[i];
            let compress =
                !dest.is_local() && metadata::should_compress_file_type(d, compress_file_types);
            write_one(dest, d, u, compress, types)
        },
    )
    .await;
    if failures.is_empty() {
        return Ok(());
    }
    Err(UploadError::Failed(
        failures
            .into_iter()
            .map(|(i, error)| ObjectFailure {
                dest: jobs[i].0.clone(),
                file: matches!(jobs[i].1.source, Source::File(_)),
                error,
            })
            .collect(),
    ))
}

/// The retry and concurrency discipline, apart from what an attempt does: returns the index
/// and last error of every job that never succeeded.
pub(crate) async fn run_all<E, F, Fut>(
    dests: &[String],
    cfg: &UploadConfig,
    full_path: impl Fn(&str) -> String,
    attempt: F,
) -> Vec<(usize, E)>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: fmt::Display,
{
    let sem = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
    let attempts = cfg.attempts.max(1);
    let runs = dests.iter().enumerate().map(|(i, dest)| {
        let path = full_path(dest);
        tracing::info!(dest = %path, "Queued for upload");
        let sem = Arc::clone(&sem);
        let attempt = &attempt;
        async move {
            let mut last = None;
            for n in 1..=attempts {
                let result = {
                    // Closed never happens: the semaphore lives until every run ends.
                    let _permit = sem.acquire().await;
                    if n > 1 {
                        tracing::debug!(dest = %path, retry_attempt = n, "Retrying upload");
                    }
                    attempt(i).await
                };
                match result {
                    Ok(()) => {
                        last = None;
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(dest = %path, error = %e, "Upload attempt failed");
                        last = Some(e);
                        if n < attempts {
                            tokio::time::sleep(cfg.retry_unit * (n * n)).await;
                        }
                    }
                }
            }
            match last {
                None => {
                    tracing::info!(dest = %path, "Finished upload");
                    None
                }
                Some(e) => {
                    tracing::info!(dest = %path, "Failed upload");
                    Some((i, e))
                }
            }
        }
    });
    join_all(runs).await.into_iter().flatten().collect()
}

/// One attempt at one object (upstream's `DataUploadWithOptions` + `openerObjectWriter`).
async fn write_one(
    dest: &Destination,
    path: &str,
    u: &Upload,
    compress_eligible: bool,
    types: &MediaTypes,
) -> Result<(), WriteError> {
    let (first, rest): (Bytes, Box<dyn Read + Send>) = match &u.source {
        Source::Data(b) => (b.clone(), Box::new(io::empty())),
        Source::File(p) => match open_file(p.clone()).await {
            Ok(v) => v,
            Err(e) => {
                // Upstream's writer still closes, creating an empty object, before reporting.
                let _ = dest
                    .write(path, &sniffed(&u.options, b""), Box::new(io::empty()))
                    .await;
                return Err(e);
            }
        },
    };
    let (options, compress) = plan(
        &u.options,
        &first,
        compress_eligible,
        types,
        &dest.full_path(path),
    );
    let body: Box<dyn Read + Send> = Box::new(Cursor::new(first).chain(rest));
    if compress {
        return dest
            .write(
                path,
                &options,
                Box::new(GzEncoder::new(body, Compression::default())),
            )
            .await;
    }
    dest.write(path, &options, body).await
}

/// The headers of an object and whether to gzip it, decided from its first write as upstream's
/// lazy writer does. Compression overrides the name's headers; without it, a missing type is
/// sniffed.
fn plan(
    options: &WriterOptions,
    first: &[u8],
    compress_eligible: bool,
    types: &MediaTypes,
    full_path: &str,
) -> (WriterOptions, bool) {
    let compress = compress_eligible
        && first.len() > COMPRESS_THRESHOLD
        && metadata::detect_content_type(first) != GZIP_SNIFF;
    if !compress {
        return (sniffed(options, first), false);
    }
    let mut o = options.clone();
    let ct = types
        .type_by_extension(metadata::ext(full_path))
        .unwrap_or("text/plain; charset=utf-8");
    o.content_type = Some(ct.to_string());
    o.content_encoding = Some("gzip".into());
    (o, true)
}

/// The options with a sniffed Content-Type when the name gave none.
fn sniffed(options: &WriterOptions, first: &[u8]) -> WriterOptions {
    let mut o = options.clone();
    if o.content_type.is_none() {
        o.content_type = Some(metadata::detect_content_type(first).to_string());
    }
    o
}

/// Opens `p` and reads what Go's first write would carry, off the async threads.
async fn open_file(p: PathBuf) -> Result<(Bytes, Box<dyn Read + Send>), WriteError> {
    tokio::task::spawn_blocking(move || {
        let f = std::fs::File::open(&p).map_err(WriteError::Open)?;
        let mut first = Vec::new();
        let mut f = f;
        (&mut f)
            .take(FIRST_FILE_CHUNK)
            .read_to_end(&mut first)
            .map_err(WriteError::Read)?;
        Ok((Bytes::from(first), Box::new(f) as Box<dyn Read + Send>))
    })
    .await
    .map_err(|e| WriteError::Read(io::Error::other(e.to_string())))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn fast() -> UploadConfig {
        UploadConfig {
            retry_unit: Duration::from_millis(1),
            ..Default::default()
        }
    }

    fn jobs(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("d{i}")).collect()
    }

    // Upstream TestUploadWithRetries: all pass, pass after retries, all fail, some fail.
    #[tokio::test]
    async fn retries_then_reports_what_never_passed() {
        for (fail_first, want_failed, want_calls) in [
            (vec![0, 0, 0], vec![], 3),
            (vec![1, 3, 2], vec![], 3 + 1 + 3 + 2),
            (vec![4, 9, 4], vec![0, 1, 2], 12),
            (vec![0, 5, 2], vec![1], 1 + 4 + 3),
        ] {
            let calls = Mutex::new(vec![0usize; 3]);
            let failed: Vec<usize> = run_all(
                &jobs(3),
                &fast(),
                |d| format!("mem://{d}"),
                |i| {
                    let mut c = calls.lock().unwrap();
                    c[i] += 1;
                    let n = c[i];
                    let fails = fail_first[i];
                    async move {
                        if n <= fails {
                            Err(format!("boom {n}"))
                        } else {
                            Ok(())
                        }
                    }
                },
            )
            .await
            .into_iter()
            .map(|(i, e)| {
                assert_eq!(e, "boom 4");
                i
            })
            .collect();
            assert_eq!(failed, want_failed);
            assert_eq!(calls.lock().unwrap().iter().sum::<usize>(), want_calls);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn sleeps_one_four_nine_units() {
        let start = tokio::time::Instant::now();
        let cfg = UploadConfig::default();
        let failed = run_all(
            &jobs(1),
            &cfg,
            |d: &str| d.to_string(),
            |_| async { Err::<(), _>("no") },
        )
        .await;
        assert_eq!(failed.len(), 1);
        assert_eq!(start.elapsed(), Duration::from_secs(1 + 4 + 9));
    }

    #[tokio::test]
    async fn at_most_four_in_flight() {
        let now = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let failed = run_all(
            &jobs(12),
            &fast(),
            |d: &str| d.to_string(),
            |_| {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(n, Ordering::SeqCst);
                let now = &now;
                async move {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                    Ok::<(), String>(())
                }
            },
        )
        .await;
        assert!(failed.is_empty());
        assert_eq!(peak.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn aggregate_error_text() {
        let e = UploadError::Failed(vec![
            ObjectFailure {
                dest: "a".into(),
                file: true,
                error: WriteError::Open(io::Error::new(io::ErrorKind::NotFound, "gone")),
            },
            ObjectFailure {
                dest: "b".into(),
                file: false,
                error: WriteError::Status {
                    status: 404,
                    body: "no bucket".into(),
                },
            },
        ]);
        assert_eq!(
            e.to_string(),
            "encountered errors during upload: [upload error: reader new error: gone unexpected status 404: no bucket]"
        );
    }

    fn opts(ct: Option<&str>, enc: Option<&str>) -> WriterOptions {
        WriterOptions {
            content_type: ct.map(str::to_string),
            content_encoding: enc.map(str::to_string),
            ..Default::default()
        }
    }

    // Upstream Test_openerObjectWriter_Write: regular, empty, compress > 1 KiB, too small,
    // hidden gzip; plus the sniffed type when the name gives none.
    #[test]
    fn first_write_decides_compression_and_type() {
        let types = MediaTypes::default();
        let big = vec![b'a'; 1025];
        let txt = Some("text/plain; charset=utf-8");
        let mut gz = vec![0x1f, 0x8b, 0x08];
        gz.extend(vec![0u8; 2000]);
        // (first write, eligible, full path, headers from the name, expected plan)
        type Case<'a> = (
            &'a [u8],
            bool,
            &'a str,
            WriterOptions,
            (WriterOptions, bool),
        );
        let cases: Vec<Case> = vec![
            (
                b"hello",
                false,
                "gs://b/x.txt",
                opts(txt, None),
                (opts(txt, None), false),
            ),
            (
                b"",
                true,
                "gs://b/x.txt",
                opts(None, None),
                (opts(txt, None), false),
            ),
            (
                &big,
                true,
                "gs://b/x.json",
                opts(None, None),
                (opts(Some("application/json"), Some("gzip")), true),
            ),
            (
                &big,
                true,
                "gs://b/x.unknown",
                opts(None, None),
                (opts(txt, Some("gzip")), true),
            ),
            (
                &big[..1024],
                true,
                "gs://b/x.txt",
                opts(None, None),
                (opts(txt, None), false),
            ),
            (
                &gz,
                true,
                "gs://b/x.txt",
                opts(txt, Some("gzip")),
                (opts(txt, Some("gzip")), false),
            ),
            (
                &big,
                false,
                "gs://b/x.txt",
                opts(None, None),
                (opts(txt, None), false),
            ),
            (
                b"\x00\x01bin",
                false,
                "gs://b/x",
                opts(None, None),
                (opts(Some("application/octet-stream"), None), false),
            ),
        ];
        for (first, eligible, path, given, want) in cases {
            assert_eq!(
                plan(&given, first, eligible, &types, path),
                want,
                "{path} {}",
                first.len()
            );
        }
        // Metadata survives compression.
        let mut m = opts(None, None);
        m.metadata.insert("k".into(), "v".into());
        assert_eq!(
            plan(&m, &big, true, &types, "gs://b/x").0.metadata["k"],
            "v"
        );
    }

    fn read_local(dir: &std::path::Path, name: &str) -> Vec<u8> {
        std::fs::read(dir.join(name)).unwrap()
    }

    // Upstream TestUploadNewReaderFunc, against local files.
    #[tokio::test]
    async fn data_and_files_land_locally_uncompressed() {
        let out = tempfile::tempdir().unwrap();
        let src = tempfile::tempdir().unwrap();
        let big = vec![b'x'; 5000];
        std::fs::write(src.path().join("big.txt"), &big).unwrap();
        let d = Destination::local(out.path().to_str().unwrap()).unwrap();
        let mut t = Targets::new();
        t.insert("a/data.txt".into(), Upload::data(big.clone()));
        t.insert(
            "b/file.txt".into(),
            Upload::file(src.path().join("big.txt")),
        );
        t.insert("empty".into(), Upload::data(Vec::new()));
        upload(&d, t, &["*".into()], &MediaTypes::default(), &fast())
            .await
            .unwrap();
        // Local export never compresses.
        assert_eq!(read_local(out.path(), "a/data.txt"), big);
        assert_eq!(read_local(out.path(), "b/file.txt"), big);
        assert_eq!(read_local(out.path(), "empty"), b"");
    }

    #[tokio::test]
    async fn unreadable_file_fails_after_retries_but_leaves_an_empty_object() {
        let out = tempfile::tempdir().unwrap();
        let d = Destination::local(out.path().to_str().unwrap()).unwrap();
        let mut t = Targets::new();
        t.insert(
            "gone.txt".into(),
            Upload::file("/nonexistent/tetrapod/file"),
        );
        t.insert("ok.txt".into(), Upload::data("fine"));
        let err = upload(&d, t, &[], &MediaTypes::default(), &fast())
            .await
            .unwrap_err();
        let UploadError::Failed(f) = &err else {
            panic!("{err}")
        };
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].dest, "gone.txt");
        assert!(
            err.to_string()
                .starts_with("encountered errors during upload: [upload error: reader new error: "),
            "{err}"
        );
        assert_eq!(read_local(out.path(), "gone.txt"), b"");
        assert_eq!(read_local(out.path(), "ok.txt"), b"fine");
    }
}
