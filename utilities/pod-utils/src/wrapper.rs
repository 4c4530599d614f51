/*!
The wrapper contract between entrypoint and sidecar (upstream `pkg/pod-utils/wrapper`): where the
wrapped process's log and exit-code marker go. Entrypoint inlines these keys at its top level;
sidecar lists one per test container in `entries`.

It also owns the marker protocol between them: [`write_marker`] (upstream `Mark`) and
[`wait_for_markers`] (upstream `WaitForMarkers`).
*/

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::num::IntErrorKind;
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container_name: String,
    #[serde(default)]
    pub process_log: String,
    #[serde(default)]
    pub marker_file: String,
    #[serde(default)]
    pub metadata_file: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    #[error("no log file specified with --process-log")]
    NoProcessLog,
    #[error("no marker file specified with --marker-file")]
    NoMarkerFile,
}

impl Options {
    pub fn validate(&self) -> Result<(), OptionsError> {
        if self.process_log.is_empty() {
            return Err(OptionsError::NoProcessLog);
        }
        if self.marker_file.is_empty() {
            return Err(OptionsError::NoMarkerFile);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Markers: entrypoint writes one, sidecar (and a later entrypoint's `previous_marker`) waits.
// ---------------------------------------------------------------------------------------------

/// The directory part of `p` as Go's `filepath.Dir` sees it for our inputs: `.` for a bare name.
fn dir_of(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A random decimal suffix like Go's `os.MkdirTemp`/`os.CreateTemp` use. std's `RandomState`
/// is seeded per process from the OS, and the counter separates calls within one process.
fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    (h.finish() as u32).to_string()
}

/// Go's `os.MkdirTemp(dir, pattern)`: the random part replaces the last `*` or is appended.
fn mkdir_temp(dir: &Path, pattern: &str) -> io::Result<PathBuf> {
    if pattern.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("pattern contains path separator: {pattern:?}"),
        ));
    }
    let (prefix, suffix) = match pattern.rfind('*') {
        Some(i) => (&pattern[..i], &pattern[i + 1..]),
        None => (pattern, ""),
    };
    let mut builder = fs::DirBuilder::new();
    builder.mode(0o700);
    // Go gives up after 10000 collisions; a handful is plenty with 32 random bits.
    for _ in 0..100 {
        let candidate = dir.join(format!("{prefix}{}{suffix}", random_suffix()));
        match builder.create(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("could not create a unique temp dir in {}", dir.display()),
    ))
}

/// Go's `os.CreateTemp(dir, "temp-marker")`: a new file, mode 0600, random decimal suffix.
fn create_temp(dir: &Path, prefix: &str) -> io::Result<(PathBuf, fs::File)> {
    for _ in 0..100 {
        let candidate = dir.join(format!("{prefix}{}", random_suffix()));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&candidate)
        {
            Ok(f) => return Ok((candidate, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("could not create a unique temp file in {}", dir.display()),
    ))
}

fn with_context(e: io::Error, what: impl fmt::Display) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {}", go_errno_text(&e)))
}

/// Atomic write of the decimal code (no newline) as upstream's Mark (temp dir named
/// <container_name><random> beside the marker, left behind; fsync; chmod 0777; rename).
///
/// The temp directory sits beside the marker so that the rename stays on one file system, which
/// is what makes the marker appear complete to watchers (as a CREATE/MOVED_TO event).
pub fn write_marker(marker_file: &Path, container_name: &str, code: i32) -> io::Result<()> {
    // Error texts follow upstream's Mark, with Go's *PathError forms underneath.
    let dir = dir_of(marker_file);
    let tmp_dir = mkdir_temp(&dir, container_name).map_err(|e| {
        let pattern = dir.join(format!("{container_name}*"));
        with_context(
            e,
            format!(
                "{container_name}: error creating temp dir: mkdirtemp {}",
                pattern.display()
            ),
        )
    })?;
    let (tmp_path, mut file) = create_temp(&tmp_dir, "temp-marker").map_err(|e| {
        with_context(
            e,
            format!(
                "could not create temp marker file in {0}: createtemp {0}/temp-marker*",
                tmp_dir.display()
            ),
        )
    })?;
    let tmp = tmp_path.display();
    file.write_all(code.to_string().as_bytes()).map_err(|e| {
        with_context(
            e,
            format!("could not write to temp marker file ({tmp}): write {tmp}"),
        )
    })?;
    file.sync_all().map_err(|e| {
        with_context(
            e,
            format!("could not sync temp marker file ({tmp}): sync {tmp}"),
        )
    })?;
    drop(file);
    fs::set_permissions(&tmp_path, fs::Permissions::from_mode(0o777)).map_err(|e| {
        with_context(
            e,
            format!("could not chmod (1ff) temp marker file ({tmp}): chmod {tmp}"),
        )
    })?;
    fs::rename(&tmp_path, marker_file).map_err(|e| {
        with_context(
            e,
            format!(
                "could not move marker file to destination path ({0}): rename {tmp} {0}",
                marker_file.display()
            ),
        )
    })
}

/// What a marker said: the exit code, or -1 and why it could not be known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerResult {
    pub return_code: i32,
    pub err: Option<String>,
}

