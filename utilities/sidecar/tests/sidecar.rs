//! Black-box tests of the sidecar binary in local-output mode: the test plays entrypoint by
//! writing process logs, metadata and markers, and reads what sidecar wrote.

mod util;

use std::time::Duration;

use serde_json::json;
use util::{Sandbox, catches_interrupts, eventually, finish, messages, send_signal};

const EXIT: Duration = Duration::from_secs(60);

#[test]
fn success_uploads_build_log_finished_and_own_log() {
    let sb = Sandbox::new();
    let entry = sb.entry("test");
    sb.write_log("test", "hello world\n");
    std::fs::write(
        sb.logs.join("test-metadata.json"),
        r#"{"b": 1, "a": "x<y", "n": 1.5e21}"#,
    )
    .unwrap();
    std::fs::create_dir_all(sb.logs.join("artifacts/sub")).unwrap();
    std::fs::write(sb.logs.join("artifacts/sub/junit.xml"), "<xml/>").unwrap();
    sb.write_marker("test", 0);

    let out = sb
        .command(&sb.options(&[entry], json!({})))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");

    assert_eq!(sb.output_file("build-log.txt"), "hello world\n");
    let finished = sb.output_file("finished.json");
    let timestamp = sb.finished()["timestamp"].as_i64().unwrap();
    assert_eq!(
        finished,
        format!(
            r#"{{"timestamp":{timestamp},"passed":true,"metadata":{{"a":"x\u003cy","b":1,"n":1.5e+21}},"result":"SUCCESS","revision":"abc123"}}"#
        )
    );
    assert!(
        sb.output_tree()
            .contains(&"artifacts/sub/junit.xml".to_string())
    );

    // sidecar's own log holds the lines up to the start of the upload, not after it.
    let own = messages(&sb.output_file("sidecar-logs.json"));
    assert_eq!(own.last().map(String::as_str), Some("Starting to upload"));
    let all = messages(&stderr);
    assert!(all.iter().any(|m| m == "Finished uploading"), "{stderr}");
    assert!(
        sb.leftover_temp_logs().is_empty(),
        "temp log removed at exit"
    );
}

#[test]
fn failure_is_reported_and_exit_zero_without_entry_error() {
    let sb = Sandbox::new();
    sb.write_log("test", "boom\n");
    sb.write_marker("test", 1);
    // write_memory_profile asks for Go heap profiles; it is accepted and has no effect.
    let out = sb
        .command(&sb.options(&[sb.entry("test")], json!({"write_memory_profile": true})))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let f = sb.finished();
    assert_eq!(f["passed"], false);
    assert_eq!(f["result"], "FAILURE");
    assert!(f.get("metadata").is_none(), "no metadata file: key omitted");
}

#[test]
fn entry_error_exits_one_after_uploading() {
    let sb = Sandbox::new();
    let entries = [sb.entry("a"), sb.entry("b"), sb.entry("c")];
    for c in ["a", "b", "c"] {
        sb.write_log(c, c);
    }
    sb.write_marker("a", 2);
    sb.write_marker("b", 1130);
    sb.write_marker("c", 3);
    let out = sb
        .command(&sb.options(&entries, json!({"entry_error": true})))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let last = util::log_lines(&stderr).pop().unwrap();
    assert_eq!(last["level"], "fatal");
    assert_eq!(last["msg"], "2 containers failed");
    assert_eq!(sb.finished()["result"], "FAILURE");
    // Upstream's fatal exit skips the removal of its temp log; this one does not.
    assert!(sb.leftover_temp_logs().is_empty());
}

#[test]
fn aborted_and_skipped_markers() {
    let sb = Sandbox::new();
    let entries = [sb.entry("a"), sb.entry("b")];
    sb.write_marker("a", 130);
    sb.write_marker("b", 1130);
    let out = sb
        .command(&sb.options(&entries, json!({"entry_error": true})))
        .output()
        .unwrap();
    // 130 is a failure, 1130 is not.
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(sb.finished()["result"], "ABORTED");
}

#[test]
fn several_entries_get_named_build_logs_and_notes_for_missing_logs() {
    let sb = Sandbox::new();
    let entries = [sb.entry("unit"), sb.entry("e2e")];
    sb.write_log("unit", "unit output");
    sb.write_marker("unit", 0);
    sb.write_marker("e2e", 0);
    let out = sb
        .command(&sb.options(&entries, json!({})))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(sb.output_file("unit-build-log.txt"), "unit output");
    let missing = sb.logs.join("e2e-log.txt");
    let missing = missing.display();
    assert_eq!(
        sb.output_file("e2e-build-log.txt"),
        format!("Failed to open {missing}: open {missing}: no such file or directory\n")
    );
    assert!(!sb.output.join("build-log.txt").exists());
    assert_eq!(sb.finished()["result"], "SUCCESS");
}

