//! Clones through a real forward proxy (squid): an `http://` remote whose host only the proxy
//! can resolve, `NO_PROXY` exceptions, git's `http.proxy` overriding the environment, and the
//! GitHub App API going through the same proxy.

mod support;

use pod_utils::clone::Record;
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use support::{HttpGitServer, Lab, run_ours_with};
use testsupport::Squid;

const ONLY_PROXY: &str = "git.onlyproxy.invalid";

fn options(lab: &Lab, uri: &str) -> serde_json::Value {
    json!({
        "src_root": lab.path("ours"),
        "log": lab.path("clone.json"),
        "git_user_name": "ci-robot",
        "git_user_email": "ci-robot@k8s.io",
        "refs": [{"org": "org", "repo": "r", "base_ref": "master", "clone_uri": uri,
                  "pulls": [{"number": 1, "author": "", "sha": ""}]}],
    })
}

/// This machine's address on its default route: not loopback, so proxies apply to it.
fn host_ip() -> Option<IpAddr> {
    let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    // No packet is sent: connecting a UDP socket only picks the route and source address.
    s.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).ok()?;
    Some(s.local_addr().ok()?.ip()).filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
}

fn assert_cloned(code: i32, records: &[Record], stderr: &str) {
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(records.len(), 2, "{records:#?}");
    assert!(!records[1].failed, "{:#?}", records[1]);
    assert_eq!(records[1].final_sha.len(), 40, "{:#?}", records[1]);
}

/// Upstream's reproduction: the host resolves only inside the proxy, `http_proxy` (lower case)
/// names the proxy. Base and pull fetches must all go through it.
#[test]
#[cfg_attr(not(has_squid), ignore = "needs squid: run qemu/provision")]
fn http_remote_reachable_only_through_the_proxy() {
    let squid = Squid::require(&[(ONLY_PROXY, Ipv4Addr::LOCALHOST.into())]);
    let lab = Lab::new();
    lab.standard_repo("r");
    let git = HttpGitServer::start(&lab.repos());
    let uri = format!("http://{ONLY_PROXY}:{}/r", git.port);
    let (code, records, stderr) = run_ours_with(
        &lab.home(),
        &options(&lab, &uri),
        &[("http_proxy", &squid.url())],
    );
    assert_cloned(code, &records, &stderr);
    let seen = squid.requests();
    let upload_packs = seen
        .iter()
        .filter(|r| r.starts_with(&format!("POST http://{ONLY_PROXY}:")))
        .count();
    assert!(
        upload_packs >= 2,
        "base and pull fetches through the proxy: {seen:?}"
    );
    assert!(
        seen.iter().all(|r| r.contains(ONLY_PROXY)),
        "only the remote's requests: {seen:?}"
    );
}

/// `NO_PROXY` entries exempt a host (here by IP); without the entry the same clone goes
/// through the proxy. Loopback is never proxied, so the server listens on this machine's own
/// routable address.
#[test]
#[cfg_attr(not(has_squid), ignore = "needs squid: run qemu/provision")]
fn no_proxy_exempts_a_host_that_would_otherwise_be_proxied() {
    let ip = host_ip().expect("a non-loopback address (this machine has no default route)");
    let squid = Squid::require(&[]);
    let lab = Lab::new();
    lab.standard_repo("r");
    let git = HttpGitServer::start_on(&lab.repos(), ip);
    let opts = options(&lab, &git.url("r"));
    let ip_text = ip.to_string();

    let exempt = [
        ("HTTP_PROXY", squid.url()),
        ("NO_PROXY", format!("example.com, {ip_text}")),
    ];
    let env: Vec<(&str, &str)> = exempt.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (code, records, stderr) = run_ours_with(&lab.home(), &opts, &env);
    assert_cloned(code, &records, &stderr);
    assert_eq!(
        squid.requests(),
        Vec::<String>::new(),
        "exempt host went through the proxy"
    );

    std::fs::remove_dir_all(lab.path("ours")).expect("clean checkout");
    let (code, records, stderr) = run_ours_with(
        &lab.home(),
        &opts,
        &[("HTTP_PROXY", &squid.url()), ("NO_PROXY", "example.com")],
    );
    assert_cloned(code, &records, &stderr);
    let seen = squid.requests();
    assert!(
        seen.iter()
            .any(|r| r.starts_with(&format!("POST http://{ip_text}:"))),
        "not exempt, so proxied: {seen:?}"
    );
}

/// git's `http.proxy` setting overrides the environment, as it does for the git CLI.
#[test]
#[cfg_attr(not(has_squid), ignore = "needs squid: run qemu/provision")]
fn git_config_http_proxy_overrides_the_environment() {
    let squid = Squid::require(&[(ONLY_PROXY, Ipv4Addr::LOCALHOST.into())]);
    let lab = Lab::new();
    lab.standard_repo("r");
    let git = HttpGitServer::start(&lab.repos());
    let home = lab.home();
    let config = std::fs::read_to_string(home.join(".gitconfig")).unwrap_or_default();
    std::fs::write(
        home.join(".gitconfig"),
        format!("{config}\n[http]\n\tproxy = {}\n", squid.url()),
    )
    .expect("gitconfig");
    let uri = format!("http://{ONLY_PROXY}:{}/r", git.port);
    // The environment names a proxy nothing listens on; git's setting wins.
    let (code, records, stderr) = run_ours_with(
        &home,
        &options(&lab, &uri),
        &[("http_proxy", "http://127.0.0.1:9")],
    );
    assert_cloned(code, &records, &stderr);
    assert!(!squid.requests().is_empty());
}
