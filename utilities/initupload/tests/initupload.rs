//! Black-box tests of the initupload binary: every job type against a real fake-gcs-server,
//! S3 through moto, local mode, dry run, and the failure paths. Servers come from
//! `testsupport` (skipped with a reason when the venv is missing, fatal under CI).

use std::path::Path;

use assert_cmd::Command;
use serde_json::{Value, json};
use testsupport::{FakeGcs, Moto, StoredObject, gunzip};

const TEXT: &str = "text/plain; charset=utf-8";

fn clone_log(dir: &Path, failed: bool) -> String {
    let records = json!([
        {"refs":{"org":"","repo":""},"commands":[{"command":"git config","output":"ok\n","duration":1000}]},
        {"refs":{"org":"org","repo":"repo","base_ref":"main","pulls":[{"number":5,"author":"a","sha":"pullsha"}]},
         "commands":[{"command":"git fetch","output":"fetched\n"}],"failed":failed,"final_sha":"finalsha","duration":2000000000}
    ]);
    let p = dir.join("clone.json");
    std::fs::write(&p, records.to_string()).unwrap();
    p.to_string_lossy().into_owned()
}

fn spec(job_type: &str) -> Value {
    let refs = json!({"org":"org","repo":"repo","base_ref":"main","pulls":[{"number":5,"author":"a","sha":"pullsha"}]});
    match job_type {
        "periodic" => json!({"type":"periodic","job":"ci-job","buildid":"100","prowjobid":"pj"}),
        t => json!({"type":t,"job":"the-job","buildid":"100","prowjobid":"pj","refs":refs}),
    }
}

fn initupload(options: &Value, spec: &Value, emulator: Option<&str>) -> assert_cmd::assert::Assert {
    let mut cmd = Command::cargo_bin("initupload").unwrap();
    cmd.env_clear()
        .env("INITUPLOAD_OPTIONS", options.to_string())
        .env("JOB_SPEC", spec.to_string());
    if let Some(host) = emulator {
        cmd.env("STORAGE_EMULATOR_HOST", host);
    }
    cmd.assert()
}

fn by_name<'a>(objects: &'a [StoredObject], name: &str) -> &'a StoredObject {
    objects
        .iter()
        .find(|o| o.name == name)
        .unwrap_or_else(|| panic!("no object {name}"))
}

fn names(objects: &[StoredObject]) -> Vec<&str> {
    objects.iter().map(|o| o.name.as_str()).collect()
}

fn started_without_timestamp(data: &[u8]) -> Value {
    let mut v: Value = serde_json::from_slice(data).unwrap();
    assert!(v["timestamp"].as_i64().unwrap() > 1_600_000_000);
    v.as_object_mut().unwrap().remove("timestamp");
    v
}

