/*!
The downward API (upstream `pkg/pod-utils/downwardapi`): the `JOB_SPEC` the controller gives each
container, and the environment derived from it.
*/

use serde::{Deserialize, Serialize};

use crate::env;
use crate::prowapi::Refs;

pub const PERIODIC: &str = "periodic";
pub const POSTSUBMIT: &str = "postsubmit";
pub const PRESUBMIT: &str = "presubmit";
pub const BATCH: &str = "batch";

/// The job as the pod sees it. There is no `agent` key: upstream never serialises it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct JobSpec {
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub type_: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub job: String,
    #[serde(rename = "buildid", default, skip_serializing_if = "String::is_empty")]
    pub build_id: String,
    #[serde(
        rename = "prowjobid",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub prow_job_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refs: Option<Refs>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_refs: Vec<Refs>,
    /// Kept as raw JSON: the utilities never read it, and it must round-trip untouched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoration_config: Option<serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("$JOB_SPEC unset")]
    Unset,
    #[error("malformed $JOB_SPEC: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// Upstream's `ResolveSpecFromEnv`.
pub fn resolve_spec_from_env() -> Result<JobSpec, SpecError> {
    let raw = env::lookup(env::JOB_SPEC).ok_or(SpecError::Unset)?;
    Ok(serde_json::from_str(&raw)?)
}

impl JobSpec {
    /// `refs`, else the first non-auxiliary extra ref.
    pub fn main_refs(&self) -> Option<&Refs> {
        self.refs
            .as_ref()
            .or_else(|| self.extra_refs.iter().find(|r| !r.auxiliary))
    }

    /// The revision of the main refs, or "" when there are none.
    pub fn revision(&self) -> &str {
        self.main_refs().map_or("", Refs::revision)
    }

    /// The environment the controller sets on test containers (`EnvForSpec`), in upstream's order
    /// of definition. `BUILD_NUMBER` needs the agent, which JOB_SPEC does not carry, so the caller
    /// says whether the job runs on the kubernetes agent.
    pub fn env(&self, kubernetes_agent: bool) -> Vec<(String, String)> {
        let mut env = vec![
            ("CI".to_string(), "true".to_string()),
            ("JOB_NAME".to_string(), self.job.clone()),
            ("BUILD_ID".to_string(), self.build_id.clone()),
            ("PROW_JOB_ID".to_string(), self.prow_job_id.clone()),
            ("JOB_TYPE".to_string(), self.type_.clone()),
            (
                "JOB_SPEC".to_string(),
                serde_json::to_string(self).unwrap_or_default(),
            ),
        ];
        if kubernetes_agent {
            env.push(("BUILD_NUMBER".to_string(), self.build_id.clone()));
        }
        if self.type_ == PERIODIC {
            return env;
        }
        let Some(refs) = &self.refs else { return env };
        let (host, base) = src_host_base(refs);
        env.extend([
            ("REPO_OWNER".to_string(), refs.org.clone()),
            ("REPO_NAME".to_string(), refs.repo.clone()),
            ("SRC_HOST".to_string(), host),
            ("SRC_BASE".to_string(), base),
            ("PULL_BASE_REF".to_string(), refs.base_ref.clone()),
            ("PULL_BASE_SHA".to_string(), refs.base_sha.clone()),
            ("PULL_REFS".to_string(), refs.to_refs_string()),
        ]);
        if self.type_ != PRESUBMIT {
            return env;
        }
        if let Some(p) = refs.pulls().first() {
            env.extend([
                ("PULL_NUMBER".to_string(), p.number.to_string()),
                ("PULL_PULL_SHA".to_string(), p.sha.clone()),
                ("PULL_HEAD_REF".to_string(), p.head_ref.clone()),
                ("PULL_TITLE".to_string(), p.title.clone()),
            ]);
        }
        env
    }
}

