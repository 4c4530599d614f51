/*!
The initupload init container (upstream `InitUpload`): it records the start (and clonerefs'
record, when there is one) in storage.
*/

use anyhow::Result;

use super::{LOGS, Plan, mount};
use crate::pod::{Container, Image, SecurityContext};
use crate::utility::Utility;

pub(super) fn container(plan: &Plan) -> Result<Container> {
    let opts = ::initupload::Options {
        gcs: plan.upload.clone(),
        log: if plan.clones {
            format!("{LOGS}/clone.json")
        } else {
            String::new()
        },
    };
    let mut env = vec![
        (
            Utility::Initupload.options_var().to_string(),
            serde_json::to_string(&opts)?,
        ),
        ("JOB_SPEC".to_string(), plan.spec_json.clone()),
    ];
    env.extend(plan.storage_env.iter().cloned());
    env.sort();
    let mut mounts = if plan.clones {
        vec![mount("logs", LOGS)]
    } else {
        vec![]
    };
    mounts.extend(plan.blob_mounts.iter().cloned());
    mounts.extend(plan.output_mount.clone());
    Ok(Container {
        name: Utility::Initupload.name().into(),
        image: Image::Utility(Utility::Initupload),
        command: None,
        args: vec![],
        env,
        mounts,
        working_dir: None,
        security: SecurityContext::default(),
    })
}