#[test]
#[cfg_attr(
    not(has_fake_gcs),
    ignore = "needs fake-gcs-server: run qemu/provision"
)]
fn every_job_type_against_fake_gcs() {
    let gcs = FakeGcs::require(&["b0", "b1", "b2", "b3"]);
    let tmp = tempfile::tempdir().unwrap();
    let log = clone_log(tmp.path(), false);
    let cases: [(&str, Vec<&str>); 4] = [
        (
            "presubmit",
            vec![
                "pr-logs/directory/the-job/100.txt",
                "pr-logs/directory/the-job/latest-build.txt",
                "pr-logs/pull/org_repo/5/the-job/100/clone-log.txt",
                "pr-logs/pull/org_repo/5/the-job/100/clone-records.json",
                "pr-logs/pull/org_repo/5/the-job/100/started.json",
                "pr-logs/pull/org_repo/5/the-job/latest-build.txt",
            ],
        ),
        (
            "postsubmit",
            vec![
                "logs/the-job/100/clone-log.txt",
                "logs/the-job/100/clone-records.json",
                "logs/the-job/100/started.json",
                "logs/the-job/latest-build.txt",
            ],
        ),
        (
            "batch",
            vec![
                "pr-logs/directory/the-job/latest-build.txt",
                "pr-logs/pull/batch/the-job/100/clone-log.txt",
                "pr-logs/pull/batch/the-job/100/clone-records.json",
                "pr-logs/pull/batch/the-job/100/started.json",
            ],
        ),
        (
            "periodic",
            vec![
                "logs/ci-job/100/started.json",
                "logs/ci-job/latest-build.txt",
            ],
        ),
    ];
    for (i, (job_type, want)) in cases.iter().enumerate() {
        let bucket = format!("b{i}");
        let mut options = json!({"bucket":bucket,"path_strategy":"explicit","dry_run":false});
        if *job_type != "periodic" {
            options["log"] = json!(log);
        }
        initupload(&options, &spec(job_type), Some(&gcs.emulator_host())).success();
        let objects = gcs.objects(&bucket);
        assert_eq!(names(&objects), *want, "{job_type}");
        let started = objects
            .iter()
            .find(|o| o.name.ends_with("started.json"))
            .unwrap();
        assert_eq!(started.content_type.as_deref(), Some(TEXT));
        let expect_started = if *job_type == "periodic" {
            json!({})
        } else {
            // The clone record for exactly these refs gives the commit.
            json!({"pull":"5","repos":{"org/repo":"main,5:pullsha"},"repo-commit":"finalsha","repo-version":"finalsha"})
        };
        assert_eq!(
            started_without_timestamp(&started.data),
            expect_started,
            "{job_type}"
        );
        for marker in objects
            .iter()
            .filter(|o| o.name.ends_with("latest-build.txt"))
        {
            assert_eq!(marker.data, b"100");
            assert_eq!(marker.content_type.as_deref(), Some(TEXT));
        }
        if *job_type != "periodic" {
            let records = objects
                .iter()
                .find(|o| o.name.ends_with("clone-records.json"))
                .unwrap();
            assert_eq!(records.data, std::fs::read(&log).unwrap());
            let text = objects
                .iter()
                .find(|o| o.name.ends_with("clone-log.txt"))
                .unwrap();
            assert!(
                String::from_utf8_lossy(&text.data)
                    .starts_with("Environment setup\n$ git config (runtime: 1µs)\nok\n")
            );
            assert_eq!(text.content_encoding, None);
        }
    }
    // The presubmit alias points at the job directory, with the link as metadata.
    let all = gcs.objects("b0");
    let alias = by_name(&all, "pr-logs/directory/the-job/100.txt");
    assert_eq!(alias.data, b"gs://b0/pr-logs/pull/org_repo/5/the-job/100");
    assert_eq!(
        alias.metadata.get("x-goog-meta-link").map(String::as_str),
        Some("gs://b0/pr-logs/pull/org_repo/5/the-job/100")
    );
    assert_eq!(alias.content_type.as_deref(), Some(TEXT));
}

