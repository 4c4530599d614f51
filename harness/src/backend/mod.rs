/*!
Backends run a [`Pod`](crate::pod::Pod) for an arch and hand back what it left behind as a
[`PodRun`]; observing, normalising and comparing are the same for every backend. [`qemu`] runs
each container as a process of the arch's binary; [`docker`] runs real containers of the arch's
images. [`run`] picks one by [`RunOptions::backend`].
*/

pub mod docker;
pub mod proxy;
pub mod qemu;
pub mod volumes;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Result;
use pod_utils::testsupport::StoredObject;

use crate::pod::Pod;
use crate::runner::Runner;

/// The longest a pod may run before everything in it is killed.
pub const POD_DEADLINE: Duration = Duration::from_secs(240);

/// Which backend runs the lab's pods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Backend {
    /// Processes under qemu-user (the default).
    #[default]
    Qemu,
    /// Containers on the local Docker Engine.
    Docker,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Qemu => "qemu",
            Backend::Docker => "docker",
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown backend {0:?}: expected qemu or docker")]
pub struct UnknownBackend(String);

impl FromStr for Backend {
    type Err = UnknownBackend;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "qemu" => Ok(Backend::Qemu),
            "docker" => Ok(Backend::Docker),
            _ => Err(UnknownBackend(s.to_string())),
        }
    }
}

/// Runs `pod` for the runner's arch with the backend `opts` names.
pub fn run(pod: &Pod, runner: &Runner, opts: &RunOptions) -> Result<PodRun> {
    match opts.backend {
        Backend::Qemu => qemu::run(pod, runner, opts),
        Backend::Docker => docker::run(pod, runner, opts),
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
    pub backend: Backend,
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

/// The objects of a `local_output_dir` pod: every file of its output folder, by relative path.
pub fn local_objects(dir: &std::path::Path) -> anyhow::Result<Vec<StoredObject>> {
    Ok(qemu::read_tree(dir)?
        .into_iter()
        .map(|(name, data)| StoredObject {
            name,
            data,
            ..Default::default()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names() {
        assert_eq!("docker".parse::<Backend>().unwrap(), Backend::Docker);
        assert_eq!("qemu".parse::<Backend>().unwrap(), Backend::Qemu);
        assert_eq!(Backend::default(), Backend::Qemu);
        assert_eq!(Backend::Docker.to_string(), "docker");
        assert_eq!(
            "podman".parse::<Backend>().unwrap_err().to_string(),
            r#"unknown backend "podman": expected qemu or docker"#
        );
    }
}
