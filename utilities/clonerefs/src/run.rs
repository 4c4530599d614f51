/*!
The run sequence (upstream `pkg/clonerefs/run.go`): an environment-setup record, then every ref
cloned by a pool of workers, records kept in completion order and written as compact JSON to
`log`. Clone failures are data in the records; only a write failure or `fail` changes the exit
code.

The setup record lists upstream's steps in its order: `ssh-agent` and one `ssh-add "<file>"` per
key file; `golang: create "<tmp>"` (when missing), `golang: append "<tmp>/known_hosts"` and
`golang: lookup ssh path` for host fingerprints; `git config --global http.cookiefile "<path>"`.
libssh2 holds the keys, so these report no agent output. A secret that cannot be read, or a
GitHub App client that cannot be built, fails the record with no command for it, as upstream's
does. With fingerprints, every per-ref command line starts with upstream's shared
`GIT_SSH_COMMAND=<ssh> -o UserKnownHostsFile=<tmp>/known_hosts`; upstream's agent variables
have no counterpart here.
*/

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use md5::{Digest, Md5};
use pod_utils::clone::{Command, Record};

use crate::Options;
use crate::auth::{Censor, CookieJar, go_quote};
use crate::fetch::{Access, TokenSource};
use crate::ghapp::AppTokens;
use crate::refclone::{CloneConfig, clone_ref};

/// Upstream's fetch retry schedule: 9 sleeps, 10 attempts.
pub const RETRY_DELAYS: [Duration; 9] = [
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(400),
    Duration::from_millis(800),
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(15),
    Duration::from_secs(30),
];

/// What the binary fixes and tests may change.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Sleeps between fetch attempts.
    pub retry_delays: Vec<Duration>,
    /// Where known_hosts is written (upstream: `/tmp`).
    pub tmp_dir: PathBuf,
    /// Hosts checked strictly without fingerprints (upstream's image: `/github_known_hosts`).
    pub pinned_known_hosts: std::sync::Arc<str>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            retry_delays: RETRY_DELAYS.to_vec(),
            tmp_dir: PathBuf::from("/tmp"),
            pinned_known_hosts: crate::auth::GITHUB_KNOWN_HOSTS.into(),
        }
    }
}

pub fn run(o: &Options) -> i32 {
    run_with(o, &Settings::default())
}

/// Clones, writes the records and returns the exit code (logging the reason for a non-zero one).
pub fn run_with(o: &Options, settings: &Settings) -> i32 {
    let records = create_records(o, settings);
    let data = match serde_json::to_vec(&records) {
        Ok(d) => d,
        Err(e) => {
            pod_utils::fatal!(error = %format!("failed to marshal clone records: {e}"), "Failed to clone refs");
            return 1;
        }
    };
    if let Err(e) = write_log(Path::new(&o.log), &data) {
        pod_utils::fatal!(error = %format!("failed to write clone records: {e}"), "Failed to clone refs");
        return 1;
    }
    let failed = records.iter().filter(|r| r.failed).count();
    if o.fail && failed > 0 {
        pod_utils::fatal!(error = %format!("{failed} clone records failed"), "Failed to clone refs");
        return 1;
    }
    tracing::info!("Finished cloning refs");
    0
}

/// `os.WriteFile(path, data, 0755)`: truncates, and the mode applies only to a new file.
fn write_log(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o755)
        .open(path)?;
    f.write_all(data)
}

/// The setup record followed by one record per ref, in completion order.
pub fn create_records(o: &Options, settings: &Settings) -> Vec<Record> {
    let mut setup = Record::default();
    let Some(Setup {
        access,
        tokens,
        censor,
        env,
    }) = set_up(o, settings, &mut setup.commands)
    else {
        setup.failed = true;
        return vec![setup];
    };
    let mut records = vec![setup];
    let cfg = CloneConfig {
        src_root: &o.src_root,
        git_user_name: &o.git_user_name,
        git_user_email: &o.git_user_email,
        cookie_path: &o.cookie_path,
        access: &access,
        tokens: &tokens,
        censor: &censor,
        env: &env,
        retry_delays: &settings.retry_delays,
    };
    let workers = match usize::try_from(o.max_parallel_workers) {
        Ok(0) | Err(_) => o.refs.len(),
        Ok(n) => n.min(o.refs.len()),
    };
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        for _ in 0..workers {
            let tx = tx.clone();
            let (next, cfg) = (&next, &cfg);
            s.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(refs) = o.refs.get(i) else { break };
                    // The receiver outlives every worker, so a send cannot fail.
                    let _ = tx.send(clone_ref(cfg, refs));
                }
            });
        }
        drop(tx);
        records.extend(rx.iter());
    });
    records
}

