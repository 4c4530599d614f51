/*!
Fixture -> pod, as the Prow controller decorates a ProwJob (upstream `decorate/podspec.go`; the
contract's §5): the same options JSON, env vars (sorted as the controller sorts them), volumes and
mount paths, so the utilities see exactly what they would in a cluster. `upstream.rs` checks the
result against the pods upstream's own tests render.

Where the lab departs from upstream, on purpose: the fixture repositories are a hostPath volume
`repos` mounted into clonerefs and every ref has a `file://` clone_uri; storage is an emulator
(`STORAGE_EMULATOR_HOST`) or moto through an s3 credentials secret, never GCS credentials; the
local mode's `output` volume is an emptyDir, not a host path; fixture secrets mount at
`/etc/<name>`; test containers get `FIXTURE_METADATA_FILE`.
*/

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use pod_utils::downwardapi::JobSpec;
use pod_utils::prowapi::{GcsConfiguration, Pull, Refs};
use pod_utils::{clone, duration, gcsupload, wrapper};
use serde::Serialize;
use serde_json::json;

use super::{
    BUCKET, Container, Image, Mount, PROXY_ENDPOINT, Pod, PodSecurityContext, STORAGE_ENDPOINT,
    SecurityContext, Storage, Volume, VolumeSource,
};
use crate::fixture::{Fixture, RefsSpec, StorageKind};
use crate::git::{self, BuiltRepo};
use crate::utility::Utility;

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

fn storage(f: &Fixture) -> Storage {
    match f.decoration.storage {
        StorageKind::Gs => Storage::Gcs,
        StorageKind::S3 => Storage::S3,
        StorageKind::Local => Storage::Local,
    }
}