#[test]
fn bad_metadata_goes_into_sidecar_errors() {
    let sb = Sandbox::new();
    let entries = [sb.entry("a"), sb.entry("b")];
    std::fs::write(sb.logs.join("a-metadata.json"), r#"{"k": "v"}"#).unwrap();
    std::fs::write(sb.logs.join("b-metadata.json"), "{oops").unwrap();
    sb.write_marker("a", 0);
    sb.write_marker("b", 0);
    let out = sb
        .command(&sb.options(&entries, json!({})))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        sb.finished()["metadata"],
        json!({"k": "v", "sidecar-errors": {"entry 1: /bin/test b": {"Offset": 2}}})
    );
}

#[test]
fn deprecated_wrapper_options_still_work_with_a_warning() {
    let sb = Sandbox::new();
    sb.write_log("old", "from the old form\n");
    sb.write_marker("old", 0);
    let mut options: serde_json::Value = serde_json::from_str(&sb.options(&[], json!({}))).unwrap();
    options["wrapper_options"] = sb.entry("old");
    options.as_object_mut().unwrap().remove("entries");
    let out = sb.command(&options.to_string()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let warning = util::log_lines(&stderr)
        .into_iter()
        .find(|l| {
            l["msg"]
                == "Using deprecated wrapper_options instead of entries. Please update prow/pod-utils/decorate before June 2019"
        })
        .unwrap_or_else(|| panic!("no deprecation warning in {stderr}"));
    assert_eq!(warning["level"], "warning");
    assert_eq!(sb.output_file("build-log.txt"), "from the old form\n");
}

#[test]
fn missing_job_spec_uploads_nothing_and_exits_zero() {
    for (spec, error) in [
        (None, "could not resolve job spec: $JOB_SPEC unset"),
        (
            Some("{"),
            "could not resolve job spec: malformed $JOB_SPEC: EOF while parsing an object at line 1 column 1",
        ),
    ] {
        let sb = Sandbox::new();
        sb.write_marker("test", 0);
        let mut cmd = sb.command(&sb.options(&[sb.entry("test")], json!({})));
        match spec {
            Some(s) => cmd.env("JOB_SPEC", s),
            None => cmd.env_remove("JOB_SPEC"),
        };
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        let line = util::log_lines(&stderr).pop().unwrap();
        assert_eq!(line["msg"], "Failed to report job status");
        assert_eq!(line["error"], error);
        assert_eq!(line["level"], "error");
        assert!(sb.output_tree().is_empty(), "{:?}", sb.output_tree());
        assert!(sb.leftover_temp_logs().is_empty());
    }
}

#[test]
fn invalid_options_exit_one() {
    let sb = Sandbox::new();
    let out = sb.command(r#"{"gcs_options":{}}"#).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let line = util::log_lines(&String::from_utf8_lossy(&out.stderr))
        .pop()
        .unwrap();
    assert_eq!(line["msg"], "Invalid options: no wrapper.Option entries");
    assert_eq!(line["level"], "fatal");
}

#[test]
fn waits_for_a_marker_written_later() {
    let sb = Sandbox::new();
    sb.write_log("test", "late\n");
    let child = sb.spawn(&sb.options(&[sb.entry("test")], json!({})));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        sb.output_tree().is_empty(),
        "nothing uploaded before the marker"
    );
    sb.write_marker("test", 0);
    let (status, stderr) = finish(child, EXIT);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(sb.finished()["result"], "SUCCESS");
    assert_eq!(sb.output_file("build-log.txt"), "late\n");
}

#[test]
fn ignored_interrupt_only_warns() {
    let sb = Sandbox::new();
    let child = sb.spawn(&sb.options(&[sb.entry("test")], json!({"ignore_interrupts": true})));
    let pid = child.id();
    eventually(EXIT, "signal handlers", || catches_interrupts(pid));
    send_signal(pid, "TERM");
    std::thread::sleep(Duration::from_millis(300));
    assert!(sb.output_tree().is_empty(), "no best-effort upload");
    sb.write_marker("test", 0);
    let (status, stderr) = finish(child, EXIT);
    assert_eq!(status.code(), Some(0), "{stderr}");
    let lines = util::log_lines(&stderr);
    let warn = lines
        .iter()
        .find(|l| l["msg"] == "Received an interrupt: terminated, ignoring...")
        .unwrap_or_else(|| panic!("no warning in {stderr}"));
    assert_eq!(warn["level"], "warning");
    assert_eq!(sb.finished()["result"], "SUCCESS");
}

#[test]
fn interrupt_uploads_aborted_then_final_status() {
    let sb = Sandbox::new();
    sb.write_log("test", "still running\n");
    let child = sb.spawn(&sb.options(&[sb.entry("test")], json!({})));
    let pid = child.id();
    eventually(EXIT, "signal handlers", || catches_interrupts(pid));
    send_signal(pid, "INT");
    eventually(EXIT, "best-effort finished.json", || {
        std::fs::read_to_string(sb.output.join("finished.json"))
            .is_ok_and(|f| f.contains("ABORTED"))
    });
    let aborted = sb.finished();
    assert_eq!(aborted["passed"], false);
    assert_eq!(sb.output_file("build-log.txt"), "still running\n");
    // A second signal is ignored as well: sidecar is still waiting for the marker.
    send_signal(pid, "TERM");
    std::thread::sleep(Duration::from_millis(200));
    sb.write_log("test", "done\n");
    sb.write_marker("test", 0);
    let (status, stderr) = finish(child, EXIT);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(sb.finished()["result"], "SUCCESS");
    assert_eq!(sb.output_file("build-log.txt"), "done\n");
    let all = messages(&stderr);
    for want in [
        "Received an interrupt: interrupt, cancelling...",
        "Best-effort upload was successful",
    ] {
        assert!(all.iter().any(|m| m == want), "no {want:?} in {stderr}");
    }
    // The own log was closed at the first (best-effort) upload.
    let own = messages(&sb.output_file("sidecar-logs.json"));
    assert!(
        own.iter()
            .any(|m| m == "Received an interrupt: interrupt, cancelling...")
    );
    assert_eq!(own.last().map(String::as_str), Some("Starting to upload"));
}

/// One real upload: sidecar against fake-gcs-server (the emulator upstream's own integration
/// tests use), through the GCS JSON API, with a censoring pass on the way.
#[test]
#[cfg_attr(
    not(has_fake_gcs),
    ignore = "needs fake-gcs-server: run qemu/provision"
)]
fn uploads_to_fake_gcs_server() {
    use testsupport::FakeGcs;
    let gcs = FakeGcs::require(&["bucket"]);
    let sb = Sandbox::new();
    let secrets = sb.logs.join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("token"), "hunter2-secret").unwrap();
    sb.write_log("test", "token is hunter2-secret\n");
    std::fs::create_dir_all(sb.logs.join("artifacts")).unwrap();
    std::fs::write(sb.logs.join("artifacts/junit.xml"), "<xml/>").unwrap();
    sb.write_marker("test", 0);
    let options = json!({
        "gcs_options": {
            "items": [sb.logs.join("artifacts")],
            "bucket": "bucket",
            "path_strategy": "explicit",
            "dry_run": false,
        },
        "entries": [sb.entry("test")],
        "censoring_options": {"secret_directories": [secrets]},
    });
    let out = sb
        .command(&options.to_string())
        .env("STORAGE_EMULATOR_HOST", gcs.emulator_host())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        !messages(&stderr)
            .iter()
            .any(|m| m == "Failed to report job status"),
        "{stderr}"
    );

    let objects = gcs.objects("bucket");
    let names: Vec<&str> = objects.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "logs/job/build/artifacts/junit.xml",
            "logs/job/build/build-log.txt",
            "logs/job/build/finished.json",
            "logs/job/build/sidecar-logs.json",
            "logs/job/latest-build.txt",
        ]
    );
    let object = |name: &str| {
        let o = objects.iter().find(|o| o.name == name).unwrap();
        String::from_utf8_lossy(&o.data).into_owned()
    };
    assert_eq!(
        object("logs/job/build/build-log.txt"),
        "token is XXXXXXXXXXXXXX\n"
    );
    assert_eq!(object("logs/job/latest-build.txt"), "build");
    let finished: serde_json::Value =
        serde_json::from_str(&object("logs/job/build/finished.json")).unwrap();
    assert_eq!(finished["result"], "SUCCESS");
    assert_eq!(finished["revision"], "abc123");
    let own = messages(&object("logs/job/build/sidecar-logs.json"));
    assert!(
        own.iter().any(|m| m == "Finished censoring data"),
        "{own:?}"
    );
}

