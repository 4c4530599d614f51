/*!
The qemu backend: every container is a process of the arch's binary, run under qemu-user for
foreign arches. Volumes are folders of a per-pod root (`target/lab/pods/<arch>/<pod>/`) and every
in-pod path in a container's command, environment and options is rewritten to its folder, longest
mount first. Children a utility starts (entrypoint's test command) run through binfmt_misc when
the host has the arch registered, else the emulator is put in front of them explicitly. A
container the rendered pod gives a user (see [`RunAs`]) runs as it; the others run as the invoking
user, root in the lab, as the images' default user is.
*/

use std::collections::BTreeMap;
use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;
use testsupport::{FakeGcs, Moto};

use super::lifecycle::StorageServer;
use super::volumes::VolumeDir;
use super::{Backend, ContainerExit, RunOptions};
use crate::build;
use crate::exit::Exit;
use crate::pod::{self, BUCKET, Container, Pod, RunAs, Storage};
use crate::probe::Probe;
use crate::runner::Runner;
use crate::target::Arch;

/// Whether foreign children run through binfmt_misc or with the emulator in front.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildMode {
    Native,
    Binfmt,
    Explicit,
}

pub fn child_mode(runner: &Runner) -> ChildMode {
    let Some(emu) = &runner.emulator else {
        return ChildMode::Native;
    };
    let name = emu.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let entry = Path::new("/proc/sys/fs/binfmt_misc").join(name.trim_end_matches("-static"));
    match fs::read_to_string(entry) {
        Ok(s) if s.starts_with("enabled") => ChildMode::Binfmt,
        _ => ChildMode::Explicit,
    }
}

/// The qemu backend for one pod: see the module doc.
pub struct Qemu<'a> {
    arch: Arch,
    runner: &'a Runner,
    mode: ChildMode,
    root: PathBuf,
    opts: &'a RunOptions,
    trace_dir: Option<PathBuf>,
    security: pod::PodSecurityContext,
    vol_dirs: BTreeMap<String, PathBuf>,
    endpoints: pod::Endpoints,
    /// Host folders of every container's mounts and the in-pod paths they stand for.
    path_map: Vec<(String, String)>,
}

impl<'a> Qemu<'a> {
    pub fn new(pod: &Pod, runner: &'a Runner, opts: &'a RunOptions) -> Self {
        // A traced or debugged rerun gets its own folder: the plain run's (and its cores) stay.
        let folder = match (&opts.strace, &opts.gdb) {
            (Some(_), _) => format!("{}.strace", pod.name),
            (None, Some(_)) => format!("{}.gdb", pod.name),
            (None, None) => match opts.tag {
                Some(tag) => format!("{}.{tag}", pod.name),
                None => pod.name.clone(),
            },
        };
        let root = build::lab_dir()
            .join("pods")
            .join(runner.arch.name())
            .join(folder);
        let mut mode = child_mode(runner);
        // Emulator flags for a child can only be given on an explicit command line.
        if mode == ChildMode::Binfmt && (opts.strace.is_some() || opts.gdb.is_some()) {
            mode = ChildMode::Explicit;
        }
        Qemu {
            arch: runner.arch,
            runner,
            mode,
            trace_dir: opts.strace.as_ref().map(|_| root.join("strace")),
            root,
            opts,
            security: pod.security,
            vol_dirs: BTreeMap::new(),
            endpoints: pod::Endpoints::default(),
            path_map: Vec::new(),
        }
    }
}