impl MarkerResult {
    fn failed(err: impl Into<String>) -> Self {
        MarkerResult {
            return_code: -1,
            err: Some(err.into()),
        }
    }
}

/// Upstream waits 10 s between re-checks. We re-check every second: the inotify watch is only
/// registered after the first look, so a marker written in between would otherwise cost up to
/// 10 s, and some volume types (network, FUSE, emulated syscalls under qemu-user) may not
/// deliver events at all. A stat per marker per second is negligible.
const RECHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How long one wait for inotify events lasts, i.e. how often `cancel` is looked at.
const CANCEL_POLL: u16 = 100;

/// Go's `errno.Error()` text: glibc's message with a lower-case first letter
/// (`no such file or directory`).
pub fn go_errno_text(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => {
            let desc = nix::errno::Errno::from_raw(n).desc();
            let mut chars = desc.chars();
            match chars.next() {
                Some(c) => c.to_lowercase().chain(chars).collect(),
                None => e.to_string(),
            }
        }
        None => e.to_string(),
    }
}

/// Reads a marker as upstream's `readMarkerFile`: whitespace-trimmed, base-10 (Go's `Atoi`).
fn read_marker(path: &Path) -> MarkerResult {
    let mut content = Vec::new();
    let read = fs::File::open(path)
        .map_err(|e| format!("open {}: {}", path.display(), go_errno_text(&e)))
        .and_then(|mut f| {
            f.read_to_end(&mut content)
                .map_err(|e| format!("read {}: {}", path.display(), go_errno_text(&e)))
        });
    if let Err(e) = read {
        return MarkerResult::failed(format!("bad read: {e}"));
    }
    parse_marker(&String::from_utf8_lossy(&content))
}

fn parse_marker(content: &str) -> MarkerResult {
    let trimmed = content.trim();
    match trimmed.parse::<i32>() {
        Ok(code) => MarkerResult {
            return_code: code,
            err: None,
        },
        Err(e) => {
            let why = match e.kind() {
                IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => "value out of range",
                _ => "invalid syntax",
            };
            MarkerResult::failed(format!(
                "invalid return code: strconv.Atoi: parsing {trimmed:?}: {why}"
            ))
        }
    }
}

/// Whether upstream would read `path` now: it exists, or stat failed for another reason than
/// not existing (the read then reports that error).
fn present(path: &Path) -> bool {
    match fs::metadata(path) {
        Ok(_) => true,
        Err(e) => e.kind() != io::ErrorKind::NotFound,
    }
}

type Pending = Vec<Option<MarkerResult>>;

/// Records the result for `paths[i]`; the same path listed twice gets the same answer.
fn settle(paths: &[PathBuf], results: &mut Pending, i: usize, r: MarkerResult) {
    for (j, p) in paths.iter().enumerate() {
        if results[j].is_none() && *p == paths[i] {
            results[j] = Some(r.clone());
        }
    }
}

/// Reads every unresolved marker that is present now.
fn check_all(paths: &[PathBuf], results: &mut Pending) {
    for i in 0..paths.len() {
        if results[i].is_none() && present(&paths[i]) {
            settle(paths, results, i, read_marker(&paths[i]));
        }
    }
}

fn unresolved(results: &Pending) -> bool {
    results.iter().any(Option::is_none)
}

/// Every unresolved path gets (-1, `why`).
fn finish(results: Pending, why: &str) -> Vec<MarkerResult> {
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| MarkerResult::failed(why)))
        .collect()
}

