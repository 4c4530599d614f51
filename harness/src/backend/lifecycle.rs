/*!
The one pod lifecycle every backend shares, in the kubelet's order: make the pod's folder, start
its storage server (and forward proxy), make its volumes, run the init containers one by one
(the first failure leaves the rest not started), run the test containers and sidecar together
(SIGTERM at `delete_after_ms`, SIGKILL at the deadline), then collect what the pod left: guest
cores first, then the bucket, the logs volume and the checkouts. A [`Backend`] only runs
containers; nothing here knows how.
*/

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use testsupport::{FakeGcs, Moto, StoredObject};

use super::volumes::VolumeDir;
use super::{Backend, Checkout, ContainerExit, POD_DEADLINE, PodRun, RunOptions};
use crate::exit::Exit;
use crate::pod::{BUCKET, Container, Pod};

/// Where the code volume is mounted (checkouts are found below it).
const CODE_MOUNT: &str = "/home/prow/go";

/// A pod's storage server, wherever its backend runs it.
pub enum StorageServer {
    /// fake-gcs-server as a host process.
    Gcs(FakeGcs),
    /// fake-gcs-server elsewhere (a container), read at this base URL.
    GcsAt(String),
    /// moto as a host process.
    S3(Moto),
    /// A `local_output_dir` pod: objects are the files of its `output` volume.
    None,
}

impl StorageServer {
    fn objects(&self, volumes: &BTreeMap<String, VolumeDir>) -> Result<Vec<StoredObject>> {
        Ok(match self {
            StorageServer::Gcs(s) => s.objects(BUCKET),
            StorageServer::GcsAt(base) => testsupport::gcs_objects(base, BUCKET),
            StorageServer::S3(s) => s.objects(BUCKET),
            StorageServer::None => match volumes.get("output") {
                Some(v) => local_objects(&v.dir)?,
                None => vec![],
            },
        })
    }
}

/// Runs `pod` on `backend` from start to collection.
pub fn run(pod: &Pod, backend: &mut dyn Backend, opts: &RunOptions) -> Result<PodRun> {
    let deadline = if opts.no_deadline {
        Duration::from_secs(365 * 24 * 3600)
    } else {
        POD_DEADLINE
    };
    let root = backend.root().to_path_buf();
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(root.join("containers"))?;

    let (server, endpoint) = backend.start_storage(pod.storage, &root)?;
    let (proxy, endpoints) = super::proxy::start(pod, backend.proxy_listen(), endpoint)?;
    let volumes = super::volumes::make(pod, &root, &endpoints)?;
    backend.prepare(pod, &volumes, &endpoints)?;

    let mut init = Vec::new();
    let mut failed = false;
    for c in &pod.init_containers {
        if failed {
            init.push(not_started(c));
            continue;
        }
        let exit = backend.run_together(std::slice::from_ref(c), None, deadline)?;
        let exit = exit
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("{}: one container, no exit", c.name))?;
        failed = !exit.exit.success();
        init.push(exit);
    }
    let containers = if failed {
        pod.containers.iter().map(not_started).collect()
    } else {
        let delete = pod.delete_after_ms.map(Duration::from_millis);
        backend.run_together(&pod.containers, delete, deadline)?
    };

    // Before anything is read: a core in a logs or code folder is not an observation.
    let cores = super::cores::collect(&root, backend.emulated())?;
    let objects = server.objects(&volumes)?;
    drop(server);
    let logs = volumes
        .get("logs")
        .map(|v| read_tree(&v.dir))
        .transpose()?
        .unwrap_or_default();
    let code = volumes.get("code").map(|v| v.dir.clone());
    let checkouts =
        pod.checkouts
            .iter()
            .map(|p| Checkout {
                path: p.clone(),
                state: match (&code, p.strip_prefix(CODE_MOUNT)) {
                    (Some(dir), Some(rest)) => crate::git::describe_checkout(&PathBuf::from(
                        format!("{}{rest}", dir.display()),
                    ))
                    .map_err(|e| format!("{e:#}")),
                    _ => Err(format!("{p} is not on the code volume")),
                },
            })
            .collect();
    let mut path_map = backend.path_map(pod, &volumes);
    path_map.sort();
    path_map.dedup();
    path_map.push((root.display().to_string(), "[POD]".into()));
    Ok(PodRun {
        init,
        containers,
        objects,
        logs,
        checkouts,
        path_map,
        emulation: backend.emulation()?,
        pod_dir: root,
        cores,
        trace_dir: backend.trace_dir(),
        proxied: super::proxy::served(&proxy),
    })
}

fn not_started(c: &Container) -> ContainerExit {
    ContainerExit {
        name: c.name.clone(),
        exit: Exit::NotStarted,
        stdout: vec![],
        stderr: vec![],
    }
}

/// The objects of a `local_output_dir` pod: every file of its output folder, by relative path.
pub fn local_objects(dir: &Path) -> Result<Vec<StoredObject>> {
    Ok(read_tree(dir)?
        .into_iter()
        .map(|(name, data)| StoredObject {
            name,
            data,
            ..Default::default()
        })
        .collect())
}