impl Backend for Qemu<'_> {
    fn root(&self) -> &Path {
        &self.root
    }

    fn start_storage(&mut self, storage: Storage, _root: &Path) -> Result<(StorageServer, String)> {
        Ok(match storage {
            Storage::Gcs => {
                let s = FakeGcs::start(&[BUCKET]).map_err(anyhow::Error::msg)?;
                let h = s.emulator_host();
                (StorageServer::Gcs(s), h)
            }
            Storage::S3 => {
                let s = Moto::start(&[BUCKET]).map_err(anyhow::Error::msg)?;
                let u = s.url();
                (StorageServer::S3(s), u)
            }
            Storage::Local => (StorageServer::None, String::new()),
        })
    }

    fn proxy_listen(&self) -> IpAddr {
        Ipv4Addr::LOCALHOST.into()
    }

    fn prepare(
        &mut self,
        _pod: &Pod,
        volumes: &BTreeMap<String, VolumeDir>,
        endpoints: &pod::Endpoints,
    ) -> Result<()> {
        if let Some(d) = &self.trace_dir {
            fs::create_dir_all(d)?;
        }
        self.vol_dirs = volumes
            .iter()
            .map(|(name, v)| (name.clone(), v.dir.clone()))
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
        let start = Instant::now();
        let mut running: Vec<(usize, Child)> = Vec::new();
        for (i, c) in cs.iter().enumerate() {
            let (child, mounts) = self.spawn(c)?;
            self.path_map.extend(mounts);
            running.push((i, child));
        }
        let mut exits: BTreeMap<usize, Exit> = BTreeMap::new();
        let mut deleted = false;
        while !running.is_empty() {
            if let Some(after) = delete {
                if !deleted && start.elapsed() >= after {
                    deleted = true;
                    for (_, ch) in &running {
                        signal(ch, nix::sys::signal::Signal::SIGTERM);
                    }
                }
            }
            if start.elapsed() > deadline {
                for (i, mut ch) in running.drain(..) {
                    let _ = ch.kill();
                    let _ = ch.wait();
                    exits.insert(i, Exit::KilledAtDeadline);
                }
                break;
            }
            let mut still = Vec::new();
            for (i, mut ch) in running.drain(..) {
                match ch.try_wait()? {
                    Some(s) => {
                        exits.insert(i, Exit::of(&s));
                    }
                    None => still.push((i, ch)),
                }
            }
            running = still;
            std::thread::sleep(Duration::from_millis(10));
        }
        cs.iter()
            .enumerate()
            .map(|(i, c)| self.collect(c, exits.remove(&i).unwrap_or(Exit::NotStarted)))
            .collect()
    }

    fn emulated(&self) -> bool {
        self.runner.emulator.is_some()
    }

    fn path_map(
        &self,
        _pod: &Pod,
        _volumes: &BTreeMap<String, VolumeDir>,
    ) -> Vec<(String, String)> {
        self.path_map.clone()
    }

    fn emulation(&self) -> Result<String> {
        Ok(match self.mode {
            ChildMode::Native => "native".to_string(),
            ChildMode::Binfmt => format!(
                "{} (children via binfmt_misc)",
                self.runner.emulator_version()?
            ),
            ChildMode::Explicit => format!(
                "{} (children via explicit emulator)",
                self.runner.emulator_version()?
            ),
        })
    }

    fn trace_dir(&self) -> Option<PathBuf> {
        self.trace_dir.clone()
    }
}

