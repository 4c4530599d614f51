/*!
Guest core dumps a pod left, gathered before anything of the pod is read (a core in a logs or
code folder is not an observation). qemu-user writes the guest's core as
`qemu_<program>_<date>-<time>_<pid>.core` in the guest's working directory when RLIMIT_CORE
allows; the kernel may then write a core of qemu itself (`core` or `core.<pid>`), which says
nothing about the guest and is deleted. For native runs the kernel's core (if `core_pattern`
puts one in the working directory) is the guest's.
*/

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Moves every guest core below `root` into `root/cores/` and deletes the emulator's own cores.
/// Returns the guest cores. `emulated`: whether the guest ran under qemu.
pub fn collect(root: &Path, emulated: bool) -> Result<Vec<PathBuf>> {
    let dest = root.join("cores");
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if dir == dest {
            continue;
        }
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                // Fixture repositories have many objects and no cores.
                if p.file_name().is_some_and(|n| n == ".git") {
                    continue;
                }
                stack.push(p);
                continue;
            }
            if !ft.is_file() {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let guest_core = name.starts_with("qemu_") && name.ends_with(".core");
            let host_core = name == "core"
                || name
                    .strip_prefix("core.")
                    .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
            if guest_core || (host_core && !emulated && is_core_file(&p)) {
                fs::create_dir_all(&dest)?;
                let to = dest.join(&name);
                fs::rename(&p, &to).with_context(|| format!("keep core {}", p.display()))?;
                found.push(to);
            } else if host_core && emulated && is_core_file(&p) {
                let _ = fs::remove_file(&p);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Whether `p` is an ELF core file.
fn is_core_file(p: &Path) -> bool {
    let Ok(data) = fs::read(p).map(|d| d.into_iter().take(18).collect::<Vec<u8>>()) else {
        return false;
    };
    // e_type ET_CORE (4) in either byte order.
    data.len() >= 18
        && data.starts_with(b"\x7fELF")
        && (data[16..18] == [4, 0] || data[16..18] == [0, 4])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cores_are_kept_and_emulator_cores_dropped() {
        let d = tempfile::tempdir().unwrap();
        let sub = d.path().join("work");
        fs::create_dir_all(&sub).unwrap();
        let mut core = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x04\0".to_vec();
        core.extend([0u8; 32]);
        fs::write(sub.join("qemu_x_20261127-205309_7.core"), &core).unwrap();
        fs::write(sub.join("core"), &core).unwrap();
        fs::write(sub.join("core.txt"), b"not a core").unwrap();
        let got = collect(d.path(), true).unwrap();
        assert_eq!(
            got,
            vec![d.path().join("cores/qemu_x_20261127-205309_7.core")]
        );
        assert!(
            !sub.join("core").exists(),
            "the emulator's own core is deleted"
        );
        assert!(sub.join("core.txt").exists());
        // Natively, the kernel's core is the guest's.
        fs::write(sub.join("core"), &core).unwrap();
        let got = collect(d.path(), false).unwrap();
        assert!(got.contains(&d.path().join("cores/core")));
    }
}