#[test]
#[cfg_attr(
    not(has_fake_gcs),
    ignore = "needs fake-gcs-server: run qemu/provision"
)]
fn clone_failure_uploads_failed_finished_and_exits_1() {
    let gcs = FakeGcs::require(&["bkt"]);
    let tmp = tempfile::tempdir().unwrap();
    let log = clone_log(tmp.path(), true);
    let options = json!({"bucket":"gs://bkt","path_strategy":"legacy","default_org":"org","default_repo":"repo","dry_run":false,"log":log});
    let out = initupload(&options, &spec("presubmit"), Some(&gcs.emulator_host())).code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    let last: Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "fatal");
    assert_eq!(last["msg"], "Failed to initialize job");
    assert_eq!(last["error"], "cloning the appropriate refs failed");
    let objects = gcs.objects("bkt");
    assert_eq!(
        names(&objects),
        [
            "pr-logs/directory/the-job/100.txt",
            "pr-logs/directory/the-job/latest-build.txt",
            "pr-logs/pull/5/the-job/100/build-log.txt",
            "pr-logs/pull/5/the-job/100/clone-log.txt",
            "pr-logs/pull/5/the-job/100/clone-records.json",
            "pr-logs/pull/5/the-job/100/finished.json",
            "pr-logs/pull/5/the-job/100/started.json",
            "pr-logs/pull/5/the-job/latest-build.txt",
        ]
    );
    let finished: Value =
        serde_json::from_slice(&by_name(&objects, "pr-logs/pull/5/the-job/100/finished.json").data)
            .unwrap();
    assert_eq!(finished["passed"], false);
    assert_eq!(finished["result"], "FAILURE");
    assert_eq!(finished.as_object().unwrap().len(), 3);
    let build = by_name(&objects, "pr-logs/pull/5/the-job/100/build-log.txt");
    assert_eq!(
        build.data,
        by_name(&objects, "pr-logs/pull/5/the-job/100/clone-log.txt").data
    );
    assert!(
        String::from_utf8_lossy(&build.data).contains("# FAILED\n# Cloning org/repo at main\n")
    );
    // With the scheme in the bucket, the alias keeps it verbatim.
    assert_eq!(
        by_name(&objects, "pr-logs/directory/the-job/100.txt").data,
        b"gs://bkt/pr-logs/pull/5/the-job/100"
    );
}

#[test]
#[cfg_attr(
    not(has_fake_gcs),
    ignore = "needs fake-gcs-server: run qemu/provision"
)]
fn unreadable_or_invalid_clone_log_uploads_nothing() {
    let gcs = FakeGcs::require(&["bkt"]);
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, "{not json").unwrap();
    for (log, want) in [
        (
            bad.to_string_lossy().into_owned(),
            "could not unmarshal clone records: ",
        ),
        (
            "/nonexistent/clone.json".to_string(),
            "could not read clone log: ",
        ),
    ] {
        let options = json!({"bucket":"bkt","path_strategy":"explicit","dry_run":false,"log":log});
        let out = initupload(&options, &spec("postsubmit"), Some(&gcs.emulator_host())).code(1);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(stderr.contains(want), "{stderr}");
    }
    assert!(gcs.objects("bkt").is_empty());
}

#[test]
#[cfg_attr(
    not(has_fake_gcs),
    ignore = "needs fake-gcs-server: run qemu/provision"
)]
fn compress_file_types_gzips_large_objects() {
    let gcs = FakeGcs::require(&["bkt"]);
    let tmp = tempfile::tempdir().unwrap();
    let big_output = "x".repeat(4000);
    let records = json!([{"refs":{"org":"org","repo":"repo","base_ref":"main"},"commands":[{"command":"git clone","output":big_output}],"final_sha":"f"}]);
    let log = tmp.path().join("clone.json");
    std::fs::write(&log, records.to_string()).unwrap();
    let options = json!({"bucket":"bkt","path_strategy":"explicit","compress_file_types":["txt"],"dry_run":false,"log":log});
    initupload(&options, &spec("postsubmit"), Some(&gcs.emulator_host())).success();
    let objects = gcs.objects("bkt");
    let text = by_name(&objects, "logs/the-job/100/clone-log.txt");
    assert_eq!(text.content_encoding.as_deref(), Some("gzip"));
    assert_eq!(text.content_type.as_deref(), Some(TEXT));
    assert!(
        String::from_utf8(gunzip(&text.data))
            .unwrap()
            .contains(&big_output)
    );
    // Small and non-txt objects are left alone.
    let marker = by_name(&objects, "logs/the-job/latest-build.txt");
    assert_eq!(
        (marker.content_encoding.as_deref(), marker.data.as_slice()),
        (None, b"100".as_slice())
    );
    assert_eq!(
        by_name(&objects, "logs/the-job/100/clone-records.json").content_encoding,
        None
    );
}

