//! Black-box tests of the censoring engine: upstream's `pkg/sidecar/censor_test.go` cases as
//! behaviour, against the fixtures in `testdata/censor` (see `generate.py` there for how the
//! expected output was derived).

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use sidecar::censor::{self, CensorError, archive};
use sidecar::options::CensoringOptions;

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/censor")
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// Regular files under `root` by relative path, with their contents.
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let ft = entry.file_type().unwrap();
            let rel = entry
                .path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if ft.is_dir() {
                walk(root, &entry.path(), out);
            } else if ft.is_file() {
                out.insert(rel, fs::read(entry.path()).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Compares in both directions, so a missing or an extra file fails too.
fn assert_same_tree(want: &Path, got: &Path) {
    let (want, got) = (tree(want), tree(got));
    let names = |t: &BTreeMap<String, Vec<u8>>| t.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&want), names(&got), "file lists differ");
    for (name, data) in &want {
        assert_eq!(
            String::from_utf8_lossy(data),
            String::from_utf8_lossy(&got[name]),
            "{name} differs"
        );
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    secrets: PathBuf,
}

/// A scratch copy of the input and the secrets; the secrets get a symlinked key outside the
/// directory, as projected Kubernetes secrets have.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("input");
    copy_tree(&testdata().join("input"), &root);
    let secrets = dir.path().join("secrets");
    copy_tree(&testdata().join("secrets"), &secrets);
    fs::write(dir.path().join("outside"), "symlinked-secret-value").unwrap();
    symlink(dir.path().join("outside"), secrets.join("zz-link")).unwrap();
    Fixture {
        _dir: dir,
        root,
        secrets,
    }
}

impl Fixture {
    fn options(&self) -> CensoringOptions {
        CensoringOptions {
            secret_directories: vec![self.secrets.to_string_lossy().into_owned()],
            exclude_directories: vec!["**/exclude".to_string()],
            ini_filenames: vec![".awscred".to_string()],
            ..Default::default()
        }
    }

    fn logs(&self) -> Vec<PathBuf> {
        ["one.log", "two.log", "three.log"]
            .iter()
            .map(|n| self.root.join("logs").join(n))
            .collect()
    }

    fn items(&self) -> Vec<PathBuf> {
        vec![self.root.join("artifacts")]
    }

    fn censor(&self, opts: &CensoringOptions) -> Result<(), CensorError> {
        self.report(opts).result
    }

