/*!
Where a job's files go inside the bucket (upstream `pkg/pod-utils/gcs/target.go`): the job
directory, the presubmit alias file, the latest-build markers, and how org/repo become one path
segment under each path strategy.

Pure functions over the JobSpec; nothing here touches storage.
*/

use crate::downwardapi::{BATCH, JobSpec, PERIODIC, POSTSUBMIT, PRESUBMIT};
use crate::gopath;
use crate::prowapi::{PATH_STRATEGY_EXPLICIT, PATH_STRATEGY_LEGACY, PATH_STRATEGY_SINGLE};

/// Directory for pull-request jobs (presubmit, batch).
pub const PR_LOGS: &str = "pr-logs";
/// Directory for every other job.
pub const NON_PR_LOGS: &str = "logs";
/// The marker holding the newest build ID of a job.
pub const LATEST_BUILD_FILE: &str = "latest-build.txt";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("unknown job spec type: {0}")]
    UnknownType(String),
    /// Upstream indexes `refs.pulls[0]` and panics; we refuse instead.
    #[error("presubmit job spec has no refs with a pull request")]
    NoPull,
}

/// Turns org and repo into the path segment of a presubmit's directory (upstream's
/// `RepoPathBuilder` closures, one variant per strategy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoPathBuilder {
    /// Org and repo only when they differ from the defaults; a default org keeps the repo as is.
    Legacy {
        default_org: String,
        default_repo: String,
    },
    /// Org and repo for every repo but the single default one.
    Single {
        default_org: String,
        default_repo: String,
    },
    /// Always `org_repo`.
    Explicit,
}

impl RepoPathBuilder {
    /// The builder for a `path_strategy`; `None` for an unknown or empty strategy, which only
    /// local mode lets through validation.
    pub fn for_strategy(strategy: &str, default_org: &str, default_repo: &str) -> Option<Self> {
        let (default_org, default_repo) = (default_org.to_string(), default_repo.to_string());
        match strategy {
            PATH_STRATEGY_EXPLICIT => Some(RepoPathBuilder::Explicit),
            PATH_STRATEGY_LEGACY => Some(RepoPathBuilder::Legacy {
                default_org,
                default_repo,
            }),
            PATH_STRATEGY_SINGLE => Some(RepoPathBuilder::Single {
                default_org,
                default_repo,
            }),
            _ => None,
        }
    }

    /// The path segment for `org`/`repo`; "" means the segment disappears from the path.
    pub fn build(&self, org: &str, repo: &str) -> String {
        match self {
            RepoPathBuilder::Legacy {
                default_org,
                default_repo,
            } if org == default_org => {
                if repo == default_repo {
                    String::new()
                } else {
                    repo.to_string()
                }
            }
            RepoPathBuilder::Single {
                default_org,
                default_repo,
            } if org == default_org && repo == default_repo => String::new(),
            _ => normalize(org, repo),
        }
    }
}

/// `org_repo` with a gerrit host's scheme and trailing slashes dropped and the repo's `/`s
/// turned into `_`.
fn normalize(org: &str, repo: &str) -> String {
    let org = org
        .strip_prefix("https://")
        .or_else(|| org.strip_prefix("http://"))
        .unwrap_or(org)
        .trim_end_matches('/');
    format!("{org}_{}", repo.replace('/', "_"))
}

/// The presubmit's `<seg>/<number>` pair. Without a builder the segment is dropped (upstream
/// would call a nil function; only local mode, where the path is unused, gets here).
fn pull_dir(
    spec: &JobSpec,
    builder: Option<&RepoPathBuilder>,
) -> Result<(String, String), TargetError> {
    let refs = spec.refs.as_ref().ok_or(TargetError::NoPull)?;
    let pull = refs.pulls().first().ok_or(TargetError::NoPull)?;
    let seg = builder.map_or_else(String::new, |b| b.build(&refs.org, &refs.repo));
    Ok((seg, pull.number.to_string()))
}

/// The job run's directory under the bucket (upstream `PathForSpec`), before any path prefix.
pub fn path_for_spec(
    spec: &JobSpec,
    builder: Option<&RepoPathBuilder>,
) -> Result<String, TargetError> {
    match spec.type_.as_str() {
        PERIODIC | POSTSUBMIT => Ok(gopath::join(&[NON_PR_LOGS, &spec.job, &spec.build_id])),
        PRESUBMIT => {
            let (seg, num) = pull_dir(spec, builder)?;
            Ok(gopath::join(&[
                PR_LOGS,
                "pull",
                &seg,
                &num,
                &spec.job,
                &spec.build_id,
            ]))
        }
        BATCH => Ok(gopath::join(&[
            PR_LOGS,
            "pull",
            "batch",
            &spec.job,
            &spec.build_id,
        ])),
        other => Err(TargetError::UnknownType(other.to_string())),
    }
}