#[test]
#[cfg_attr(not(has_moto), ignore = "needs moto_server: run qemu/provision")]
fn s3_bucket_through_moto() {
    let moto = Moto::require(&["prow-artifacts"]);
    let tmp = tempfile::tempdir().unwrap();
    let creds = tmp.path().join("s3.json");
    std::fs::write(&creds, moto.credentials_json()).unwrap();
    let log = clone_log(tmp.path(), false);
    let options = json!({"bucket":"s3://prow-artifacts","path_strategy":"explicit","s3_credentials_file":creds,"dry_run":false,"log":log});
    initupload(&options, &spec("presubmit"), None).success();
    let objects = moto.objects("prow-artifacts");
    assert_eq!(
        names(&objects),
        [
            "pr-logs/directory/the-job/100.txt",
            "pr-logs/directory/the-job/latest-build.txt",
            "pr-logs/pull/org_repo/5/the-job/100/clone-log.txt",
            "pr-logs/pull/org_repo/5/the-job/100/clone-records.json",
            "pr-logs/pull/org_repo/5/the-job/100/started.json",
            "pr-logs/pull/org_repo/5/the-job/latest-build.txt",
        ]
    );
    let alias = by_name(&objects, "pr-logs/directory/the-job/100.txt");
    assert_eq!(
        alias.data,
        b"s3://prow-artifacts/pr-logs/pull/org_repo/5/the-job/100"
    );
    assert_eq!(
        alias
            .metadata
            .get("x-goog-meta-link")
            .map(std::string::String::as_bytes),
        Some(alias.data.as_slice())
    );
    let started = by_name(&objects, "pr-logs/pull/org_repo/5/the-job/100/started.json");
    assert_eq!(started.content_type.as_deref(), Some(TEXT));
    assert_eq!(
        started_without_timestamp(&started.data)["repo-commit"],
        "finalsha"
    );
}

#[test]
fn local_mode_writes_only_the_job_files() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("output");
    let log = clone_log(tmp.path(), true);
    // local_output_dir skips all other validation: no strategy needed.
    let options = json!({"local_output_dir":out,"dry_run":false,"log":log});
    initupload(&options, &spec("presubmit"), None).code(1);
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "build-log.txt",
            "clone-log.txt",
            "clone-records.json",
            "finished.json",
            "started.json"
        ]
    );
    assert_eq!(
        std::fs::read(out.join("clone-records.json")).unwrap(),
        std::fs::read(&log).unwrap()
    );
}

#[test]
fn dry_run_logs_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("output");
    let options = json!({"local_output_dir":out,"dry_run":true});
    let run = initupload(&options, &spec("periodic"), None).success();
    let stderr = String::from_utf8_lossy(&run.get_output().stderr).into_owned();
    let would: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["msg"] == "Would upload")
        .collect();
    assert_eq!(would.len(), 1, "{stderr}");
    assert_eq!(would[0]["dest"], "started.json");
    assert!(!out.exists());
}

#[test]
fn bad_job_spec_and_options_exit_1() {
    let options = json!({"bucket":"b","path_strategy":"explicit","dry_run":true});
    let mut cmd = Command::cargo_bin("initupload").unwrap();
    let out = cmd
        .env_clear()
        .env("INITUPLOAD_OPTIONS", options.to_string())
        .assert()
        .code(1);
    assert!(String::from_utf8_lossy(&out.get_output().stderr).contains("$JOB_SPEC unset"));
    let out = initupload(
        &json!({"bucket":"b","dry_run":true}),
        &spec("periodic"),
        None,
    )
    .code(1);
    assert!(String::from_utf8_lossy(&out.get_output().stderr).contains("Invalid options"));
    let out = initupload(
        &options,
        &json!({"type":"nightly","job":"j","buildid":"1"}),
        None,
    )
    .code(1);
    assert!(
        String::from_utf8_lossy(&out.get_output().stderr)
            .contains("unknown job spec type: nightly")
    );
}

