/*!
Copy mode (upstream `cmd/entrypoint/main.go`): the place-entrypoint init container copies the
binary into the tools volume. Also Go's `*PathError` text, which the run's own file errors share.
*/

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use pod_utils::wrapper::go_errno_text;

use crate::Options;

/// Go's `*PathError` text: `open /x: permission denied`.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {text}", text = go_errno_text(source))]
pub(crate) struct PathError {
    op: &'static str,
    path: PathBuf,
    source: io::Error,
}

impl PathError {
    pub(crate) fn new(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> PathError {
        let path = path.to_path_buf();
        move |source| PathError { op, path, source }
    }
}

/// Copies the running binary to `copy_dst` (the place-entrypoint init container). The source is
/// `argv0` as invoked, as upstream uses `os.Args[0]`: under qemu-user `/proc/self/exe` would be
/// the emulator itself.
pub(crate) fn copy_mode(o: &Options, argv0: &str) -> i32 {
    match copy_file(Path::new(argv0), Path::new(&o.copy_dst)) {
        Ok(()) => 0,
        Err(e) => {
            pod_utils::fatal!(error = %e, "Failed running in copy mode, this is a prow bug.");
            1
        }
    }
}

/// A copy-mode failure, worded as upstream's: `read info '<src>': stat <src>: ...`.
#[derive(Debug, thiserror::Error)]
#[error("{what} '{}': {source}", path.display())]
struct CopyError {
    what: &'static str,
    path: PathBuf,
    source: PathError,
}

impl CopyError {
    fn new(what: &'static str, op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Self {
        let path = path.to_path_buf();
        move |e| CopyError {
            what,
            source: PathError::new(op, &path)(e),
            path,
        }
    }
}

/// Byte-for-byte copy keeping the permission bits (applied on creation, under the umask, as Go's
/// `os.WriteFile`), creating the destination's parent directories with 0755. Streams rather than
/// reading the whole binary into memory first.
fn copy_file(src: &Path, dst: &Path) -> Result<(), CopyError> {
    tracing::info!("src is {}", src.display());
    let meta = fs::metadata(src).map_err(CopyError::new("read info", "stat", src))?;
    let mut input = File::open(src).map_err(CopyError::new("read file", "open", src))?;
    let parent = match dst.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(parent)
        .map_err(CopyError::new("create dir", "mkdir", parent))?;
    let mut output = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(meta.permissions().mode() & 0o777)
        .open(dst)
        .map_err(CopyError::new("write file", "open", dst))?;
    io::copy(&mut input, &mut output).map_err(CopyError::new("write file", "write", dst))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_keeps_content_and_mode_and_creates_the_parent() {
        for mode in [0o644, 0o755] {
            let dir = tempfile::tempdir().unwrap();
            let src = dir.path().join("src");
            fs::write(&src, b"\x7fELF binary\x00bytes").unwrap();
            fs::set_permissions(&src, fs::Permissions::from_mode(mode)).unwrap();
            let dst = dir.path().join("tools/sub/entrypoint");
            copy_file(&src, &dst).unwrap();
            assert_eq!(fs::read(&dst).unwrap(), fs::read(&src).unwrap());
            let got = fs::metadata(&dst).unwrap().permissions().mode() & 0o777;
            assert_eq!(got, mode);
        }
    }

    #[test]
    fn copy_errors_read_like_go() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("missing");
        let err = copy_file(&src, &dir.path().join("dst")).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "read info '{0}': stat {0}: no such file or directory",
                src.display()
            )
        );
    }
}
