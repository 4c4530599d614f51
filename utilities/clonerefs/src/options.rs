/*!
CLONEREFS_OPTIONS and the flags used when it is absent (upstream `pkg/clonerefs/options.go`,
`parse.go`). In JSON mode missing keys stay empty (no flag defaults).
*/

use clap::Parser;
use pod_utils::options::{LoadFailure, parse_go_bool};
use pod_utils::prowapi::{Pull, Refs};
use serde::{Deserialize, Serialize};

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    #[serde(default)]
    pub src_root: String,
    #[serde(default)]
    pub log: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub git_user_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub git_user_email: String,
    #[serde(default)]
    pub refs: Vec<Refs>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_files: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub oauth_token_file: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_fingerprints: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_parallel_workers: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub fail: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cookie_path: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub github_api_endpoints: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub github_app_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub github_app_private_key_file: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    #[error("no source root specified")]
    NoSrcRoot,
    #[error("no log file specified")]
    NoLog,
    #[error("no refs specified to clone")]
    NoRefs,
    #[error(
        "clone ref config {i} (for {org_repo}) will be extracted to {path}, which clone ref {j} (for {org_repo}) is also using"
    )]
    Duplicate {
        i: usize,
        j: usize,
        org_repo: String,
        path: String,
    },
    #[error("multiple authentication methods specified")]
    MultipleAuth,
    #[error("no GitHub API endpoints for GitHub App authentication")]
    NoApiEndpoints,
    #[error("no GitHub App private key file specified")]
    NoAppKey,
    #[error("no GitHub App ID specified")]
    NoAppId,
    #[error("max_parallel_workers must not be negative, got {0}")]
    NegativeWorkers(i64),
}

/// Where a ref is checked out (upstream `clone.PathForRefs`); shared with the lab's decorate.
pub use pod_utils::clone::path_for_refs;

