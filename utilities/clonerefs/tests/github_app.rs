//! GitHub App authentication against a loopback stand-in for the GitHub API: JWT-authenticated
//! app calls, paged installations, an installation token used as `x-access-token` for the
//! clone and censored in the records; which failures fail the setup record (with no command)
//! and which only each ref's token.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use pod_utils::clone::Record;
use serde_json::json;
use support::{HttpGitServer, Lab, run_ours};

const TOKEN: &str = "ghs_installationtoken123";

/// Serves the three GitHub API calls the app flow makes; records "METHOD path" per request and
/// checks every JWT against `key`.
fn fake_github(key: openssl::pkey::PKey<openssl::pkey::Private>) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut auth = String::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h
                    .to_ascii_lowercase()
                    .strip_prefix("authorization: bearer ")
                {
                    auth = h.trim()[h.len() - v.len()..].trim().to_string();
                }
            }
            let parts: Vec<&str> = line.split_whitespace().collect();
            let (method, path) = (parts[0].to_string(), parts[1].to_string());
            seen2.lock().unwrap().push(format!("{method} {path}"));
            let jwt: Vec<&str> = auth.split('.').collect();
            let valid = jwt.len() == 3 && {
                let mut v =
                    openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &key)
                        .unwrap();
                v.update(format!("{}.{}", jwt[0], jwt[1]).as_bytes())
                    .unwrap();
                let claims: serde_json::Value =
                    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(jwt[1]).unwrap_or_default())
                        .unwrap_or_default();
                claims["iss"] == "42"
                    && v.verify(&URL_SAFE_NO_PAD.decode(jwt[2]).unwrap_or_default())
                        .unwrap_or(false)
            };
            let (status, extra, body) = if !valid {
                ("401 Unauthorized", String::new(), "{}".to_string())
            } else {
                match (method.as_str(), path.as_str()) {
                    ("GET", "/app") => (
                        "200 OK",
                        String::new(),
                        r#"{"slug":"test-app"}"#.to_string(),
                    ),
                    ("GET", "/app/installations?per_page=100") => (
                        "200 OK",
                        format!(
                            "Link: <http://127.0.0.1:{port}/app/installations?per_page=100&page=2>; rel=\"next\"\r\n"
                        ),
                        r#"[{"id":7,"account":{"login":"someone-else"}}]"#.to_string(),
                    ),
                    ("GET", "/app/installations?per_page=100&page=2") => (
                        "200 OK",
                        String::new(),
                        r#"[{"id":1,"account":{"login":"Org"}}]"#.to_string(),
                    ),
                    ("POST", "/app/installations/1/access_tokens") => (
                        "201 Created",
                        String::new(),
                        format!(r#"{{"token":"{TOKEN}","expires_at":"2099-01-01T00:00:00Z"}}"#),
                    ),
                    _ => ("404 Not Found", String::new(), "{}".to_string()),
                }
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, seen)
}

/// An app key in the lab, the fake API checking it, and a git server that takes only the
/// installation token: (key file, API port, API requests seen, git server).
fn app_and_git(
    lab: &Lab,
) -> (
    std::path::PathBuf,
    u16,
    Arc<Mutex<Vec<String>>>,
    HttpGitServer,
) {
    let rsa = openssl::rsa::Rsa::generate(2048).expect("rsa");
    let pem = rsa.private_key_to_pem().expect("pem");
    let key = openssl::pkey::PKey::private_key_from_pem(&pem).expect("key");
    let key_file = lab.path("app.pem");
    std::fs::write(&key_file, &pem).expect("write key");
    let (api_port, seen) = fake_github(key);
    let basic = format!(
        "Basic {}",
        STANDARD.encode(format!("x-access-token:{TOKEN}"))
    );
    let git = HttpGitServer::start_requiring(&lab.repos(), Some(("authorization", &basic)));
    (key_file, api_port, seen, git)
}

#[test]
fn installation_token_clones_and_is_censored() {
    let lab = Lab::new();
    lab.standard_repo("r");
    let (key_file, api_port, seen, git) = app_and_git(&lab);
    let log = lab.path("clone.json");
    let opts = json!({
        "src_root": lab.path("ours"),
        "log": log,
        "git_user_name": "ci-robot",
        "git_user_email": "ci-robot@k8s.io",
        "github_app_id": "42",
        "github_app_private_key_file": key_file,
        "github_api_endpoints": [format!("http://127.0.0.1:{api_port}")],
        "refs": [
            {"org": "org", "repo": "r", "base_ref": "master", "clone_uri": git.url("r"),
             "pulls": [{"number": 1, "author": "", "sha": ""}]},
            {"org": "not-installed", "repo": "x", "base_ref": "master", "clone_uri": git.url("r")},
        ],
    });
    let (code, _, stderr) = run_ours(&lab.home(), &opts);
    assert_eq!(code, 0, "{stderr}");
    let raw = std::fs::read_to_string(&log).expect("log");
    assert!(!raw.contains(TOKEN), "token leaked into records: {raw}");
    assert!(!stderr.contains(TOKEN), "token leaked into logs: {stderr}");
    let records: Vec<Record> = serde_json::from_str(&raw).expect("records");
    assert!(!records[0].failed, "{:#?}", records[0]);
    let ok = records
        .iter()
        .find(|r| r.refs.org == "org")
        .expect("org record");
    assert!(!ok.failed, "{ok:#?}");
    assert_eq!(ok.final_sha.len(), 40);
    let fetch = &ok.commands[4].command;
    assert!(
        fetch.contains(&format!(
            "http://x-access-token:{}@127.0.0.1:",
            "X".repeat(TOKEN.len())
        )),
        "{fetch}"
    );
    // No installation for the org: a record with only the refs, not failed (upstream quirk).
    let none = records
        .iter()
        .find(|r| r.refs.org == "not-installed")
        .expect("record");
    assert!(!none.failed && none.commands.is_empty() && none.final_sha.is_empty());
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0], "GET /app");
    assert!(seen.contains(&"GET /app/installations?per_page=100&page=2".to_string()));
    assert_eq!(
        seen.iter()
            .filter(|s| s.starts_with("POST /app/installations/1/access_tokens"))
            .count(),
        1,
        "token cached for the second use: {seen:?}"
    );
}

