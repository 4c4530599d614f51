/*!
A pod's volumes as host folders, made as the kubelet makes them, for every backend: emptyDirs
world-writable (0777); with the pod's `fs_group`, emptyDirs and secret files belong to that
group and emptyDirs get the setgid bit, as the kubelet's volume ownership does, so files made in
them stay the group's; secrets as files (0644, read-only mounts); host paths as they are.
*/

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::pod::{Endpoints, Pod, VolumeSource};

/// A volume's folder and whether it is mounted read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeDir {
    pub dir: PathBuf,
    pub read_only: bool,
}

/// Makes `pod`'s volumes under `root/vol/`; `endpoints` fill the placeholders in secrets.
pub fn make(pod: &Pod, root: &Path, endpoints: &Endpoints) -> Result<BTreeMap<String, VolumeDir>> {
    let group = pod.security.fs_group;
    let mut out = BTreeMap::new();
    for v in &pod.volumes {
        let d = root.join("vol").join(&v.name);
        let vd = match &v.source {
            VolumeSource::HostPath(p) => VolumeDir {
                dir: PathBuf::from(p),
                read_only: false,
            },
            VolumeSource::EmptyDir => {
                fs::create_dir_all(&d)?;
                let mode = if group.is_some() { 0o2777 } else { 0o777 };
                chgrp(&d, group)?;
                fs::set_permissions(&d, fs::Permissions::from_mode(mode))?;
                VolumeDir {
                    dir: d,
                    read_only: false,
                }
            }
            VolumeSource::Secret(files) => {
                fs::create_dir_all(&d)?;
                fs::set_permissions(&d, fs::Permissions::from_mode(0o755))?;
                for (name, content) in files {
                    let f = d.join(name);
                    fs::write(&f, endpoints.fill(content))?;
                    fs::set_permissions(&f, fs::Permissions::from_mode(0o644))?;
                    chgrp(&f, group)?;
                }
                VolumeDir {
                    dir: d,
                    read_only: true,
                }
            }
        };
        fs::create_dir_all(&vd.dir)?;
        out.insert(v.name.clone(), vd);
    }
    Ok(out)
}

fn chgrp(p: &Path, group: Option<u32>) -> Result<()> {
    if let Some(g) = group {
        std::os::unix::fs::chown(p, None, Some(g))
            .with_context(|| format!("chgrp {g} {}", p.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::{PodSecurityContext, STORAGE_ENDPOINT, Storage, Volume};
    use std::os::unix::fs::MetadataExt;

    fn pod(fs_group: Option<u32>) -> Pod {
        Pod {
            name: "p".into(),
            storage: Storage::Local,
            volumes: vec![
                Volume {
                    name: "logs".into(),
                    source: VolumeSource::EmptyDir,
                },
                Volume {
                    name: "creds".into(),
                    source: VolumeSource::Secret(BTreeMap::from([(
                        "token".to_string(),
                        format!("at {STORAGE_ENDPOINT}"),
                    )])),
                },
            ],
            security: PodSecurityContext {
                fs_group,
                ..Default::default()
            },
            init_containers: vec![],
            containers: vec![],
            delete_after_ms: None,
            checkouts: vec![],
            proxy: false,
        }
    }

    #[test]
    fn empty_dirs_are_world_writable_and_secrets_read_only() {
        let tmp = tempfile::tempdir().unwrap();
        let v = make(
            &pod(None),
            tmp.path(),
            &Endpoints {
                storage: "http://x".into(),
                proxy: String::new(),
            },
        )
        .unwrap();
        let logs = fs::metadata(&v["logs"].dir).unwrap();
        assert_eq!(logs.mode() & 0o7777, 0o777);
        assert!(!v["logs"].read_only && v["creds"].read_only);
        let token = v["creds"].dir.join("token");
        assert_eq!(fs::read_to_string(&token).unwrap(), "at http://x");
        assert_eq!(fs::metadata(&token).unwrap().mode() & 0o777, 0o644);
    }

    #[test]
    // chgrp to a group we are not in needs root, as the kubelet has.
    #[cfg_attr(not(has_root), ignore = "needs root: chgrp to another group")]
    fn fs_group_owns_volumes_and_empty_dirs_are_setgid() {
        let tmp = tempfile::tempdir().unwrap();
        let v = make(&pod(Some(2000)), tmp.path(), &Endpoints::default()).unwrap();
        let logs = fs::metadata(&v["logs"].dir).unwrap();
        assert_eq!((logs.gid(), logs.mode() & 0o7777), (2000, 0o2777));
        let token = fs::metadata(v["creds"].dir.join("token")).unwrap();
        assert_eq!(token.gid(), 2000);
    }
}
