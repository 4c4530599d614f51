/*!
Test support for clonerefs: upstream repositories built with the git CLI at fixed dates, the
parity oracle (upstream's documented git command sequence run with the real `git`), a smart-HTTP
git server (`git http-backend` behind a small loopback HTTP server), and comparisons of two
checkouts.
*/
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use pod_utils::prowapi::Refs;

/// Fixed identity and dates so every repository and merge is reproducible.
pub const DATE: &str = "1500000000 +0000";

/// A `git` command with a private HOME, no system config, and file:// allowed for submodules
/// (git >= 2.38.1 refuses it by default; upstream clones over https).
pub fn git_cmd(home: &Path, dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir)
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "protocol.file.allow")
        .env("GIT_CONFIG_VALUE_0", "always")
        .env("GIT_AUTHOR_NAME", "Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.com")
        .env("GIT_COMMITTER_NAME", "Author")
        .env("GIT_COMMITTER_EMAIL", "author@example.com")
        .env("GIT_AUTHOR_DATE", DATE)
        .env("GIT_COMMITTER_DATE", DATE)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE");
    c
}

/// Runs git in `dir`, panicking with its output on failure; returns trimmed stdout.
pub fn git(home: &Path, dir: &Path, args: &[&str]) -> String {
    let out = git_cmd(home, dir).args(args).output().expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A scratch area: a HOME for git, upstream repositories, and two source roots.
pub struct Lab {
    pub tmp: tempfile::TempDir,
}

impl Lab {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        for d in ["home", "repos", "oracle", "ours"] {
            std::fs::create_dir_all(tmp.path().join(d)).expect("mkdir");
        }
        Lab { tmp }
    }
    pub fn home(&self) -> PathBuf {
        self.tmp.path().join("home")
    }
    pub fn repos(&self) -> PathBuf {
        self.tmp.path().join("repos")
    }
    pub fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }
    pub fn git(&self, dir: &Path, args: &[&str]) -> String {
        git(&self.home(), dir, args)
    }

    fn write(&self, repo: &Path, file: &str, content: &str) {
        let p = repo.join(file);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, content).expect("write");
    }

    fn commit(&self, repo: &Path, file: &str, content: &str, msg: &str) -> String {
        self.write(repo, file, content);
        self.git(repo, &["add", "-A"]);
        self.git(repo, &["commit", "-q", "-m", msg]);
        self.git(repo, &["rev-parse", "HEAD"])
    }

    /// The standard upstream repository `repos/<name>` (shas by name in the result):
    /// - master: c1 (README, a.txt; tags v0 light, v1 annotated), c2 (a.txt changed)
    /// - refs/pull/1/head: from c2, adds b.txt (fast-forwardable)
    /// - refs/pull/2/head: from c1, adds c.txt
    /// - refs/pull/3/head: from c1, changes a.txt (conflicts with c2)
    /// - refs/changes/04/4/1: from c1, adds d.txt (a Gerrit-style ref)
    /// - release-1.0: from c1, adds r.txt
    pub fn standard_repo(&self, name: &str) -> BTreeMap<&'static str, String> {
        let repo = self.repos().join(name);
        std::fs::create_dir_all(&repo).expect("mkdir");
        let mut shas = BTreeMap::new();
        self.git(&repo, &["init", "-q", "-b", "master"]);
        // Old git clients over v0 can only want advertised tips; libgit2 speaks v0.
        self.git(
            &repo,
            &["config", "uploadpack.allowReachableSHA1InWant", "true"],
        );
        self.git(&repo, &["config", "http.receivepack", "false"]);
        self.write(&repo, "README", "readme\n");
        let c1 = self.commit(&repo, "a.txt", "one\ntwo\nthree\n", "c1");
        self.git(&repo, &["tag", "v0"]);
        self.git(&repo, &["tag", "-a", "v1", "-m", "version one"]);
        let c2 = self.commit(&repo, "a.txt", "one\nTWO\nthree\n", "c2");
        self.git(&repo, &["checkout", "-q", "-b", "p1", &c2]);
        let p1 = self.commit(&repo, "b.txt", "bee\n", "pull one");
        self.git(&repo, &["checkout", "-q", "-b", "p2", &c1]);
        let p2 = self.commit(&repo, "c.txt", "sea\n", "pull two");
        self.git(&repo, &["checkout", "-q", "-b", "p3", &c1]);
        let p3 = self.commit(&repo, "a.txt", "one\nzwei\nthree\n", "pull three");
        self.git(&repo, &["checkout", "-q", "-b", "p4", &c1]);
        let p4 = self.commit(&repo, "d.txt", "dee\n", "change four");
        self.git(&repo, &["checkout", "-q", "-b", "release-1.0", &c1]);
        let r1 = self.commit(&repo, "r.txt", "release\n", "release work");
        self.git(&repo, &["checkout", "-q", "master"]);
        for (r, sha) in [
            ("refs/pull/1/head", &p1),
            ("refs/pull/2/head", &p2),
            ("refs/pull/3/head", &p3),
            ("refs/changes/04/4/1", &p4),
        ] {
            self.git(&repo, &["update-ref", r, sha]);
        }
        for b in ["p1", "p2", "p3", "p4"] {
            self.git(&repo, &["branch", "-q", "-D", b]);
        }
        shas.insert("c1", c1);
        shas.insert("c2", c2);
        shas.insert("p1", p1);
        shas.insert("p2", p2);
        shas.insert("p3", p3);
        shas.insert("p4", p4);
        shas.insert("r1", r1);
        shas
    }

    /// `repos/<name>` whose branch `with-sub` has submodule `vendor/sub` (file:// URL), which
    /// itself has submodule `leaf`. Returns the superproject path.
    pub fn repo_with_submodules(&self, name: &str) -> PathBuf {
        let leaf = self.repos().join(format!("{name}-leaf"));
        let sub = self.repos().join(format!("{name}-sub"));
        let sup = self.repos().join(name);
        for (d, f) in [(&leaf, "leaf.txt"), (&sub, "sub.txt"), (&sup, "top.txt")] {
            std::fs::create_dir_all(d).expect("mkdir");
            self.git(d, &["init", "-q", "-b", "master"]);
            self.commit(d, f, "content\n", "init");
        }
        let leaf_url = format!("file://{}", leaf.display());
        self.git(&sub, &["submodule", "add", "-q", &leaf_url, "leaf"]);
        self.git(&sub, &["commit", "-q", "-m", "add leaf"]);
        self.git(&sup, &["checkout", "-q", "-b", "with-sub"]);
        let sub_url = format!("file://{}", sub.display());
        self.git(&sup, &["submodule", "add", "-q", &sub_url, "vendor/sub"]);
        self.git(&sup, &["commit", "-q", "-m", "add sub"]);
        self.git(&sup, &["checkout", "-q", "master"]);
        // Leave the served tree without checked-out submodules.
        sup
    }
}

