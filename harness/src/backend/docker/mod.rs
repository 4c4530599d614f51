/*!
The Docker backend: the same [`Pod`] as real containers of the arch's images on the local Docker
Engine (through bollard), handing back the same [`PodRun`] as the qemu backend, so one golden
serves both.

- **Images**: the utilities and `fixture-job` from the daemonless builder, fake-gcs-server as a
  scratch image ([`images`]); loaded once per arch per run.
- **Network**: a private internal bridge per pod (no route out). fake-gcs-server runs on it as a
  container and the pod reaches it by container name, so the name is resolved by Docker's DNS
  from inside our static images. moto has no image: it runs on the host, listening on the
  network's gateway address (the host's address on that bridge, reachable from nowhere else).
  The host reads the bucket back through the server container's address on the bridge.
- **Volumes**: folders of `target/lab/pods-docker/<arch>/<pod>/vol/` bind-mounted where the pod
  mounts them (emptyDirs mode 0777 like Kubernetes', secrets read-only, the fixture remotes at
  their own path), so logs, output and checkouts are read from the host afterwards.
- **Order**: the shared [`lifecycle`](super::lifecycle)'s; this backend starts each group of
  containers together, signals them all at once (`delete_after_ms`: SIGTERM, the deadline:
  SIGKILL) and reads their output from the attach streams.
- **User**: what the rendered pod gives each container (its own `securityContext` over the
  pod's, `fs_group` as a supplementary group, see [`RunAs`]); without one, the image's user
  (root, as upstream's images).
- **Foreign arches**: binfmt_misc when it has the arch with flag F, else the host's static qemu
  mounted at [`spec::EMULATOR_PATH`] as each container's entrypoint and before the test command
  (see [`spec::Mode`]).
- **Not supported**: the syscall trace and gdb options of [`RunOptions`] (qemu-backend
  features); they are ignored with a warning. `no_deadline` is honoured.
- **Cleanup**: see [`engine`].
*/

pub mod engine;
pub mod images;
pub mod spec;

use std::collections::BTreeMap;
use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig, ResourcesUlimits};
use futures_util::StreamExt;
use testsupport::Moto;

use super::lifecycle::StorageServer;
use super::volumes::VolumeDir;
use super::{Backend, ContainerExit, POD_DEADLINE, RunOptions};
use crate::build;
use crate::exit::Exit;
use crate::pod::{BUCKET, Container, Endpoints, Image, Pod, PodSecurityContext, RunAs, Storage};
use crate::probe::Probe;
use crate::runner::Runner;
use crate::target::Arch;
use engine::{Engine, Objects};
use spec::Mode;

/// fake-gcs-server's port inside its container.
const GCS_PORT: u16 = 4443;

/// The Docker backend for one pod (or probe): see the module doc.
pub struct Docker<'a> {
    engine: &'static Engine,
    runner: &'a Runner,
    arch: Arch,
    mode: Mode,
    images: Arc<images::Ids>,
    /// The pod's private network and the host's address on it (`None` for a probe).
    network: Option<(String, IpAddr)>,
    endpoints: Endpoints,
    vol_dirs: BTreeMap<String, (PathBuf, bool)>,
    seq: u64,
    pod: String,
    root: PathBuf,
    /// Whether guest cores are copied out of failed containers (not for probes).
    keep_cores: bool,
    security: PodSecurityContext,
    /// Declared last: the pod's containers and network go when the backend does.
    objects: Objects,
}

impl<'a> Docker<'a> {
    pub fn new(pod: &Pod, runner: &'a Runner, opts: &RunOptions) -> Result<Self> {
        if opts.strace.is_some() || opts.gdb.is_some() {
            eprintln!("docker backend: syscall traces and gdb are qemu-backend features; ignored");
        }
        let mut d = Docker::on(runner, &pod.name)?;
        d.root = build::lab_dir()
            .join("pods-docker")
            .join(d.arch.name())
            .join(&pod.name);
        d.keep_cores = true;
        d.security = pod.security;
        let net = spec::object_name(&d.engine.run_id, d.seq, d.arch.name(), &pod.name, "net");
        let gateway = d.objects.network(&net)?;
        d.network = Some((net, gateway));
        Ok(d)
    }

