/*!
The connection to the Docker Engine, shared by every pod of a lab run: one bollard client on one
tokio runtime (a single worker thread, so pods on several test threads can all `block_on` it and
the output readers keep running while they wait), this run's label, and cleanup:

- [`Objects`] removes a pod's containers and network when it drops, also on an error or panic;
- Ctrl-C removes everything labeled with this run's id, then exits 130;
- at connect, objects of earlier runs whose process is gone (killed runs) are removed.
*/

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{OnceLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, NetworkCreateRequest};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, KillContainerOptions, ListContainersOptions,
    ListNetworksOptions, ListVolumesOptions, RemoveContainerOptions, RemoveVolumeOptions,
};
use futures_util::StreamExt;
use tokio::task::JoinHandle;

use super::spec::{self, LABEL};

/// Longest any one API request may take (waits end by the pod deadline well before).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(900);

pub struct Engine {
    rt: tokio::runtime::Runtime,
    pub docker: Docker,
    /// This run's label value.
    pub run_id: String,
    seq: AtomicU64,
}

static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();

/// Creating an object holds this for reading; Ctrl-C takes it for writing, so no object is
/// being created while the run's objects are listed for removal, and none is created after.
static GATE: RwLock<()> = RwLock::new(());
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Runs `create` unless the run was interrupted, with the gate held.
fn gated<T>(create: impl FnOnce() -> Result<T>) -> Result<T> {
    let _open = GATE
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    create()
}

/// The engine of this process, connected on first use.
pub fn get() -> Result<&'static Engine> {
    ENGINE
        .get_or_init(|| Engine::connect().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("{e}"))
}

/// `Ok` when the Docker Engine answers; the reason otherwise (for the skip-or-fail policy).
pub fn available() -> Result<(), String> {
    get().map(|_| ()).map_err(|e| format!("{e:#}"))
}

impl Engine {
    fn connect() -> Result<Engine> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("tetrapod-docker")
            .enable_all()
            .build()?;
        let docker = rt.block_on(async {
            let d = Docker::connect_with_local_defaults()
                .context("no Docker Engine client (DOCKER_HOST or /var/run/docker.sock)")?;
            // The engine here speaks API 1.41; bollard's default is newer.
            let d = d
                .negotiate_version()
                .await
                .context("the Docker Engine does not answer")?
                .with_timeout(REQUEST_TIMEOUT);
            d.ping()
                .await
                .context("the Docker Engine does not answer")?;
            Ok::<_, anyhow::Error>(d)
        })?;
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let engine = Engine {
            rt,
            docker,
            run_id: spec::run_id(std::process::id(), started),
            seq: AtomicU64::new(0),
        };
        engine.block_on(remove_labeled(&engine.docker, Which::Stale(&engine.run_id)));
        let (docker, run) = (engine.docker.clone(), engine.run_id.clone());
        engine.rt.spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                // Off the runtime's only worker: waiting for the gate there would stall the
                // creations that hold it.
                let rt = tokio::runtime::Handle::current();
                std::thread::spawn(move || {
                    let _closed = GATE
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    INTERRUPTED.store(true, Ordering::SeqCst);
                    eprintln!(
                        "docker backend: interrupted; removing this run's containers and networks"
                    );
                    rt.block_on(remove_labeled(&docker, Which::Run(&run)));
                    std::process::exit(130);
                });
            }
        });
        Ok(engine)
    }

    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    pub fn spawn<F>(&self, f: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.rt.spawn(f)
    }

    /// A number for the next pod's object names (reruns of a fixture must not collide).
    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    pub fn labels(&self) -> HashMap<String, String> {
        HashMap::from([(LABEL.to_string(), self.run_id.clone())])
    }

    /// Whether the engine has an image with this id (`sha256:...`).
    pub fn has_image(&self, id: &str) -> bool {
        self.block_on(self.docker.inspect_image(id)).is_ok()
    }
}

/// The containers and networks one pod created, removed (forcefully) when this drops.
pub struct Objects {
    engine: &'static Engine,
    containers: Vec<String>,
    networks: Vec<String>,
}

/// The standard output and error of a container, read from its attach stream.
pub type Output = JoinHandle<(Vec<u8>, Vec<u8>)>;

impl Objects {
    pub fn new(engine: &'static Engine) -> Objects {
        Objects {
            engine,
            containers: Vec::new(),
            networks: Vec::new(),
        }
    }