/// An upload that fails is logged and sidecar still exits 0; a SIGTERM that arrives during the
/// final upload neither kills sidecar nor starts another upload.
#[test]
fn upload_failure_is_logged_and_late_signals_are_ignored() {
    let sb = Sandbox::new();
    sb.write_marker("test", 0);
    let blocker = sb.output.join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let mut options: serde_json::Value =
        serde_json::from_str(&sb.options(&[sb.entry("test")], json!({}))).unwrap();
    options["gcs_options"]["local_output_dir"] = json!(blocker.join("out"));
    let child = sb.spawn(&options.to_string());
    let pid = child.id();
    eventually(EXIT, "signal handlers", || catches_interrupts(pid));
    // The marker is there, so sidecar is uploading (and retrying) by now.
    std::thread::sleep(Duration::from_millis(500));
    send_signal(pid, "TERM");
    let (status, stderr) = finish(child, EXIT);
    assert_eq!(status.code(), Some(0), "{stderr}");
    let lines = util::log_lines(&stderr);
    let report = lines
        .iter()
        .find(|l| l["msg"] == "Failed to report job status")
        .unwrap_or_else(|| panic!("no report failure in {stderr}"));
    let error = report["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("failed to upload to GCS: "), "{error}");
    assert!(
        !lines.iter().any(|l| l["msg"]
            .as_str()
            .is_some_and(|m| m.starts_with("Received an interrupt"))),
        "{stderr}"
    );
    let starts = lines
        .iter()
        .filter(|l| l["msg"] == "Starting to upload")
        .count();
    assert_eq!(starts, 1, "{stderr}");
}

/// A pod's test container often runs as another user than sidecar: here root wrote the
/// artifacts (directories 0755, as a root test container leaves them) and sidecar runs as
/// 65532, so it cannot rewrite them in place. Upstream then uploads the secrets as they are;
/// sidecar uploads censored copies instead, and nothing is lost.
#[test]
#[cfg_attr(not(has_root), ignore = "needs root: switches users")]
fn artifacts_sidecar_cannot_rewrite_are_uploaded_as_censored_copies() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let sb = Sandbox::new();
    let chmod = |p: &std::path::Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    // The pod's volumes: emptyDirs are 0777, /tmp 1777; the sandbox root must be traversable.
    chmod(sb.logs.parent().unwrap(), 0o755);
    chmod(&sb.logs, 0o777);
    chmod(&sb.output, 0o777);
    chmod(&sb.tmp, 0o1777);
    let secrets = sb.logs.parent().unwrap().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("token"), "hunter2-secret").unwrap();
    let art = sb.logs.join("artifacts");
    std::fs::create_dir_all(art.join("sub")).unwrap();
    std::fs::write(art.join("sub/leak.txt"), "leaked hunter2-secret!").unwrap();
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    let body = b"in the archive: hunter2-secret";
    let mut header = tar::Header::new_gnu();
    header.set_size(body.len() as u64);
    header.set_mode(0o644);
    tar.append_data(&mut header, "member.txt", &body[..])
        .unwrap();
    std::fs::write(
        art.join("sub/bundle.tar.gz"),
        tar.into_inner().unwrap().finish().unwrap(),
    )
    .unwrap();
    sb.write_log("test", "token is hunter2-secret\n");
    sb.write_marker("test", 0);

    let options = sb.options(
        &[sb.entry("test")],
        json!({"censoring_options": {"secret_directories": [secrets]}}),
    );
    let out = sb.command(&options).uid(65532).gid(65532).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("Failed to censor data"), "{stderr}");
    assert_eq!(
        sb.output_file("artifacts/sub/leak.txt"),
        "leaked XXXXXXXXXXXXXX!"
    );
    let bundle = std::fs::read(sb.output.join("artifacts/sub/bundle.tar"))
        .unwrap_or_else(|e| panic!("{e}: {:?}\n{stderr}", sb.output_tree()));
    let mut members = tar::Archive::new(flate2::read::GzDecoder::new(&bundle[..]));
    let mut found = Vec::new();
    for m in members.entries().unwrap() {
        let mut m = m.unwrap();
        let mut s = String::new();
        std::io::Read::read_to_string(&mut m, &mut s).unwrap();
        found.push((m.path().unwrap().display().to_string(), s));
    }
    assert!(
        found.contains(&(
            "member.txt".to_string(),
            "in the archive: XXXXXXXXXXXXXX".to_string()
        )),
        "{found:?}"
    );
    // The process log's directory is an emptyDir: it is censored in place, as upstream.
    assert_eq!(sb.output_file("build-log.txt"), "token is XXXXXXXXXXXXXX\n");
    let copies = messages(&stderr)
        .into_iter()
        .filter(|m| m == "Could not censor in place, uploading a censored copy instead.")
        .count();
    assert_eq!(copies, 2, "{stderr}");
    // Go's wording, without the path tempfile adds to its errors.
    assert!(
        stderr.contains("sub/tmp-censor*: permission denied\""),
        "{stderr}"
    );
    // The copies are gone once uploaded.
    assert_eq!(std::fs::read_dir(&sb.tmp).unwrap().count(), 0);
}