/// The presubmit alias object `pr-logs/directory/<job>/<build>.txt`; `None` for other types.
pub fn alias_for_spec(spec: &JobSpec) -> Result<Option<String>, TargetError> {
    match spec.type_.as_str() {
        PERIODIC | POSTSUBMIT | BATCH => Ok(None),
        PRESUBMIT => Ok(Some(gopath::join(&[
            PR_LOGS,
            "directory",
            &spec.job,
            &format!("{}.txt", spec.build_id),
        ]))),
        other => Err(TargetError::UnknownType(other.to_string())),
    }
}

/// The latest-build markers of a job (upstream `LatestBuildForSpec`). A presubmit gets the
/// PR-specific marker only when a builder is known; an unknown type gets none.
pub fn latest_build_for_spec(spec: &JobSpec, builder: Option<&RepoPathBuilder>) -> Vec<String> {
    match spec.type_.as_str() {
        PERIODIC | POSTSUBMIT => vec![gopath::join(&[NON_PR_LOGS, &spec.job, LATEST_BUILD_FILE])],
        PRESUBMIT => {
            let mut out = vec![gopath::join(&[
                PR_LOGS,
                "directory",
                &spec.job,
                LATEST_BUILD_FILE,
            ])];
            if let Some(b) = builder {
                if let Ok((seg, num)) = pull_dir(spec, Some(b)) {
                    out.push(gopath::join(&[
                        PR_LOGS,
                        "pull",
                        &seg,
                        &num,
                        &spec.job,
                        LATEST_BUILD_FILE,
                    ]));
                }
            }
            out
        }
        BATCH => vec![gopath::join(&[
            PR_LOGS,
            "directory",
            &spec.job,
            LATEST_BUILD_FILE,
        ])],
        _ => Vec::new(),
    }
}