    /// A backend without network, volumes or pod folder.
    fn on(runner: &'a Runner, pod: &str) -> Result<Self> {
        let engine = engine::get()?;
        let arch = runner.arch;
        let images = images::for_arch(engine, arch)?;
        let mode = spec::mode(runner.emulator.as_deref());
        announce(arch, mode);
        Ok(Docker {
            engine,
            runner,
            arch,
            mode,
            images,
            network: None,
            endpoints: Endpoints::default(),
            vol_dirs: BTreeMap::new(),
            seq: engine.next_seq(),
            pod: pod.to_string(),
            root: PathBuf::new(),
            keep_cores: false,
            security: PodSecurityContext::default(),
            objects: Objects::new(engine),
        })
    }
}

impl Backend for Docker<'_> {
    fn root(&self) -> &Path {
        &self.root
    }

    fn start_storage(&mut self, storage: Storage, root: &Path) -> Result<(StorageServer, String)> {
        let (net, gateway) = self.network.clone().context("a pod has a network")?;
        Ok(match storage {
            Storage::Gcs => {
                let (base, endpoint) =
                    start_fake_gcs(self.engine, &mut self.objects, root, &net, self.seq)?;
                (StorageServer::GcsAt(base), endpoint)
            }
            Storage::S3 => {
                let m = Moto::start_on(gateway, &[BUCKET]).map_err(anyhow::Error::msg)?;
                let u = m.url();
                (StorageServer::S3(m), u)
            }
            Storage::Local => (StorageServer::None, String::new()),
        })
    }

    fn proxy_listen(&self) -> IpAddr {
        self.network
            .as_ref()
            .map(|(_, gateway)| *gateway)
            .unwrap_or(Ipv4Addr::LOCALHOST.into())
    }

    fn prepare(
        &mut self,
        _pod: &Pod,
        volumes: &BTreeMap<String, VolumeDir>,
        endpoints: &Endpoints,
    ) -> Result<()> {
        self.vol_dirs = volumes
            .iter()
            .map(|(name, v)| (name.clone(), (v.dir.clone(), v.read_only)))
            .collect();
        self.endpoints = endpoints.clone();
        Ok(())
    }

    fn run_together(
        &mut self,
        cs: &[Container],
        delete: Option<Duration>,
        deadline: Duration,
    ) -> Result<Vec<ContainerExit>> {
        self.run_containers(cs, delete, deadline)
    }

    fn emulated(&self) -> bool {
        self.runner.emulator.is_some()
    }

    /// Host folders stand for the in-pod paths they are mounted at (error texts name them).
    fn path_map(&self, pod: &Pod, volumes: &BTreeMap<String, VolumeDir>) -> Vec<(String, String)> {
        pod.init_containers
            .iter()
            .chain(&pod.containers)
            .flat_map(|c| &c.mounts)
            .filter_map(|m| {
                volumes
                    .get(&m.volume)
                    .map(|v| (v.dir.display().to_string(), m.path.clone()))
            })
            .collect()
    }

    fn emulation(&self) -> Result<String> {
        Ok(match self.mode {
            Mode::Native => "native".to_string(),
            m => format!(
                "{} ({}; docker)",
                self.runner.emulator_version()?,
                m.describe()
            ),
        })
    }
}

/// Prints the emulation mode once per arch.
fn announce(arch: Arch, mode: Mode) {
    static SEEN: Mutex<Vec<Arch>> = Mutex::new(Vec::new());
    let mut seen = SEEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !seen.contains(&arch) {
        seen.push(arch);
        let how = match mode {
            Mode::Explicit => format!(
                "{} (no binfmt_misc entry with flag F for it; the host's qemu is mounted at {})",
                mode.describe(),
                spec::EMULATOR_PATH
            ),
            m => m.describe().to_string(),
        };
        eprintln!("docker backend: {arch}: {how}");
    }
}