/// Runs a probe as a process of the arch's binary with a clean environment (only PATH, and
/// the probe's own variables).
pub fn probe(runner: &Runner, probe: &Probe) -> Result<ContainerExit> {
    let bin = build::binary(runner.arch, probe.utility.name());
    let mut cmd = runner.command(&bin)?;
    cmd.args(&probe.args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(probe.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null());
    let out = cmd
        .output()
        .with_context(|| format!("could not run {} for {}", bin.display(), runner.arch))?;
    Ok(ContainerExit {
        name: "probe".into(),
        exit: Exit::of(&out.status),
        stdout: out.stdout,
        stderr: out.stderr,
    })
}

impl Qemu<'_> {
    /// In-pod path -> host path for this container: its mounts plus the image's files.
    fn mounts(&self, c: &Container) -> Vec<(String, PathBuf)> {
        let mut m: Vec<(String, PathBuf)> = c
            .mounts
            .iter()
            .filter_map(|m| {
                self.vol_dirs
                    .get(&m.volume)
                    .map(|d| (m.path.clone(), d.clone()))
            })
            .collect();
        for u in crate::utility::ALL {
            m.push((u.image_path(), build::binary(self.arch, u.name())));
        }
        m.push((
            pod::FIXTURE_JOB_PATH.to_string(),
            build::binary(self.arch, "fixture-job"),
        ));
        // Longest first, so /logs/artifacts wins over /logs.
        m.sort_by_key(|e| std::cmp::Reverse(e.0.len()));
        m
    }

    fn spawn(&self, c: &Container) -> Result<(Child, Vec<(String, String)>)> {
        let mounts = self.mounts(c);
        let mut argv = c.argv();
        // place-entrypoint relies on the flag's default destination, /tools/entrypoint; spell it
        // out so the path can be rewritten to this pod's tools folder.
        if argv.iter().any(|a| a == "--copy-mode-only")
            && !argv.iter().any(|a| a.starts_with("--copy-destination"))
        {
            argv.push("--copy-destination=/tools/entrypoint".into());
        }
        let argv: Vec<PathBuf> = argv
            .iter()
            .map(|a| match a.split_once('=') {
                Some((flag, path)) if flag.starts_with("--") => PathBuf::from(format!(
                    "{flag}={}",
                    translate_path(path, &mounts).display()
                )),
                _ => translate_path(a, &mounts),
            })
            .collect();
        let exe = &argv[0];
        let mut cmd = if build::check_elf(exe, self.arch).is_ok() {
            self.container_runner(c, false).command(exe)?
        } else {
            Command::new(exe)
        };
        let emulated = self.runner.emulator.is_some();
        let run_as = RunAs::of(&self.security, &c.security);
        let user = run_as.clone().map(|r| {
            let groups = r.runtime_groups();
            (r, groups)
        });
        // SAFETY: the closure runs in the forked child before exec and only makes raw
        // system calls (setrlimit, open, write, close, setgroups, setgid, setuid) on data
        // allocated before the fork.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                enable_core_dumps(emulated);
                match &user {
                    Some((r, groups)) => become_user(r, groups),
                    None => Ok(()),
                }
            });
        }
        cmd.args(&argv[1..]);
        let home = self.root.join("home").join(&c.name);
        fs::create_dir_all(&home)?;
        if let Some(r) = &run_as {
            std::os::unix::fs::chown(&home, Some(r.uid), Some(r.gid))?;
        }
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home);
        for (k, v) in &c.env {
            let v = self.endpoints.fill(v);
            let v = if k == "ENTRYPOINT_OPTIONS" {
                self.entrypoint_options(c, &v, &mounts)?
            } else {
                translate_value(&v, &mounts)
            };
            cmd.env(k, v);
        }
        let cwd = c.working_dir.as_ref().map(|w| translate_path(w, &mounts));
        let cwd = cwd.unwrap_or_else(|| self.root.clone());
        fs::create_dir_all(&cwd)?;
        cmd.current_dir(&cwd);
        let out = self
            .root
            .join("containers")
            .join(format!("{}.stdout", c.name));
        let err = self
            .root
            .join("containers")
            .join(format!("{}.stderr", c.name));
        cmd.stdin(Stdio::null())
            .stdout(fs::File::create(out)?)
            .stderr(fs::File::create(err)?);
        let child = cmd
            .spawn()
            .with_context(|| format!("start container {} ({})", c.name, exe.display()))?;
        let map = mounts
            .iter()
            .map(|(p, h)| (h.display().to_string(), p.clone()))
            .collect();
        Ok((child, map))
    }

    /// The runner for a container's process (`child`: for the test command it starts), with
    /// the debugging aids the run options ask for that process.
    fn container_runner(&self, c: &Container, child: bool) -> Runner {
        let mut r = self.runner.clone();
        if let (Some(name), Some(dir)) = (&self.opts.strace, &self.trace_dir) {
            if *name == c.name {
                let which = if child { "child" } else { "main" };
                r = r
                    .with_strace()
                    .with_log_file(dir.join(format!("{}.{which}.strace.%d", c.name)));
            }
        }
        if let Some(g) = &self.opts.gdb {
            if g.container == c.name && g.child == child {
                r = r.with_gdb(g.port);
            }
        }
        r
    }

    /// Rewrites paths in ENTRYPOINT_OPTIONS and, without binfmt_misc, puts the emulator (and the
    /// child's debugging flags) in front of the test command so entrypoint can start a
    /// foreign-arch child.
    fn entrypoint_options(
        &self,
        c: &Container,
        json: &str,
        mounts: &[(String, PathBuf)],
    ) -> Result<String> {
        let mut v: Value = serde_json::from_str(json).context("ENTRYPOINT_OPTIONS")?;
        translate_json(&mut v, mounts);
        if self.mode == ChildMode::Explicit {
            let child = self.container_runner(c, true);
            let args = v
                .get_mut("args")
                .and_then(Value::as_array_mut)
                .filter(|args| {
                    args.first()
                        .and_then(Value::as_str)
                        .is_some_and(|cmd| binfmt_would_take(Path::new(cmd), self.arch))
                });
            if let (Some(args), Some(emu)) = (args, &self.runner.emulator) {
                let mut prefix = vec![Value::from(emu.display().to_string())];
                prefix.extend(child.emulator_args().into_iter().map(Value::from));
                args.splice(0..0, prefix);
            }
        }
        Ok(v.to_string())
    }

    fn collect(&self, c: &Container, exit: Exit) -> Result<ContainerExit> {
        let dir = self.root.join("containers");
        Ok(ContainerExit {
            name: c.name.clone(),
            exit,
            stdout: fs::read(dir.join(format!("{}.stdout", c.name))).unwrap_or_default(),
            stderr: fs::read(dir.join(format!("{}.stderr", c.name))).unwrap_or_default(),
        })
    }
}

