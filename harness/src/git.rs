/*!
Fixture recipes -> real git repositories with known SHAs. Commits are replayed with the git CLI
under a fixed identity and fixed dates, outside any user configuration, so the same recipe gives
the same SHAs on every machine. Repositories live at a fixed absolute path
(`/tmp/tetrapod-lab/repos/<fixture>/<recipe>`) because submodule URLs are absolute and part of the
hashed content.
*/

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::fixture::{Fixture, RepoRecipe};

pub const REPOS_ROOT: &str = "/tmp/tetrapod-lab/repos";

/// The first commit's date; each further commit is one minute later.
const EPOCH: i64 = 1_700_000_000;

/// A built recipe: where it is and the head SHA of every branch.
#[derive(Debug, Clone)]
pub struct BuiltRepo {
    pub path: PathBuf,
    pub branches: BTreeMap<String, String>,
}

impl BuiltRepo {
    pub fn uri(&self) -> String {
        format!("file://{}", self.path.display())
    }
}

/// Where `recipe` of `fixture` lives.
pub fn repo_path(fixture: &str, recipe: &str) -> PathBuf {
    Path::new(REPOS_ROOT).join(fixture).join(recipe)
}

/// Builds every recipe of the fixture (submodules first) unless already built.
pub fn build_all(f: &Fixture) -> Result<BTreeMap<String, BuiltRepo>> {
    let mut built = BTreeMap::new();
    let mut pending: Vec<&String> = f.repos.keys().collect();
    // Recipes used as submodules must exist before the repos that embed them.
    pending.sort_by_key(|name| {
        !f.repos
            .values()
            .any(|r| r.submodules.values().any(|s| s == *name))
    });
    for name in pending {
        let recipe = &f.repos[name];
        let path = repo_path(&f.name, name);
        // Each pull's branch is published as `refs/pull/<n>/head` in the repo its refs clone.
        let mut pulls = Vec::new();
        for refs in f.job.refs.iter().chain(&f.job.extra_refs) {
            if refs.recipe == *name {
                pulls.extend(refs.pulls.iter().map(|p| (p.number, p.branch.as_str())));
            }
        }
        built.insert(name.clone(), build(&path, recipe, &pulls, &built)?);
    }
    Ok(built)
}

/// Distinguishes the scratch folders of concurrent builds in one process (the lab and the
/// matrix run pods of one fixture for several arches at once).
static SCRATCH: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Builds the repo in a scratch folder, pull refs included, and renames it into place once
/// complete, so a concurrent user never sees a half-built repo or writes to one.
fn build(
    path: &Path,
    recipe: &RepoRecipe,
    pulls: &[(i64, &str)],
    others: &BTreeMap<String, BuiltRepo>,
) -> Result<BuiltRepo> {
    if !path.join(".git/tetrapod-complete").exists() {
        let n = SCRATCH.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        replay(&tmp, recipe, others)
            .with_context(|| format!("building repo {}", path.display()))?;
        for (number, branch) in pulls {
            git(
                &tmp,
                &[
                    "update-ref",
                    &format!("refs/pull/{number}/head"),
                    &format!("refs/heads/{branch}"),
                ],
                0,
            )
            .with_context(|| format!("pull {number} of {}", path.display()))?;
        }
        std::fs::write(tmp.join(".git/tetrapod-complete"), "")?;
        if path.join(".git/tetrapod-complete").exists() {
            // Another build of the same deterministic repo finished first.
            let _ = std::fs::remove_dir_all(&tmp);
        } else {
            // A leftover of an interrupted build (no completion mark) goes.
            let _ = std::fs::remove_dir_all(path);
            std::fs::rename(&tmp, path).or_else(|e| {
                let _ = std::fs::remove_dir_all(&tmp);
                if path.join(".git/tetrapod-complete").exists() {
                    Ok(())
                } else {
                    Err(e)
                }
            })?;
        }
    }
    let mut branches = BTreeMap::new();
    let out = git(
        path,
        &[
            "for-each-ref",
            "--format=%(refname:short) %(objectname)",
            "refs/heads",
        ],
        0,
    )?;
    for line in out.lines() {
        if let Some((b, sha)) = line.split_once(' ') {
            branches.insert(b.to_string(), sha.to_string());
        }
    }
    Ok(BuiltRepo {
        path: path.to_path_buf(),
        branches,
    })
}

fn replay(dir: &Path, recipe: &RepoRecipe, others: &BTreeMap<String, BuiltRepo>) -> Result<()> {
    git(dir, &["init", "-q", "-b", "main"], 0)?;
    let mut known = vec!["main".to_string()];
    let mut current = "main".to_string();
    for (i, c) in recipe.commits.iter().enumerate() {
        let when = EPOCH + 60 * i as i64;
        if c.branch == current {
            // Already there (and `main` has no commit to check out before the first one).
        } else if known.contains(&c.branch) {
            git(dir, &["checkout", "-q", &c.branch], when)?;
        } else {
            let from = c.from.clone().unwrap_or_else(|| "main".into());
            git(dir, &["checkout", "-q", "-b", &c.branch, &from], when)?;
            known.push(c.branch.clone());
        }
        current = c.branch.clone();
        for (file, content) in &c.files {
            let p = dir.join(file);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&p, content)?;
        }
        if i + 1 == recipe.commits.len() && c.branch == "main" {
            for (sub_path, sub) in &recipe.submodules {
                let repo = others
                    .get(sub)
                    .with_context(|| format!("submodule recipe {sub} missing"))?;
                let url = repo.path.display().to_string();
                git(
                    dir,
                    &[
                        "-c",
                        "protocol.file.allow=always",
                        "submodule",
                        "add",
                        "-q",
                        &url,
                        sub_path,
                    ],
                    when,
                )?;
            }
        }
        git(dir, &["add", "-A"], when)?;
        git(
            dir,
            &["commit", "-q", "--allow-empty", "-m", &c.message],
            when,
        )?;
    }
    if current != "main" {
        git(dir, &["checkout", "-q", "main"], 0)?;
    }
    Ok(())
}

/// Runs git in `dir` with a fixed identity and dates, ignoring every user and system config.
fn git(dir: &Path, args: &[&str], when: i64) -> Result<String> {
    let date = format!("@{when} +0000");
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Fixture Author")
        .env("GIT_AUTHOR_EMAIL", "author@fixtures.invalid")
        .env("GIT_COMMITTER_NAME", "Fixture Committer")
        .env("GIT_COMMITTER_EMAIL", "committer@fixtures.invalid")
        .env("GIT_AUTHOR_DATE", &date)
        .env("GIT_COMMITTER_DATE", &date)
        .output()
        .context("could not run git")?;
    if !out.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// HEAD of a checkout and its tracked files, for observations.
pub fn describe_checkout(dir: &Path) -> Result<(String, Vec<String>)> {
    let head = git(dir, &["rev-parse", "HEAD"], 0)?.trim().to_string();
    let files = git(dir, &["ls-files", "--recurse-submodules"], 0)?
        .lines()
        .map(str::to_string)
        .collect();
    Ok((head, files))
}