/// Starts fake-gcs-server on the pod's network with an empty bucket; returns the address the
/// host reads it at and the `STORAGE_EMULATOR_HOST` the pod uses (its name).
fn start_fake_gcs(
    engine: &'static Engine,
    objects: &mut Objects,
    root: &Path,
    net: &str,
    seq: u64,
) -> Result<(String, String)> {
    let image = images::fake_gcs(engine)?;
    let name = spec::gcs_name(&engine.run_id, seq);
    let data = root.join("gcs-data");
    fs::create_dir_all(data.join(BUCKET))?;
    let public = format!("{name}:{GCS_PORT}");
    let cmd = [
        "-scheme",
        "http",
        "-host",
        "0.0.0.0",
        "-port",
        &GCS_PORT.to_string(),
        "-backend",
        "memory",
        "-log-level",
        "warn",
        // Links it hands out (resumable upload sessions) must work for the pod's clients.
        "-public-host",
        &public,
        "-data",
        "/data",
    ]
    .map(str::to_string)
    .to_vec();
    let body = ContainerCreateBody {
        image: Some(image),
        cmd: Some(cmd),
        labels: Some(engine.labels()),
        host_config: Some(HostConfig {
            binds: Some(vec![format!("{}:/data:ro", data.display())]),
            network_mode: Some(net.to_string()),
            ..Default::default()
        }),
        ..Default::default()
    };
    objects.create(&name, "linux/amd64", body)?;
    engine
        .block_on(engine.docker.start_container(&name, None))
        .with_context(|| format!("start {name}"))?;
    let inspect = engine
        .block_on(engine.docker.inspect_container(&name, None))
        .with_context(|| format!("inspect {name}"))?;
    let ip = inspect
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|n| n.get(net).and_then(|e| e.ip_address.clone()))
        .filter(|ip| !ip.is_empty())
        .with_context(|| format!("{name} has no address on {net}"))?;
    let addr: std::net::SocketAddr = format!("{ip}:{GCS_PORT}").parse()?;
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        anyhow::ensure!(
            std::time::Instant::now() < until,
            "fake-gcs-server container {name} does not listen on {addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((format!("http://{addr}"), public))
}