/// One command of the oracle sequence: argv, and whether it runs with only the merge dates
/// in its environment (Go exec with a non-empty env list).
struct Step {
    args: Vec<String>,
    only_env: Vec<(String, String)>,
    retried: bool,
}

/// The outcome of upstream's sequence for one ref run with the git CLI.
#[derive(Debug)]
pub struct OracleResult {
    pub dir: PathBuf,
    pub failed: bool,
    pub failed_command: Option<String>,
}

/// Runs upstream's documented command sequence (contract §1.5) for `refs` under `src_root`
/// with the real git CLI. Fetches are not retried: the oracle only needs the final state.
pub fn oracle_clone(
    home: &Path,
    src_root: &str,
    refs: &Refs,
    user: &str,
    email: &str,
    token: Option<&str>,
) -> OracleResult {
    let dir = PathBuf::from(clonerefs::options::path_for_refs(src_root, refs));
    let mut uri = if !refs.clone_uri.is_empty() {
        refs.clone_uri.clone()
    } else if !refs.repo_link.is_empty() {
        format!("{}.git", refs.repo_link)
    } else {
        format!("https://github.com/{}/{}.git", refs.org, refs.repo)
    };
    if let Some(t) = token {
        if let Some((scheme, rest)) = uri.split_once("://") {
            uri = format!("{scheme}://{t}:x-oauth-basic@{rest}");
        }
    }
    let s = |v: &[&str]| Step {
        args: v.iter().map(std::string::ToString::to_string).collect(),
        only_env: vec![],
        retried: false,
    };
    std::fs::create_dir_all(&dir).expect("mkdir -p");
    let mut steps = vec![s(&["git", "init"])];
    if !user.is_empty() {
        steps.push(s(&["git", "config", "user.name", user]));
    }
    if !email.is_empty() {
        steps.push(s(&["git", "config", "user.email", email]));
    }
    let depth = refs.clone_depth.to_string();
    let mut depth_args: Vec<&str> = vec![];
    if refs.clone_depth > 0 {
        depth_args = vec!["--depth", &depth];
    }
    if !refs.skip_fetch_head {
        let mut a = vec!["git", "fetch"];
        a.extend(&depth_args);
        a.extend([uri.as_str(), "--tags", "--prune"]);
        steps.push(s(&a));
    }
    let (fetch_ref, target) = if refs.base_sha.is_empty() {
        (refs.base_ref.as_str(), "FETCH_HEAD")
    } else {
        (refs.base_sha.as_str(), refs.base_sha.as_str())
    };
    let mut a = vec!["git", "fetch"];
    a.extend(&depth_args);
    a.extend([uri.as_str(), fetch_ref]);
    steps.push(s(&a));
    steps.push(s(&["git", "checkout", target]));
    steps.push(s(&["git", "branch", "--force", &refs.base_ref, target]));
    steps.push(s(&["git", "checkout", &refs.base_ref]));

    let run = |step: &Step| -> bool {
        let mut c = if step.only_env.is_empty() {
            git_cmd(home, &dir)
        } else {
            let mut c = Command::new("git");
            c.current_dir(&dir)
                .env_clear()
                .envs(step.only_env.iter().cloned());
            c
        };
        c.args(&step.args[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c.status().map(|s| s.success()).unwrap_or(false)
    };
    let fail = |step: &Step| OracleResult {
        dir: dir.clone(),
        failed: true,
        failed_command: Some(step.args.join(" ")),
    };
    for step in &steps {
        if !run(step) {
            return fail(step);
        }
    }
    let mut t: i64 = git(home, &dir, &["show", "-s", "--format=format:%ct", "HEAD"])
        .parse()
        .expect("timestamp");
    for p in refs.pulls() {
        let mut r = format!("pull/{}/head", p.number);
        if !p.sha.is_empty() {
            r = p.sha.clone();
        }
        if !p.ref_.is_empty() {
            r = p.ref_.clone();
        }
        let f = s(&["git", "fetch", &uri, &r]);
        if !run(&f) {
            return fail(&f);
        }
        t += 1;
        let target = if p.sha.is_empty() {
            "FETCH_HEAD"
        } else {
            p.sha.as_str()
        };
        let m = Step {
            args: ["git", "merge", "--no-ff", target]
                .iter()
                .map(std::string::ToString::to_string)
                .collect(),
            only_env: vec![
                ("GIT_AUTHOR_DATE".into(), t.to_string()),
                ("GIT_COMMITTER_DATE".into(), t.to_string()),
            ],
            retried: false,
        };
        if !run(&m) {
            return fail(&m);
        }
    }
    if !refs.skip_submodules {
        let sm = s(&["git", "submodule", "update", "--init", "--recursive"]);
        if !run(&sm) {
            return fail(&sm);
        }
    }
    OracleResult {
        dir,
        failed: false,
        failed_command: None,
    }
}

/// What must be identical between the oracle's checkout and ours.
#[derive(Debug, PartialEq, Eq)]
pub struct CheckoutState {
    pub head: String,
    pub tree: String,
    pub branch: String,
    pub refs: String,
    pub status: String,
    pub submodules: String,
    pub head_commit: String,
}

pub fn state(home: &Path, dir: &Path) -> CheckoutState {
    CheckoutState {
        head: git(home, dir, &["rev-parse", "HEAD"]),
        tree: git(home, dir, &["rev-parse", "HEAD^{tree}"]),
        branch: git(home, dir, &["symbolic-ref", "--short", "HEAD"]),
        refs: git(
            home,
            dir,
            &[
                "for-each-ref",
                "--format=%(objectname) %(refname)",
                "refs/heads",
                "refs/tags",
            ],
        ),
        status: git(
            home,
            dir,
            &["status", "--porcelain", "--ignore-submodules=none"],
        ),
        submodules: git(
            home,
            dir,
            &[
                "submodule",
                "foreach",
                "--quiet",
                "--recursive",
                "echo $displaypath $(git rev-parse HEAD) $(git status --porcelain | wc -l)",
            ],
        ),
        head_commit: git(home, dir, &["cat-file", "-p", "HEAD"]),
    }
}

/// The clonerefs binary under test.
pub fn clonerefs_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_clonerefs"))
}

/// The clonerefs command a bench runs: this build's, or `CLONEREFS_BENCH_CMD` (an emulator and
/// a cross-built binary, `qemu-s390x-static target/lab/s390x/clonerefs`).
pub fn bench_clonerefs() -> Command {
    match std::env::var("CLONEREFS_BENCH_CMD") {
        Ok(line) if !line.trim().is_empty() => {
            let mut words = line.split_whitespace();
            let mut cmd = Command::new(words.next().expect("not empty"));
            cmd.args(words);
            cmd
        }
        _ => clonerefs_bin(),
    }
}

/// Runs our binary with `CLONEREFS_OPTIONS` and returns (exit code, records, stderr).
pub fn run_ours(
    home: &Path,
    options: &serde_json::Value,
) -> (i32, Vec<pod_utils::clone::Record>, String) {
    run_ours_with(home, options, &[])
}

/// [`run_ours`] with `env` set, and no proxy variables but those in `env`.
pub fn run_ours_with(
    home: &Path,
    options: &serde_json::Value,
    env: &[(&str, &str)],
) -> (i32, Vec<pod_utils::clone::Record>, String) {
    run_cmd_with(clonerefs_bin(), home, options, env)
}

/// [`run_ours_with`] for any clonerefs command (see [`bench_clonerefs`]).
pub fn run_cmd_with(
    mut cmd: Command,
    home: &Path,
    options: &serde_json::Value,
    env: &[(&str, &str)],
) -> (i32, Vec<pod_utils::clone::Record>, String) {
    for v in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "NO_PROXY",
        "no_proxy",
        "REQUEST_METHOD",
    ] {
        cmd.env_remove(v);
    }
    cmd.env("CLONEREFS_OPTIONS", options.to_string())
        .env("HOME", home)
        .envs(env.iter().copied());
    let out = cmd.output().expect("run clonerefs");
    let log = options["log"].as_str().expect("log path");
    let records = std::fs::read(log)
        .map(|d| serde_json::from_slice(&d).expect("records JSON"))
        .unwrap_or_default();
    (
        out.status.code().unwrap_or(-1),
        records,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A smart-HTTP git server on 127.0.0.1: `git http-backend` (CGI) for every repository under
/// `root`, one thread per connection. Stopped on drop.
pub struct HttpGitServer {
    pub ip: std::net::IpAddr,
    pub port: u16,
    /// Requests without exactly this header `(name, value)` are refused: 401 with a Basic
    /// challenge when `authorization` is missing, 403 otherwise.
    pub required: Option<(String, String)>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl HttpGitServer {
    pub fn start(root: &Path) -> Self {
        Self::start_requiring(root, None)
    }

    pub fn start_requiring(root: &Path, header: Option<(&str, &str)>) -> Self {
        Self::start_with(root, header, std::net::Ipv4Addr::LOCALHOST.into())
    }

    /// Serves on `ip` instead of loopback (a proxy never sees loopback traffic).
    pub fn start_on(root: &Path, ip: std::net::IpAddr) -> Self {
        Self::start_with(root, None, ip)
    }

    fn start_with(root: &Path, header: Option<(&str, &str)>, ip: std::net::IpAddr) -> Self {
        let required = header.map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()));
        let required2 = required.clone();
        let listener = TcpListener::bind((ip, 0)).expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let root = root.to_path_buf();
        let stop2 = stop.clone();
        let handle = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let root = root.clone();
                let required = required2.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &root, required.as_ref());
                });
            }
        });
        HttpGitServer {
            ip,
            port,
            required,
            stop,
            handle: Some(handle),
        }
    }

    pub fn url(&self, repo: &str) -> String {
        format!("http://{}:{}/{repo}", self.ip, self.port)
    }
}