/// Whether binfmt_misc would run `cmd` through the arch's emulator: an executable ELF file of
/// that arch. Anything else (missing, not executable, a script) is exec'd as it is, so its start
/// error is the one a cluster node gives, not the emulator's.
fn binfmt_would_take(cmd: &Path, arch: Arch) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let (machine, endian) = arch.elf();
    fs::metadata(cmd).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        && build::elf_info(cmd).is_ok_and(|i| i.architecture == machine && i.endianness == endian)
}

fn translate_path(p: &str, mounts: &[(String, PathBuf)]) -> PathBuf {
    for (inpod, host) in mounts {
        if p == inpod {
            return host.clone();
        }
        if let Some(rest) = p.strip_prefix(inpod.as_str()) {
            if rest.starts_with('/') {
                return PathBuf::from(format!("{}{rest}", host.display()));
            }
        }
    }
    PathBuf::from(p)
}

/// An env value: JSON gets its strings rewritten, anything else is a path or left alone.
fn translate_value(v: &str, mounts: &[(String, PathBuf)]) -> String {
    if v.starts_with('{') || v.starts_with('[') {
        if let Ok(mut j) = serde_json::from_str::<Value>(v) {
            translate_json(&mut j, mounts);
            return j.to_string();
        }
    }
    translate_path(v, mounts).display().to_string()
}

fn translate_json(v: &mut Value, mounts: &[(String, PathBuf)]) {
    match v {
        Value::String(s) if s.starts_with('/') => {
            *s = translate_path(s, mounts).display().to_string();
        }
        Value::Array(a) => a.iter_mut().for_each(|x| translate_json(x, mounts)),
        Value::Object(o) => o.values_mut().for_each(|x| translate_json(x, mounts)),
        _ => {}
    }
}

/// In a forked child: allow core dumps, so a crashing guest leaves one for triage. Under qemu the
/// guest's core is written by qemu itself; the kernel's core of qemu that follows is made tiny
/// (coredump_filter 0: no memory) since it says nothing about the guest.
/// The container's user, as the runtime sets it: supplementary groups (the primary group
/// among them, as runc and containerd do), group, then user (the qemu backend otherwise runs
/// everything as the invoking user, root in the lab). `groups` is [`RunAs::runtime_groups`],
/// computed before the fork.
fn become_user(r: &RunAs, groups: &[u32]) -> std::io::Result<()> {
    use nix::libc;
    // SAFETY: plain system calls on memory owned by the caller, which outlives them.
    unsafe {
        if libc::setgroups(groups.len(), groups.as_ptr()) != 0
            || libc::setgid(r.gid) != 0
            || libc::setuid(r.uid) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn enable_core_dumps(emulated: bool) {
    use nix::libc;
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain system calls on stack data and a NUL-terminated constant path.
    unsafe {
        if libc::setrlimit(libc::RLIMIT_CORE, &unlimited) != 0 {
            // A lower hard limit: raise the soft one as far as allowed.
            let mut cur = unlimited;
            if libc::getrlimit(libc::RLIMIT_CORE, &mut cur) == 0 {
                cur.rlim_cur = cur.rlim_max;
                libc::setrlimit(libc::RLIMIT_CORE, &cur);
            }
        }
        if emulated {
            let fd = libc::open(
                c"/proc/self/coredump_filter".as_ptr(),
                libc::O_WRONLY | libc::O_CLOEXEC,
            );
            if fd >= 0 {
                libc::write(fd, b"0\n".as_ptr().cast(), 2);
                libc::close(fd);
            }
        }
    }
}

fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn binfmt_takes_only_executable_elf_files_of_the_arch() {
        let exe = std::env::current_exe().unwrap();
        let host = if cfg!(target_arch = "x86_64") {
            Arch::Amd64
        } else {
            Arch::Arm64
        };
        let other = if host == Arch::S390x {
            Arch::Amd64
        } else {
            Arch::S390x
        };
        assert!(binfmt_would_take(&exe, host));
        assert!(!binfmt_would_take(&exe, other));
        assert!(!binfmt_would_take(Path::new("/no/such/command"), host));
        let tmp = tempfile::tempdir().unwrap();
        let copy = tmp.path().join("not-executable");
        fs::copy(&exe, &copy).unwrap();
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(!binfmt_would_take(&copy, host));
    }
}
