/*!
JOB_SPEC as the controller writes it: the job's refs with SHAs resolved from the lab's built
repositories, and its `decoration_config` in upstream's field order.
*/

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use pod_utils::downwardapi::JobSpec;
use pod_utils::duration;
use pod_utils::prowapi::{GcsConfiguration, Pull, Refs};
use serde::Serialize;

use super::{gcs_configuration, storage};
use crate::fixture::{Fixture, RefsSpec};
use crate::git::{self, BuiltRepo};
use crate::pod::Storage;

/// `decoration_config` as JOB_SPEC carries it: what the fixture's decoration sets, in the field
/// order of upstream's `DecorationConfig` (Go encodes struct fields in order; a
/// `serde_json::Value` would sort them). Booleans appear only when set, as Go's pointers.
#[derive(Serialize)]
struct DecorationConfig {
    timeout: String,
    grace_period: String,
    gcs_configuration: GcsConfiguration,
    #[serde(skip_serializing_if = "Option::is_none")]
    s3_credentials_secret: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    skip_cloning: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    censor_secrets: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    censoring_options: Option<CensoringConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upload_ignores_interrupts: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    run_as_user: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    run_as_group: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fs_group: Option<u32>,
}

/// Upstream's `CensoringOptions` of the decoration: the sidecar's fields it knows of.
#[derive(Serialize)]
struct CensoringConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    censoring_concurrency: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    censoring_buffer_size: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    include_directories: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    exclude_directories: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    minimum_secret_length: Option<i64>,
}

fn decoration_config(f: &Fixture) -> Result<DecorationConfig> {
    let d = &f.decoration;
    let censoring_options = match &d.censoring_options {
        Some(table) => {
            let c: sidecar::options::CensoringOptions =
                serde_json::from_value(serde_json::to_value(table)?)
                    .context("decoration.censoring_options")?;
            Some(CensoringConfig {
                censoring_concurrency: c.censoring_concurrency,
                censoring_buffer_size: c.censoring_buffer_size,
                include_directories: c.include_directories,
                exclude_directories: c.exclude_directories,
                minimum_secret_length: c.minimum_secret_length,
            })
        }
        None => None,
    };
    Ok(DecorationConfig {
        timeout: duration::format(duration::parse(&d.timeout).context("decoration.timeout")?),
        grace_period: duration::format(
            duration::parse(&d.grace_period).context("decoration.grace_period")?,
        ),
        gcs_configuration: gcs_configuration(f),
        s3_credentials_secret: (storage(f) == Storage::S3).then_some("s3-credentials"),
        skip_cloning: d.skip_cloning.then_some(true),
        censor_secrets: d.censor_secrets.then_some(true),
        censoring_options,
        upload_ignores_interrupts: d.upload_ignores_interrupts.then_some(true),
        run_as_user: d.run_as_user,
        run_as_group: d.run_as_group,
        fs_group: d.fs_group,
    })
}

/// JOB_SPEC's text: `spec`'s fields, then its decoration in upstream's field order.
pub(super) fn encode_job_spec(f: &Fixture, spec: &JobSpec) -> Result<String> {
    #[derive(Serialize)]
    struct Encoded<'a> {
        #[serde(flatten)]
        spec: &'a JobSpec,
        decoration_config: DecorationConfig,
    }
    let spec = JobSpec {
        decoration_config: None,
        ..spec.clone()
    };
    Ok(serde_json::to_string(&Encoded {
        spec: &spec,
        decoration_config: decoration_config(f)?,
    })?)
}

/// The JobSpec the controller would write, with SHAs resolved from the built repositories.
pub fn job_spec(f: &Fixture, repos: &BTreeMap<String, BuiltRepo>) -> Result<JobSpec> {
    let refs = |r: &RefsSpec| -> Result<Refs> { to_refs(f, r, repos) };
    let decoration = serde_json::to_value(decoration_config(f)?)?;
    Ok(JobSpec {
        type_: f.job.type_.clone(),
        job: f.job.name.clone(),
        build_id: f.job.build_id.clone(),
        prow_job_id: format!("lab-{}", f.name),
        refs: f.job.refs.as_ref().map(refs).transpose()?,
        extra_refs: f.job.extra_refs.iter().map(refs).collect::<Result<_>>()?,
        decoration_config: Some(decoration),
    })
}

fn to_refs(f: &Fixture, r: &RefsSpec, repos: &BTreeMap<String, BuiltRepo>) -> Result<Refs> {
    let repo = repos.get(&r.recipe);
    let sha_of = |branch: &str| -> Result<String> {
        repo.and_then(|b| b.branches.get(branch).cloned())
            .with_context(|| format!("recipe {} has no branch {branch}", r.recipe))
    };
    let pulls: Vec<Pull> = r
        .pulls
        .iter()
        .map(|p| -> Result<Pull> {
            Ok(Pull {
                number: p.number,
                author: "fixture-author".into(),
                sha: if p.with_sha {
                    sha_of(&p.branch)?
                } else {
                    String::new()
                },
                title: format!("Pull {}", p.number),
                head_ref: p.branch.clone(),
                ..Default::default()
            })
        })
        .collect::<Result<_>>()?;
    let uri = match repo {
        Some(b) => b.uri(),
        // An unreachable remote: the clone must fail.
        None => format!("file://{}", git::repo_path(&f.name, &r.recipe).display()),
    };
    Ok(Refs {
        org: r.org.clone(),
        repo: r.repo.clone(),
        base_ref: r.base_ref.clone(),
        base_sha: if r.pin_base_sha {
            sha_of(&r.base_ref)?
        } else {
            String::new()
        },
        pulls: (!pulls.is_empty()).then_some(pulls),
        path_alias: r.path_alias.clone().unwrap_or_default(),
        workdir: r.workdir,
        clone_uri: uri,
        skip_submodules: r.skip_submodules,
        clone_depth: r.clone_depth,
        skip_fetch_head: r.skip_fetch_head,
        ..Default::default()
    })
}
