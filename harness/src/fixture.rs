/*!
The fixture schema: one TOML file per job in `fixtures/`, declarative, unknown keys rejected.
A fixture says what Prow would know about the job (the JobSpec and its decoration), how to build
the git repositories it clones, and what each test container does (a `fixture-job` script).
*/

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    /// File stem: the golden's name.
    #[serde(skip)]
    pub name: String,
    /// One line: the behaviour this fixture pins.
    pub description: String,
    pub job: Job,
    #[serde(default)]
    pub decoration: Decoration,
    /// Git repositories the refs clone, by name.
    #[serde(default)]
    pub repos: BTreeMap<String, RepoRecipe>,
    /// Secret volumes: name -> file name -> content.
    #[serde(default)]
    pub secrets: BTreeMap<String, BTreeMap<String, String>>,
    /// Test containers, in order (one is renamed `test`, as Prow does).
    pub containers: Vec<Container>,
    /// Deletes the pod this many milliseconds after the test containers start: SIGTERM to every
    /// running container, as the kubelet does.
    #[serde(default)]
    pub delete_after_ms: Option<u64>,
    /// The cluster sends traffic through a forward proxy: every container gets `HTTP_PROXY`,
    /// `HTTPS_PROXY` and `NO_PROXY` (as a cluster-wide proxy injector sets them), and the
    /// storage server's name resolves only inside the proxy. Needs s3 storage, the one server
    /// every backend runs on the host.
    #[serde(default)]
    pub proxy: bool,
    /// Log messages (a JSON line's `msg`) that a real cluster writes to the pod's files or not
    /// depending on timing alone: the kubelet signals a deleted pod's containers in parallel, so
    /// whether entrypoint logs its interrupt before sidecar's best-effort upload snapshots the
    /// process log is a race, upstream's too. Such lines are left out of uploaded objects and
    /// pod files (never of container output, where they always appear).
    #[serde(default)]
    pub racy_lines: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// periodic, postsubmit, presubmit or batch (or anything else, to test rejection).
    #[serde(rename = "type")]
    pub type_: String,
    pub name: String,
    #[serde(default = "default_build_id")]
    pub build_id: String,
    #[serde(default)]
    pub refs: Option<RefsSpec>,
    #[serde(default)]
    pub extra_refs: Vec<RefsSpec>,
}

fn default_build_id() -> String {
    "1700000000000000001".to_string()
}

/// A ref to clone. SHAs are resolved from the recipe, so fixtures stay readable.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefsSpec {
    pub org: String,
    pub repo: String,
    /// Name of a recipe in `[repos]`; a missing name makes the clone fail (unreachable remote).
    pub recipe: String,
    pub base_ref: String,
    /// Pin the base to the branch head's SHA (`base_sha`), as presubmits usually do.
    #[serde(default)]
    pub pin_base_sha: bool,
    #[serde(default)]
    pub pulls: Vec<PullSpec>,
    #[serde(default)]
    pub path_alias: Option<String>,
    #[serde(default)]
    pub workdir: bool,
    #[serde(default)]
    pub skip_submodules: bool,
    #[serde(default)]
    pub clone_depth: i64,
    #[serde(default)]
    pub skip_fetch_head: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullSpec {
    pub number: i64,
    /// Branch of the recipe that holds the pull's commits (also published as refs/pull/N/head).
    pub branch: String,
    /// Give the pull's SHA (default) or leave it empty so only `pull/N/head` is fetched.
    #[serde(default = "yes")]
    pub with_sha: bool,
}

fn yes() -> bool {
    true
}

/// How Prow decorates the job.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decoration {
    /// Go duration; scaled for emulation by the backend.
    #[serde(default = "default_timeout")]
    pub timeout: String,
    #[serde(default = "default_grace")]
    pub grace_period: String,
    /// `gs` (the default), `s3` or `local`; anything else is a parse error.
    #[serde(default)]
    pub storage: StorageKind,
    #[serde(default = "default_strategy")]
    pub path_strategy: String,
    #[serde(default)]
    pub default_org: String,
    #[serde(default)]
    pub default_repo: String,
    #[serde(default)]
    pub path_prefix: String,
    #[serde(default)]
    pub compress_file_types: Vec<String>,
    #[serde(default)]
    pub media_types: BTreeMap<String, String>,
    #[serde(default)]
    pub censor_secrets: bool,
    /// decoration_config.censoring_options, passed through.
    #[serde(default)]
    pub censoring_options: Option<toml::Table>,
    #[serde(default)]
    pub upload_ignores_interrupts: bool,
    #[serde(default)]
    pub skip_cloning: bool,
    /// decoration_config.run_as_user / run_as_group / fs_group: the pod's security context.
    #[serde(default)]
    pub run_as_user: Option<u32>,
    #[serde(default)]
    pub run_as_group: Option<u32>,
    #[serde(default)]
    pub fs_group: Option<u32>,
}

fn default_timeout() -> String {
    "60s".into()
}
fn default_grace() -> String {
    "5s".into()
}

/// Where the fixture's pod uploads, as the fixture names it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// A `gs://` bucket on fake-gcs-server.
    #[default]
    Gs,
    /// An `s3://` bucket on moto.
    S3,
    /// `local_output_dir`, no bucket.
    Local,
}
fn default_strategy() -> String {
    "explicit".into()
}

impl Default for Decoration {
    fn default() -> Self {
        toml::from_str("").expect("all decoration fields have defaults")
    }
}

