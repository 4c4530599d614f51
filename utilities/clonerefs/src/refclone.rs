/*!
Cloning one ref with libgit2 (upstream `pkg/pod-utils/clone.Run`): the same steps, in the same
order, with the same observable result as upstream's git command sequence, each recorded as the
git command line it stands for, after upstream's shared environment (`GIT_SSH_COMMAND=...`
with host fingerprints) and, for merges, the commit dates.

What libgit2 cannot do is done as closely as it can: blobless fetches fetch whole objects, and
sparse checkouts check out every file (the fetch sequence still follows upstream's sparse path).
*/

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use git2::build::CheckoutBuilder;
use git2::{
    ConfigLevel, ErrorCode, MergeOptions, ObjectType, Oid, Repository, Signature,
    SubmoduleUpdateOptions, Time,
};
use pod_utils::clone::{Command, Record};
use pod_utils::prowapi::Refs;

use crate::auth::Censor;
use crate::fetch::{Access, TokenSource, fetch_head_and_tags, fetch_named, is_local_url};
use crate::ghapp::APP_USER;
use crate::mergemsg::{MergeSource, merge_message};

/// Everything a clone needs besides the ref.
#[derive(Clone, Copy)]
pub struct CloneConfig<'a> {
    pub src_root: &'a str,
    pub git_user_name: &'a str,
    pub git_user_email: &'a str,
    pub cookie_path: &'a str,
    /// Keys, host fingerprints and cookies (no userinfo: that comes from `tokens` per org).
    pub access: &'a Access,
    pub tokens: &'a TokenSource,
    pub censor: &'a Censor,
    /// Upstream's shared environment (`GIT_SSH_COMMAND=...`), written into every command line.
    pub env: &'a [String],
    pub retry_delays: &'a [Duration],
}

/// A failed step: what it printed and why it failed.
pub(crate) struct StepError {
    error: String,
}

impl From<git2::Error> for StepError {
    fn from(e: git2::Error) -> Self {
        StepError {
            error: e.message().to_string(),
        }
    }
}

impl From<std::io::Error> for StepError {
    fn from(e: std::io::Error) -> Self {
        StepError {
            error: e.to_string(),
        }
    }
}

impl From<String> for StepError {
    fn from(error: String) -> Self {
        StepError { error }
    }
}

/// Collects the recorded commands; every string goes through the censor.
struct Recorder<'a> {
    censor: &'a Censor,
    /// Written before each command's own variables, as upstream runs them with it.
    env: &'a [String],
    commands: Vec<Command>,
}

/// Marks that a step failed (already recorded).
struct Failed;

impl Recorder<'_> {
    fn push(&mut self, line: String, output: &str, error: &str, started: Instant) {
        self.commands.push(Command {
            command: self.censor.censor(&line),
            output: self.censor.censor(output),
            error: self.censor.censor(error),
            duration: nanos(started.elapsed()),
        });
    }

    /// The command line for `args` run in `pwd` with the shared environment and `extra_env`.
    fn line(&self, pwd: &str, extra_env: &[String], args: &[&str]) -> String {
        let env: Vec<String> = self.env.iter().chain(extra_env).cloned().collect();
        command_line(pwd, &env, args)
    }

    /// Runs one step recorded as `PWD=<pwd> <env> <cmd> <args>` (upstream's exact format).
    fn step<T>(
        &mut self,
        pwd: &str,
        extra_env: &[String],
        args: &[&str],
        f: impl FnOnce(&mut String) -> Result<T, StepError>,
    ) -> Result<T, Failed> {
        let started = Instant::now();
        let mut output = String::new();
        let res = f(&mut output);
        let line = self.line(pwd, extra_env, args);
        match res {
            Ok(v) => {
                self.push(line, &output, "", started);
                Ok(v)
            }
            Err(e) => {
                self.push(line, &output, &e.error, started);
                Err(Failed)
            }
        }
    }

    /// Like [`Recorder::step`], retried after each of `delays`; only the last attempt is
    /// recorded, with a duration covering all of them (upstream's `gitFetch` retry).
    fn retried<T>(
        &mut self,
        pwd: &str,
        args: &[&str],
        delays: &[Duration],
        mut f: impl FnMut(&mut String) -> Result<T, StepError>,
    ) -> Result<T, Failed> {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            let mut output = String::new();
            match f(&mut output) {
                Ok(v) => {
                    self.push(self.line(pwd, &[], args), &output, "", started);
                    return Ok(v);
                }
                Err(e) => {
                    if let Some(d) = delays.get(attempt) {
                        attempt += 1;
                        std::thread::sleep(*d);
                        continue;
                    }
                    self.push(self.line(pwd, &[], args), &output, &e.error, started);
                    return Err(Failed);
                }
            }
        }
    }
}

