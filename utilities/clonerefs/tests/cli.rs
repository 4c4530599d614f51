//! Black-box tests of the clonerefs binary: option errors, the records file, exit codes, and
//! the environment-setup record.

mod support;

use std::os::unix::fs::PermissionsExt;

use assert_cmd::Command;
use pod_utils::clone::Record;
use serde_json::{Value, json};
use support::{HttpGitServer, Lab};

fn bin() -> Command {
    let mut c = Command::cargo_bin("clonerefs").expect("binary");
    c.env_remove("CLONEREFS_OPTIONS");
    c
}

/// The JSON log lines on stderr.
fn log_lines(stderr: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn fatal_line(stderr: &[u8]) -> Value {
    log_lines(stderr)
        .into_iter()
        .find(|l| l["level"] == "fatal")
        .unwrap_or_else(|| panic!("no fatal line in {}", String::from_utf8_lossy(stderr)))
}

#[test]
fn missing_options_are_fatal() {
    let out = bin().assert().code(1).get_output().clone();
    let line = fatal_line(&out.stderr);
    assert_eq!(line["msg"], "Invalid options: no source root specified");
    assert_eq!(line["component"], "clonerefs");

    let out = bin()
        .env("CLONEREFS_OPTIONS", r#"{"src_root":"/go","log":"/l"}"#)
        .assert()
        .code(1)
        .get_output()
        .clone();
    assert_eq!(
        fatal_line(&out.stderr)["msg"],
        "Invalid options: no refs specified to clone"
    );

    let out = bin()
        .env("CLONEREFS_OPTIONS", "")
        .assert()
        .code(1)
        .get_output()
        .clone();
    assert!(
        fatal_line(&out.stderr)["msg"]
            .as_str()
            .is_some_and(|m| m.starts_with("Could not resolve options")),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = bin()
        .env(
            "CLONEREFS_OPTIONS",
            r#"{"src_root":"/go","log":"/l","refs":[{"org":"o","repo":"r"}],"max_parallel_workers":-1}"#,
        )
        .assert()
        .code(1)
        .get_output()
        .clone();
    assert!(
        fatal_line(&out.stderr)["msg"]
            .as_str()
            .is_some_and(|m| m.contains("max_parallel_workers"))
    );
}

#[test]
fn bad_flag_is_a_usage_error() {
    bin().arg("--no-such-flag").assert().code(2);
}

#[test]
fn records_file_shape_mode_and_log() {
    let lab = Lab::new();
    lab.standard_repo("r");
    let log = lab.path("clone.json");
    let opts = json!({
        "src_root": lab.path("ours"),
        "log": log,
        "git_user_name": "ci-robot",
        "git_user_email": "ci-robot@k8s.io",
        "refs": [{"org": "org", "repo": "r", "base_ref": "master",
                  "clone_uri": format!("file://{}", lab.repos().join("r").display()),
                  "pulls": [{"number": 1, "author": "someone", "sha": ""}]}],
    });
    let out = bin()
        .env("CLONEREFS_OPTIONS", opts.to_string())
        .env("HOME", lab.home())
        .assert()
        .code(0)
        .get_output()
        .clone();
    let lines = log_lines(&out.stderr);
    assert!(
        lines
            .iter()
            .any(|l| l["msg"] == "Finished cloning refs" && l["level"] == "info")
    );

    let raw = std::fs::read_to_string(&log).expect("log");
    assert!(raw.starts_with(r#"[{"refs":{"org":"","repo":""}},{"refs":{"org":"org","repo":"r","base_ref":"master","pulls":[{"number":1,"author":"someone","sha":""}],"clone_uri":"#), "{raw}");
    assert!(!raw.ends_with('\n'), "compact, no trailing newline");
    let mode = std::fs::metadata(&log).expect("stat").permissions().mode() & 0o777;
    assert_eq!(
        mode & !0o022,
        0o755 & !0o022,
        "mode 0755 less umask, got {mode:o}"
    );

    let records: Vec<Record> = serde_json::from_str(&raw).expect("records");
    let rec = &records[1];
    assert!(!rec.failed);
    assert_eq!(rec.final_sha.len(), 40);
    assert!(rec.duration > 0);
    assert!(
        rec.commands
            .iter()
            .all(|c| c.duration > 0 && c.error.is_empty())
    );
    assert!(rec.commands[0].command.starts_with("PWD=/  mkdir -p "));
}

#[test]
fn fail_flag_turns_failed_records_into_exit_1() {
    let lab = Lab::new();
    // src_root below a regular file: mkdir fails at once (no retries).
    std::fs::write(lab.path("file"), "x").expect("write");
    let log = lab.path("clone.json");
    let mut opts = json!({
        "src_root": lab.path("file"),
        "log": log,
        "refs": [{"org": "org", "repo": "r", "base_ref": "master"}],
    });
    bin()
        .env("CLONEREFS_OPTIONS", opts.to_string())
        .assert()
        .code(0);
    let records: Vec<Record> =
        serde_json::from_slice(&std::fs::read(&log).expect("log")).expect("records");
    assert!(records[1].failed);
    assert_eq!(records[1].commands.len(), 1);
    assert!(
        records[1].commands[0]
            .command
            .starts_with("PWD=/  mkdir -p ")
    );
    assert!(!records[1].commands[0].error.is_empty());

    opts["fail"] = json!(true);
    let out = bin()
        .env("CLONEREFS_OPTIONS", opts.to_string())
        .assert()
        .code(1)
        .get_output()
        .clone();
    let line = fatal_line(&out.stderr);
    assert_eq!(line["msg"], "Failed to clone refs");
    assert_eq!(line["error"], "1 clone records failed");
}

#[test]
fn unwritable_log_is_fatal() {
    let lab = Lab::new();
    let opts = json!({
        "src_root": lab.path("file-missing/x"),
        "log": lab.path("no/such/dir/clone.json"),
        "refs": [{"org": "org", "repo": "r", "base_ref": "master", "clone_uri": "/nonexistent"}],
        "oauth_token_file": lab.path("missing-token"),
    });
    let out = bin()
        .env("CLONEREFS_OPTIONS", opts.to_string())
        .assert()
        .code(1)
        .get_output()
        .clone();
    let line = fatal_line(&out.stderr);
    assert_eq!(line["msg"], "Failed to clone refs");
    assert!(
        line["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("failed to write clone records: "))
    );
}

#[test]
fn unreadable_token_fails_setup_only() {
    let lab = Lab::new();
    let log = lab.path("clone.json");
    let opts = json!({
        "src_root": lab.path("ours"),
        "log": log,
        "refs": [{"org": "org", "repo": "r", "base_ref": "master"}],
        "oauth_token_file": lab.path("missing-token"),
    });
    let out = bin()
        .env("CLONEREFS_OPTIONS", opts.to_string())
        .assert()
        .code(0);
    let records: Vec<Record> =
        serde_json::from_slice(&std::fs::read(&log).expect("log")).expect("records");
    // Upstream records no command for a secret it cannot read; it only logs why.
    assert_eq!(
        records,
        [Record {
            failed: true,
            ..Default::default()
        }]
    );
    let logged = log_lines(&out.get_output().stderr);
    assert!(
        logged
            .iter()
            .any(|l| l["msg"] == "Failed to read oauth key file." && l["level"] == "error"),
        "{logged:?}"
    );
}

#[test]
fn ssh_keys_and_known_hosts_in_setup_record() {
    let lab = Lab::new();
    let keys = lab.path("keys");
    std::fs::create_dir_all(keys.join("..data")).expect("mkdir");
    std::fs::create_dir_all(keys.join("nested")).expect("mkdir");
    std::fs::write(keys.join("..data/skipped"), "x").expect("write");
    let pem = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbg==\n-----END OPENSSH PRIVATE KEY-----\n";
    std::fs::write(keys.join("b-key"), pem).expect("write");
    std::fs::write(keys.join("nested/a-key"), pem).expect("write");
    let opts = clonerefs::Options {
        src_root: lab.path("ours").to_string_lossy().into_owned(),
        log: lab.path("clone.json").to_string_lossy().into_owned(),
        refs: vec![],
        key_files: vec![keys.to_string_lossy().into_owned()],
        host_fingerprints: vec![
            "github.com ssh-rsa AAAA".into(),
            "gitlab.com ssh-rsa BBBB".into(),
        ],
        ..Default::default()
    };
    let settings = clonerefs::Settings {
        tmp_dir: lab.path("tmp"),
        ..Default::default()
    };
    let records = clonerefs::create_records(&opts, &settings);
    let cmds: Vec<&str> = records[0]
        .commands
        .iter()
        .map(|c| c.command.as_str())
        .collect();
    let k = keys.display();
    let t = lab.path("tmp");
    assert_eq!(
        cmds,
        [
            "ssh-agent".to_string(),
            format!("ssh-add \"{k}/b-key\""),
            format!("ssh-add \"{k}/nested/a-key\""),
            format!("golang: create \"{}\"", t.display()),
            format!("golang: append \"{}/known_hosts\"", t.display()),
            "golang: lookup ssh path".to_string(),
        ]
    );
    // Setup commands carry no durations, and these no output (ours has no agent to report).
    assert!(
        records[0]
            .commands
            .iter()
            .all(|c| c.output.is_empty() && c.error.is_empty() && c.duration == 0)
    );
    assert_eq!(
        std::fs::read_to_string(t.join("known_hosts")).expect("known_hosts"),
        "github.com ssh-rsa AAAA\ngitlab.com ssh-rsa BBBB"
    );
    assert!(!records[0].failed);

    // Anything that is not a private key fails the setup as ssh-add fails it.
    std::fs::write(keys.join("c-not-a-key.pub"), "ssh-ed25519 AAAA").expect("write");
    let records = clonerefs::create_records(&opts, &settings);
    assert_eq!(records.len(), 1);
    assert!(records[0].failed);
    let last = records[0].commands.last().expect("cmd");
    assert_eq!(last.command, format!("ssh-add \"{k}/c-not-a-key.pub\""));
    assert_eq!(
        last.output,
        format!("Error loading key \"{k}/c-not-a-key.pub\": invalid format\n")
    );
    assert_eq!(last.error, "exit status 1");
}

/// With `ssh_host_fingerprints`, every per-ref command line, merges included, starts with
/// upstream's shared `GIT_SSH_COMMAND=<ssh> -o UserKnownHostsFile=<tmp>/known_hosts`.
#[test]
fn fingerprints_put_git_ssh_command_on_every_line() {
    let lab = Lab::new();
    let shas = lab.standard_repo("r");
    let refs = pod_utils::prowapi::Refs {
        org: "org".into(),
        repo: "r".into(),
        base_ref: "master".into(),
        clone_uri: format!("file://{}", lab.repos().join("r").display()),
        pulls: Some(vec![pod_utils::prowapi::Pull {
            number: 2,
            sha: shas["p2"].clone(),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let opts = clonerefs::Options {
        src_root: lab.path("ours").to_string_lossy().into_owned(),
        log: lab.path("clone.json").to_string_lossy().into_owned(),
        git_user_name: "ci-robot".into(),
        git_user_email: "ci-robot@k8s.io".into(),
        host_fingerprints: vec!["github.com ssh-rsa AAAA".into()],
        refs: vec![refs],
        ..Default::default()
    };
    let settings = clonerefs::Settings {
        tmp_dir: lab.path("tmp"),
        retry_delays: vec![],
        ..Default::default()
    };
    let records = clonerefs::create_records(&opts, &settings);
    assert!(!records[1].failed, "{:#?}", records[1]);
    let ssh = support::ssh_on_path();
    let env = format!(
        "GIT_SSH_COMMAND={ssh} -o UserKnownHostsFile={}/known_hosts",
        lab.path("tmp").display()
    );
    let dir = lab.path("ours/src/github.com/org/r");
    let lines: Vec<&str> = records[1]
        .commands
        .iter()
        .map(|c| c.command.as_str())
        .collect();
    assert_eq!(lines[0], format!("PWD=/ {env} mkdir -p {}", dir.display()));
    for l in &lines[1..] {
        assert!(
            l.starts_with(&format!("PWD={} {env} ", dir.display())),
            "{l}"
        );
    }
    let merge = lines
        .iter()
        .find(|l| l.contains("git merge"))
        .expect("merge");
    assert!(
        merge.contains(&format!("{env} GIT_AUTHOR_DATE=")),
        "{merge}"
    );
}

#[test]
fn cookie_file_is_sent_and_configured() {
    let lab = Lab::new();
    lab.standard_repo("r");
    let server = HttpGitServer::start_requiring(&lab.repos(), Some(("cookie", "o=tasty")));
    let cookies = lab.path("cookies");
    std::fs::write(&cookies, "127.0.0.1\tFALSE\t/\tFALSE\t0\to\ttasty\n").expect("write");
    let log = lab.path("clone.json");
    let opts = json!({
        "src_root": lab.path("ours"),
        "log": log,
        "git_user_name": "ci-robot",
        "git_user_email": "ci-robot@k8s.io",
        "cookie_path": cookies,
        "refs": [
            {"org": "org", "repo": "a", "base_ref": "master", "clone_uri": server.url("r"), "skip_submodules": true},
            {"org": "org", "repo": "b", "base_ref": "master", "clone_uri": server.url("r")},
        ],
    });
    bin()
        .env("CLONEREFS_OPTIONS", opts.to_string())
        .env("HOME", lab.home())
        .assert()
        .code(0);
    let records: Vec<Record> =
        serde_json::from_slice(&std::fs::read(&log).expect("log")).expect("records");
    assert_eq!(
        records[0].commands[0].command,
        format!(
            "git config --global http.cookiefile \"{}\"",
            cookies.display()
        )
    );
    assert!(records.iter().all(|r| !r.failed), "{records:#?}");
    let global = lab.git(&lab.home(), &["config", "--global", "http.cookiefile"]);
    assert_eq!(global, cookies.to_string_lossy());
    let a = lab.path("ours/src/github.com/org/a");
    assert_eq!(
        lab.git(&a, &["config", "--local", "http.cookiefile"]),
        cookies.to_string_lossy()
    );
    let a_rec = records.iter().find(|r| r.refs.repo == "a").expect("a");
    assert!(a_rec.commands.iter().any(|c| {
        c.command
            .ends_with(&format!("git config http.cookiefile {}", cookies.display()))
    }));

    // Without the cookie the server refuses, and the fetch fails after its retries.
    let opts = clonerefs::Options {
        src_root: lab.path("other").to_string_lossy().into_owned(),
        log: lab.path("other.json").to_string_lossy().into_owned(),
        refs: vec![pod_utils::prowapi::Refs {
            org: "org".into(),
            repo: "r".into(),
            base_ref: "master".into(),
            clone_uri: server.url("r"),
            ..Default::default()
        }],
        ..Default::default()
    };
    let settings = clonerefs::Settings {
        retry_delays: vec![std::time::Duration::ZERO],
        ..Default::default()
    };
    let records = clonerefs::create_records(&opts, &settings);
    assert!(records[1].failed);
    assert!(
        records[1]
            .commands
            .last()
            .expect("cmd")
            .error
            .contains("403")
    );
}