/// Commits on branches, replayed in order with fixed dates so SHAs never change.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoRecipe {
    pub commits: Vec<CommitSpec>,
    /// Submodules of the default branch's last commit: path -> recipe name.
    #[serde(default)]
    pub submodules: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitSpec {
    /// Branch to commit on; created from `from` (default: main) when new.
    #[serde(default = "main_branch")]
    pub branch: String,
    #[serde(default)]
    pub from: Option<String>,
    pub message: String,
    /// Files written (path -> content) before committing.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

fn main_branch() -> String {
    "main".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Container {
    pub name: String,
    /// The `fixture-job` script (see fixtures/job).
    #[serde(default)]
    pub steps: Vec<String>,
    /// Instead of `fixture-job` and its steps: the test command entrypoint wraps, as is (a
    /// missing or non-executable one, to pin start errors).
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Secret volumes mounted into this container (censored when censor_secrets is set).
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Extra environment for the container, before the downward API's.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The container's own securityContext.runAsUser / runAsGroup (a root build container in
    /// a nonroot pod, say).
    #[serde(default)]
    pub run_as_user: Option<u32>,
    #[serde(default)]
    pub run_as_group: Option<u32>,
}

/// The fixtures folder at the workspace root.
pub fn dir() -> PathBuf {
    crate::build::workspace_root().join("fixtures")
}

/// Loads and checks one fixture file.
pub fn load(path: &Path) -> Result<Fixture> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let mut f: Fixture =
        toml::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
    f.name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .context("fixture file names are UTF-8")?
        .to_string();
    f.check()
        .with_context(|| format!("fixture {}", path.display()))?;
    Ok(f)
}

/// Every fixture, sorted by name. An empty folder is an error: a glob that matches nothing
/// must not pass.
pub fn all() -> Result<Vec<Fixture>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir())
        .with_context(|| format!("read {}", dir().display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        bail!("no fixtures in {}", dir().display());
    }
    paths.iter().map(|p| load(p)).collect()
}

/// The self-test fixtures (`fixtures/selftest/`): deliberately arch-sensitive jobs that prove
/// the lab catches what it claims to; not part of the parity set.
pub fn selftests() -> Result<Vec<Fixture>> {
    let d = dir().join("selftest");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&d)
        .with_context(|| format!("read {}", d.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    paths.iter().map(|p| load(p)).collect()
}

/// A fixture by name (the parity set, then `selftest/`), or by path.
pub fn find(name: &str) -> Result<Fixture> {
    let as_path = Path::new(name);
    if as_path.extension().is_some_and(|e| e == "toml") && as_path.is_file() {
        return load(as_path);
    }
    for sub in ["", "selftest"] {
        let p = dir().join(sub).join(format!("{name}.toml"));
        if p.is_file() {
            return load(&p);
        }
    }
    bail!(
        "no fixture named {name} in {} (nor in selftest/)",
        dir().display()
    )
}

impl Fixture {
    fn check(&self) -> Result<()> {
        if self.containers.is_empty() {
            bail!("a job needs at least one container");
        }
        let mut names: Vec<&str> = self.containers.iter().map(|c| c.name.as_str()).collect();
        names.sort();
        names.dedup();
        if names.len() != self.containers.len() {
            bail!("container names must be unique");
        }
        for c in &self.containers {
            match (&c.command, c.steps.is_empty()) {
                (Some(cmd), true) if !cmd.is_empty() => {}
                (None, false) => {}
                _ => bail!(
                    "container {} needs either steps or a non-empty command",
                    c.name
                ),
            }
            for s in &c.secrets {
                if !self.secrets.contains_key(s) {
                    bail!("container {} mounts unknown secret {s}", c.name);
                }
            }
        }
        if self.proxy && self.decoration.storage != StorageKind::S3 {
            bail!("proxy = true needs decoration.storage = \"s3\"");
        }
        for r in self.job.refs.iter().chain(&self.job.extra_refs) {
            let recipe = self.repos.get(&r.recipe);
            for p in &r.pulls {
                if let Some(recipe) = recipe {
                    if !recipe.commits.iter().any(|c| c.branch == p.branch) {
                        bail!(
                            "pull {} names branch {} that recipe {} never commits to",
                            p.number,
                            p.branch,
                            r.recipe
                        );
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "description = \"d\"\n[job]\ntype = \"periodic\"\nname = \"j\"\n\
        [[containers]]\nname = \"test\"\nsteps = [\"print\", \"x\"]\n";

    #[test]
    fn storage_names_are_checked_when_parsed() {
        let f: Fixture = toml::from_str(MINIMAL).unwrap();
        assert_eq!(f.decoration.storage, StorageKind::Gs);
        let s3: Fixture =
            toml::from_str(&format!("{MINIMAL}[decoration]\nstorage = \"s3\"\n")).unwrap();
        assert_eq!(s3.decoration.storage, StorageKind::S3);
        let typo =
            toml::from_str::<Fixture>(&format!("{MINIMAL}[decoration]\nstorage = \"gcs\"\n"));
        let err = typo.unwrap_err().to_string();
        assert!(err.contains("unknown variant `gcs`"), "{err}");
    }

    #[test]
    fn a_proxy_pod_needs_s3() {
        let f: Fixture = toml::from_str(&format!("proxy = true\n{MINIMAL}")).unwrap();
        assert!(
            f.check()
                .unwrap_err()
                .to_string()
                .contains("proxy = true needs")
        );
    }
}
