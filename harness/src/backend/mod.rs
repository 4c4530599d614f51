/*!
Backends run a [`Pod`](crate::pod::Pod) for an arch and hand back what it left behind as a
[`PodRun`]. The pod's life (folder, storage server, proxy, volumes, init order, deadline,
deletion, collection) is [`lifecycle`]'s, the same for every backend; a [`Backend`] only starts,
signals and waits for containers and says where their files are. [`qemu`] runs each container as
a process of the arch's binary; [`docker`] runs real containers of the arch's images. [`run`]
picks one by [`RunOptions::backend`]; observing, normalising and comparing are the same for all.
*/

pub mod cores;
pub mod docker;
pub mod lifecycle;
pub mod proxy;
pub mod qemu;
pub mod volumes;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::Result;
use testsupport::StoredObject;

use crate::pod::{Container, Endpoints, Pod, Storage};
use crate::probe::Probe;
use crate::runner::Runner;
use lifecycle::StorageServer;
use volumes::VolumeDir;

/// The longest a pod may run before everything in it is killed.
pub const POD_DEADLINE: Duration = Duration::from_secs(240);

/// Which backend runs the lab's pods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BackendKind {
    /// Processes under qemu-user (the default).
    #[default]
    Qemu,
    /// Containers on the local Docker Engine.
    Docker,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Qemu => "qemu",
            BackendKind::Docker => "docker",
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown backend {0:?}: expected qemu or docker")]
pub struct UnknownBackend(String);

impl FromStr for BackendKind {
    type Err = UnknownBackend;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "qemu" => Ok(BackendKind::Qemu),
            "docker" => Ok(BackendKind::Docker),
            _ => Err(UnknownBackend(s.to_string())),
        }
    }
}

/// What a backend does for the shared [`lifecycle`]: run containers, and say where their files
/// and servers are. Everything else about a pod is the lifecycle's.
pub trait Backend {
    /// The pod's folder on the host; the lifecycle makes it afresh.
    fn root(&self) -> &Path;
    /// Starts the pod's storage server where its containers reach it; returns the server and
    /// the endpoint the pod is given (`STORAGE_EMULATOR_HOST` or the S3 URL).
    fn start_storage(&mut self, storage: Storage, root: &Path) -> Result<(StorageServer, String)>;
    /// The address a forward proxy listens on so the pod's containers reach it.
    fn proxy_listen(&self) -> IpAddr;
    /// Takes the pod's volumes (host folders) and endpoints for the containers to come.
    fn prepare(
        &mut self,
        pod: &Pod,
        volumes: &BTreeMap<String, VolumeDir>,
        endpoints: &Endpoints,
    ) -> Result<()>;
    /// Starts `cs` together and waits for all of them: SIGTERM to those still running
    /// `delete` after the start, SIGKILL at `deadline`. One exit per container, in order.
    fn run_together(
        &mut self,
        cs: &[Container],
        delete: Option<Duration>,
        deadline: Duration,
    ) -> Result<Vec<ContainerExit>>;
    /// Whether the containers' programs ran under an emulator (which cores are the guest's).
    fn emulated(&self) -> bool;
    /// Host path prefixes and the in-pod paths they stand for, for normalisation.
    fn path_map(&self, pod: &Pod, volumes: &BTreeMap<String, VolumeDir>) -> Vec<(String, String)>;
    /// The emulator (or "native") and how foreign children were run.
    fn emulation(&self) -> Result<String>;
    /// Where syscall traces were written, when the run was traced.
    fn trace_dir(&self) -> Option<PathBuf> {
        None
    }
}

/// Runs `pod` for the runner's arch with the backend `opts` names.
pub fn run(pod: &Pod, runner: &Runner, opts: &RunOptions) -> Result<PodRun> {
    let mut backend: Box<dyn Backend> = match opts.backend {
        BackendKind::Qemu => Box::new(qemu::Qemu::new(pod, runner, opts)),
        BackendKind::Docker => Box::new(docker::Docker::new(pod, runner, opts)?),
    };
    lifecycle::run(pod, backend.as_mut(), opts)
}

/// Runs a probe (one utility, no volumes, no network) with the backend `kind` names.
pub fn probe(runner: &Runner, p: &Probe, kind: BackendKind) -> Result<ContainerExit> {
    match kind {
        BackendKind::Qemu => qemu::probe(runner, p),
        BackendKind::Docker => docker::probe(runner, p),
    }
}

/// How one container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerExit {
    pub name: String,
    pub exit: crate::exit::Exit,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// A checked-out ref as found after the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    /// In-pod path.
    pub path: String,
    /// HEAD and tracked files, or why they could not be read.
    pub state: Result<(String, Vec<String>), String>,
}

/// Everything a pod left behind.
#[derive(Debug, Clone)]
pub struct PodRun {
    pub init: Vec<ContainerExit>,
    pub containers: Vec<ContainerExit>,
    /// Objects in the bucket (or the local output dir), sorted by name.
    pub objects: Vec<StoredObject>,
    /// Files in the logs volume: relative path -> bytes.
    pub logs: BTreeMap<String, Vec<u8>>,
    pub checkouts: Vec<Checkout>,
    /// Backend-specific path prefixes and the in-pod paths they stand for (normalisation).
    pub path_map: Vec<(String, String)>,
    /// The emulator (or "native") and how foreign children were run.
    pub emulation: String,
    /// The pod's folder (kept after the run for inspection).
    pub pod_dir: PathBuf,
    /// Guest core dumps the pod left, moved to `<pod_dir>/cores/`.
    pub cores: Vec<PathBuf>,
    /// Where syscall traces were written, when the run was traced.
    pub trace_dir: Option<PathBuf>,
    /// `METHOD URL` of every request the pod's forward proxy served, for a proxy pod.
    pub proxied: Option<Vec<String>>,
}

/// How to run a pod beyond the defaults: the backend, and debugging aids for one container.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub backend: BackendKind,
    /// Trace the system calls of this container's process and of the test command it starts.
    pub strace: Option<String>,
    /// Stop a process of this container at its first instruction and wait for gdb.
    pub gdb: Option<GdbStop>,
    /// Let the pod run as long as it likes (a person is at the debugger).
    pub no_deadline: bool,
    /// The pod folder becomes `<fixture>.<tag>` (qemu backend), so this run neither clobbers
    /// nor races a plain run of the same fixture, e.g. the lab's, going on at the same time.
    pub tag: Option<&'static str>,
}

#[derive(Debug, Clone)]
pub struct GdbStop {
    pub container: String,
    pub port: u16,
    /// The test command entrypoint starts, rather than the container's own process.
    pub child: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names() {
        assert_eq!(
            "docker".parse::<BackendKind>().unwrap(),
            BackendKind::Docker
        );
        assert_eq!("qemu".parse::<BackendKind>().unwrap(), BackendKind::Qemu);
        assert_eq!(BackendKind::default(), BackendKind::Qemu);
        assert_eq!(BackendKind::Docker.to_string(), "docker");
        assert_eq!(
            "podman".parse::<BackendKind>().unwrap_err().to_string(),
            r#"unknown backend "podman": expected qemu or docker"#
        );
    }
}