/// The directory holding all runs of a job (upstream `RootForSpec`); "" for an unknown type.
pub fn root_for_spec(spec: &JobSpec) -> String {
    match spec.type_.as_str() {
        PERIODIC | POSTSUBMIT => gopath::join(&[NON_PR_LOGS, &spec.job]),
        PRESUBMIT | BATCH => gopath::join(&[PR_LOGS, "directory", &spec.job]),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prowapi::{Pull, Refs};

    fn spec(type_: &str, job: &str, build: &str) -> JobSpec {
        JobSpec {
            type_: type_.into(),
            job: job.into(),
            build_id: build.into(),
            ..Default::default()
        }
    }

    fn with_pull(mut s: JobSpec, org: &str, repo: &str, number: i64) -> JobSpec {
        s.refs = Some(Refs {
            org: org.into(),
            repo: repo.into(),
            pulls: Some(vec![Pull {
                number,
                ..Default::default()
            }]),
            ..Default::default()
        });
        s
    }

    fn legacy(o: &str, r: &str) -> RepoPathBuilder {
        RepoPathBuilder::for_strategy("legacy", o, r).unwrap()
    }

    fn single(o: &str, r: &str) -> RepoPathBuilder {
        RepoPathBuilder::for_strategy("single", o, r).unwrap()
    }

    // Upstream TestPathForSpec.
    #[test]
    fn path_for_spec_cases() {
        let pre = with_pull(spec("presubmit", "job", "number"), "org", "repo", 1);
        let cases: Vec<(JobSpec, Option<RepoPathBuilder>, &str)> = vec![
            (spec("periodic", "job", "number"), None, "logs/job/number"),
            (spec("postsubmit", "job", "number"), None, "logs/job/number"),
            (
                spec("batch", "job", "number"),
                None,
                "pr-logs/pull/batch/job/number",
            ),
            (
                pre.clone(),
                Some(legacy("org", "repo")),
                "pr-logs/pull/1/job/number",
            ),
            (
                pre.clone(),
                Some(legacy("org", "other")),
                "pr-logs/pull/repo/1/job/number",
            ),
            (
                pre.clone(),
                Some(legacy("some", "other")),
                "pr-logs/pull/org_repo/1/job/number",
            ),
        ];
        for (s, b, want) in cases {
            assert_eq!(path_for_spec(&s, b.as_ref()).unwrap(), want, "{s:?}");
        }
    }

    #[test]
    fn path_for_spec_rejects_what_upstream_cannot_handle() {
        assert_eq!(
            path_for_spec(&spec("nope", "j", "1"), None),
            Err(TargetError::UnknownType("nope".into()))
        );
        assert_eq!(
            path_for_spec(&spec("", "j", "1"), None)
                .unwrap_err()
                .to_string(),
            "unknown job spec type: "
        );
        // Upstream panics on a presubmit without pulls.
        assert_eq!(
            path_for_spec(
                &spec("presubmit", "j", "1"),
                Some(&RepoPathBuilder::Explicit)
            ),
            Err(TargetError::NoPull)
        );
        // No builder (local mode without a strategy): the segment is dropped.
        let pre = with_pull(spec("presubmit", "job", "b"), "org", "repo", 7);
        assert_eq!(path_for_spec(&pre, None).unwrap(), "pr-logs/pull/7/job/b");
    }

    // Upstream TestAliasForSpec.
    #[test]
    fn alias_for_spec_cases() {
        for t in ["periodic", "batch", "postsubmit"] {
            assert_eq!(alias_for_spec(&spec(t, "job", "number")), Ok(None));
        }
        assert_eq!(
            alias_for_spec(&spec("presubmit", "job", "number")),
            Ok(Some("pr-logs/directory/job/number.txt".to_string()))
        );
        assert!(alias_for_spec(&spec("x", "job", "number")).is_err());
    }

    // Upstream TestLatestBuildForSpec.
    #[test]
    fn latest_build_for_spec_cases() {
        let pre = with_pull(
            spec("presubmit", "pull-kubernetes-unit", ""),
            "kubernetes",
            "test-infra",
            1234,
        );
        let dir = "pr-logs/directory/pull-kubernetes-unit/latest-build.txt";
        let cases: Vec<(JobSpec, Option<RepoPathBuilder>, Vec<&str>)> = vec![
            (pre.clone(), None, vec![dir]),
            (
                pre.clone(),
                Some(RepoPathBuilder::Explicit),
                vec![
                    dir,
                    "pr-logs/pull/kubernetes_test-infra/1234/pull-kubernetes-unit/latest-build.txt",
                ],
            ),
            (
                pre.clone(),
                Some(legacy("kubernetes", "test-infra")),
                vec![
                    dir,
                    "pr-logs/pull/1234/pull-kubernetes-unit/latest-build.txt",
                ],
            ),
            (
                pre.clone(),
                Some(single("defaultorg", "defaultrepo")),
                vec![
                    dir,
                    "pr-logs/pull/kubernetes_test-infra/1234/pull-kubernetes-unit/latest-build.txt",
                ],
            ),
            (spec("batch", "pull-kubernetes-unit", ""), None, vec![dir]),
            (
                spec("postsubmit", "ci-kubernetes-unit", ""),
                None,
                vec!["logs/ci-kubernetes-unit/latest-build.txt"],
            ),
            (
                spec("periodic", "ci-kubernetes-periodic", ""),
                None,
                vec!["logs/ci-kubernetes-periodic/latest-build.txt"],
            ),
            (spec("weird", "j", ""), None, vec![]),
        ];
        for (s, b, want) in cases {
            assert_eq!(latest_build_for_spec(&s, b.as_ref()), want, "{s:?} {b:?}");
        }
    }

    // Upstream TestRootForSpec.
    #[test]
    fn root_for_spec_cases() {
        assert_eq!(
            root_for_spec(&spec("presubmit", "pull-kubernetes-unit", "")),
            "pr-logs/directory/pull-kubernetes-unit"
        );
        assert_eq!(
            root_for_spec(&spec("batch", "pull-kubernetes-unit", "")),
            "pr-logs/directory/pull-kubernetes-unit"
        );
        assert_eq!(
            root_for_spec(&spec("postsubmit", "ci-kubernetes-unit", "")),
            "logs/ci-kubernetes-unit"
        );
        assert_eq!(
            root_for_spec(&spec("periodic", "ci-kubernetes-periodic", "")),
            "logs/ci-kubernetes-periodic"
        );
        assert_eq!(root_for_spec(&spec("?", "j", "")), "");
    }

    // Upstream TestNewLegacyRepoPathBuilder, TestNewSingleDefaultRepoPathBuilder,
    // TestNewExplicitRepoPathBuilder and gcsupload's TestBuilderForStrategy.
    #[test]
    fn repo_path_builders() {
        let l = legacy("org", "repo");
        for (org, repo, want) in [
            ("org", "repo", ""),
            ("other", "repo", "other_repo"),
            ("org", "other", "other"),
            ("other", "wild", "other_wild"),
            ("gerrit", "foo/bar", "gerrit_foo_bar"),
            ("org", "repo2", "repo2"),
            ("org2", "repo", "org2_repo"),
            ("https://org", "repo/sub", "org_repo_sub"),
            // A default org keeps the repo verbatim, slashes included.
            ("org", "a/b", "a/b"),
        ] {
            assert_eq!(l.build(org, repo), want, "legacy {org} {repo}");
        }
        let s = single("org", "repo");
        for (org, repo, want) in [
            ("org", "repo", ""),
            ("other", "repo", "other_repo"),
            ("org", "other", "org_other"),
            ("other", "wild", "other_wild"),
            ("gerrit", "foo/bar", "gerrit_foo_bar"),
            ("org", "repo2", "org_repo2"),
            ("org2", "repo", "org2_repo"),
        ] {
            assert_eq!(s.build(org, repo), want, "single {org} {repo}");
        }
        let e = RepoPathBuilder::Explicit;
        assert_eq!(e.build("org", "repo"), "org_repo");
        assert_eq!(e.build("gerrit", "foo/bar"), "gerrit_foo_bar");
        assert_eq!(
            e.build("http://gerrit.example/", "a/b"),
            "gerrit.example_a_b"
        );
        assert_eq!(RepoPathBuilder::for_strategy("", "o", "r"), None);
        assert_eq!(RepoPathBuilder::for_strategy("explicit", "", ""), Some(e));
    }
}