    fn report(&self, opts: &CensoringOptions) -> censor::Report {
        let report = censor::censor(opts, &self.logs(), &self.items(), &std::env::temp_dir());
        // Everything here is writable: nothing is censored into a copy.
        assert!(report.copies.is_empty(), "{:?}", report.copies);
        report
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn integration_golden_tree_with_archive_round_trip() {
    let fx = fixture();
    let artifacts = fx.root.join("artifacts");
    let tarball = artifacts.join("archive.tar.gz");
    archive::archive(&artifacts.join("archive"), &tarball).unwrap();
    let excluded = artifacts.join("exclude");
    fs::set_permissions(&excluded, fs::Permissions::from_mode(0o644)).unwrap();
    let excluded_inode = fs::metadata(&excluded).unwrap().ino();

    let mut opts = fx.options();
    // Smaller than twice the longest secret: raised automatically.
    opts.censoring_buffer_size = Some(1);
    fx.censor(&opts).unwrap();

    let unpacked = fx._dir.path().join("unpacked");
    archive::unarchive(&tarball, &unpacked).unwrap();
    assert_same_tree(&testdata().join("output/artifacts/archive"), &unpacked);
    fs::remove_file(&tarball).unwrap();
    assert_same_tree(&testdata().join("output"), &fx.root);

    // Censored files are rewritten with mode 0600; excluded ones are not touched at all.
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&artifacts.join("build.log")), 0o600);
    assert_eq!(mode(&fx.root.join("logs/three.log")), 0o600);
    assert_eq!(mode(&excluded), 0o644);
    assert_eq!(fs::metadata(&excluded).unwrap().ino(), excluded_inode);
    // No temp files are left behind.
    let leftovers: Vec<_> = tree(&fx.root)
        .into_keys()
        .filter(|k| k.contains("tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn symlinks_under_items_are_not_followed() {
    let fx = fixture();
    let outside = fx._dir.path().join("elsewhere.log");
    fs::write(&outside, "tok-3141592653").unwrap();
    symlink(&outside, fx.root.join("artifacts/link.log")).unwrap();
    fx.censor(&fx.options()).unwrap();
    assert_eq!(fs::read_to_string(&outside).unwrap(), "tok-3141592653");
    assert!(
        fs::symlink_metadata(fx.root.join("artifacts/link.log"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

// Deviation: upstream uploads an archive it could not censor as it is; it is withheld here.
#[test]
fn corrupt_archive_fails_alone_and_is_withheld() {
    let fx = fixture();
    let artifacts = fx.root.join("artifacts");
    let corrupt = artifacts.join("corrupt.tar.gz");
    archive::archive(&artifacts.join("archive"), &corrupt).unwrap();
    let mut raw = fs::read(&corrupt).unwrap();
    // Reserved flag bits claiming an extra field whose length runs past the end of the file.
    raw[3] = 0x6;
    raw[10] = 0xff;
    raw[11] = 0xff;
    fs::write(&corrupt, &raw).unwrap();

    let report = fx.report(&fx.options());
    let err = report.result.unwrap_err();
    let want = format!(
        "could not censor archive {}: could not read archive: unexpected EOF",
        corrupt.display()
    );
    assert_eq!(err.to_string(), want);
    assert_eq!(err.failures().len(), 1);
    assert_eq!(
        report.withheld.into_iter().collect::<Vec<_>>(),
        [(corrupt.clone(), want)]
    );
    // The archive is left as it was and everything else is censored.
    assert_eq!(fs::read(&corrupt).unwrap(), raw);
    fs::remove_file(&corrupt).unwrap();
    assert_same_tree(&testdata().join("output"), &fx.root);
}

// Deviation: upstream uploads zip files and gzip files that are not tarballs uncensored.
#[test]
fn zip_is_withheld_and_plain_gzip_is_censored_as_one_stream() {
    let fx = fixture();
    let artifacts = fx.root.join("artifacts");
    let zip = artifacts.join("a.zip");
    fs::write(&zip, b"PK\x03\x04 tok-3141592653").unwrap();
    let notar = artifacts.join("b.log.gz");
    fs::write(&notar, gzip(b"tok-3141592653 and more")).unwrap();
    let report = fx.report(&fx.options());
    assert_eq!(
        report.result.unwrap_err().to_string(),
        format!(
            "could not censor archive {}: zip archives cannot be censored",
            zip.display()
        )
    );
    assert_eq!(report.withheld.keys().collect::<Vec<_>>(), [&zip]);
    assert_eq!(fs::read(&zip).unwrap(), b"PK\x03\x04 tok-3141592653");
    let mut plain = String::new();
    flate2::read::GzDecoder::new(&fs::read(&notar).unwrap()[..])
        .read_to_string(&mut plain)
        .unwrap();
    assert_eq!(plain, "XXXXXXXXXXXXXX and more");
    fs::remove_file(&zip).unwrap();
    fs::remove_file(&notar).unwrap();
    assert_same_tree(&testdata().join("output"), &fx.root);
}

#[test]
fn large_non_tar_gzip_is_recompressed_unchanged() {
    let fx = fixture();
    let p = fx.root.join("artifacts/big.log.gz");
    fs::write(&p, gzip(&[b'a'; 4096])).unwrap();
    fx.censor(&fx.options()).unwrap();
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&fs::read(&p).unwrap()[..])
        .read_to_end(&mut plain)
        .unwrap();
    assert_eq!(plain, vec![b'a'; 4096]);
}

#[test]
fn secret_loading_failure_censors_nothing() {
    let fx = fixture();
    let before = tree(&fx.root);
    let mut opts = fx.options();
    opts.secret_directories
        .push("/nonexistent/tetrapod-secrets".to_string());
    let err = fx.censor(&opts).unwrap_err();
    assert_eq!(
        err.to_string(),
        "could not load secrets: lstat /nonexistent/tetrapod-secrets: no such file or directory"
    );
    assert!(matches!(err, CensorError::LoadSecrets(_)));
    assert_eq!(tree(&fx.root), before);
    let mode = fs::metadata(fx.root.join("logs/one.log"))
        .unwrap()
        .permissions()
        .mode();
    assert_ne!(mode & 0o777, 0o600);
}

#[test]
fn odd_buffer_size_fails_every_file_and_leaves_them() {
    let fx = fixture();
    let before = tree(&fx.root);
    let mut opts = fx.options();
    // Larger than twice every secret, so it is not raised, and odd.
    opts.censoring_buffer_size = Some(100_001);
    let err = fx.censor(&opts).unwrap_err();
    // The same message from every file is reported once, as Go's aggregate does.
    assert_eq!(
        err.to_string(),
        "could not censor file: frame size must be even, not 100001"
    );
    assert!(
        err.failures()
            .iter()
            .all(|f| f.to_string() == "could not censor file: frame size must be even, not 100001")
    );
    // Every selected plain file failed (the archive-free fixture has 7 besides the 3 logs).
    assert_eq!(err.failures().len(), 3 + 7);
    assert_eq!(tree(&fx.root), before);
}

/// Upstream deadlocks with a concurrency of zero or less; here it means one worker.
#[test]
fn non_positive_concurrency_still_censors() {
    for n in [0, -3] {
        let fx = fixture();
        let mut opts = fx.options();
        opts.censoring_concurrency = Some(n);
        fx.censor(&opts).unwrap();
        assert_same_tree(&testdata().join("output"), &fx.root);
    }
}

#[test]
fn concurrency_of_one_gives_the_same_result() {
    let fx = fixture();
    let mut opts = fx.options();
    opts.censoring_concurrency = Some(1);
    fx.censor(&opts).unwrap();
    assert_same_tree(&testdata().join("output"), &fx.root);
}

#[test]
fn include_globs_select_files_and_process_logs_are_always_censored() {
    let fx = fixture();
    let mut opts = fx.options();
    opts.include_directories = vec!["nested/**/*".to_string()];
    opts.exclude_directories = vec!["**/one.log".to_string()];
    fx.censor(&opts).unwrap();
    let input = testdata().join("input");
    let output = testdata().join("output");
    let read = |p: &Path| fs::read_to_string(p).unwrap();
    // Process logs ignore the globs.
    assert_eq!(
        read(&fx.root.join("logs/one.log")),
        read(&output.join("logs/one.log"))
    );
    // Only the included artifacts are censored; `exclude` files are included here.
    for (rel, censored) in [
        ("artifacts/nested/deeper/kept.txt", true),
        ("artifacts/build.log", false),
        ("artifacts/exclude", false),
    ] {
        let want = if censored { &output } else { &input };
        assert_eq!(read(&fx.root.join(rel)), read(&want.join(rel)), "{rel}");
    }
    let deeper = fx.root.join("artifacts/nested/deeper/exclude");
    assert_ne!(
        read(&deeper),
        read(&input.join("artifacts/nested/deeper/exclude"))
    );
}

#[test]
fn no_secrets_still_rewrites_files() {
    let fx = fixture();
    let opts = CensoringOptions::default();
    fx.censor(&opts).unwrap();
    assert_same_tree(&testdata().join("input"), &fx.root);
    let mode = fs::metadata(fx.root.join("artifacts/build.log"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// Opening a FIFO would block forever (upstream hangs); special files are skipped.
#[test]
fn fifos_under_items_are_skipped() {
    let fx = fixture();
    let fifo = fx.root.join("artifacts/pipe");
    let status = Command::new("mkfifo").arg(&fifo).status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "mkfifo (coreutils) is needed"
    );
    fx.censor(&fx.options()).unwrap();
    assert!(fs::symlink_metadata(&fifo).is_ok());
}

#[test]
fn missing_item_and_process_log_are_reported() {
    let fx = fixture();
    let log = fx.root.join("logs/missing.log");
    let item = fx.root.join("no-such-dir");
    let report = censor::censor(
        &fx.options(),
        std::slice::from_ref(&log),
        std::slice::from_ref(&item),
        &std::env::temp_dir(),
    );
    // Nothing there, nothing to withhold: the build log notes the missing file instead.
    assert!(report.withheld.is_empty(), "{:?}", report.withheld);
    let err = report.result.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "[could not open file for censoring: open {}: no such file or directory, lstat {}: no such file or directory]",
            log.display(),
            item.display()
        )
    );
}

fn archive_source() -> PathBuf {
    testdata().join("input/artifacts/archive")
}

#[test]
fn archive_is_readable_by_system_tar() {
    let dir = tempfile::tempdir().unwrap();
    let tarball = dir.path().join("a.tar.gz");
    archive::archive(&archive_source(), &tarball).unwrap();
    let listing = Command::new("tar")
        .arg("-tzf")
        .arg(&tarball)
        .output()
        .unwrap();
    assert!(listing.status.success());
    assert_eq!(
        String::from_utf8(listing.stdout).unwrap(),
        ".\na.txt\nsub\nsub/b.txt\nsub/empty\n"
    );
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    let st = Command::new("tar")
        .arg("-C")
        .arg(&out)
        .arg("-xzf")
        .arg(&tarball)
        .status()
        .unwrap();
    assert!(st.success());
    assert_same_tree(&archive_source(), &out);
    assert_eq!(
        fs::metadata(&tarball).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn unarchive_reads_system_tar_output() {
    let dir = tempfile::tempdir().unwrap();
    let tarball = dir.path().join("sys.tar.gz");
    let st = Command::new("tar")
        .arg("-C")
        .arg(archive_source())
        .arg("-czf")
        .arg(&tarball)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    archive::unarchive(&tarball, &out).unwrap();
    assert_same_tree(&archive_source(), &out);
}

#[test]
fn archive_round_trip_keeps_long_names() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let long = "d".repeat(120);
    fs::create_dir_all(src.join(&long)).unwrap();
    fs::write(src.join(&long).join("f".repeat(150)), "long").unwrap();
    fs::write(src.join("plain"), "plain").unwrap();
    let tarball = dir.path().join("t.tar.gz");
    archive::archive(&src, &tarball).unwrap();
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    archive::unarchive(&tarball, &out).unwrap();
    assert_same_tree(&src, &out);
}

/// A raw tar entry: name, type flag, link name, data.
type RawEntry<'a> = (&'a [u8], u8, &'a [u8], &'a [u8]);

/// Builds a tar.gz whose entries are written raw, so names the tar crate refuses can be used.
fn raw_tarball(path: &Path, entries: &[RawEntry<'_>]) {
    let gz = flate2::write::GzEncoder::new(
        fs::File::create(path).unwrap(),
        flate2::Compression::default(),
    );
    let mut b = tar::Builder::new(gz);
    for (name, kind, link, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(tar::EntryType::new(*kind));
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap();
}

#[test]
fn unarchive_rejects_unsafe_names() {
    let dir = tempfile::tempdir().unwrap();
    for name in [&b"../evil"[..], b"/abs", b"a\\b"] {
        let tarball = dir.path().join("bad.tar.gz");
        raw_tarball(&tarball, &[(name, b'0', b"", b"x")]);
        let out = tempfile::tempdir().unwrap();
        let err = archive::unarchive(&tarball, out.path()).unwrap_err();
        let quoted = format!("{:?}", String::from_utf8_lossy(name));
        assert_eq!(
            err.to_string(),
            format!("tar contained invalid name error {quoted}")
        );
    }
    assert!(!dir.path().join("evil").exists());
}

#[test]
fn unarchive_drops_links_and_keeps_files_and_dirs() {
    let dir = tempfile::tempdir().unwrap();
    let tarball = dir.path().join("links.tar.gz");
    raw_tarball(
        &tarball,
        &[
            (b"d/", b'5', b"", b""),
            (b"d/f", b'0', b"", b"data"),
            (b"sym", b'2', b"d/f", b""),
            (b"hard", b'1', b"d/f", b""),
            (b"fifo", b'6', b"", b""),
        ],
    );
    let out = tempfile::tempdir().unwrap();
    archive::unarchive(&tarball, out.path()).unwrap();
    let mut names: Vec<String> = fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["d"]);
    assert_eq!(fs::read_to_string(out.path().join("d/f")).unwrap(), "data");
}

#[test]
fn truncated_entry_is_unexpected_eof() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), vec![b'z'; 5000]).unwrap();
    let tarball = dir.path().join("t.tar.gz");
    archive::archive(&src, &tarball).unwrap();
    // Re-compress only the first 2000 bytes of the tar stream.
    let mut tar_bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(fs::File::open(&tarball).unwrap()),
        &mut tar_bytes,
    )
    .unwrap();
    fs::write(&tarball, gzip(&tar_bytes[..2000])).unwrap();
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    let err = archive::unarchive(&tarball, &out).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "error writing to {}: unexpected EOF",
            out.join("f").display()
        )
    );
}