/// Upstream builds its client without calling the API, so an unreachable API is no setup
/// failure: each ref's token fails, which leaves a record with only its refs, not failed.
#[test]
fn unreachable_api_fails_each_token_not_the_setup() {
    let lab = Lab::new();
    let rsa = openssl::rsa::Rsa::generate(2048).expect("rsa");
    let key_file = lab.path("app.pem");
    std::fs::write(&key_file, rsa.private_key_to_pem().expect("pem")).expect("write key");
    // A bound-then-dropped port: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let log = lab.path("clone.json");
    let opts = json!({
        "src_root": lab.path("ours"),
        "log": log,
        "github_app_id": "42",
        "github_app_private_key_file": key_file,
        "github_api_endpoints": [format!("http://127.0.0.1:{port}")],
        "refs": [{"org": "org", "repo": "r", "base_ref": "master"}],
    });
    let (code, records, stderr) = run_ours(&lab.home(), &opts);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(records.len(), 2, "{records:#?}");
    assert_eq!(records[0], Record::default());
    assert_eq!(records[1].refs.org, "org");
    assert!(!records[1].failed && records[1].commands.is_empty());
    assert!(!lab.path("ours/src").exists(), "nothing was cloned");
}

/// What does fail upstream's client construction (an endpoint Go cannot parse), and an
/// unreadable or unusable key, fail the setup with no command: upstream only logs why.
#[test]
fn client_and_key_failures_fail_setup_without_a_command() {
    let lab = Lab::new();
    let rsa = openssl::rsa::Rsa::generate(2048).expect("rsa");
    let good = lab.path("app.pem");
    std::fs::write(&good, rsa.private_key_to_pem().expect("pem")).expect("write key");
    let garbage = lab.path("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN RSA PRIVATE KEY-----\nnope\n").expect("write");
    let cases = [
        (&good, "http://[::1", "Failed to construct github client"),
        (
            &garbage,
            "https://api.github.com",
            "Failed to construct github client",
        ),
        (
            &lab.path("missing.pem"),
            "https://api.github.com",
            "Failed to read GitHub App private key file.",
        ),
    ];
    for (key, endpoint, message) in cases {
        let opts = json!({
            "src_root": lab.path("ours"),
            "log": lab.path("clone.json"),
            "github_app_id": "42",
            "github_app_private_key_file": key,
            "github_api_endpoints": [endpoint],
            "refs": [{"org": "org", "repo": "r", "base_ref": "master"}],
        });
        let (code, records, stderr) = run_ours(&lab.home(), &opts);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(
            records,
            [Record {
                failed: true,
                ..Default::default()
            }],
            "{endpoint}"
        );
        assert!(stderr.contains(message), "{stderr}");
        assert!(!stderr.contains("PRIVATE KEY"), "{stderr}");
    }
}

/// The API calls and the clone with the installation token both go through the environment's
/// proxy; both hosts resolve only inside it.
#[test]
#[cfg_attr(not(has_squid), ignore = "needs squid: run qemu/provision")]
fn api_and_clone_go_through_the_proxy() {
    let localhost = std::net::Ipv4Addr::LOCALHOST.into();
    let hosts = [
        ("api.onlyproxy.invalid", localhost),
        ("git.onlyproxy.invalid", localhost),
    ];
    let squid = testsupport::Squid::require(&hosts);
    let lab = Lab::new();
    lab.standard_repo("r");
    let (key_file, api_port, seen, git) = app_and_git(&lab);
    let opts = json!({
        "src_root": lab.path("ours"),
        "log": lab.path("clone.json"),
        "github_app_id": "42",
        "github_app_private_key_file": key_file,
        "github_api_endpoints": [format!("http://api.onlyproxy.invalid:{api_port}")],
        "refs": [{"org": "org", "repo": "r", "base_ref": "master",
                  "clone_uri": format!("http://git.onlyproxy.invalid:{}/r", git.port)}],
    });
    let (code, records, stderr) =
        support::run_ours_with(&lab.home(), &opts, &[("HTTP_PROXY", &squid.url())]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!records[1].failed, "{:#?}", records[1]);
    assert!(!stderr.contains(TOKEN), "{stderr}");
    let via = squid.requests();
    let api = format!("GET http://api.onlyproxy.invalid:{api_port}/app");
    assert!(via.iter().any(|r| r.starts_with(&api)), "{via:?}");
    assert!(
        via.iter()
            .any(|r| r.starts_with("POST http://git.onlyproxy.invalid:")),
        "{via:?}"
    );
    assert!(seen.lock().unwrap().contains(&"GET /app".to_string()));
}