#[test]
#[cfg_attr(
    not(has_fake_gcs),
    ignore = "needs fake-gcs-server: run qemu/provision"
)]
fn upload_failure_exits_1_after_retries() {
    let gcs = FakeGcs::require(&["bkt"]);
    // The bucket does not exist: every attempt fails (this test sleeps 1+4+9 s like upstream).
    let options = json!({"bucket":"missing","path_strategy":"explicit","dry_run":false});
    let out = initupload(&options, &spec("periodic"), Some(&gcs.emulator_host())).code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    let last: Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
    let err = last["error"].as_str().unwrap();
    assert!(
        err.starts_with("failed to upload to blob storage: failed to upload to blob storage: encountered errors during upload: ["),
        "{err}"
    );
}

#[test]
fn flags_mode_defaults_to_dry_run_and_honours_local_output() {
    let tmp = tempfile::tempdir().unwrap();
    let log = clone_log(tmp.path(), false);
    let out = tmp.path().join("out");
    let run = |extra: &[&str]| {
        let mut cmd = Command::cargo_bin("initupload").unwrap();
        cmd.env_clear()
            .env("JOB_SPEC", spec("postsubmit").to_string())
            .arg(format!("--clone-log={log}"))
            .arg("-local-output-dir")
            .arg(&out)
            .args(extra)
            .assert()
            .success()
    };
    // --dry-run defaults to true when options come from flags.
    run(&[]);
    assert!(!out.exists());
    run(&["--dry-run=false"]);
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["clone-log.txt", "clone-records.json", "started.json"]
    );
}

#[test]
#[cfg_attr(
    not(has_fake_gcs),
    ignore = "needs fake-gcs-server: run qemu/provision"
)]
fn emulator_wins_over_a_credentials_file() {
    // Deviation: Google's Go client refuses an emulator together with a credentials file; we
    // talk to the emulator without auth.
    let gcs = FakeGcs::require(&["bkt"]);
    let options = json!({"bucket":"bkt","path_strategy":"explicit","gcs_credentials_file":"/nonexistent/sa.json","dry_run":false});
    initupload(&options, &spec("periodic"), Some(&gcs.emulator_host())).success();
    assert_eq!(
        names(&gcs.objects("bkt")),
        [
            "logs/ci-job/100/started.json",
            "logs/ci-job/latest-build.txt"
        ]
    );
}

#[test]
fn a_gcs_path_upstream_refuses_is_a_usage_error() {
    let out = Command::cargo_bin("initupload")
        .unwrap()
        .env_clear()
        .env("JOB_SPEC", spec("postsubmit").to_string())
        .arg("--gcs-path=gs://bucket:8080/logs")
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        err.contains("gs://bucket may not contain a port: gs://bucket:8080/logs"),
        "{err}"
    );
}

/// initupload with `env` (and nothing else from this process's environment).
fn initupload_env(
    options: &Value,
    spec: &Value,
    env: &[(&str, &str)],
) -> assert_cmd::assert::Assert {
    let mut cmd = Command::cargo_bin("initupload").unwrap();
    cmd.env_clear()
        .env("INITUPLOAD_OPTIONS", options.to_string())
        .env("JOB_SPEC", spec.to_string())
        .envs(env.iter().copied());
    cmd.assert()
}

