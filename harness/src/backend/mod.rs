/*!
Backends run a [`Pod`](crate::pod::Pod) for an arch and hand back what it left behind as a
[`PodRun`]; observing, normalising and comparing are the same for every backend.
*/

pub mod qemu;

use std::collections::BTreeMap;
use std::path::PathBuf;

use pod_utils::testsupport::StoredObject;

/// How one container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerExit {
    pub name: String,
    /// Exit code, `signal N`, `not started` or `killed at deadline`.
    pub exit: String,
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
}

/// How to run a pod beyond the defaults: debugging aids for one container.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Trace the system calls of this container's process and of the test command it starts.
    pub strace: Option<String>,
    /// Stop a process of this container at its first instruction and wait for gdb.
    pub gdb: Option<GdbStop>,
    /// Let the pod run as long as it likes (a person is at the debugger).
    pub no_deadline: bool,
}

#[derive(Debug, Clone)]
pub struct GdbStop {
    pub container: String,
    pub port: u16,
    /// The test command entrypoint starts, rather than the container's own process.
    pub child: bool,
}