/// What the setup hands every clone.
struct Setup {
    access: Access,
    tokens: TokenSource,
    censor: Censor,
    /// Upstream's shared environment, written before every per-ref command line.
    env: Vec<String>,
}

/// Environment setup (upstream's first record): SSH keys, known hosts, the OAuth token, the
/// GitHub App and the global cookie file. Returns `None` when a step failed, having recorded
/// only what upstream records: a failed command where it runs one, nothing for a secret it
/// cannot read or a client it cannot build (the reason is logged).
fn set_up(o: &Options, settings: &Settings, commands: &mut Vec<Command>) -> Option<Setup> {
    let mut access = Access {
        pinned_known_hosts: settings.pinned_known_hosts.clone(),
        ..Default::default()
    };
    let mut tokens = TokenSource::None;
    let mut censor = Censor::default();
    let mut env = Vec::new();
    let fail = |commands: &mut Vec<Command>, command: String, error: String| {
        commands.push(Command {
            command,
            error,
            ..Default::default()
        });
    };

    if !o.key_files.is_empty() {
        // Upstream starts an agent and hands it each key with `ssh-add`. libssh2 reads the key
        // files itself: the steps are recorded, but there is no agent, so no agent output and
        // no SSH_AUTH_SOCK/SSH_AGENT_PID for the command lines.
        commands.push(Command {
            command: "ssh-agent".to_string(),
            ..Default::default()
        });
        for root in &o.key_files {
            let mut files = Vec::new();
            let walked = key_files(Path::new(root), &mut files);
            for f in files {
                let command = format!("ssh-add {}", go_quote(&f.to_string_lossy()));
                if let Err((output, error)) = ssh_add_check(&f) {
                    let why = format!(
                        "walking path {}: add ssh key at {}: {error}: {output}",
                        go_quote(root),
                        f.display()
                    );
                    tracing::error!(error = %why, "Failed to add SSH keys.");
                    commands.push(Command {
                        command,
                        output,
                        error,
                        ..Default::default()
                    });
                    return None;
                }
                commands.push(Command {
                    command,
                    ..Default::default()
                });
                access.key_files.push(f);
            }
            // Upstream's walk stops at an entry it cannot read, with no command for it.
            if let Err((path, e)) = walked {
                let why = format!(
                    "walking path {}: {}: {}",
                    go_quote(root),
                    path.display(),
                    strerror(&e)
                );
                tracing::error!(error = %why, "Failed to add SSH keys.");
                return None;
            }
        }
    }

    if !o.host_fingerprints.is_empty() {
        let tmp = &settings.tmp_dir;
        if !tmp.exists() {
            let command = format!("golang: create {}", go_quote(&tmp.to_string_lossy()));
            if let Err(e) = fs::create_dir_all(tmp) {
                fail(commands, command, e.to_string());
                return None;
            }
            commands.push(Command {
                command,
                ..Default::default()
            });
        }
        let path = tmp.join("known_hosts");
        let command = format!("golang: append {}", go_quote(&path.to_string_lossy()));
        let written = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o644)
            .open(&path)
            .and_then(|mut f| f.write_all(o.host_fingerprints.join("\n").as_bytes()));
        if let Err(e) = written {
            fail(commands, command, e.to_string());
            return None;
        }
        commands.push(Command {
            command,
            ..Default::default()
        });
        // Upstream fails here without an `ssh` on PATH; libssh2 needs none, so the step always
        // succeeds and the recorded GIT_SSH_COMMAND names whatever ssh there is, else `ssh`.
        commands.push(Command {
            command: "golang: lookup ssh path".to_string(),
            ..Default::default()
        });
        let ssh = look_path("ssh", std::env::var_os("PATH").as_deref());
        env.push(git_ssh_command(ssh.as_deref(), &path));
        access.host_fingerprints = o.host_fingerprints.clone();
    }

    if !o.oauth_token_file.is_empty() {
        match fs::read_to_string(&o.oauth_token_file) {
            Ok(raw) => {
                let token = raw.trim().to_string();
                censor.add_secret(&token);
                censor.set_token(&token);
                tokens = TokenSource::OAuth(token);
            }
            Err(e) => {
                tracing::error!(
                    error = %e, path = %o.oauth_token_file,
                    "Failed to read oauth key file."
                );
                return None;
            }
        }
    }

    if !o.github_app_id.is_empty() {
        let key_path = &o.github_app_private_key_file;
        let key = match fs::read(key_path) {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(
                    error = %e, path = %key_path,
                    "Failed to read GitHub App private key file."
                );
                return None;
            }
        };
        censor.add_secret(&String::from_utf8_lossy(&key));
        match AppTokens::new(&o.github_app_id, &key, &o.github_api_endpoints) {
            Ok(app) => tokens = TokenSource::App(std::sync::Arc::new(app)),
            Err(e) => {
                let why = censor.censor(&e.to_string());
                tracing::error!(error = %why, "Failed to construct github client");
                return None;
            }
        }
    }

    if !o.cookie_path.is_empty() {
        match fs::read(&o.cookie_path) {
            Ok(data) => {
                let sum = Md5::digest(&data);
                let hex: String = sum.iter().map(|b| format!("{b:02x}")).collect();
                tracing::info!(md5 = %hex, path = %o.cookie_path, "Using cookie file");
                access.cookies = Some(CookieJar::parse(&String::from_utf8_lossy(&data)));
            }
            Err(e) => {
                tracing::warn!(error = %e, path = %o.cookie_path, "Failed to read cookie file");
            }
        }
        if o.refs.iter().any(|r| !r.skip_submodules) {
            let command = format!(
                "git config --global http.cookiefile {}",
                go_quote(&o.cookie_path)
            );
            if let Err(e) = set_global_cookiefile(&o.cookie_path) {
                fail(commands, command, e);
                return None;
            }
            commands.push(Command {
                command,
                ..Default::default()
            });
        }
    }
    Some(Setup {
        access,
        tokens,
        censor,
        env,
    })
}