/// `decoration_config.gcs_configuration`: what the job's decoration says, as JOB_SPEC and the
/// upload options both carry it.
fn gcs_configuration(f: &Fixture) -> GcsConfiguration {
    let d = &f.decoration;
    GcsConfiguration {
        bucket: match storage(f) {
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
    }
}

/// Builds the pod for `f`, with its repositories already built.
pub fn decorate(f: &Fixture, repos: &BTreeMap<String, BuiltRepo>) -> Result<Pod> {
    let d = &f.decoration;
    let spec = job_spec(f, repos)?;
    let storage = storage(f);
    let all_refs: Vec<Refs> = spec.refs.iter().chain(&spec.extra_refs).cloned().collect();
    let clones = !d.skip_cloning && !all_refs.is_empty();

    let mut gcs = gcs_configuration(f);
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
    let spec_json = encode_job_spec(f, &spec)?;
    // What the test harness adds to reach its storage server: the emulator variable Google's
    // clients honour (s3 goes through the credentials file instead).
    let storage_env: Vec<(String, String)> = match storage {
        Storage::Gcs => vec![("STORAGE_EMULATOR_HOST".into(), STORAGE_ENDPOINT.into())],
        _ => vec![],
    };
    // Upstream's order: the credentials' mounts, and in the sidecar the secrets, before output.
    let blob_mounts: Vec<Mount> = match storage {
        Storage::S3 => vec![mount("s3-credentials", S3_CREDS_DIR)],
        _ => vec![],
    };
    let output_mount = (storage == Storage::Local).then(|| mount("output", OUTPUT));

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
        // clonerefs' own /tmp (it keeps known_hosts there), then the lab's fixture remotes, as
        // a clone volume like upstream's key secrets, then the code.
        for (name, source) in [
            ("clonerefs-tmp", VolumeSource::EmptyDir),
            ("repos", VolumeSource::HostPath(git::REPOS_ROOT.into())),
            ("code", VolumeSource::EmptyDir),
        ] {
            volumes.push(Volume {
                name: name.into(),
                source,
            });
        }
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
            Utility::Initupload.options_var().to_string(),
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
    mounts.extend(blob_mounts.iter().cloned());
    mounts.extend(output_mount.clone());
    init.push(Container {
        name: Utility::Initupload.name().into(),
        image: Image::Utility(Utility::Initupload),
        command: None,
        args: vec![],
        env,
        mounts,
        working_dir: None,
        security: SecurityContext::default(),
    });
    init.push(Container {
        name: "place-entrypoint".into(),
        image: Image::Utility(Utility::Entrypoint),
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
        // The controller gives every container the same JOB_SPEC text.
        for (k, v) in &mut downward {
            if k == "JOB_SPEC" {
                v.clone_from(&spec_json);
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
    // Upstream copies five fields of decoration_config.censoring_options; the lab passes the
    // table whole, so a fixture can also set the sidecar's ini_filenames.
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
            Utility::Sidecar.options_var().to_string(),
            serde_json::to_string(&sidecar_opts)?,
        ),
    ];
    env.extend(storage_env);
    env.sort();
    let mut mounts = vec![mount("logs", LOGS)];
    mounts.extend(blob_mounts);
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
    mounts.extend(output_mount);
    containers.push(Container {
        name: Utility::Sidecar.name().into(),
        image: Image::Utility(Utility::Sidecar),
        command: None,
        args: vec![],
        env,
        mounts,
        working_dir: None,
        security: SecurityContext::default(),
    });

    if f.proxy {
        // A cluster-wide proxy injector sets these on every container, utilities included.
        for c in init.iter_mut().chain(containers.iter_mut()) {
            c.env.extend([
                ("HTTPS_PROXY".to_string(), PROXY_ENDPOINT.to_string()),
                ("HTTP_PROXY".to_string(), PROXY_ENDPOINT.to_string()),
                ("NO_PROXY".to_string(), ".cluster.local,.svc".to_string()),
            ]);
        }
    }

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
        proxy: f.proxy,
    })
}

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
fn encode_job_spec(f: &Fixture, spec: &JobSpec) -> Result<String> {
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
        // The runtime adds the primary group to the supplementary ones.
        assert_eq!(run_as(test).runtime_groups(), vec![0, 2000]);
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

    /// Upstream's order, which its goldens (all GCS) do not show: the sidecar mounts the
    /// secrets before the local output; JOB_SPEC names an s3 bucket and secret as configured.
    #[test]
    fn local_output_mounts_last_and_s3_job_spec_names_its_bucket() {
        let job = |storage: &str| {
            fixture(&format!(
                r#"
                description = "x"
                [job]
                type = "periodic"
                name = "p"
                [decoration]
                storage = "{storage}"
                censor_secrets = true
                [secrets.token]
                token = "x"
                [[containers]]
                name = "test"
                secrets = ["token"]
                steps = ["print", "x"]
                "#
            ))
        };
        let pod = decorate(&job("local"), &BTreeMap::new()).unwrap();
        let sidecar = pod.containers.last().unwrap();
        let mounts: Vec<&str> = sidecar.mounts.iter().map(|m| m.volume.as_str()).collect();
        assert_eq!(mounts, ["logs", "token", "output"]);

        let pod = decorate(&job("s3"), &BTreeMap::new()).unwrap();
        let sidecar = pod.containers.last().unwrap();
        let mounts: Vec<&str> = sidecar.mounts.iter().map(|m| m.volume.as_str()).collect();
        assert_eq!(mounts, ["logs", "s3-credentials", "token"]);
        let spec = sidecar.env_value("JOB_SPEC").unwrap();
        assert!(
            spec.ends_with(
                r#""decoration_config":{"timeout":"1m0s","grace_period":"5s","gcs_configuration":{"bucket":"s3://tetrapod-lab","path_strategy":"explicit"},"s3_credentials_secret":"s3-credentials","censor_secrets":true}}"#
            ),
            "{spec}"
        );
        assert_eq!(pod.containers[0].env_value("JOB_SPEC"), Some(spec));
    }
}