    /// Creates an internal bridge network (no route out) and returns its gateway address,
    /// which is the host's address on it.
    pub fn network(&mut self, name: &str) -> Result<std::net::IpAddr> {
        let e = self.engine;
        let req = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            internal: Some(true),
            labels: Some(e.labels()),
            ..Default::default()
        };
        gated(|| {
            let created = e.block_on(e.docker.create_network(req));
            self.networks.push(name.to_string());
            created.with_context(|| format!("create network {name}"))
        })?;
        let inspect = e
            .block_on(e.docker.inspect_network(name, None))
            .with_context(|| format!("inspect network {name}"))?;
        let gateway = inspect
            .ipam
            .and_then(|i| i.config)
            .unwrap_or_default()
            .into_iter()
            .find_map(|c| c.gateway)
            .with_context(|| format!("network {name} has no gateway address"))?;
        gateway
            .parse()
            .with_context(|| format!("network {name}: gateway {gateway:?}"))
    }

    /// Creates a container (named `name`, for `platform`) and remembers it for removal.
    pub fn create(&mut self, name: &str, platform: &str, body: ContainerCreateBody) -> Result<()> {
        let e = self.engine;
        let opts = CreateContainerOptions {
            name: Some(name.to_string()),
            platform: platform.to_string(),
        };
        gated(|| {
            let created = e.block_on(e.docker.create_container(Some(opts), body));
            // Remember it even if the answer was lost: removal of an unknown name is harmless.
            self.containers.push(name.to_string());
            created.with_context(|| format!("create container {name}"))
        })?;
        Ok(())
    }

    /// Attaches to the container's output (before it starts, so nothing is missed) and starts
    /// it. The attach stream carries the exact bytes, unlike the log drivers, which frame lines
    /// (a last line without a newline gets one) and, for json-file, replace bytes that are not
    /// UTF-8.
    pub fn start(&self, name: &str) -> Result<Output> {
        let e = self.engine;
        let opts = AttachContainerOptions {
            stream: true,
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        let attached = e
            .block_on(e.docker.attach_container(name, Some(opts)))
            .with_context(|| format!("attach to container {name}"))?;
        let mut stream = attached.output;
        let reader = e.spawn(async move {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            while let Some(Ok(chunk)) = stream.next().await {
                match chunk {
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        out.extend_from_slice(&message);
                    }
                    LogOutput::StdErr { message } => err.extend_from_slice(&message),
                    LogOutput::StdIn { .. } => {}
                }
            }
            (out, err)
        });
        e.block_on(e.docker.start_container(name, None))
            .with_context(|| format!("start container {name}"))?;
        Ok(reader)
    }

    /// The output an attach stream collected, once the container has ended.
    pub fn output(&self, reader: Output) -> (Vec<u8>, Vec<u8>) {
        self.engine.block_on(reader).unwrap_or_default()
    }
}

impl Drop for Objects {
    fn drop(&mut self) {
        let e = self.engine;
        let containers = std::mem::take(&mut self.containers);
        let networks = std::mem::take(&mut self.networks);
        e.block_on(async {
            for c in &containers {
                remove_container(&e.docker, c).await;
            }
            for n in &networks {
                let _ = e.docker.remove_network(n).await;
            }
        });
    }
}

async fn remove_container(docker: &Docker, name: &str) {
    let opts = RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    let _ = docker.remove_container(name, Some(opts)).await;
}

/// The exit code of a container, once it has ended.
pub async fn wait_exit(docker: &Docker, name: &str) -> Result<i64> {
    let mut s = docker.wait_container(name, None);
    match s.next().await {
        Some(Ok(r)) => return Ok(r.status_code),
        Some(Err(DockerError::DockerContainerWaitError { code, .. })) => return Ok(code),
        _ => {}
    }
    // The wait was cut short: ask for the state instead.
    let inspect = docker
        .inspect_container(name, None)
        .await
        .with_context(|| format!("inspect container {name}"))?;
    let state = inspect.state.unwrap_or_default();
    if state.running == Some(true) {
        bail!("lost track of running container {name}");
    }
    Ok(state.exit_code.unwrap_or(-1))
}

/// Sends `signal` (`SIGTERM`, `SIGKILL`) to a container; false if it was not running.
pub async fn kill(docker: &Docker, name: &str, signal: &str) -> bool {
    let opts = KillContainerOptions {
        signal: signal.to_string(),
    };
    docker.kill_container(name, Some(opts)).await.is_ok()
}

enum Which<'a> {
    /// Everything of this run (Ctrl-C).
    Run(&'a str),
    /// What runs that are gone left behind (`&str`: our own run, kept).
    Stale(&'a str),
}

impl Which<'_> {
    fn matches(&self, value: &str) -> bool {
        match self {
            Which::Run(run) => value == *run,
            Which::Stale(ours) => spec::is_stale(value, ours, |pid| {
                std::path::Path::new(&format!("/proc/{pid}")).exists()
            }),
        }
    }
}

/// Removes the labeled containers, then networks and volumes, that `which` selects.
async fn remove_labeled(docker: &Docker, which: Which<'_>) {
    let filters = HashMap::from([("label".to_string(), vec![LABEL.to_string()])]);
    let value = |labels: Option<&HashMap<String, String>>| {
        labels
            .and_then(|l| l.get(LABEL))
            .cloned()
            .unwrap_or_default()
    };
    let list = ListContainersOptions {
        all: true,
        filters: Some(filters.clone()),
        ..Default::default()
    };
    let mut removed = 0;
    for c in docker.list_containers(Some(list)).await.unwrap_or_default() {
        if which.matches(&value(c.labels.as_ref())) {
            if let Some(id) = &c.id {
                remove_container(docker, id).await;
                removed += 1;
            }
        }
    }
    let list = ListNetworksOptions {
        filters: Some(filters.clone()),
    };
    for n in docker.list_networks(Some(list)).await.unwrap_or_default() {
        if which.matches(&value(n.labels.as_ref())) {
            if let Some(id) = &n.id {
                let _ = docker.remove_network(id).await;
                removed += 1;
            }
        }
    }
    // The backend makes no volumes (bind mounts are read back from the host); an older or
    // future one might.
    let list = ListVolumesOptions {
        filters: Some(filters),
    };
    if let Ok(v) = docker.list_volumes(Some(list)).await {
        for vol in v.volumes.unwrap_or_default() {
            if which.matches(&value(Some(&vol.labels))) {
                let _ = docker
                    .remove_volume(&vol.name, Some(RemoveVolumeOptions { force: true }))
                    .await;
                removed += 1;
            }
        }
    }
    if removed > 0 && matches!(which, Which::Stale(_)) {
        eprintln!("docker backend: removed {removed} objects left by earlier runs");
    }
}