fn src_host_base(refs: &Refs) -> (String, String) {
    let default = (
        "github.com".to_string(),
        format!("{}/{}", refs.org, refs.repo),
    );
    let source = if !refs.path_alias.is_empty() {
        refs.path_alias.as_str()
    } else if !refs.repo_link.is_empty() {
        refs.repo_link.rsplit("://").next().unwrap_or_default()
    } else {
        return default;
    };
    match source.split_once('/') {
        Some((h, b)) => (h.to_string(), b.to_string()),
        None => (source.to_string(), default.1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prowapi::Pull;

    fn get<'a>(env: &'a [(String, String)], k: &str) -> Option<&'a str> {
        env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn periodic_spec_json_and_env() {
        let spec = JobSpec {
            type_: "periodic".into(),
            job: "job-name".into(),
            build_id: "0".into(),
            prow_job_id: "prowjob".into(),
            ..Default::default()
        };
        let env = spec.env(false);
        assert_eq!(
            get(&env, "JOB_SPEC"),
            Some(r#"{"type":"periodic","job":"job-name","buildid":"0","prowjobid":"prowjob"}"#)
        );
        assert_eq!(env.len(), 6);
        assert_eq!(get(&spec.env(true), "BUILD_NUMBER"), Some("0"));
    }

    /// A deviation (README): `decoration_config` is kept as a JSON value, so re-encoding sorts
    /// its keys, where Go writes its struct's field order. The utilities never re-encode it into
    /// anything they upload; only the lab's controller emulation (`env`) does.
    #[test]
    fn decoration_config_round_trips_with_sorted_keys() {
        let raw = r#"{"type":"periodic","job":"j","decoration_config":{"timeout":"2h0m0s","grace_period":"10s"}}"#;
        let spec: JobSpec = serde_json::from_str(raw).unwrap();
        assert_eq!(
            serde_json::to_string(&spec).unwrap(),
            r#"{"type":"periodic","job":"j","decoration_config":{"grace_period":"10s","timeout":"2h0m0s"}}"#
        );
    }

    #[test]
    fn presubmit_env_and_aliases() {
        let spec: JobSpec = serde_json::from_str(
            r#"{"type":"presubmit","job":"j","buildid":"1","prowjobid":"p","refs":{"org":"org-name","repo":"repo-name","base_ref":"base-ref","base_sha":"base-sha","pulls":[{"number":1,"author":"author-name","sha":"pull-sha","title":"pull-title","head_ref":"branch-name"}],"path_alias":"k8s.io/repo-name"}}"#,
        )
        .unwrap();
        let env = spec.env(false);
        assert_eq!(get(&env, "SRC_HOST"), Some("k8s.io"));
        assert_eq!(get(&env, "SRC_BASE"), Some("repo-name"));
        assert_eq!(get(&env, "PULL_NUMBER"), Some("1"));
        assert_eq!(get(&env, "PULL_TITLE"), Some("pull-title"));
        assert_eq!(get(&env, "PULL_REFS"), Some("base-ref:base-sha,1:pull-sha"));
        let link = Refs {
            org: "org-name".into(),
            repo: "repo-name".into(),
            repo_link: "https://gitlab.com/org-name/repo-name".into(),
            ..Default::default()
        };
        assert_eq!(
            src_host_base(&link),
            ("gitlab.com".into(), "org-name/repo-name".into())
        );
    }

    #[test]
    fn revision_prefers_pull_then_sha_then_ref_and_skips_auxiliary() {
        let mut spec = JobSpec::default();
        assert_eq!(spec.revision(), "");
        spec.extra_refs = vec![
            Refs {
                auxiliary: true,
                base_ref: "aux".into(),
                ..Default::default()
            },
            Refs {
                base_ref: "main".into(),
                ..Default::default()
            },
        ];
        assert_eq!(spec.revision(), "main");
        spec.refs = Some(Refs {
            base_sha: "sha".into(),
            pulls: Some(vec![Pull {
                sha: "pull".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        assert_eq!(spec.revision(), "pull");
    }
}
