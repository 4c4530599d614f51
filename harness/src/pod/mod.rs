/*!
The Prow pod, independent of how it is run: volumes, init containers in order, then the test
containers and sidecar side by side, each with the command, environment and mounts the Prow
controller would give it. [`decorate`] builds one from a fixture; a backend runs it.
*/

pub mod decorate;
#[cfg(test)]
mod upstream;

use std::collections::BTreeMap;

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
    Utility(crate::utility::Utility),
    FixtureJob,
}

impl Image {
    /// The image's entrypoint, used when the container has no command.
    pub fn entrypoint(self) -> String {
        match self {
            Image::Utility(u) => u.image_path(),
            Image::FixtureJob => FIXTURE_JOB_PATH.to_string(),
        }
    }
}

/// A container's `securityContext` user fields (the job's own, for test containers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SecurityContext {
    pub run_as_user: Option<u32>,
    pub run_as_group: Option<u32>,
}

/// The pod's `securityContext` user fields (what `decoration_config`'s `run_as_user`,
/// `run_as_group` and `fs_group` set).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodSecurityContext {
    pub run_as_user: Option<u32>,
    pub run_as_group: Option<u32>,
    pub fs_group: Option<u32>,
}

/// The user our images (and the fixture job's) run as when nothing says otherwise.
pub const IMAGE_UID: u32 = crate::image::rootfs::DEFAULT_UID;

/// What a container's processes run as, resolved as the kubelet and the runtime do: the
/// container's setting over the pod's; without a group, the user's group from the image's
/// `/etc/passwd` (0 for a user it does not list); `fs_group` as a supplementary group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

impl RunAs {
    /// The supplementary groups the container runtime gives the process: its primary group,
    /// then the pod's (runc and containerd both add the primary group).
    pub fn runtime_groups(&self) -> Vec<u32> {
        let mut g = vec![self.gid];
        g.extend(self.groups.iter().copied().filter(|x| *x != self.gid));
        g
    }

    /// `None` when neither pod nor container names a user or group: the image decides.
    pub fn of(pod: &PodSecurityContext, c: &SecurityContext) -> Option<RunAs> {
        let uid = c.run_as_user.or(pod.run_as_user);
        let gid = c.run_as_group.or(pod.run_as_group);
        if uid.is_none() && gid.is_none() && pod.fs_group.is_none() {
            return None;
        }
        let uid = uid.unwrap_or(IMAGE_UID);
        let gid = gid.unwrap_or(match uid {
            crate::image::rootfs::NONROOT_UID => crate::image::rootfs::NONROOT_GID,
            _ => 0,
        });
        Some(RunAs {
            uid,
            gid,
            groups: pod.fs_group.into_iter().collect(),
        })
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
    pub security: SecurityContext,
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
    pub security: PodSecurityContext,
    pub init_containers: Vec<Container>,
    pub containers: Vec<Container>,
    /// Send SIGTERM to every running container this long after they start (pod deletion).
    pub delete_after_ms: Option<u64>,
    /// Where each ref is checked out (in-pod paths), for observing the checkouts.
    pub checkouts: Vec<String>,
    /// Start a forward proxy and reach the storage server only through it ([`PROXY_ENDPOINT`]).
    pub proxy: bool,
}

impl Pod {
    /// Who `c`'s processes run as (`None`: the image's default user).
    pub fn run_as(&self, c: &Container) -> Option<RunAs> {
        RunAs::of(&self.security, &c.security)
    }
}

/// The bucket every lab pod uploads to.
pub const BUCKET: &str = "tetrapod-lab";

/// Placeholders the backend fills in when it has started the storage servers.
pub const STORAGE_ENDPOINT: &str = "@STORAGE_ENDPOINT@";
pub const PROXY_ENDPOINT: &str = "@PROXY_ENDPOINT@";

/// The storage server's name in a proxy pod: only the proxy resolves it. No dot, so moto reads
/// the bucket from the path, as it does for container names.
pub const PROXY_ONLY_HOST: &str = "tetrapod-proxy-only-storage";

/// What the backend started for one pod, filled into env values and secret files.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    /// The storage server as the pod addresses it (`host:port` or a URL).
    pub storage: String,
    /// The forward proxy's URL, for [`PROXY_ENDPOINT`].
    pub proxy: String,
}

impl Endpoints {
    /// `v` with the placeholders replaced.
    pub fn fill(&self, v: &str) -> String {
        v.replace(STORAGE_ENDPOINT, &self.storage)
            .replace(PROXY_ENDPOINT, &self.proxy)
    }
}