/// Upstream's WaitForMarkers: inotify on the (common) directory + a periodic re-check
/// (10 s upstream; we re-check every second, see [`RECHECK_INTERVAL`]), returns one result per
/// path in order. `cancel` is polled at least every 200 ms; when set, unresolved paths get
/// (-1, "cancelled: context canceled").
///
/// One deliberate difference: a marker that is *empty* when its CREATE event arrives is not
/// taken as final (upstream reports "invalid return code"); it is read again when its writer
/// closes it or at the next re-check. This only matters for writers that are not atomic
/// (`echo 0 > marker`); [`write_marker`]'s rename never shows an empty file.
pub fn wait_for_markers(paths: &[PathBuf], cancel: &AtomicBool) -> Vec<MarkerResult> {
    let mut results: Vec<Option<MarkerResult>> = vec![None; paths.len()];
    check_all(paths, &mut results);
    if !unresolved(&results) {
        return finish(results, "");
    }

    let inotify = match Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK) {
        Ok(i) => i,
        Err(e) => {
            let e = io::Error::from(e);
            return finish(
                results,
                &format!("new fsnotify watch: {}", go_errno_text(&e)),
            );
        }
    };
    let dir = dir_of(&paths[0]);
    if paths.iter().any(|p| dir_of(p) != dir) {
        return finish(
            results,
            "marker files are not all written to the same directory",
        );
    }
    let mask =
        AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_CLOSE_WRITE;
    if let Err(e) = inotify.add_watch(&dir, mask) {
        let e = io::Error::from(e);
        return finish(
            results,
            &format!(
                "add {} to fsnotify watch: {}",
                dir.display(),
                go_errno_text(&e)
            ),
        );
    }
    // A marker may have appeared between the first look and the watch.
    check_all(paths, &mut results);

    let mut next_recheck = Instant::now() + RECHECK_INTERVAL;
    while unresolved(&results) {
        if cancel.load(Ordering::SeqCst) {
            return finish(results, "cancelled: context canceled");
        }
        let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(CANCEL_POLL)) {
            Ok(n) if n > 0 => match inotify.read_events() {
                Ok(events) => {
                    for ev in events {
                        let Some(name) = ev.name else { continue };
                        let created = ev
                            .mask
                            .intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO);
                        let full = dir.join(&name);
                        for i in 0..paths.len() {
                            if results[i].is_some() || paths[i] != full {
                                continue;
                            }
                            let r = read_marker(&paths[i]);
                            let empty_and_new = created
                                && r.err.is_some()
                                && fs::metadata(&paths[i]).is_ok_and(|m| m.len() == 0);
                            if !empty_and_new {
                                settle(paths, &mut results, i, r);
                            }
                        }
                    }
                }
                Err(nix::errno::Errno::EAGAIN) => {}
                // Upstream only logs watcher errors and keeps polling.
                Err(e) => tracing::warn!(error = %e, "fsnotify watch error"),
            },
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                tracing::warn!(error = %e, "fsnotify watch error");
                std::thread::sleep(Duration::from_millis(u64::from(CANCEL_POLL)));
            }
        }
        if Instant::now() >= next_recheck {
            check_all(paths, &mut results);
            next_recheck = Instant::now() + RECHECK_INTERVAL;
        }
    }
    finish(results, "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn validate_requires_log_then_marker() {
        let mut o = Options {
            process_log: "/l".into(),
            marker_file: "/m".into(),
            ..Default::default()
        };
        assert_eq!(o.validate(), Ok(()));
        o.marker_file.clear();
        assert_eq!(o.validate(), Err(OptionsError::NoMarkerFile));
        o.process_log.clear();
        assert_eq!(o.validate(), Err(OptionsError::NoProcessLog));
    }

    #[test]
    fn encodes_like_the_decorator() {
        let o = Options {
            args: vec!["/bin/ls".into(), "-l".into()],
            container_name: "test".into(),
            process_log: "/logs/process-log.txt".into(),
            marker_file: "/logs/marker-file.txt".into(),
            metadata_file: "/logs/artifacts/metadata.json".into(),
        };
        assert_eq!(
            serde_json::to_string(&o).unwrap(),
            r#"{"args":["/bin/ls","-l"],"container_name":"test","process_log":"/logs/process-log.txt","marker_file":"/logs/marker-file.txt","metadata_file":"/logs/artifacts/metadata.json"}"#
        );
    }

    fn ok(code: i32) -> MarkerResult {
        MarkerResult {
            return_code: code,
            err: None,
        }
    }

    #[test]
    fn write_marker_is_atomic_and_leaves_its_temp_dir() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("marker-file.txt");
        write_marker(&marker, "test", 1130).unwrap();
        assert_eq!(fs::read_to_string(&marker).unwrap(), "1130");
        let mode = fs::metadata(&marker).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o777);
        // Overwrites, and each write leaves one `test<digits>` directory, as upstream.
        write_marker(&marker, "test", -1).unwrap();
        assert_eq!(fs::read_to_string(&marker).unwrap(), "-1");
        let mut leftovers: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n != "marker-file.txt")
            .collect();
        leftovers.sort();
        assert_eq!(leftovers.len(), 2, "{leftovers:?}");
        for d in &leftovers {
            let digits = d.strip_prefix("test").unwrap();
            assert!(!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()));
            assert!(dir.path().join(d).is_dir());
        }
    }

    #[test]
    fn write_marker_fails_without_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("missing/marker");
        let err = write_marker(&marker, "test", 0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert_eq!(
            err.to_string(),
            format!(
                "test: error creating temp dir: mkdirtemp {}/missing/test*: no such file or directory",
                dir.path().display()
            )
        );
        assert!(!marker.exists());
    }

    #[test]
    fn mkdir_temp_pattern_star_and_separator() {
        let dir = tempfile::tempdir().unwrap();
        let d = mkdir_temp(dir.path(), "a*b").unwrap();
        let name = d.file_name().unwrap().to_str().unwrap().to_string();
        assert!(name.starts_with('a') && name.ends_with('b') && name.len() > 2);
        assert!(mkdir_temp(dir.path(), "a/b").is_err());
    }

    #[test]
    fn parse_marker_follows_atoi() {
        assert_eq!(parse_marker("0"), ok(0));
        assert_eq!(parse_marker(" 12\n"), ok(12));
        assert_eq!(parse_marker("+5"), ok(5));
        assert_eq!(parse_marker("-1"), ok(-1));
        assert_eq!(
            parse_marker("abc").err.as_deref(),
            Some(r#"invalid return code: strconv.Atoi: parsing "abc": invalid syntax"#)
        );
        assert_eq!(
            parse_marker("").err.as_deref(),
            Some(r#"invalid return code: strconv.Atoi: parsing "": invalid syntax"#)
        );
        let big = parse_marker("99999999999999999999");
        assert_eq!(big.return_code, -1);
        assert!(big.err.unwrap().ends_with("value out of range"));
    }

    #[test]
    fn present_markers_are_read_at_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        let c = dir.path().join("c");
        fs::write(&a, "0").unwrap();
        fs::write(&b, "12\n").unwrap();
        fs::create_dir(&c).unwrap();
        let got = wait_for_markers(&[b.clone(), a.clone(), c.clone()], &AtomicBool::new(false));
        assert_eq!(got[0], ok(12));
        assert_eq!(got[1], ok(0));
        assert_eq!(got[2].return_code, -1);
        assert_eq!(
            got[2].err.as_deref(),
            Some(format!("bad read: read {}: is a directory", c.display()).as_str())
        );
        assert!(wait_for_markers(&[], &AtomicBool::new(false)).is_empty());
    }

    #[test]
    fn markers_written_later_are_seen_through_inotify() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a-marker.txt");
        let b = dir.path().join("b-marker.txt");
        let (wa, wb) = (a.clone(), b.clone());
        let writer = thread::spawn(move || {
            thread::sleep(Duration::from_millis(150));
            write_marker(&wa, "a", 3).unwrap();
            thread::sleep(Duration::from_millis(100));
            write_marker(&wb, "b", 0).unwrap();
        });
        let start = Instant::now();
        let got = wait_for_markers(&[a, b], &AtomicBool::new(false));
        writer.join().unwrap();
        assert_eq!(got, vec![ok(3), ok(0)]);
        // Well under the re-check interval: the events did the work.
        assert!(start.elapsed() < RECHECK_INTERVAL, "{:?}", start.elapsed());
    }

    #[test]
    fn a_marker_created_empty_is_read_when_complete() {
        // Deviation from upstream (pinned): a non-atomic writer's empty file is not final.
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("marker");
        let wm = m.clone();
        let writer = thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            let mut f = fs::File::create(&wm).unwrap();
            thread::sleep(Duration::from_millis(100));
            f.write_all(b"7\n").unwrap();
        });
        let got = wait_for_markers(&[m], &AtomicBool::new(false));
        writer.join().unwrap();
        assert_eq!(got, vec![ok(7)]);
    }

    #[test]
    fn cancel_resolves_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let present = dir.path().join("present");
        fs::write(&present, "1").unwrap();
        let missing = dir.path().join("missing");
        let cancel = Arc::new(AtomicBool::new(false));
        let c = cancel.clone();
        let canceller = thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            c.store(true, Ordering::SeqCst);
        });
        let start = Instant::now();
        let got = wait_for_markers(&[present, missing], &cancel);
        canceller.join().unwrap();
        // Cancellation is seen within one poll (200 ms); the bound leaves room for a busy machine.
        assert!(start.elapsed() < Duration::from_secs(1));
        assert_eq!(got[0], ok(1));
        assert_eq!(got[1], MarkerResult::failed("cancelled: context canceled"));
    }

    #[test]
    fn markers_must_share_a_directory() {
        let d1 = tempfile::tempdir().unwrap();
        let d2 = tempfile::tempdir().unwrap();
        let got = wait_for_markers(
            &[d1.path().join("m"), d2.path().join("m")],
            &AtomicBool::new(false),
        );
        let want = MarkerResult::failed("marker files are not all written to the same directory");
        assert_eq!(got, vec![want.clone(), want]);
    }

    #[test]
    fn a_missing_directory_cannot_be_watched() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("nope");
        let got = wait_for_markers(&[dir.join("m")], &AtomicBool::new(false));
        assert_eq!(
            got,
            vec![MarkerResult::failed(format!(
                "add {} to fsnotify watch: no such file or directory",
                dir.display()
            ))]
        );
    }
}
