//! Cloning over SSH with key files and host fingerprints against a real OpenSSH server started
//! on loopback, and the setup steps and command lines the records show for them. Needs
//! `/usr/sbin/sshd` (Debian `openssh-server`): skipped without it, unless `CI` is set, where
//! its absence fails the test.

mod support;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pod_utils::prowapi::{Pull, Refs};
use serde_json::json;
use support::{Lab, oracle_clone, run_ours, state};

const SSHD: &str = "/usr/sbin/sshd";

/// `false` (after saying why) when the test cannot run here.
struct Sshd {
    child: Child,
    port: u16,
    host_pub: String,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen")
        .success();
    assert!(ok);
}

/// sshd on 127.0.0.1 accepting `client_pub` for the current user.
fn start_sshd(dir: &Path, client_pub: &Path) -> Sshd {
    keygen(&dir.join("hostkey"));
    std::fs::copy(client_pub, dir.join("authorized_keys")).expect("authorized_keys");
    // sshd refuses to start without its privilege separation directory.
    std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/hostkey\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\n",
            d = dir.display()
        ),
    )
    .expect("config");
    let child = Command::new(SSHD)
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sshd");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "sshd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let host_pub = std::fs::read_to_string(dir.join("hostkey.pub")).expect("host key");
    Sshd {
        child,
        port,
        host_pub,
    }
}

/// A client key pair and an sshd accepting it; returns the server and the key secret's folder
/// (only the private key goes in: a .pub next to it would be offered as a key too).
fn sshd_with_client_key(lab: &Lab) -> (Sshd, PathBuf) {
    let keys = lab.path("keys");
    std::fs::create_dir_all(&keys).expect("mkdir");
    keygen(&keys.join("id_ed25519"));
    let sshd_dir = lab.path("sshd");
    std::fs::create_dir_all(&sshd_dir).expect("mkdir");
    let sshd = start_sshd(&sshd_dir, &keys.join("id_ed25519.pub"));
    let key_dir = lab.path("secret");
    std::fs::create_dir_all(&key_dir).expect("mkdir");
    std::fs::copy(keys.join("id_ed25519"), key_dir.join("ssh-privatekey")).expect("copy");
    (sshd, key_dir)
}

/// The committer time of `release-1.0` in the lab's repo, which the first merge follows by a
/// second.
fn release_time(lab: &Lab) -> i64 {
    lab.git(
        &lab.repos().join("r"),
        &["show", "-s", "--format=%ct", "release-1.0"],
    )
    .trim()
    .parse()
    .expect("timestamp")
}

/// The sshd's host key as a known_hosts line, and the lab repo `r`'s URL on it.
fn fingerprint_and_url(lab: &Lab, sshd: &Sshd) -> (String, String) {
    let mut pub_fields = sshd.host_pub.split_whitespace();
    let fingerprint = format!(
        "[127.0.0.1]:{} {} {}",
        sshd.port,
        pub_fields.next().expect("type"),
        pub_fields.next().expect("key")
    );
    let url = format!(
        "ssh://{}@127.0.0.1:{}{}",
        user(),
        sshd.port,
        lab.repos().join("r").display()
    );
    (fingerprint, url)
}

