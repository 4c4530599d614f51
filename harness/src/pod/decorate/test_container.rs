/*!
The job's own containers, wrapped by entrypoint (upstream `decorateContainer`): each runs
`/tools/entrypoint` with the job's command, its own log, marker and metadata files when there
are several, the downward-API env and the job's users.
*/

use anyhow::{Context, Result};
use pod_utils::{duration, wrapper};

use super::{CODE, LOGS, Plan, TOOLS, clonerefs, mount};
use crate::pod::{Container, Image, Mount, SecurityContext};
use crate::utility::Utility;

/// The wrapped containers, with what the sidecar needs to know of them.
pub(super) struct Tests {
    pub containers: Vec<Container>,
    /// Each container's wrapper options, the sidecar's `entries`.
    pub entries: Vec<wrapper::Options>,
    /// The mount paths of the secrets the containers see, when the job censors them.
    pub censor_dirs: Vec<String>,
}

pub(super) fn containers(plan: &Plan) -> Result<Tests> {
    let f = plan.f;
    let d = &f.decoration;
    let timeout = duration::parse(&d.timeout).context("decoration.timeout")?;
    let grace = duration::parse(&d.grace_period).context("decoration.grace_period")?;
    let single = f.containers.len() == 1;
    let workdir = clonerefs::workdir(plan);
    let mut tests = Tests {
        containers: Vec::new(),
        entries: Vec::new(),
        censor_dirs: Vec::new(),
    };
    for c in &f.containers {
        let name = if single {
            "test".to_string()
        } else {
            c.name.clone()
        };
        let (log, marker, metadata) = if single {
            (
                format!("{LOGS}/process-log.txt"),
                format!("{LOGS}/marker-file.txt"),
                format!("{LOGS}/artifacts/metadata.json"),
            )
        } else {
            (
                format!("{LOGS}/{name}-log.txt"),
                format!("{LOGS}/{name}-marker.txt"),
                format!("{LOGS}/artifacts/{name}-metadata.json"),
            )
        };
        let args = match &c.command {
            Some(cmd) => cmd.clone(),
            None => {
                let mut args = vec![Image::FixtureJob.entrypoint()];
                args.extend(c.steps.iter().cloned());
                args
            }
        };
        let w = wrapper::Options {
            args,
            container_name: name.clone(),
            process_log: log,
            marker_file: marker,
            metadata_file: metadata,
        };
        let ep = ::entrypoint::Options {
            timeout,
            grace_period: grace,
            artifact_dir: format!("{LOGS}/artifacts"),
            wrapper: w.clone(),
            ..Default::default()
        };
        let mut mounts: Vec<Mount> = c
            .secrets
            .iter()
            .map(|s| mount(s, &format!("/etc/{s}")))
            .collect();
        if d.censor_secrets {
            tests
                .censor_dirs
                .extend(mounts.iter().map(|m| m.path.clone()));
        }
        mounts.push(mount("logs", LOGS));
        mounts.push(mount("tools", TOOLS));
        if plan.clones {
            mounts.push(mount("code", CODE));
        }
        let mut env: Vec<(String, String)> =
            c.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut downward = plan.spec.env(true);
        downward.push(("ARTIFACTS".into(), format!("{LOGS}/artifacts")));
        downward.push(("GOPATH".into(), CODE.into()));
        // The controller gives every container the same JOB_SPEC text.
        for (k, v) in &mut downward {
            if k == "JOB_SPEC" {
                v.clone_from(&plan.spec_json);
            }
        }
        downward.sort();
        env.extend(downward);
        // Not Prow's: tells the fixture job program where this container's metadata goes, since
        // with several containers each has its own file in the shared artifacts folder.
        env.push(("FIXTURE_METADATA_FILE".into(), w.metadata_file.clone()));
        env.push((
            Utility::Entrypoint.options_var().into(),
            serde_json::to_string(&ep)?,
        ));
        tests.containers.push(Container {
            name,
            image: Image::FixtureJob,
            command: Some(vec![format!("{TOOLS}/entrypoint")]),
            args: vec![],
            env,
            mounts,
            working_dir: workdir.clone(),
            security: SecurityContext {
                run_as_user: c.run_as_user,
                run_as_group: c.run_as_group,
            },
        });
        tests.entries.push(w);
    }
    Ok(tests)
}