impl Options {
    /// Upstream's checks, in upstream's order. Returns the warnings upstream only logs (refs of
    /// different repos sharing a path).
    pub fn validate(&self) -> Result<Vec<String>, OptionsError> {
        if self.src_root.is_empty() {
            return Err(OptionsError::NoSrcRoot);
        }
        if self.log.is_empty() {
            return Err(OptionsError::NoLog);
        }
        if self.refs.is_empty() {
            return Err(OptionsError::NoRefs);
        }
        let mut warnings = Vec::new();
        let mut seen: std::collections::HashMap<String, usize> = Default::default();
        for (i, r) in self.refs.iter().enumerate() {
            let path = path_for_refs(&self.src_root, r);
            if let Some(&j) = seen.get(&path) {
                let other = &self.refs[j];
                if other.org == r.org && other.repo == r.repo {
                    return Err(OptionsError::Duplicate {
                        i,
                        j,
                        org_repo: format!("{}/{}", r.org, r.repo),
                        path,
                    });
                }
                warnings.push(format!("multiple refs clone to the same location {path}"));
            }
            seen.insert(path, i);
        }
        if !self.github_app_id.is_empty() || !self.github_app_private_key_file.is_empty() {
            if !self.oauth_token_file.is_empty() {
                return Err(OptionsError::MultipleAuth);
            }
            if self.github_api_endpoints.is_empty() {
                return Err(OptionsError::NoApiEndpoints);
            }
        }
        if !self.github_app_id.is_empty() && self.github_app_private_key_file.is_empty() {
            return Err(OptionsError::NoAppKey);
        }
        if self.github_app_id.is_empty() && !self.github_app_private_key_file.is_empty() {
            return Err(OptionsError::NoAppId);
        }
        if self.max_parallel_workers < 0 {
            return Err(OptionsError::NegativeWorkers(self.max_parallel_workers));
        }
        Ok(warnings)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefSpecError {
    #[error("refspec {0} invalid: does not contain '='")]
    NoEquals(String),
    #[error("refspec {0} invalid: does not contain 'org,repo' as prefix")]
    NoOrgRepo(String),
    #[error("refspec {0} invalid: does not contain any refs")]
    NoRefs(String),
    #[error("refspec {0} invalid: malformed base ref")]
    MalformedBase(String),
    #[error("refspec {0} invalid: malformed pull ref")]
    MalformedPull(String),
    #[error("refspec {0} invalid: pull request identifier not a number: {1}")]
    PullNumber(String, String),
}

/// Parses `--repo` (`org,repo=base[:sha][,num[:sha[:ref]]]...`), upstream's `ParseRefs`.
pub fn parse_refs(spec: &str) -> Result<Refs, RefSpecError> {
    let (prefix, rest) = spec
        .split_once('=')
        .ok_or_else(|| RefSpecError::NoEquals(spec.into()))?;
    let (org, repo) = prefix
        .split_once(',')
        .ok_or_else(|| RefSpecError::NoOrgRepo(spec.into()))?;
    if rest.is_empty() {
        return Err(RefSpecError::NoRefs(spec.into()));
    }
    let mut parts = rest.split(',');
    let base: Vec<&str> = parts.next().unwrap_or_default().split(':').collect();
    if base.len() > 2 {
        return Err(RefSpecError::MalformedBase(spec.into()));
    }
    let mut refs = Refs {
        org: org.into(),
        repo: repo.into(),
        base_ref: base[0].into(),
        base_sha: base.get(1).copied().unwrap_or_default().into(),
        ..Default::default()
    };
    let mut pulls = Vec::new();
    for p in parts {
        let f: Vec<&str> = p.split(':').collect();
        if f.len() > 3 {
            return Err(RefSpecError::MalformedPull(spec.into()));
        }
        let number = f[0]
            .parse()
            .map_err(|_| RefSpecError::PullNumber(spec.into(), f[0].into()))?;
        pulls.push(Pull {
            number,
            sha: f.get(1).copied().unwrap_or_default().into(),
            ref_: f.get(2).copied().unwrap_or_default().into(),
            ..Default::default()
        });
    }
    if !pulls.is_empty() {
        refs.pulls = Some(pulls);
    }
    Ok(refs)
}

/// clonerefs checks out the refs of a Prow job (base plus merged pulls) under the source root and
/// records every command. Options come from CLONEREFS_OPTIONS (JSON) when it is set; these flags
/// are used otherwise.
#[derive(Parser, Debug)]
#[command(name = "clonerefs", version, about, long_about = None)]
struct Flags {
    /// Where to root source checkouts
    #[arg(long = "src-root", default_value = "")]
    src_root: String,
    /// Where to write logs
    #[arg(long, default_value = "")]
    log: String,
    /// Username to set in git config
    #[arg(long = "git-user-name", default_value = "ci-robot")]
    git_user_name: String,
    /// Email to set in git config
    #[arg(long = "git-user-email", default_value = "ci-robot@k8s.io")]
    git_user_email: String,
    /// Mapping of Git URI to refs to check out, can be provided more than once
    /// (org,repo=base-ref[:base-sha][,pull-id[:pull-sha[:pull-ref]]]...)
    #[arg(long = "repo", value_parser = parse_refs)]
    repo: Vec<Refs>,
    /// Path to SSH key to enable during cloning, can be provided more than once
    #[arg(long = "ssh-key")]
    ssh_key: Vec<String>,
    /// Format string for the path to clone to (ineffective upstream; accepted for compatibility)
    #[arg(long = "clone-alias", default_value = "")]
    clone_alias: String,
    /// Format string for the URI prefix to clone from (ineffective upstream; accepted for compatibility)
    #[arg(long = "uri-prefix", default_value = "")]
    uri_prefix: String,
    /// Maximum number of parallel workers, unset for unlimited
    #[arg(long = "max-workers", default_value = "0")]
    max_workers: i64,
    /// Path to git http.cookiefile
    #[arg(long, default_value = "")]
    cookiefile: String,
    /// Exit with failure if any of the refs can't be fetched
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = parse_go_bool)]
    fail: bool,
}

const FLAG_NAMES: &[&str] = &[
    "src-root",
    "log",
    "git-user-name",
    "git-user-email",
    "repo",
    "ssh-key",
    "clone-alias",
    "uri-prefix",
    "max-workers",
    "cookiefile",
    "fail",
    "fail?",
];

