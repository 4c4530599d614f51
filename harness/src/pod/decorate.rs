/*!
Fixture -> pod, as the Prow controller decorates a ProwJob (upstream `decorate/podspec.go`; the
contract's §5): the same options JSON, env vars (sorted as the controller sorts them), volumes and
mount paths, so the utilities see exactly what they would in a cluster.
*/

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use pod_utils::downwardapi::JobSpec;
use pod_utils::prowapi::{GcsConfiguration, Pull, Refs};
use pod_utils::{clone, duration, gcsupload, wrapper};
use serde_json::json;

use super::{
    BUCKET, Container, Image, Mount, Pod, PodSecurityContext, STORAGE_ENDPOINT, SecurityContext,
    Storage, Volume, VolumeSource,
};
use crate::fixture::{Fixture, RefsSpec};
use crate::git::{self, BuiltRepo};

const LOGS: &str = "/logs";
const TOOLS: &str = "/tools";
const CODE: &str = "/home/prow/go";
const OUTPUT: &str = "/output";
const S3_CREDS_DIR: &str = "/secrets/s3-storage";

fn mount(volume: &str, path: &str) -> Mount {
    Mount {
        volume: volume.into(),
        path: path.into(),
    }
}

/// Builds the pod for `f`, with its repositories already built.
pub fn decorate(f: &Fixture, repos: &BTreeMap<String, BuiltRepo>) -> Result<Pod> {
    let d = &f.decoration;
    let spec = job_spec(f, repos)?;
    let storage = match d.storage.as_str() {
        "s3" => Storage::S3,
        "local" => Storage::Local,
        _ => Storage::Gcs,
    };
    let all_refs: Vec<Refs> = spec.refs.iter().chain(&spec.extra_refs).cloned().collect();
    let clones = !d.skip_cloning && !all_refs.is_empty();

    let mut gcs = GcsConfiguration {
        bucket: match storage {
            Storage::S3 => format!("s3://{BUCKET}"),
            _ => BUCKET.to_string(),
        },
        path_prefix: d.path_prefix.clone(),
        path_strategy: d.path_strategy.clone(),
        default_org: d.default_org.clone(),
        default_repo: d.default_repo.clone(),
        media_types: d.media_types.clone(),
        compress_file_types: d.compress_file_types.clone(),
        ..Default::default()
    };
    if storage == Storage::Local {
        gcs.local_output_dir = OUTPUT.to_string();
    }
    let upload = gcsupload::Options {
        gcs: gcs.clone(),
        s3_credentials_file: if storage == Storage::S3 {
            format!("{S3_CREDS_DIR}/service-account.json")
        } else {
            String::new()
        },
        dry_run: false,
        ..Default::default()
    };
    let spec_json = serde_json::to_string(&spec)?;
    // What the test harness adds to reach its storage server: the emulator variable Google's
    // clients honour (s3 goes through the credentials file instead).
    let storage_env: Vec<(String, String)> = match storage {
        Storage::Gcs => vec![("STORAGE_EMULATOR_HOST".into(), STORAGE_ENDPOINT.into())],
        _ => vec![],
    };
    let mut storage_mounts = Vec::new();
    if storage == Storage::S3 {
        storage_mounts.push(mount("s3-credentials", S3_CREDS_DIR));
    }
    if storage == Storage::Local {
        storage_mounts.push(mount("output", OUTPUT));
    }

    let mut volumes: Vec<Volume> = f
        .secrets
        .iter()
        .map(|(name, files)| Volume {
            name: name.clone(),
            source: VolumeSource::Secret(files.clone()),
        })
        .collect();
    volumes.push(Volume {
        name: "logs".into(),
        source: VolumeSource::EmptyDir,
    });
    volumes.push(Volume {
        name: "tools".into(),
        source: VolumeSource::EmptyDir,
    });
    if storage == Storage::S3 {
        let creds = json!({
            "region": "us-east-1", "endpoint": STORAGE_ENDPOINT, "insecure": true,
            "s3_force_path_style": true, "access_key": "tetrapod", "secret_key": "tetrapod",
        });
        let files = BTreeMap::from([("service-account.json".to_string(), creds.to_string())]);
        volumes.push(Volume {
            name: "s3-credentials".into(),
            source: VolumeSource::Secret(files),
        });
    }
    if storage == Storage::Local {
        volumes.push(Volume {
            name: "output".into(),
            source: VolumeSource::EmptyDir,
        });
    }

    let mut init = Vec::new();
    if clones {
        volumes.push(Volume {
            name: "repos".into(),
            source: VolumeSource::HostPath(git::REPOS_ROOT.into()),
        });
        volumes.push(Volume {
            name: "code".into(),
            source: VolumeSource::EmptyDir,
        });
        let opts = clonerefs::Options {
            src_root: CODE.into(),
            log: format!("{LOGS}/clone.json"),
            git_user_name: "ci-robot".into(),
            git_user_email: "ci-robot@k8s.io".into(),
            refs: all_refs.clone(),
            github_api_endpoints: vec!["https://api.github.com".into()],
            ..Default::default()
        };
        init.push(Container {
            name: "clonerefs".into(),
            image: Image::Utility("clonerefs"),
            command: None,
            args: vec![],
            env: vec![("CLONEREFS_OPTIONS".into(), serde_json::to_string(&opts)?)],
            mounts: vec![
                mount("logs", LOGS),
                mount("code", CODE),
                mount("repos", git::REPOS_ROOT),
            ],
            working_dir: None,
            security: SecurityContext::default(),
        });
    }
    let initupload_opts = initupload::Options {
        gcs: upload.clone(),
        log: if clones {
            format!("{LOGS}/clone.json")
        } else {
            String::new()
        },
    };
    let mut env = vec![
        (
            "INITUPLOAD_OPTIONS".to_string(),
            serde_json::to_string(&initupload_opts)?,
        ),
        ("JOB_SPEC".to_string(), spec_json.clone()),
    ];
    env.extend(storage_env.iter().cloned());
    env.sort();
    let mut mounts = if clones {
        vec![mount("logs", LOGS)]
    } else {
        vec![]
    };
    mounts.extend(storage_mounts.iter().cloned());
    init.push(Container {
        name: "initupload".into(),
        image: Image::Utility("initupload"),
        command: None,
        args: vec![],
        env,
        mounts,
        working_dir: None,
        security: SecurityContext::default(),
    });
    init.push(Container {
        name: "place-entrypoint".into(),
        image: Image::Utility("entrypoint"),
        command: None,
        args: vec!["--copy-mode-only".into()],
        env: vec![],
        mounts: vec![mount("tools", TOOLS)],
        working_dir: None,
        security: SecurityContext::default(),
    });

    let timeout = duration::parse(&d.timeout).context("decoration.timeout")?;
    let grace = duration::parse(&d.grace_period).context("decoration.grace_period")?;
    let single = f.containers.len() == 1;
    let workdir = if clones {
        let first = all_refs.iter().find(|r| r.workdir).or(all_refs.first());
        first.map(|r| clone::path_for_refs(CODE, r))
    } else {
        None
    };
    let mut containers = Vec::new();
    let mut entries = Vec::new();
    let mut censor_dirs = Vec::new();
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
        let ep = entrypoint::Options {
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
            censor_dirs.extend(mounts.iter().map(|m| m.path.clone()));
        }
        mounts.push(mount("logs", LOGS));
        mounts.push(mount("tools", TOOLS));
        if clones {
            mounts.push(mount("code", CODE));
        }
        let mut env: Vec<(String, String)> =
            c.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut downward = spec.env(true);
        downward.push(("ARTIFACTS".into(), format!("{LOGS}/artifacts")));
        downward.push(("GOPATH".into(), CODE.into()));
        downward.sort();
        env.extend(downward);
        // Not Prow's: tells the fixture job program where this container's metadata goes, since
        // with several containers each has its own file in the shared artifacts folder.
        env.push(("FIXTURE_METADATA_FILE".into(), w.metadata_file.clone()));
        env.push(("ENTRYPOINT_OPTIONS".into(), serde_json::to_string(&ep)?));
        containers.push(Container {
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
        entries.push(w);
    }
    let mut censoring: sidecar::options::CensoringOptions = match &d.censoring_options {
        Some(table) => serde_json::from_value(serde_json::to_value(table)?)
            .context("decoration.censoring_options")?,
        None => Default::default(),
    };
    censoring.secret_directories = censor_dirs;
    let mut sidecar_gcs = upload.clone();
    sidecar_gcs.items = vec![format!("{LOGS}/artifacts")];
    let sidecar_opts = sidecar::Options {
        gcs_options: sidecar_gcs,
        entries,
        ignore_interrupts: d.upload_ignores_interrupts,
        censoring_options: Some(censoring),
        ..Default::default()
    };
    let mut env = vec![
        ("JOB_SPEC".to_string(), spec_json),
        (
            "SIDECAR_OPTIONS".to_string(),
            serde_json::to_string(&sidecar_opts)?,
        ),
    ];
    env.extend(storage_env);
    env.sort();
    let mut mounts = vec![mount("logs", LOGS)];
    mounts.extend(storage_mounts);
    if d.censor_secrets {
        for c in &f.containers {
            for s in &c.secrets {
                let m = mount(s, &format!("/etc/{s}"));
                if !mounts.contains(&m) {
                    mounts.push(m);
                }
            }
        }
    }
    containers.push(Container {
        name: "sidecar".into(),
        image: Image::Utility("sidecar"),
        command: None,
        args: vec![],
        env,
        mounts,
        working_dir: None,
        security: SecurityContext::default(),
    });

    let checkouts = if clones {
        all_refs
            .iter()
            .map(|r| clone::path_for_refs(CODE, r))
            .collect()
    } else {
        vec![]
    };
    Ok(Pod {
        name: f.name.clone(),
        storage,
        volumes,
        // As the controller does: the decoration's users fill what the job's pod spec left
        // unset (the lab's jobs set none of their own).
        security: PodSecurityContext {
            run_as_user: d.run_as_user,
            run_as_group: d.run_as_group,
            fs_group: d.fs_group,
        },
        init_containers: init,
        containers,
        delete_after_ms: f.delete_after_ms,
        checkouts,
    })
}

/// The JobSpec the controller would write, with SHAs resolved from the built repositories.
pub fn job_spec(f: &Fixture, repos: &BTreeMap<String, BuiltRepo>) -> Result<JobSpec> {
    let d = &f.decoration;
    let refs = |r: &RefsSpec| -> Result<Refs> { to_refs(f, r, repos) };
    let mut decoration = json!({
        "timeout": duration::format(duration::parse(&d.timeout)?),
        "grace_period": duration::format(duration::parse(&d.grace_period)?),
        "gcs_configuration": {"bucket": BUCKET, "path_strategy": d.path_strategy},
    });
    if d.censor_secrets {
        decoration["censor_secrets"] = json!(true);
    }
    for (key, v) in [
        ("run_as_user", d.run_as_user),
        ("run_as_group", d.run_as_group),
        ("fs_group", d.fs_group),
    ] {
        if let Some(v) = v {
            decoration[key] = json!(v);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(text: &str) -> Fixture {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn decoration_users_become_the_pods_security_context_and_the_job_keeps_its_own() {
        let f = fixture(
            r#"
            description = "x"
            [job]
            type = "periodic"
            name = "p"
            [decoration]
            run_as_user = 65532
            fs_group = 2000
            [[containers]]
            name = "test"
            run_as_user = 0
            steps = ["print", "x"]
            "#,
        );
        let pod = decorate(&f, &BTreeMap::new()).unwrap();
        assert_eq!(
            pod.security,
            PodSecurityContext {
                run_as_user: Some(65532),
                run_as_group: None,
                fs_group: Some(2000),
            }
        );
        let by_name = |n: &str| {
            pod.init_containers
                .iter()
                .chain(&pod.containers)
                .find(|c| c.name == n)
                .unwrap()
        };
        let test = by_name("test");
        assert_eq!(test.security.run_as_user, Some(0));
        let sidecar = by_name("sidecar");
        assert_eq!(sidecar.security, SecurityContext::default());
        // As the kubelet resolves them: the container's own user, else the pod's.
        let run_as = |c| pod.run_as(c).unwrap();
        assert_eq!(
            (run_as(test).uid, run_as(test).gid, run_as(test).groups),
            (0, 0, vec![2000])
        );
        assert_eq!((run_as(sidecar).uid, run_as(sidecar).gid), (65532, 65532));
        // The JobSpec's decoration_config carries them under upstream's names.
        let spec = job_spec(&f, &BTreeMap::new()).unwrap();
        let d = spec.decoration_config.unwrap();
        assert_eq!(
            (d["run_as_user"].clone(), d["fs_group"].clone()),
            (json!(65532), json!(2000))
        );
        assert!(d.get("run_as_group").is_none());
    }

    #[test]
    fn without_users_the_image_decides() {
        let f = fixture(
            r#"
            description = "x"
            [job]
            type = "periodic"
            name = "p"
            [[containers]]
            name = "test"
            steps = ["print", "x"]
            "#,
        );
        let pod = decorate(&f, &BTreeMap::new()).unwrap();
        for c in pod.init_containers.iter().chain(&pod.containers) {
            assert_eq!(pod.run_as(c), None, "{}", c.name);
        }
    }
}