impl Drop for HttpGitServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect((self.ip, self.port));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Serves requests on one connection until the client closes it.
fn serve(conn: TcpStream, root: &Path, required: Option<&(String, String)>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut conn = conn;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        let mut headers: Vec<(String, String)> = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let header = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let mut body = Vec::new();
        if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size)?;
                let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                    .unwrap_or(0);
                let mut chunk = vec![0; n + 2];
                reader.read_exact(&mut chunk)?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            body.resize(len, 0);
            reader.read_exact(&mut body)?;
        }
        if let Some((name, value)) = required {
            match header(name) {
                Some(v) if v == *value => {}
                None if name == "authorization" => {
                    conn.write_all(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\n\r\n")?;
                    continue;
                }
                _ => {
                    conn.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")?;
                    continue;
                }
            }
        }
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let mut cgi = Command::new("git");
        cgi.arg("http-backend")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("GIT_PROJECT_ROOT", root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("REQUEST_METHOD", &method)
            .env("PATH_INFO", path)
            .env("QUERY_STRING", query)
            .env("REMOTE_ADDR", "127.0.0.1")
            .env("CONTENT_LENGTH", body.len().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(ct) = header("content-type") {
            cgi.env("CONTENT_TYPE", ct);
        }
        if let Some(p) = header("git-protocol") {
            cgi.env("GIT_PROTOCOL", p);
        }
        if let Some(enc) = header("content-encoding") {
            cgi.env("HTTP_CONTENT_ENCODING", enc);
        }
        let mut child = cgi.spawn()?;
        let mut stdin = child.stdin.take().expect("stdin");
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&body);
        });
        let mut out = Vec::new();
        child.stdout.take().expect("stdout").read_to_end(&mut out)?;
        let _ = writer.join();
        child.wait()?;
        let split = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| (p, 4))
            .or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|p| (p, 2)));
        let (head, payload) = match split {
            Some((p, n)) => (
                String::from_utf8_lossy(&out[..p]).into_owned(),
                &out[p + n..],
            ),
            None => (String::new(), &out[..]),
        };
        let mut status = "200 OK".to_string();
        let mut resp_headers = String::new();
        for line in head.lines() {
            if let Some(s) = line.strip_prefix("Status:") {
                status = s.trim().to_string();
            } else if !line.is_empty() {
                resp_headers.push_str(line);
                resp_headers.push_str("\r\n");
            }
        }
        write!(
            conn,
            "HTTP/1.1 {status}\r\n{resp_headers}Content-Length: {}\r\n\r\n",
            payload.len()
        )?;
        conn.write_all(payload)?;
        conn.flush()?;
    }
}

/// What clonerefs names in `GIT_SSH_COMMAND`: the first executable `ssh` in an absolute `PATH`
/// directory, as Go's `exec.LookPath` finds it, else plain `ssh`.
pub fn ssh_on_path() -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("ssh"))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| !m.is_dir() && m.permissions().mode() & 0o111 != 0)
        })
        .filter(|p| p.is_absolute())
        .map_or_else(|| "ssh".to_string(), |p| p.display().to_string())
}