/// Upstream's `options.Load`: JSON from CLONEREFS_OPTIONS wins; flags otherwise.
pub fn load(args: Vec<String>) -> Result<Options, LoadFailure> {
    pod_utils::options::load(
        pod_utils::env::CLONEREFS_OPTIONS,
        args,
        FLAG_NAMES,
        |argv| {
            let f = Flags::try_parse_from(argv)?;
            // --clone-alias and --uri-prefix never reach the refs upstream (they are applied to a
            // loop copy), so they are accepted and ignored here too.
            let _ = (&f.clone_alias, &f.uri_prefix);
            Ok(Options {
                src_root: f.src_root,
                log: f.log,
                git_user_name: f.git_user_name,
                git_user_email: f.git_user_email,
                refs: f.repo,
                key_files: f.ssh_key,
                max_parallel_workers: f.max_workers,
                cookie_path: f.cookiefile,
                fail: f.fail,
                ..Default::default()
            })
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_names_are_the_flags_clap_knows() {
        use clap::CommandFactory;
        let mut want: Vec<String> = FLAG_NAMES
            .iter()
            .map(std::string::ToString::to_string)
            .collect();
        want.sort();
        assert_eq!(want, pod_utils::options::flag_table(Flags::command()));
    }

    fn ok_opts() -> Options {
        Options {
            src_root: "/go".into(),
            log: "/log".into(),
            refs: vec![Refs {
                org: "org".into(),
                repo: "repo".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn validate_like_upstream() {
        assert_eq!(ok_opts().validate(), Ok(vec![]));
        let mut o = ok_opts();
        o.src_root.clear();
        assert_eq!(o.validate(), Err(OptionsError::NoSrcRoot));
        let mut o = ok_opts();
        o.log.clear();
        assert_eq!(o.validate(), Err(OptionsError::NoLog));
        let mut o = ok_opts();
        o.refs.clear();
        assert_eq!(o.validate(), Err(OptionsError::NoRefs));
        let mut o = ok_opts();
        o.refs.push(o.refs[0].clone());
        assert_eq!(
            o.validate().unwrap_err().to_string(),
            "clone ref config 1 (for org/repo) will be extracted to /go/src/github.com/org/repo, which clone ref 0 (for org/repo) is also using"
        );
        let mut o = ok_opts();
        o.refs.push(Refs {
            org: "other".into(),
            repo: "r".into(),
            path_alias: "github.com/org/repo".into(),
            ..Default::default()
        });
        assert_eq!(o.validate().map(|w| w.len()), Ok(1));
        let mut o = ok_opts();
        o.oauth_token_file = "/t".into();
        o.github_app_id = "1".into();
        assert_eq!(o.validate(), Err(OptionsError::MultipleAuth));
        o.oauth_token_file.clear();
        assert_eq!(o.validate(), Err(OptionsError::NoApiEndpoints));
        o.github_api_endpoints = vec!["https://api.github.com".into()];
        assert_eq!(o.validate(), Err(OptionsError::NoAppKey));
        o.github_app_id.clear();
        o.github_app_private_key_file = "/k".into();
        assert_eq!(o.validate(), Err(OptionsError::NoAppId));
    }

    #[test]
    fn parse_refs_like_upstream() {
        let r = parse_refs("org,repo=master").unwrap();
        assert_eq!(
            (r.org.as_str(), r.repo.as_str(), r.base_ref.as_str()),
            ("org", "repo", "master")
        );
        let r = parse_refs("org,repo=master:abcd,1:qwer,2:asdf:refs/changes/1,3").unwrap();
        assert_eq!(r.base_sha, "abcd");
        let p = r.pulls();
        assert_eq!(p.len(), 3);
        assert_eq!(
            (p[1].number, p[1].sha.as_str(), p[1].ref_.as_str()),
            (2, "asdf", "refs/changes/1")
        );
        assert_eq!(p[2].sha, "");
        assert!(matches!(
            parse_refs("org,repo"),
            Err(RefSpecError::NoEquals(_))
        ));
        assert!(matches!(
            parse_refs("org=master"),
            Err(RefSpecError::NoOrgRepo(_))
        ));
        assert!(matches!(
            parse_refs("org,repo="),
            Err(RefSpecError::NoRefs(_))
        ));
        assert!(matches!(
            parse_refs("org,repo=a:b:c"),
            Err(RefSpecError::MalformedBase(_))
        ));
        assert!(matches!(
            parse_refs("org,repo=a,1:b:c:d"),
            Err(RefSpecError::MalformedPull(_))
        ));
        assert!(matches!(
            parse_refs("org,repo=a,xx"),
            Err(RefSpecError::PullNumber(..))
        ));
    }

    #[test]
    fn clone_paths() {
        let mut r = Refs {
            org: "org".into(),
            repo: "repo".into(),
            ..Default::default()
        };
        assert_eq!(path_for_refs("/go", &r), "/go/src/github.com/org/repo");
        r.repo_link = "https://github.enterprise.com/org/repo".into();
        assert_eq!(
            path_for_refs("/go", &r),
            "/go/src/github.enterprise.com/org/repo"
        );
        r.path_alias = "k8s.io/repo".into();
        assert_eq!(path_for_refs("/", &r), "/src/k8s.io/repo");
    }
}