fn command_line(pwd: &str, env: &[String], args: &[&str]) -> String {
    let (cmd, rest) = args.split_first().map_or(("", &[][..]), |(c, r)| (*c, r));
    format!("PWD={pwd} {} {cmd} {}", env.join(" "), rest.join(" "))
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Clones `refs` and returns its record. Failures are data: the record is marked failed and
/// keeps the commands up to the failing one.
pub fn clone_ref(cfg: &CloneConfig<'_>, refs: &Refs) -> Record {
    let started = Instant::now();
    let mut censor = cfg.censor.clone();
    let userinfo = match cfg.tokens {
        TokenSource::None => None,
        TokenSource::OAuth(t) => Some((t.clone(), "x-oauth-basic".to_string())),
        TokenSource::App(app) => match app.token(&refs.org) {
            Ok(t) => {
                censor.add_secret(&t);
                censor.set_token(&t);
                Some((APP_USER.to_string(), t))
            }
            Err(e) => {
                // Upstream's quirk: no commands, and the record is not marked failed.
                tracing::warn!(error = %censor.censor(&e.to_string()), org = %refs.org, "Failed to get a token for the org");
                return Record {
                    refs: refs.clone(),
                    ..Default::default()
                };
            }
        },
    };
    let access = Access {
        userinfo,
        ..cfg.access.clone()
    };
    let cfg = CloneConfig {
        access: &access,
        censor: &censor,
        ..*cfg
    };
    let mut rec = Recorder {
        censor: &censor,
        env: cfg.env,
        commands: Vec::new(),
    };
    let outcome = clone_steps(&cfg, refs, &mut rec);
    let mut record = Record {
        refs: refs.clone(),
        commands: rec.commands,
        ..Default::default()
    };
    match outcome {
        Ok(final_sha) => {
            record.final_sha = final_sha.unwrap_or_default();
            record.duration = nanos(started.elapsed());
        }
        Err(Failed) => record.failed = true,
    }
    record
}

fn clone_steps(
    cfg: &CloneConfig<'_>,
    refs: &Refs,
    rec: &mut Recorder<'_>,
) -> Result<Option<String>, Failed> {
    let dir = crate::options::path_for_refs(cfg.src_root, refs);
    let url = cfg.access.fetch_url(&crate::auth::remote_uri(refs));
    let delays = cfg.retry_delays;

    rec.step("/", &[], &["mkdir", "-p", &dir], |_| {
        std::fs::create_dir_all(&dir)?;
        Ok(())
    })?;
    let repo = rec.step(&dir, &[], &["git", "init"], |out| {
        let existed = Path::new(&dir).join(".git").exists();
        let repo = Repository::init(&dir)?;
        let gitdir =
            std::fs::canonicalize(repo.path()).unwrap_or_else(|_| repo.path().to_path_buf());
        let verb = if existed {
            "Reinitialized existing"
        } else {
            "Initialized empty"
        };
        out.push_str(&format!("{verb} Git repository in {}/\n", gitdir.display()));
        Ok(repo)
    })?;
    let set_local = |key: &str, value: &str| -> Result<(), StepError> {
        repo.config()?
            .open_level(ConfigLevel::Local)?
            .set_str(key, value)?;
        Ok(())
    };
    if !cfg.git_user_name.is_empty() {
        rec.step(
            &dir,
            &[],
            &["git", "config", "user.name", cfg.git_user_name],
            |_| set_local("user.name", cfg.git_user_name),
        )?;
    }
    if !cfg.git_user_email.is_empty() {
        rec.step(
            &dir,
            &[],
            &["git", "config", "user.email", cfg.git_user_email],
            |_| set_local("user.email", cfg.git_user_email),
        )?;
    }
    if !cfg.cookie_path.is_empty() && refs.skip_submodules {
        rec.step(
            &dir,
            &[],
            &["git", "config", "http.cookiefile", cfg.cookie_path],
            |_| set_local("http.cookiefile", cfg.cookie_path),
        )?;
    }

    let sparse = refs
        .sparse_checkout_files
        .as_ref()
        .is_some_and(|f| !f.is_empty());
    // libgit2's local transport cannot make shallow fetches: local remotes get full history
    // (same commits checked out, deeper log) and the record says so by leaving out --depth.
    let depth = if is_local_url(&url) {
        0
    } else {
        refs.clone_depth.max(0)
    };
    let depth_str = depth.to_string();
    let mut depth_args: Vec<&str> = Vec::new();
    if depth > 0 {
        depth_args = vec!["--depth", &depth_str];
    }
    if !(refs.skip_fetch_head || sparse) {
        let mut args = vec!["git", "fetch"];
        args.extend(&depth_args);
        args.extend([url.as_str(), "--tags", "--prune"]);
        rec.retried(&dir, &args, delays, |out| {
            fetch_head_and_tags(&repo, cfg.access, &url, depth, out)
        })?;
    }
    let (fetch_ref, target_is_sha) = if refs.base_sha.is_empty() {
        (refs.base_ref.as_str(), false)
    } else {
        (refs.base_sha.as_str(), true)
    };
    let mut args = vec!["git", "fetch"];
    args.extend(&depth_args);
    if sparse {
        args.push("--no-tags");
    }
    args.extend([url.as_str(), fetch_ref]);
    let base = rec.retried(&dir, &args, delays, |out| {
        fetch_named(&repo, cfg.access, &url, fetch_ref, depth, out)
    })?;
    let target = if target_is_sha {
        refs.base_sha.as_str()
    } else {
        "FETCH_HEAD"
    };

    let base_commit = rec.step(&dir, &[], &["git", "checkout", target], |out| {
        let commit = repo.find_object(base.oid, None)?.peel_to_commit()?;
        let mut co = CheckoutBuilder::new();
        co.safe();
        repo.checkout_tree(commit.as_object(), Some(&mut co))?;
        repo.set_head_detached(commit.id())?;
        out.push_str(&format!(
            "HEAD is now at {} {}\n",
            &commit.id().to_string()[..7],
            commit.summary().unwrap_or_default()
        ));
        Ok(commit.id())
    })?;
    rec.step(
        &dir,
        &[],
        &["git", "branch", "--force", &refs.base_ref, target],
        |_| {
            let commit = repo.find_commit(base_commit)?;
            repo.branch(&refs.base_ref, &commit, true)?;
            Ok(())
        },
    )?;
    rec.step(&dir, &[], &["git", "checkout", &refs.base_ref], |out| {
        repo.set_head(&format!("refs/heads/{}", refs.base_ref))?;
        out.push_str(&format!("Switched to branch '{}'\n", refs.base_ref));
        Ok(())
    })?;

    // Upstream reads the committer time with `git show -s --format=format:%ct HEAD`.
    let mut timestamp = repo
        .head()
        .and_then(|h| h.peel_to_commit())
        .map_or_else(|_| unix_now(), |c| c.committer().when().seconds());

    for pull in refs.pulls() {
        let mut pull_ref = format!("pull/{}/head", pull.number);
        if !pull.sha.is_empty() {
            pull_ref = pull.sha.clone();
        }
        if !pull.ref_.is_empty() {
            pull_ref = pull.ref_.clone();
        }
        let fetched = rec.retried(&dir, &["git", "fetch", &url, &pull_ref], delays, |out| {
            fetch_named(&repo, cfg.access, &url, &pull_ref, 0, out)
        })?;
        timestamp += 1;
        let env = vec![
            format!("GIT_AUTHOR_DATE={timestamp}"),
            format!("GIT_COMMITTER_DATE={timestamp}"),
        ];
        let (merge_arg, source) = if pull.sha.is_empty() {
            (
                "FETCH_HEAD",
                MergeSource::FetchHead {
                    remote_ref: &fetched.remote_ref,
                    url: &url,
                },
            )
        } else {
            (pull.sha.as_str(), MergeSource::Commit(&pull.sha))
        };
        rec.step(&dir, &env, &["git", "merge", "--no-ff", merge_arg], |out| {
            // `git merge <sha>` resolves what was typed; FETCH_HEAD is what was fetched.
            let their = if pull.sha.is_empty() {
                fetched.oid
            } else {
                repo.revparse_single(&pull.sha)
                    .map_err(|_| format!("merge: {} - not something we can merge", pull.sha))?
                    .id()
            };
            merge_no_ff(&repo, &refs.base_ref, their, &source, timestamp, out)
        })?;
    }

    if !refs.skip_submodules {
        rec.step(
            &dir,
            &[],
            &["git", "submodule", "update", "--init", "--recursive"],
            |out| {
                // git never puts the token into submodule URLs; offering it to whatever host
                // a .gitmodules names would leak it.
                let without_token = Access {
                    userinfo: None,
                    ..cfg.access.clone()
                };
                update_submodules(&repo, &without_token, out)
            },
        )?;
    }

    match repo.head().and_then(|h| h.peel_to_commit()) {
        Ok(c) => Ok(Some(c.id().to_string())),
        Err(e) => {
            tracing::warn!(error = %cfg.censor.censor(e.message()), "Failed to read final SHA");
            Ok(None)
        }
    }
}

/// `git merge --no-ff <their>` with the commit dated `timestamp` (+0000), the identity from the
/// repository's config, and git's message.
fn merge_no_ff(
    repo: &Repository,
    branch: &str,
    their: Oid,
    source: &MergeSource<'_>,
    timestamp: i64,
    out: &mut String,
) -> Result<(), StepError> {
    let their_obj = repo.find_object(their, None)?;
    let tag_message = their_obj
        .as_tag()
        .map(|t| t.message().unwrap_or_default().to_string());
    let their_commit = their_obj.peel_to_commit()?;
    let head_commit = repo.head()?.peel_to_commit()?;
    if their_commit.id() == head_commit.id()
        || repo.graph_descendant_of(head_commit.id(), their_commit.id())?
    {
        out.push_str("Already up to date.\n");
        return Ok(());
    }
    match repo.merge_base(head_commit.id(), their_commit.id()) {
        Ok(_) => {}
        Err(e) if e.code() == ErrorCode::NotFound => {
            out.push_str("fatal: refusing to merge unrelated histories\n");
            return Err("refusing to merge unrelated histories".to_string().into());
        }
        Err(e) => return Err(e.into()),
    }
    let annotated = repo.find_annotated_commit(their_commit.id())?;
    let mut mo = MergeOptions::new();
    mo.find_renames(true);
    let mut co = CheckoutBuilder::new();
    co.safe().allow_conflicts(true).conflict_style_merge(true);
    repo.merge(&[&annotated], Some(&mut mo), Some(&mut co))?;
    let mut index = repo.index()?;
    if index.has_conflicts() {
        let mut paths: Vec<String> = Vec::new();
        for c in index.conflicts()? {
            let c = c?;
            if let Some(e) = c.our.as_ref().or(c.their.as_ref()).or(c.ancestor.as_ref()) {
                paths.push(String::from_utf8_lossy(&e.path).into_owned());
            }
        }
        for p in &paths {
            out.push_str(&format!(
                "Auto-merging {p}\nCONFLICT (content): Merge conflict in {p}\n"
            ));
        }
        out.push_str("Automatic merge failed; fix conflicts and then commit the result.\n");
        return Err(format!("merge conflict in {}", paths.join(", ")).into());
    }
    index.write()?;
    let tree = repo.find_tree(index.write_tree()?)?;
    let config = repo.config()?.snapshot()?;
    let (Ok(name), Ok(email)) = (
        config.get_string("user.name"),
        config.get_string("user.email"),
    ) else {
        out.push_str("Author identity unknown\n\n*** Please tell me who you are.\n");
        return Err("unable to auto-detect email address".to_string().into());
    };
    let sig = Signature::new(&name, &email, &Time::new(timestamp, 0))?;
    let message = merge_message(source, branch, tag_message.as_deref());
    repo.commit(
        Some("HEAD"),
        &sig,
        &sig,
        &message,
        &tree,
        &[&head_commit, &their_commit],
    )?;
    repo.cleanup_state()?;
    out.push_str("Merge made by libgit2.\n");
    Ok(())
}

/// `git submodule update --init --recursive`: clone every submodule and check out the commit
/// the superproject records, depth first.
fn update_submodules(
    repo: &Repository,
    access: &Access,
    out: &mut String,
) -> Result<(), StepError> {
    for mut sm in repo.submodules()? {
        let path = sm.path().to_string_lossy().into_owned();
        let url = sm.url().unwrap_or_default().to_string();
        let mut opts = SubmoduleUpdateOptions::new();
        let (mut fo, cookie) = access.fetch_options(&url)?;
        let headers: Vec<&str> = cookie.iter().map(String::as_str).collect();
        fo.custom_headers(&headers);
        opts.fetch(fo);
        sm.update(true, Some(&mut opts))?;
        let sub = sm.open()?;
        let head = sub.head()?.peel(ObjectType::Commit)?.id();
        out.push_str(&format!("Submodule path '{path}': checked out '{head}'\n"));
        update_submodules(&sub, access, out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_strings_like_upstream() {
        assert_eq!(command_line("", &[], &[]), "PWD=   ");
        assert_eq!(
            command_line(
                "abc",
                &["d=e".into(), "f=g".into()],
                &["echo", "hij", "klm"]
            ),
            "PWD=abc d=e f=g echo hij klm"
        );
        assert_eq!(
            command_line("/", &[], &["mkdir", "-p", "/d"]),
            "PWD=/  mkdir -p /d"
        );
    }

    #[test]
    fn shared_env_comes_first_on_every_line() {
        let mut censor = Censor::default();
        censor.set_token("tok");
        let env = ["GIT_SSH_COMMAND=/usr/bin/ssh -o UserKnownHostsFile=/tmp/known_hosts".into()];
        let mut rec = Recorder {
            censor: &censor,
            env: &env,
            commands: Vec::new(),
        };
        let dates = ["GIT_AUTHOR_DATE=2".into(), "GIT_COMMITTER_DATE=2".into()];
        let ok = |_: &mut String| Ok::<_, StepError>(());
        rec.step("/", &[], &["mkdir", "-p", "/d"], ok).ok();
        rec.step("/d", &dates, &["git", "merge", "--no-ff", "FETCH_HEAD"], ok)
            .ok();
        rec.retried("/d", &["git", "fetch", "https://tok@h/r", "m"], &[], ok)
            .ok();
        let lines: Vec<&str> = rec.commands.iter().map(|c| c.command.as_str()).collect();
        let ssh = "GIT_SSH_COMMAND=/usr/bin/ssh -o UserKnownHostsFile=/tmp/known_hosts";
        assert_eq!(
            lines,
            [
                format!("PWD=/ {ssh} mkdir -p /d"),
                format!(
                    "PWD=/d {ssh} GIT_AUTHOR_DATE=2 GIT_COMMITTER_DATE=2 git merge --no-ff FETCH_HEAD"
                ),
                format!("PWD=/d {ssh} git fetch https://CENSORED@h/r m"),
            ]
        );
    }

    #[test]
    fn retries_record_only_the_last_attempt() {
        let censor = Censor::default();
        let mut rec = Recorder {
            censor: &censor,
            env: &[],
            commands: Vec::new(),
        };
        let mut calls = 0;
        let res = rec.retried(
            "/d",
            &["git", "fetch", "u", "r"],
            &[Duration::ZERO; 2],
            |out| {
                calls += 1;
                out.push_str(&format!("attempt {calls}\n"));
                if calls < 3 {
                    Err(StepError::from("nope".to_string()))
                } else {
                    Ok(())
                }
            },
        );
        assert!(res.is_ok());
        assert_eq!(calls, 3);
        assert_eq!(rec.commands.len(), 1);
        assert_eq!(rec.commands[0].output, "attempt 3\n");
        assert_eq!(rec.commands[0].error, "");

        let mut calls = 0;
        let res = rec.retried(
            "/d",
            &["git", "fetch", "u", "r"],
            &[Duration::ZERO; 2],
            |out| {
                calls += 1;
                out.push_str("x\n");
                Err::<(), _>(StepError::from(format!("fail {calls}")))
            },
        );
        assert!(res.is_err());
        assert_eq!(calls, 3);
        assert_eq!(rec.commands[1].error, "fail 3");
        assert_eq!(rec.commands[1].command, "PWD=/d  git fetch u r");
    }
}