impl Docker<'_> {
    /// The create body of a pod container.
    fn body(&self, c: &Container) -> Result<ContainerCreateBody> {
        let program = match c.image {
            Image::Utility(u) => u.name(),
            Image::FixtureJob => "fixture-job",
        };
        let image = self
            .images
            .get(program)
            .with_context(|| format!("no image for {program}"))?;
        let (entrypoint, cmd) = spec::entrypoint_and_cmd(c, self.mode);
        let run_as = RunAs::of(&self.security, &c.security);
        let mut binds: Vec<String> = c
            .mounts
            .iter()
            .map(|m| {
                let (dir, ro) = self
                    .vol_dirs
                    .get(&m.volume)
                    .with_context(|| format!("{}: no volume {}", c.name, m.volume))?;
                let mode = if *ro { ":ro" } else { "" };
                Ok(format!("{}:{}{mode}", dir.display(), m.path))
            })
            .collect::<Result<_>>()?;
        if self.mode == Mode::Explicit {
            let emu =
                (self.runner.emulator.as_deref()).context("explicit mode without an emulator")?;
            binds.push(format!("{}:{}:ro", emu.display(), spec::EMULATOR_PATH));
        }
        Ok(ContainerCreateBody {
            image: Some(image.clone()),
            entrypoint: Some(entrypoint),
            cmd: Some(cmd),
            env: Some(spec::env(c, &self.endpoints, self.mode)),
            working_dir: c.working_dir.clone(),
            // Without a user in the pod the image's own (root, as upstream's) applies.
            user: run_as.as_ref().map(|r| format!("{}:{}", r.uid, r.gid)),
            labels: Some(self.engine.labels()),
            host_config: Some(self.host_config(binds, run_as.as_ref())),
            ..Default::default()
        })
    }

    fn host_config(&self, binds: Vec<String>, run_as: Option<&RunAs>) -> HostConfig {
        HostConfig {
            binds: Some(binds),
            group_add: run_as
                .filter(|r| !r.groups.is_empty())
                .map(|r| r.groups.iter().map(u32::to_string).collect()),
            network_mode: Some(
                self.network
                    .as_ref()
                    .map_or_else(|| "none".into(), |(net, _)| net.clone()),
            ),
            // Guest cores (written by qemu into the process's working directory) for triage.
            ulimits: Some(vec![ResourcesUlimits {
                name: Some("core".into()),
                soft: Some(-1),
                hard: Some(-1),
            }]),
            // Output is read from the attach stream; a log driver would keep a second copy.
            log_config: Some(HostConfigLogConfig {
                typ: Some("none".into()),
                config: None,
            }),
            ..Default::default()
        }
    }

    /// Creates and starts `cs` together and waits for all of them: SIGTERM to those still
    /// running `delete` after the start, SIGKILL at the deadline.
    fn run_containers(
        &mut self,
        cs: &[Container],
        delete: Option<Duration>,
        deadline: Duration,
    ) -> Result<Vec<ContainerExit>> {
        let names: Vec<String> = cs
            .iter()
            .map(|c| {
                spec::object_name(
                    &self.engine.run_id,
                    self.seq,
                    self.arch.name(),
                    &self.pod,
                    &c.name,
                )
            })
            .collect();
        for (c, name) in cs.iter().zip(&names) {
            let body = self.body(c)?;
            self.objects.create(name, self.arch.platform(), body)?;
        }
        let start = tokio::time::Instant::now();
        let mut readers = Vec::new();
        for name in &names {
            readers.push(self.objects.start(name)?);
        }
        let ends = self.engine.block_on(wait_all(
            &self.engine.docker,
            &names,
            delete.map(|d| start + d),
            start + deadline,
        ))?;
        let mut out = Vec::new();
        for (((c, reader), end), name) in cs.iter().zip(readers).zip(ends).zip(&names) {
            if self.keep_cores
                && !end.success()
                && self.mode != Mode::Native
                && c.working_dir.is_none()
            {
                self.keep_cores(name, &c.name)?;
            }
            let (stdout, stderr) = self.objects.output(reader);
            out.push(ContainerExit {
                name: c.name.clone(),
                exit: end,
                stdout,
                stderr,
            });
        }
        Ok(out)
    }
}

impl Docker<'_> {
    /// Copies the guest cores qemu wrote into a container's own file system (its working
    /// directory is `/`, no volume) to `<pod>/containers/<container>/`, where the pod's cores
    /// are collected for triage; a container's file system goes with the container.
    fn keep_cores(&self, name: &str, container: &str) -> Result<()> {
        let root = &self.root;
        let e = self.engine;
        let tar = e.block_on(async {
            let mut s = e.docker.export_container(name);
            let mut tar = Vec::new();
            while let Some(chunk) = s.next().await {
                tar.extend_from_slice(&chunk?);
            }
            Ok::<_, bollard::errors::Error>(tar)
        });
        let Ok(tar) = tar else {
            return Ok(());
        };
        let dest = root.join("containers").join(container);
        let mut a = tar::Archive::new(&tar[..]);
        for entry in a.entries()? {
            let mut entry = entry?;
            let path = entry.path()?.to_string_lossy().into_owned();
            let file = path.trim_start_matches("./");
            if !file.contains('/') && file.starts_with("qemu_") && file.ends_with(".core") {
                fs::create_dir_all(&dest)?;
                entry.unpack(dest.join(file))?;
            }
        }
        Ok(())
    }
}

