/*!
The clonerefs init container (upstream `CloneRefs`): its options, its volumes (its own `/tmp`,
the lab's fixture remotes, the code) and where each ref is checked out.
*/

use anyhow::Result;
use pod_utils::clone;

use super::{CODE, LOGS, Plan, mount};
use crate::git;
use crate::pod::{Container, Image, SecurityContext, Volume, VolumeSource};
use crate::utility::Utility;

/// clonerefs' own /tmp (it keeps known_hosts there), then the lab's fixture remotes, as a
/// clone volume like upstream's key secrets, then the code.
pub(super) fn volumes() -> Vec<Volume> {
    [
        ("clonerefs-tmp", VolumeSource::EmptyDir),
        ("repos", VolumeSource::HostPath(git::REPOS_ROOT.into())),
        ("code", VolumeSource::EmptyDir),
    ]
    .into_iter()
    .map(|(name, source)| Volume {
        name: name.into(),
        source,
    })
    .collect()
}

pub(super) fn container(plan: &Plan) -> Result<Container> {
    let opts = ::clonerefs::Options {
        src_root: CODE.into(),
        log: format!("{LOGS}/clone.json"),
        git_user_name: "ci-robot".into(),
        git_user_email: "ci-robot@k8s.io".into(),
        refs: plan.all_refs.clone(),
        github_api_endpoints: vec!["https://api.github.com".into()],
        ..Default::default()
    };
    Ok(Container {
        name: Utility::Clonerefs.name().into(),
        image: Image::Utility(Utility::Clonerefs),
        command: None,
        args: vec![],
        env: vec![(
            Utility::Clonerefs.options_var().into(),
            serde_json::to_string(&opts)?,
        )],
        mounts: vec![
            mount("logs", LOGS),
            mount("code", CODE),
            mount("clonerefs-tmp", "/tmp"),
            mount("repos", git::REPOS_ROOT),
        ],
        working_dir: None,
        security: SecurityContext::default(),
    })
}

/// Where the test containers start: the ref marked `workdir`, else the first.
pub(super) fn workdir(plan: &Plan) -> Option<String> {
    if !plan.clones {
        return None;
    }
    let first = plan
        .all_refs
        .iter()
        .find(|r| r.workdir)
        .or(plan.all_refs.first());
    first.map(|r| clone::path_for_refs(CODE, r))
}

/// Every ref's checkout, for the observation to read back.
pub(super) fn checkouts(plan: &Plan) -> Vec<String> {
    if !plan.clones {
        return vec![];
    }
    plan.all_refs
        .iter()
        .map(|r| clone::path_for_refs(CODE, r))
        .collect()
}
