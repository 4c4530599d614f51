/*!
The run sequence (upstream `pkg/clonerefs/run.go`): an environment-setup record, then every ref
cloned by a pool of workers, records kept in completion order and written as compact JSON to
`log`. Clone failures are data in the records; only a write failure or `fail` changes the exit
code.
*/

use std::fs;
use std::io::Write;
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
    let Some((access, tokens, censor)) = set_up(o, settings, &mut setup.commands) else {
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

/// Environment setup (upstream's first record): SSH keys, known hosts, the OAuth token and the
/// global cookie file. Returns `None` when a step failed; its command is already recorded.
fn set_up(
    o: &Options,
    settings: &Settings,
    commands: &mut Vec<Command>,
) -> Option<(Access, TokenSource, Censor)> {
    let mut access = Access {
        pinned_known_hosts: settings.pinned_known_hosts.clone(),
        ..Default::default()
    };
    let mut tokens = TokenSource::None;
    let mut censor = Censor::default();
    let fail = |commands: &mut Vec<Command>, command: String, error: String| {
        commands.push(Command {
            command,
            error,
            ..Default::default()
        });
    };

    // Upstream hands each key to an ssh-agent with `ssh-add`; libssh2 reads the files
    // directly, so each one is checked here to be a private key, where ssh-add would fail.
    for root in &o.key_files {
        let files = match key_files(Path::new(root)) {
            Ok(f) => f,
            Err(e) => {
                fail(
                    commands,
                    format!("ssh-add {}", go_quote(root)),
                    e.to_string(),
                );
                return None;
            }
        };
        for f in files {
            let command = format!("ssh-add {}", go_quote(&f.to_string_lossy()));
            match fs::read(&f) {
                Ok(data) if is_private_key(&data) => {}
                Ok(_) => {
                    let msg = format!(
                        "Error loading key {}: invalid format",
                        go_quote(&f.to_string_lossy())
                    );
                    commands.push(Command {
                        command,
                        output: format!("{msg}\n"),
                        error: "invalid format".to_string(),
                        ..Default::default()
                    });
                    return None;
                }
                Err(e) => {
                    fail(commands, command, e.to_string());
                    return None;
                }
            }
            commands.push(Command {
                command,
                ..Default::default()
            });
            access.key_files.push(f);
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
                fail(
                    commands,
                    format!("golang: read {}", go_quote(&o.oauth_token_file)),
                    e.to_string(),
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
                fail(
                    commands,
                    format!("golang: read {}", go_quote(key_path)),
                    e.to_string(),
                );
                return None;
            }
        };
        censor.add_secret(&String::from_utf8_lossy(&key));
        match AppTokens::new(&o.github_app_id, &key, &o.github_api_endpoints) {
            Ok(app) => tokens = TokenSource::App(std::sync::Arc::new(app)),
            Err(e) => {
                fail(
                    commands,
                    "golang: create GitHub App client".to_string(),
                    censor.censor(&e.to_string()),
                );
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
    Some((access, tokens, censor))
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

/// Key files under `root` as upstream walks them: lexical order, directories skipped, and any
/// entry whose name starts with `..` (Kubernetes' `..data` links) left out with its subtree.
fn key_files(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let meta = fs::metadata(root)?;
    if !meta.is_dir() {
        out.push(root.to_path_buf());
        return Ok(out);
    }
    let mut entries: Vec<_> = fs::read_dir(root)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        if e.file_name().to_string_lossy().starts_with("..") {
            continue;
        }
        let path = e.path();
        if e.file_type()?.is_dir() {
            out.extend(key_files(&path)?);
        } else {
            out.push(path);
        }
    }
    Ok(out)
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