/// Waits for every container in `names`; the exit texts, in order.
async fn wait_all(
    docker: &bollard::Docker,
    names: &[String],
    delete_at: Option<tokio::time::Instant>,
    deadline: tokio::time::Instant,
) -> Result<Vec<Exit>> {
    use futures_util::stream::FuturesUnordered;
    let mut waits: FuturesUnordered<_> = names
        .iter()
        .enumerate()
        .map(|(i, n)| async move { (i, engine::wait_exit(docker, n).await) })
        .collect();
    let mut codes: Vec<Option<i64>> = vec![None; names.len()];
    let mut sent: Vec<Vec<i64>> = vec![Vec::new(); names.len()];
    let mut killed = vec![false; names.len()];
    let (mut deleted, mut expired) = (delete_at.is_none(), false);
    let far = deadline + Duration::from_secs(365 * 24 * 3600);
    while codes.iter().any(Option::is_none) {
        tokio::select! {
            Some((i, code)) = waits.next() => codes[i] = Some(code?),
            _ = tokio::time::sleep_until(delete_at.unwrap_or(far)), if !deleted => {
                deleted = true;
                for i in kill_running(docker, names, &codes, "SIGTERM").await {
                    sent[i].push(15);
                }
            }
            _ = tokio::time::sleep_until(deadline), if !expired => {
                expired = true;
                for i in kill_running(docker, names, &codes, "SIGKILL").await {
                    killed[i] = true;
                }
            }
        }
    }
    Ok(codes
        .into_iter()
        .zip(sent)
        .zip(killed)
        .map(|((code, sent), killed)| {
            if killed {
                Exit::KilledAtDeadline
            } else {
                Exit::from_engine(code.unwrap_or(-1), &sent)
            }
        })
        .collect())
}

/// Signals every container not known to have ended, all requests at once (the kubelet signals
/// a pod's containers together; one after the other, sidecar could finish its uploads before
/// its own SIGTERM arrives). Returns the indexes of those that were signalled.
async fn kill_running(
    docker: &bollard::Docker,
    names: &[String],
    codes: &[Option<i64>],
    signal: &str,
) -> Vec<usize> {
    let kills = names
        .iter()
        .enumerate()
        .filter(|(i, _)| codes[*i].is_none())
        .map(|(i, n)| async move { engine::kill(docker, n, signal).await.then_some(i) });
    futures_util::future::join_all(kills)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Runs a probe as a one-container pod without volumes or network.
pub fn probe(runner: &Runner, p: &Probe) -> Result<ContainerExit> {
    let c = Container {
        name: "probe".into(),
        image: Image::Utility(p.utility),
        command: None,
        args: p.args.clone(),
        env: p.env.clone(),
        mounts: vec![],
        working_dir: None,
        security: Default::default(),
    };
    let mut d = Docker::on(runner, &format!("probe-{}", p.name))?;
    d.run_containers(std::slice::from_ref(&c), None, POD_DEADLINE)?
        .into_iter()
        .next()
        .context("one container, one exit")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The engine-facing plumbing without lab binaries: the fake-gcs-server image loads, runs
    /// on a private network and answers the host; dropping the pod's objects removes them.
    #[test]
    #[cfg_attr(not(has_docker_engine), ignore = "needs a Docker Engine")]
    fn fake_gcs_runs_on_a_private_network_and_is_cleaned_up() {
        let engine = engine::get().expect("the Docker Engine");
        let root = tempfile::tempdir().unwrap();
        let seq = engine.next_seq();
        let net = spec::object_name(&engine.run_id, seq, "amd64", "plumbing", "net");
        let mut objects = Objects::new(engine);
        let gateway = objects.network(&net).unwrap();
        assert!(gateway.is_ipv4(), "{gateway}");
        let (base, endpoint) =
            start_fake_gcs(engine, &mut objects, root.path(), &net, seq).unwrap();
        assert_eq!(
            endpoint,
            format!("{}:{GCS_PORT}", spec::gcs_name(&engine.run_id, seq))
        );
        assert_eq!(testsupport::gcs_objects(&base, BUCKET), vec![]);
        drop(objects);
        let d = &engine.docker;
        assert!(engine.block_on(d.inspect_network(&net, None)).is_err());
        let gcs = spec::gcs_name(&engine.run_id, seq);
        assert!(engine.block_on(d.inspect_container(&gcs, None)).is_err());
    }
}