/// Every regular file below `dir`: relative path -> bytes (symlinks as `-> target`).
pub fn read_tree(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd {
            let e = e?;
            let p = e.path();
            let ft = e.file_type()?;
            let rel = p.strip_prefix(dir).unwrap_or(&p).display().to_string();
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_symlink() {
                out.insert(
                    rel,
                    format!("-> {}", fs::read_link(&p)?.display()).into_bytes(),
                );
            } else {
                out.insert(rel, fs::read(&p)?);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::{Endpoints, Image, Mount, Storage, Volume, VolumeSource};
    use std::net::{IpAddr, Ipv4Addr};

    /// A backend whose containers "run" by writing a file into the logs volume and exiting as
    /// their name says (`fail*` exits 1); it records each group it was asked to run.
    struct Scripted {
        root: PathBuf,
        logs: Option<PathBuf>,
        groups: Vec<(Vec<String>, Option<Duration>)>,
    }

    impl Backend for Scripted {
        fn root(&self) -> &Path {
            &self.root
        }
        fn start_storage(&mut self, s: Storage, _: &Path) -> Result<(StorageServer, String)> {
            assert_eq!(s, Storage::Local);
            Ok((StorageServer::None, String::new()))
        }
        fn proxy_listen(&self) -> IpAddr {
            Ipv4Addr::LOCALHOST.into()
        }
        fn prepare(
            &mut self,
            _: &Pod,
            v: &BTreeMap<String, VolumeDir>,
            _: &Endpoints,
        ) -> Result<()> {
            self.logs = v.get("logs").map(|v| v.dir.clone());
            Ok(())
        }
        fn run_together(
            &mut self,
            cs: &[Container],
            delete: Option<Duration>,
            _: Duration,
        ) -> Result<Vec<ContainerExit>> {
            let names = cs.iter().map(|c| c.name.clone()).collect();
            self.groups.push((names, delete));
            let logs = self.logs.as_ref().expect("volumes before containers");
            Ok(cs
                .iter()
                .map(|c| {
                    fs::write(logs.join(&c.name), "ran\n").unwrap();
                    ContainerExit {
                        name: c.name.clone(),
                        exit: Exit::Code(i64::from(c.name.starts_with("fail"))),
                        stdout: c.name.clone().into_bytes(),
                        stderr: vec![],
                    }
                })
                .collect())
        }
        fn emulated(&self) -> bool {
            false
        }
        fn path_map(&self, _: &Pod, _: &BTreeMap<String, VolumeDir>) -> Vec<(String, String)> {
            vec![("/host/logs".into(), "/logs".into())]
        }
        fn emulation(&self) -> Result<String> {
            Ok("native".into())
        }
    }

    fn container(name: &str) -> Container {
        Container {
            name: name.into(),
            image: Image::FixtureJob,
            command: None,
            args: vec![],
            env: vec![],
            mounts: vec![Mount {
                volume: "logs".into(),
                path: "/logs".into(),
            }],
            working_dir: None,
            security: Default::default(),
        }
    }

    fn pod(init: &[&str], containers: &[&str]) -> Pod {
        Pod {
            name: "scripted".into(),
            storage: Storage::Local,
            volumes: vec![Volume {
                name: "logs".into(),
                source: VolumeSource::EmptyDir,
            }],
            security: Default::default(),
            init_containers: init.iter().map(|n| container(n)).collect(),
            containers: containers.iter().map(|n| container(n)).collect(),
            delete_after_ms: Some(1500),
            checkouts: vec!["/home/prow/go/src/x".into(), "/elsewhere".into()],
            proxy: false,
        }
    }

    fn run_scripted(p: &Pod) -> (PodRun, Scripted, tempfile::TempDir) {
        let d = tempfile::tempdir().unwrap();
        let mut b = Scripted {
            root: d.path().join("pod"),
            logs: None,
            groups: vec![],
        };
        let run = run(p, &mut b, &RunOptions::default()).unwrap();
        (run, b, d)
    }

    #[test]
    fn init_containers_run_one_by_one_then_the_rest_together_with_the_deletion() {
        let (run, b, _d) = run_scripted(&pod(&["clonerefs", "initupload"], &["test", "sidecar"]));
        assert_eq!(
            b.groups,
            vec![
                (vec!["clonerefs".to_string()], None),
                (vec!["initupload".to_string()], None),
                (
                    vec!["test".to_string(), "sidecar".to_string()],
                    Some(Duration::from_millis(1500))
                ),
            ]
        );
        assert!(
            run.init
                .iter()
                .chain(&run.containers)
                .all(|c| c.exit.success())
        );
        // What the containers left is collected from the volumes, after they ran.
        let logs: Vec<&String> = run.logs.keys().collect();
        assert_eq!(logs, ["clonerefs", "initupload", "sidecar", "test"]);
        assert_eq!(run.path_map.last().unwrap().1, "[POD]");
        assert_eq!(
            run.checkouts[1].state,
            Err("/elsewhere is not on the code volume".to_string())
        );
    }

    #[test]
    fn a_failed_init_container_leaves_the_rest_of_the_pod_not_started() {
        let (run, b, _d) = run_scripted(&pod(&["fail-clone", "initupload"], &["test", "sidecar"]));
        assert_eq!(b.groups.len(), 1, "{:?}", b.groups);
        assert_eq!(run.init[0].exit, Exit::Code(1));
        assert_eq!(run.init[1].exit, Exit::NotStarted);
        assert!(run.containers.iter().all(|c| c.exit == Exit::NotStarted));
        assert!(run.containers.iter().all(|c| c.stdout.is_empty()));
    }

    #[test]
    fn read_tree_lists_nested_files_and_symlinks_by_relative_path() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("a/b")).unwrap();
        fs::write(d.path().join("a/b/f.txt"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("link")).unwrap();
        let got = read_tree(d.path()).unwrap();
        assert_eq!(
            got.into_iter().collect::<Vec<_>>(),
            vec![
                ("a/b/f.txt".to_string(), b"x".to_vec()),
                ("link".to_string(), b"-> /etc/passwd".to_vec()),
            ]
        );
        assert!(read_tree(&d.path().join("missing")).unwrap().is_empty());
    }
}