/// What `ssh-add <path>` would print and its exit error when it would refuse the key: an
/// unopenable file (`perror`), an unreadable one, or anything but a private key.
fn ssh_add_check(path: &Path) -> Result<(), (String, String)> {
    let exit = || "exit status 1".to_string();
    let loading = |why: &str| format!("Error loading key \"{}\": {why}\n", path.display());
    let mut data = Vec::new();
    fs::File::open(path)
        .map_err(|e| (format!("{}: {}\n", path.display(), strerror(&e)), exit()))?
        .read_to_end(&mut data)
        .map_err(|e| (loading(&strerror(&e)), exit()))?;
    if !is_private_key(&data) {
        return Err((loading("invalid format"), exit()));
    }
    Ok(())
}

/// The C library's text for an OS error, without Rust's ` (os error N)`.
fn strerror(e: &std::io::Error) -> String {
    let text = e.to_string();
    match e.raw_os_error() {
        Some(code) => text
            .strip_suffix(&format!(" (os error {code})"))
            .unwrap_or(&text)
            .to_string(),
        None => text,
    }
}

/// Upstream's `GIT_SSH_COMMAND` entry, naming plain `ssh` when there is none on PATH.
fn git_ssh_command(ssh: Option<&Path>, known_hosts: &Path) -> String {
    let ssh = ssh.map_or_else(|| "ssh".into(), Path::to_string_lossy);
    format!(
        "GIT_SSH_COMMAND={ssh} -o UserKnownHostsFile={}",
        known_hosts.display()
    )
}

/// Go's `exec.LookPath` for a bare name: the first executable file in `path_var`'s
/// directories (an empty entry is `.`); a relative hit is refused, as Go refuses it.
fn look_path(name: &str, path_var: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    for dir in std::env::split_paths(path_var?) {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let candidate = dir.join(name);
        let executable = fs::metadata(&candidate)
            .is_ok_and(|m| !m.is_dir() && m.permissions().mode() & 0o111 != 0);
        if executable {
            return candidate.is_absolute().then_some(candidate);
        }
    }
    None
}

/// Whether `data` is a PEM-armoured private key (OpenSSH, PKCS#1 or PKCS#8), the formats
/// ssh-add and libssh2 load.
fn is_private_key(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    text.lines().any(|l| {
        let l = l.trim();
        l.starts_with("-----BEGIN ") && l.ends_with("PRIVATE KEY-----")
    })
}

