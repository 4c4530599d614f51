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

mod clonerefs;
mod initupload;
mod job_spec;
mod place_entrypoint;
mod sidecar;
mod test_container;

pub use job_spec::job_spec;

use std::collections::BTreeMap;

use anyhow::Result;
use pod_utils::downwardapi::JobSpec;
use pod_utils::gcsupload;
use pod_utils::prowapi::{GcsConfiguration, Refs};
use serde_json::json;

use super::{
    BUCKET, Mount, PROXY_ENDPOINT, Pod, PodSecurityContext, STORAGE_ENDPOINT, Storage, Volume,
    VolumeSource,
};
use crate::fixture::{Fixture, StorageKind};
use crate::git::BuiltRepo;

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

/// What the container builders share, worked out once from the fixture: the job spec and its
/// text, the refs to clone, the upload options and how the utilities reach storage.
struct Plan<'a> {
    f: &'a Fixture,
    spec: JobSpec,
    spec_json: String,
    storage: Storage,
    all_refs: Vec<Refs>,
    clones: bool,
    upload: gcsupload::Options,
    /// What the test harness adds to reach its storage server: the emulator variable Google's
    /// clients honour (s3 goes through the credentials file instead).
    storage_env: Vec<(String, String)>,
    /// Upstream's order: the credentials' mounts, and in the sidecar the secrets, before output.
    blob_mounts: Vec<Mount>,
    output_mount: Option<Mount>,
}

impl<'a> Plan<'a> {
    fn new(f: &'a Fixture, repos: &BTreeMap<String, BuiltRepo>) -> Result<Self> {
        let spec = job_spec(f, repos)?;
        let storage = storage(f);
        let all_refs: Vec<Refs> = spec.refs.iter().chain(&spec.extra_refs).cloned().collect();
        let clones = !f.decoration.skip_cloning && !all_refs.is_empty();
        let mut gcs = gcs_configuration(f);
        if storage == Storage::Local {
            gcs.local_output_dir = OUTPUT.to_string();
        }
        let upload = gcsupload::Options {
            gcs,
            s3_credentials_file: if storage == Storage::S3 {
                format!("{S3_CREDS_DIR}/service-account.json")
            } else {
                String::new()
            },
            dry_run: false,
            ..Default::default()
        };
        Ok(Plan {
            spec_json: job_spec::encode_job_spec(f, &spec)?,
            f,
            spec,
            storage,
            all_refs,
            clones,
            upload,
            storage_env: match storage {
                Storage::Gcs => vec![("STORAGE_EMULATOR_HOST".into(), STORAGE_ENDPOINT.into())],
                _ => vec![],
            },
            blob_mounts: match storage {
                Storage::S3 => vec![mount("s3-credentials", S3_CREDS_DIR)],
                _ => vec![],
            },
            output_mount: (storage == Storage::Local).then(|| mount("output", OUTPUT)),
        })
    }

    /// The pod's volumes, in upstream's order: secrets, logs, tools, the blob credentials, the
    /// local output, then clonerefs' own.
    fn volumes(&self) -> Vec<Volume> {
        let mut volumes: Vec<Volume> = self
            .f
            .secrets
            .iter()
            .map(|(name, files)| Volume {
                name: name.clone(),
                source: VolumeSource::Secret(files.clone()),
            })
            .collect();
        for name in ["logs", "tools"] {
            volumes.push(Volume {
                name: name.into(),
                source: VolumeSource::EmptyDir,
            });
        }
        if self.storage == Storage::S3 {
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
        if self.storage == Storage::Local {
            volumes.push(Volume {
                name: "output".into(),
                source: VolumeSource::EmptyDir,
            });
        }
        if self.clones {
            volumes.extend(clonerefs::volumes());
        }
        volumes
    }
}

/// Builds the pod for `f`, with its repositories already built.
pub fn decorate(f: &Fixture, repos: &BTreeMap<String, BuiltRepo>) -> Result<Pod> {
    let plan = Plan::new(f, repos)?;
    let mut init = Vec::new();
    if plan.clones {
        init.push(clonerefs::container(&plan)?);
    }
    init.push(initupload::container(&plan)?);
    init.push(place_entrypoint::container());

    let tests = test_container::containers(&plan)?;
    let mut containers = tests.containers;
    containers.push(sidecar::container(&plan, tests.entries, tests.censor_dirs)?);

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

    let d = &f.decoration;
    Ok(Pod {
        name: f.name.clone(),
        storage: plan.storage,
        volumes: plan.volumes(),
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
        checkouts: clonerefs::checkouts(&plan),
        proxy: f.proxy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::SecurityContext;

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