/// A tar.gz member named raw (no path checks), as an attacker would write it.
fn raw_member(
    tar: &mut tar::Builder<impl std::io::Write>,
    name: &str,
    kind: tar::EntryType,
    link: &str,
    data: &[u8],
) {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_cksum();
    tar.append(&h, data).unwrap();
}

fn members(targz: &[u8]) -> Vec<(String, tar::EntryType, String)> {
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(targz));
    a.entries()
        .unwrap()
        .map(|m| {
            let mut m = m.unwrap();
            let name = String::from_utf8_lossy(&m.path_bytes()).into_owned();
            let kind = m.header().entry_type();
            let mut s = String::new();
            std::io::Read::read_to_string(&mut m, &mut s).unwrap();
            (name, kind, s)
        })
        .collect()
}

/// Issue 17's archive: odd names, an absolute one and a symlink out. Upstream refuses to unpack
/// it and uploads it uncensored; here every member is censored in a rewritten archive, names and
/// links kept as entries, and nothing is written outside the artifacts.
#[test]
fn malicious_archive_is_censored_member_by_member_and_a_corrupt_one_is_withheld() {
    let sb = Sandbox::new();
    let secrets = sb.logs.parent().unwrap().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("token"), "hunter2-secret").unwrap();
    let art = sb.logs.join("artifacts");
    std::fs::create_dir_all(&art).unwrap();
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    let body = b"holds hunter2-secret";
    raw_member(
        &mut tar,
        "../../escape.txt",
        tar::EntryType::Regular,
        "",
        body,
    );
    raw_member(&mut tar, "/abs.txt", tar::EntryType::Regular, "", body);
    raw_member(&mut tar, "ok.txt", tar::EntryType::Regular, "", body);
    raw_member(
        &mut tar,
        "passwd",
        tar::EntryType::Symlink,
        "/etc/passwd",
        b"",
    );
    let good = tar.into_inner().unwrap().finish().unwrap();
    std::fs::write(art.join("a.tar.gz"), &good).unwrap();
    // The same archive cut short: it cannot be read to the end, so it is not uploaded.
    std::fs::write(art.join("cut.tar.gz"), &good[..good.len() - 12]).unwrap();
    sb.write_log("test", "ok\n");
    sb.write_marker("test", 0);

    let options = sb.options(
        &[sb.entry("test")],
        json!({"censoring_options": {"secret_directories": [secrets]}}),
    );
    let out = sb.command(&options).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let bundle = std::fs::read(sb.output.join("artifacts/a.tar")).unwrap();
    let masked = "holds XXXXXXXXXXXXXX".to_string();
    assert_eq!(
        members(&bundle),
        [
            (
                "../../escape.txt".into(),
                tar::EntryType::Regular,
                masked.clone()
            ),
            ("/abs.txt".into(), tar::EntryType::Regular, masked.clone()),
            ("ok.txt".into(), tar::EntryType::Regular, masked),
            ("passwd".into(), tar::EntryType::Symlink, String::new()),
        ]
    );
    assert!(!sb.logs.parent().unwrap().join("escape.txt").exists());
    assert!(
        !sb.output.join("artifacts/cut.tar").exists(),
        "{:?}",
        sb.output_tree()
    );
    let finished = sb.finished();
    let errors = &finished["metadata"]["sidecar-errors"];
    let key = format!("withheld: {}", art.join("cut.tar.gz").display());
    assert!(
        errors[&key]
            .as_str()
            .is_some_and(|e| e.contains("unexpected EOF")),
        "{finished}"
    );
    assert!(
        messages(&stderr)
            .iter()
            .any(|m| m == "Withholding file from upload"),
        "{stderr}"
    );
}