/// Storage hosts that resolve only inside a real proxy (squid): the GCS emulator and S3 both
/// receive every object only because the uploads went through `HTTP_PROXY`/`http_proxy`.
#[test]
#[cfg_attr(
    not(has_fake_gcs),
    ignore = "needs fake-gcs-server: run qemu/provision"
)]
#[cfg_attr(not(has_moto), ignore = "needs moto_server: run qemu/provision")]
#[cfg_attr(not(has_squid), ignore = "needs squid: run qemu/provision")]
fn uploads_go_through_the_environments_proxy() {
    let localhost = std::net::Ipv4Addr::LOCALHOST.into();
    // moto takes a dotted host's first label for the bucket; a dotless name keeps path style.
    let hosts = [
        ("gcs.onlyproxy.invalid", localhost),
        ("onlyproxy-s3", localhost),
    ];
    let squid = testsupport::Squid::require(&hosts);
    let gcs = FakeGcs::require(&["bkt"]);
    let moto = Moto::require(&["prow-artifacts"]);
    let tmp = tempfile::tempdir().unwrap();
    let log = clone_log(tmp.path(), false);

    let port = gcs.emulator_host().rsplit_once(':').unwrap().1.to_string();
    let emulator = format!("gcs.onlyproxy.invalid:{port}");
    let options = json!({"bucket":"gs://bkt","path_strategy":"explicit","dry_run":false,"log":log});
    initupload_env(
        &options,
        &spec("periodic"),
        &[
            ("STORAGE_EMULATOR_HOST", &emulator),
            ("HTTP_PROXY", &squid.url()),
        ],
    )
    .success();
    assert!(
        names(&gcs.objects("bkt")).contains(&"logs/ci-job/100/started.json"),
        "{:?}",
        names(&gcs.objects("bkt"))
    );

    let s3_port = moto.url().rsplit_once(':').unwrap().1.to_string();
    let creds = tmp.path().join("s3.json");
    let body = json!({"region":"us-east-1","endpoint":format!("http://onlyproxy-s3:{s3_port}"),
        "s3_force_path_style":true,"access_key":"testing","secret_key":"testing"});
    std::fs::write(&creds, body.to_string()).unwrap();
    let options = json!({"bucket":"s3://prow-artifacts","path_strategy":"explicit","s3_credentials_file":creds,"dry_run":false,"log":log});
    initupload_env(&options, &spec("periodic"), &[("http_proxy", &squid.url())]).success();
    assert!(names(&moto.objects("prow-artifacts")).contains(&"logs/ci-job/100/started.json"));

    let seen = squid.requests();
    assert!(
        seen.iter()
            .any(|r| r.contains("http://gcs.onlyproxy.invalid:")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|r| r.starts_with("PUT http://onlyproxy-s3:")),
        "{seen:?}"
    );
}

/// As in Go: loopback is never proxied, `NO_PROXY` exempts, and `ALL_PROXY` means nothing (a
/// proxy that does not exist would fail every upload).
#[test]
#[cfg_attr(
    not(has_fake_gcs),
    ignore = "needs fake-gcs-server: run qemu/provision"
)]
fn loopback_no_proxy_and_all_proxy_as_go_reads_them() {
    let gcs = FakeGcs::require(&["bkt"]);
    let tmp = tempfile::tempdir().unwrap();
    let log = clone_log(tmp.path(), false);
    let options = json!({"bucket":"gs://bkt","path_strategy":"explicit","dry_run":false,"log":log});
    let dead = "http://127.0.0.1:9";
    initupload_env(
        &options,
        &spec("periodic"),
        &[
            ("STORAGE_EMULATOR_HOST", &gcs.emulator_host()),
            ("HTTP_PROXY", dead),
            ("HTTPS_PROXY", dead),
            ("ALL_PROXY", dead),
        ],
    )
    .success();
    assert!(names(&gcs.objects("bkt")).contains(&"logs/ci-job/100/started.json"));

    // "localhost" is no IP but still loopback by name; a NO_PROXY entry exempts it as well.
    let port = gcs.emulator_host().rsplit_once(':').unwrap().1.to_string();
    initupload_env(
        &options,
        &spec("periodic"),
        &[
            ("STORAGE_EMULATOR_HOST", &format!("localhost:{port}")),
            ("HTTP_PROXY", dead),
            ("NO_PROXY", "localhost"),
        ],
    )
    .success();
}

/// A proxy value Go cannot parse fails the upload with one clear line and exit 1.
#[test]
fn bad_proxy_value_fails_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let log = clone_log(tmp.path(), false);
    let options = json!({"bucket":"gs://bkt","path_strategy":"explicit","dry_run":false,"log":log});
    let out = initupload_env(
        &options,
        &spec("periodic"),
        &[
            ("STORAGE_EMULATOR_HOST", "gcs.example.invalid:1"),
            ("HTTP_PROXY", "proxy host:1"),
        ],
    )
    .code(1)
    .get_output()
    .clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid proxy address"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