fn user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
#[cfg_attr(not(has_sshd), ignore = "needs /usr/sbin/sshd: run qemu/provision")]
fn clone_over_ssh_with_key_and_fingerprint() {
    let lab = Lab::new();
    let shas = lab.standard_repo("r");
    let (sshd, key_dir) = sshd_with_client_key(&lab);
    let (fingerprint, url) = fingerprint_and_url(&lab, &sshd);
    // Pulls by SHA: the merge message names no URL, so the file:// oracle must match exactly.
    let refs = Refs {
        org: "org".into(),
        repo: "r".into(),
        base_ref: "release-1.0".into(),
        clone_uri: url.clone(),
        pulls: Some(vec![Pull {
            number: 2,
            sha: shas["p2"].clone(),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let opts = json!({
        "src_root": lab.path("ours"),
        "log": lab.path("clone.json"),
        "git_user_name": "ci-robot",
        "git_user_email": "ci-robot@k8s.io",
        "key_files": [key_dir],
        "host_fingerprints": [fingerprint],
        "refs": [refs],
    });
    let (code, records, stderr) = run_ours(&lab.home(), &opts);
    assert_eq!(code, 0, "{stderr}");
    assert!(!records[0].failed, "{:#?}", records[0]);
    assert!(!records[1].failed, "{:#?}", records[1]);

    // Upstream's setup steps in its order (the image's /tmp exists, so nothing is created).
    let setup: Vec<&str> = records[0]
        .commands
        .iter()
        .map(|c| c.command.as_str())
        .collect();
    let key = key_dir.join("ssh-privatekey");
    assert_eq!(
        setup,
        [
            "ssh-agent".to_string(),
            format!("ssh-add \"{}\"", key.display()),
            "golang: append \"/tmp/known_hosts\"".to_string(),
            "golang: lookup ssh path".to_string(),
        ]
    );
    // Every command of the ref, mkdir and the merge included, carries the shared env first.
    let env = format!(
        "GIT_SSH_COMMAND={} -o UserKnownHostsFile=/tmp/known_hosts",
        support::ssh_on_path()
    );
    let dir = lab.path("ours/src/github.com/org/r");
    let lines: Vec<&str> = records[1]
        .commands
        .iter()
        .map(|c| c.command.as_str())
        .collect();
    assert_eq!(lines[0], format!("PWD=/ {env} mkdir -p {}", dir.display()));
    assert!(
        lines
            .contains(&format!("PWD={} {env} git fetch {url} release-1.0", dir.display()).as_str())
    );
    assert!(
        lines.contains(
            &format!(
                "PWD={} {env} GIT_AUTHOR_DATE={t} GIT_COMMITTER_DATE={t} git merge --no-ff {}",
                dir.display(),
                shas["p2"],
                t = release_time(&lab) + 1
            )
            .as_str()
        )
    );
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.starts_with(&format!("PWD={} {env} ", dir.display()))),
        "{lines:#?}"
    );

    let mut file_refs = refs.clone();
    file_refs.clone_uri = format!("file://{}", lab.repos().join("r").display());
    let oracle = oracle_clone(
        &lab.home(),
        &lab.path("oracle").to_string_lossy(),
        &file_refs,
        "ci-robot",
        "ci-robot@k8s.io",
        None,
    );
    assert!(!oracle.failed);
    let ours_dir: PathBuf = lab.path("ours/src/github.com/org/r");
    assert_eq!(
        state(&lab.home(), &ours_dir),
        state(&lab.home(), &oracle.dir)
    );

    // A host key that is not the server's is refused.
    let wrong = format!(
        "[127.0.0.1]:{} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
        sshd.port
    );
    let options = clonerefs::Options {
        src_root: lab.path("wrong").to_string_lossy().into_owned(),
        log: lab.path("wrong.json").to_string_lossy().into_owned(),
        key_files: vec![key_dir.to_string_lossy().into_owned()],
        host_fingerprints: vec![wrong],
        refs: vec![refs],
        ..Default::default()
    };
    let settings = clonerefs::Settings {
        retry_delays: vec![],
        tmp_dir: lab.path("tmp"),
        ..Default::default()
    };
    let records = clonerefs::create_records(&options, &settings);
    assert!(records[1].failed);
    let err = &records[1].commands.last().expect("cmd").error;
    // libgit2 reports a refused host key with its own message.
    assert!(err.contains("hostkey"), "{err}");
}

/// Without `ssh_host_fingerprints`, a pinned host (github.com in the image) is checked strictly
/// against the pinned keys, and any other host is refused unless `~/.ssh/known_hosts` knows it:
/// upstream's ssh_config and ssh's default policy with no terminal to ask.
#[test]
#[cfg_attr(not(has_sshd), ignore = "needs /usr/sbin/sshd: run qemu/provision")]
fn without_fingerprints_pinned_hosts_are_checked_and_unknown_hosts_refused() {
    let lab = Lab::new();
    lab.standard_repo("r");
    let (sshd, key_dir) = sshd_with_client_key(&lab);
    let refs = Refs {
        org: "org".into(),
        repo: "r".into(),
        base_ref: "master".into(),
        clone_uri: format!(
            "ssh://{}@127.0.0.1:{}{}",
            user(),
            sshd.port,
            lab.repos().join("r").display()
        ),
        ..Default::default()
    };
    let mut pub_fields = sshd.host_pub.split_whitespace();
    let (ty, key) = (
        pub_fields.next().expect("type"),
        pub_fields.next().expect("key"),
    );
    let clone = |name: &str, pinned: String| {
        let options = clonerefs::Options {
            src_root: lab.path(name).to_string_lossy().into_owned(),
            log: lab
                .path(&format!("{name}.json"))
                .to_string_lossy()
                .into_owned(),
            key_files: vec![key_dir.to_string_lossy().into_owned()],
            refs: vec![refs.clone()],
            ..Default::default()
        };
        // Retries absorb a connection sshd drops under load; a refused key fails every time.
        let settings = clonerefs::Settings {
            retry_delays: vec![Duration::from_millis(200); 3],
            tmp_dir: lab.path("tmp"),
            pinned_known_hosts: pinned.into(),
        };
        clonerefs::create_records(&options, &settings)
    };

    let records = clone("pinned", format!("127.0.0.1 {ty} {key}\n"));
    assert!(!records[1].failed, "{:#?}", records[1].commands.last());
    assert!(lab.path("pinned/src/github.com/org/r/.git").exists());
    // Keys alone: the agent and key steps, and no shared env on the command lines, where
    // upstream writes its agent's SSH_AUTH_SOCK and SSH_AGENT_PID (ours has no agent).
    let setup: Vec<&str> = records[0]
        .commands
        .iter()
        .map(|c| c.command.as_str())
        .collect();
    let key_file = key_dir.join("ssh-privatekey");
    assert_eq!(
        setup,
        [
            "ssh-agent".to_string(),
            format!("ssh-add \"{}\"", key_file.display())
        ]
    );
    let dir = lab.path("pinned/src/github.com/org/r");
    let init = &records[1].commands[1].command;
    assert_eq!(init, &format!("PWD={}  git init", dir.display()));

    let github_keys = clonerefs::Settings::default().pinned_known_hosts;
    let wrong = github_keys.replace("github.com", "127.0.0.1");
    let records = clone("wrong", wrong);
    assert!(records[1].failed);
    let err = &records[1].commands.last().expect("cmd").error;
    assert!(err.contains("hostkey"), "{err}");

    // Not pinned, no fingerprints, not in ~/.ssh/known_hosts: refused, never trusted on first use.
    let records = clone("unknown", github_keys.to_string());
    assert!(records[1].failed);
    let err = &records[1].commands.last().expect("cmd").error;
    assert!(err.contains("hostkey"), "{err}");
}

/// With a proxy configured, every connection of the run (SSH ones too, which are never
/// proxied) goes through clonerefs' own socket stream; libssh2 must still get a working socket.
#[test]
#[cfg_attr(not(has_sshd), ignore = "needs /usr/sbin/sshd: run qemu/provision")]
fn ssh_clone_works_while_a_proxy_is_configured() {
    let lab = Lab::new();
    lab.standard_repo("r");
    let (sshd, key_dir) = sshd_with_client_key(&lab);
    let (fingerprint, url) = fingerprint_and_url(&lab, &sshd);
    let opts = json!({
        "src_root": lab.path("ours"),
        "log": lab.path("clone.json"),
        "git_user_name": "ci-robot",
        "git_user_email": "ci-robot@k8s.io",
        "key_files": [key_dir],
        "host_fingerprints": [fingerprint],
        "refs": [{"org": "org", "repo": "r", "base_ref": "master", "clone_uri": url}],
    });
    // Nothing listens on port 9: a connection that wrongly went to the proxy would fail.
    let proxy = [
        ("HTTP_PROXY", "http://127.0.0.1:9"),
        ("HTTPS_PROXY", "http://127.0.0.1:9"),
    ];
    let (code, records, stderr) = support::run_ours_with(&lab.home(), &opts, &proxy);
    assert_eq!(code, 0, "{stderr}");
    assert!(!records[1].failed, "{:#?}", records[1]);
    let master = lab.git(&lab.repos().join("r"), &["rev-parse", "master"]);
    assert_eq!(records[1].final_sha, master.trim());
}
