/*!
The Prow pod, independent of how it is run: volumes, init containers in order, then the test
containers and sidecar side by side, each with the command, environment and mounts the Prow
controller would give it. [`decorate`] builds one from a fixture; a backend runs it.
*/

pub mod decorate;

use std::collections::BTreeMap;

/// Where the utilities' images keep their binary (ko's layout, as upstream's images).
pub fn utility_path(utility: &str) -> String {
    format!("/ko-app/{utility}")
}

/// Where the fixture job image keeps its program.
pub const FIXTURE_JOB_PATH: &str = "/usr/local/bin/fixture-job";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    EmptyDir,
    /// A Kubernetes secret: file name -> content.
    Secret(BTreeMap<String, String>),
    /// A directory of the host, visible at the same path (the fixture repositories).
    HostPath(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub name: String,
    pub source: VolumeSource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub volume: String,
    pub path: String,
}

/// What a container runs: one of our utilities or the fixture job program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Image {
    Utility(&'static str),
    FixtureJob,
}

impl Image {
    /// The image's entrypoint, used when the container has no command.
    pub fn entrypoint(self) -> String {
        match self {
            Image::Utility(u) => utility_path(u),
            Image::FixtureJob => FIXTURE_JOB_PATH.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub name: String,
    pub image: Image,
    /// `None`: the image's entrypoint.
    pub command: Option<Vec<String>>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
    pub working_dir: Option<String>,
}

impl Container {
    /// The full argv, in-pod paths.
    pub fn argv(&self) -> Vec<String> {
        let mut v = self
            .command
            .clone()
            .unwrap_or_else(|| vec![self.image.entrypoint()]);
        v.extend(self.args.iter().cloned());
        v
    }

    pub fn env_value(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The blob storage a pod uploads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// fake-gcs-server, reached through `STORAGE_EMULATOR_HOST`.
    Gcs,
    /// moto's S3 server, reached through the s3 credentials file's endpoint.
    S3,
    /// `local_output_dir`: files copied into the `output` volume.
    Local,
}

#[derive(Debug, Clone)]
pub struct Pod {
    pub name: String,
    pub storage: Storage,
    pub volumes: Vec<Volume>,
    pub init_containers: Vec<Container>,
    pub containers: Vec<Container>,
    /// Send SIGTERM to every running container this long after they start (pod deletion).
    pub delete_after_ms: Option<u64>,
    /// Where each ref is checked out (in-pod paths), for observing the checkouts.
    pub checkouts: Vec<String>,
}

/// The bucket every lab pod uploads to.
pub const BUCKET: &str = "tetrapod-lab";

/// Placeholders the backend fills in when it has started the storage servers.
pub const STORAGE_ENDPOINT: &str = "@STORAGE_ENDPOINT@";