/// Key files under `root` as upstream walks them, appended to `out`: lexical order,
/// directories skipped, and any entry whose name starts with `..` (Kubernetes' `..data` links)
/// left out with its subtree. Stops at the first entry it cannot read, returning it, with the
/// files before it already in `out` (upstream adds those before it gets there).
fn key_files(root: &Path, out: &mut Vec<PathBuf>) -> Result<(), (PathBuf, std::io::Error)> {
    let at = |e| (root.to_path_buf(), e);
    let meta = fs::metadata(root).map_err(at)?;
    if !meta.is_dir() {
        out.push(root.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<_> = fs::read_dir(root)
        .and_then(std::iter::Iterator::collect::<Result<_, _>>)
        .map_err(at)?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for e in entries {
        if e.file_name().to_string_lossy().starts_with("..") {
            continue;
        }
        let path = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => key_files(&path, out)?,
            Ok(_) => out.push(path),
            Err(err) => return Err((path, err)),
        }
    }
    Ok(())
}

/// `git config --global http.cookiefile <path>`: written to the user's global git config.
fn set_global_cookiefile(path: &str) -> Result<(), String> {
    let global = match git2::Config::find_global() {
        Ok(p) => p,
        Err(_) => {
            let home = std::env::var_os("HOME").ok_or("$HOME is not set")?;
            PathBuf::from(home).join(".gitconfig")
        }
    };
    let mut cfg = git2::Config::open(&global).map_err(|e| e.message().to_string())?;
    cfg.set_str("http.cookiefile", path)
        .map_err(|e| e.message().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn options(tmp: &Path) -> (Options, Settings) {
        let o = Options {
            src_root: tmp.join("src").to_string_lossy().into_owned(),
            log: tmp.join("clone.json").to_string_lossy().into_owned(),
            ..Default::default()
        };
        let s = Settings {
            retry_delays: vec![],
            tmp_dir: tmp.join("tmp"),
            ..Default::default()
        };
        (o, s)
    }

    const PEM: &str =
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbg==\n-----END OPENSSH PRIVATE KEY-----\n";

    #[test]
    fn look_path_like_go() {
        let d = tempfile::tempdir().unwrap();
        let (bin, plain) = (d.path().join("bin"), d.path().join("plain"));
        fs::create_dir_all(&bin).unwrap();
        fs::create_dir_all(plain.join("ssh")).unwrap();
        fs::write(bin.join("ssh"), "").unwrap();
        let path = |dirs: &[&Path]| std::env::join_paths(dirs).unwrap();
        assert_eq!(
            look_path("ssh", Some(&path(&[&bin]))),
            None,
            "not executable"
        );
        fs::set_permissions(bin.join("ssh"), fs::Permissions::from_mode(0o755)).unwrap();
        // A directory named ssh does not count; the next entry is searched.
        assert_eq!(
            look_path("ssh", Some(&path(&[&plain, &bin]))),
            Some(bin.join("ssh"))
        );
        assert_eq!(look_path("ssh", Some(&path(&[Path::new("rel")]))), None);
        assert_eq!(look_path("ssh", None), None);
    }

    #[test]
    fn ssh_add_failures_read_as_ssh_add_prints_them() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("missing");
        assert_eq!(
            ssh_add_check(&missing),
            Err((
                format!("{}: No such file or directory\n", missing.display()),
                "exit status 1".into()
            ))
        );
        assert_eq!(
            ssh_add_check(d.path()),
            Err((
                format!(
                    "Error loading key \"{}\": Is a directory\n",
                    d.path().display()
                ),
                "exit status 1".into()
            ))
        );
        let public = d.path().join("k.pub");
        fs::write(&public, "ssh-ed25519 AAAA").unwrap();
        assert_eq!(
            ssh_add_check(&public),
            Err((
                format!(
                    "Error loading key \"{}\": invalid format\n",
                    public.display()
                ),
                "exit status 1".into()
            ))
        );
        let key = d.path().join("k");
        fs::write(&key, PEM).unwrap();
        assert_eq!(ssh_add_check(&key), Ok(()));
    }

    #[test]
    fn walk_names_what_it_cannot_read_and_lists_files_in_order() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("sub")).unwrap();
        for f in ["b", "sub/a", "..data"] {
            fs::write(d.path().join(f), PEM).unwrap();
        }
        let mut out = Vec::new();
        let err = key_files(&d.path().join("nope"), &mut out).unwrap_err();
        assert_eq!(err.0, d.path().join("nope"));
        assert!(out.is_empty());
        key_files(d.path(), &mut out).unwrap();
        assert_eq!(out, [d.path().join("b"), d.path().join("sub/a")]);
    }

    #[test]
    fn missing_key_path_records_only_the_agent() {
        let d = tempfile::tempdir().unwrap();
        let (mut o, s) = options(d.path());
        let key = d.path().join("key");
        fs::write(&key, PEM).unwrap();
        o.key_files = vec![
            key.to_string_lossy().into_owned(),
            d.path().join("missing").to_string_lossy().into_owned(),
        ];
        o.host_fingerprints = vec!["h ssh-ed25519 AAAA".into()];
        let records = create_records(&o, &s);
        assert_eq!(records.len(), 1);
        assert!(records[0].failed);
        let want = [
            Command {
                command: "ssh-agent".into(),
                ..Default::default()
            },
            Command {
                command: format!("ssh-add {}", go_quote(&key.to_string_lossy())),
                ..Default::default()
            },
        ];
        assert_eq!(records[0].commands, want);
        assert!(!s.tmp_dir.exists(), "setup stopped before known_hosts");
    }

    #[test]
    fn unreadable_secrets_fail_the_setup_without_a_command() {
        let d = tempfile::tempdir().unwrap();
        let (mut o, s) = options(d.path());
        o.oauth_token_file = d.path().join("missing").to_string_lossy().into_owned();
        let records = create_records(&o, &s);
        assert_eq!(records.len(), 1);
        assert!(records[0].failed);
        assert!(records[0].commands.is_empty());

        let (mut o, _) = options(d.path());
        o.github_app_id = "42".into();
        o.github_api_endpoints = vec!["https://api.github.com".into()];
        o.host_fingerprints = vec!["h ssh-ed25519 AAAA".into()];
        for key in ["missing", "not-a-key"] {
            fs::write(d.path().join("not-a-key"), "nope").unwrap();
            o.github_app_private_key_file = d.path().join(key).to_string_lossy().into_owned();
            let records = create_records(&o, &s);
            assert_eq!(records.len(), 1);
            assert!(records[0].failed);
            let cmds: Vec<&str> = records[0]
                .commands
                .iter()
                .map(|c| c.command.as_str())
                .collect();
            assert_eq!(cmds.last(), Some(&"golang: lookup ssh path"), "{key}");
        }
    }

    #[test]
    fn fingerprints_give_the_shared_env_keys_do_not() {
        let d = tempfile::tempdir().unwrap();
        let (mut o, s) = options(d.path());
        let key = d.path().join("key");
        fs::write(&key, PEM).unwrap();
        o.key_files = vec![key.to_string_lossy().into_owned()];
        let setup = set_up(&o, &s, &mut Vec::new()).expect("setup");
        assert!(setup.env.is_empty());

        o.host_fingerprints = vec!["h ssh-ed25519 AAAA".into()];
        let mut commands = Vec::new();
        let setup = set_up(&o, &s, &mut commands).expect("setup");
        let ssh = look_path("ssh", std::env::var_os("PATH").as_deref());
        let known_hosts = s.tmp_dir.join("known_hosts");
        assert_eq!(setup.env, [git_ssh_command(ssh.as_deref(), &known_hosts)]);
        assert_eq!(
            git_ssh_command(Some(Path::new("/usr/bin/ssh")), &known_hosts),
            format!(
                "GIT_SSH_COMMAND=/usr/bin/ssh -o UserKnownHostsFile={}",
                known_hosts.display()
            )
        );
        // No ssh on PATH: upstream's setup fails here; ours names plain `ssh`.
        assert_eq!(
            git_ssh_command(None, Path::new("/tmp/known_hosts")),
            "GIT_SSH_COMMAND=ssh -o UserKnownHostsFile=/tmp/known_hosts"
        );
        let cmds: Vec<&str> = commands.iter().map(|c| c.command.as_str()).collect();
        assert_eq!(cmds[0], "ssh-agent");
        assert_eq!(cmds.last(), Some(&"golang: lookup ssh path"));
    }
}
