/*!
The sidecar container (upstream `Sidecar`): it waits for the wrapped containers' markers, then
censors and uploads their logs and the artifacts.
*/

use anyhow::{Context, Result};
use pod_utils::wrapper;

use super::{LOGS, Plan, mount};
use crate::pod::{Container, Image, SecurityContext};
use crate::utility::Utility;

pub(super) fn container(
    plan: &Plan,
    entries: Vec<wrapper::Options>,
    censor_dirs: Vec<String>,
) -> Result<Container> {
    let f = plan.f;
    let d = &f.decoration;
    // Upstream copies five fields of decoration_config.censoring_options; the lab passes the
    // table whole, so a fixture can also set the sidecar's ini_filenames.
    let mut censoring: ::sidecar::options::CensoringOptions = match &d.censoring_options {
        Some(table) => serde_json::from_value(serde_json::to_value(table)?)
            .context("decoration.censoring_options")?,
        None => Default::default(),
    };
    censoring.secret_directories = censor_dirs;
    let mut gcs = plan.upload.clone();
    gcs.items = vec![format!("{LOGS}/artifacts")];
    let opts = ::sidecar::Options {
        gcs_options: gcs,
        entries,
        ignore_interrupts: d.upload_ignores_interrupts,
        censoring_options: Some(censoring),
        ..Default::default()
    };
    let mut env = vec![
        ("JOB_SPEC".to_string(), plan.spec_json.clone()),
        (
            Utility::Sidecar.options_var().to_string(),
            serde_json::to_string(&opts)?,
        ),
    ];
    env.extend(plan.storage_env.iter().cloned());
    env.sort();
    let mut mounts = vec![mount("logs", LOGS)];
    mounts.extend(plan.blob_mounts.iter().cloned());
    if d.censor_secrets {
        for c in &f.containers {
            for s in &c.secrets {
                let m = mount(s, &format!("/etc/{s}"));
                // Upstream appends a secret once per container mounting it; Kubernetes rejects
                // a container whose mount paths repeat, so the lab mounts it once.
                if !mounts.contains(&m) {
                    mounts.push(m);
                }
            }
        }
    }
    mounts.extend(plan.output_mount.clone());
    Ok(Container {
        name: Utility::Sidecar.name().into(),
        image: Image::Utility(Utility::Sidecar),
        command: None,
        args: vec![],
        env,
        mounts,
        working_dir: None,
        security: SecurityContext::default(),
    })
}
