/*!
Censored copies for files that cannot be censored in place.

Upstream rewrites every file through a temp file in the file's own directory. In a real pod the
test container often runs as another user than sidecar (root test image, `run_as_user` for the
pod, or the other way round), so that directory can be read-only to sidecar: upstream then logs
a warning and uploads the secret as it is. Here the censored bytes go to a private directory
under `$TMPDIR` instead, and the upload takes the copy in the original's place, so the bucket
gets the same object it would have got from an in-place rewrite.

The directory is made on first use (mode 0700) and removed when the [`Aside`]
is dropped, which the caller does after the upload.
*/

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use tempfile::NamedTempFile;

use super::walk::lossy;
use crate::goerr::PathError;

/// Where censored copies go; shared by the censoring workers.
#[derive(Debug)]
pub struct Aside {
    root: PathBuf,
    dir: Mutex<Option<PathBuf>>,
}

impl Aside {
    /// Copies will live in a fresh directory under `root` (sidecar passes `$TMPDIR`).
    pub fn new(root: impl Into<PathBuf>) -> Aside {
        Aside {
            root: root.into(),
            dir: Mutex::new(None),
        }
    }

    /// A new empty file in the private directory, removed on drop unless kept.
    pub fn file(&self) -> Result<NamedTempFile, PathError> {
        let mut dir = self.dir.lock().unwrap_or_else(PoisonError::into_inner);
        let path = match &*dir {
            Some(d) => d.clone(),
            None => {
                let made = private_dir_in(&self.root).map_err(|e| {
                    PathError::new("mkdir", lossy(&self.root.join("tmp-censored*")), e)
                })?;
                *dir = Some(made.clone());
                made
            }
        };
        temp_file_in(&path, "tmp-censor")
            .map_err(|e| PathError::new("open", lossy(&path.join("tmp-censor*")), e))
    }
}

impl Drop for Aside {
    fn drop(&mut self) {
        let dir = self.dir.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(d) = dir.take() {
            if let Err(e) = std::fs::remove_dir_all(&d) {
                tracing::warn!(path = %lossy(&d), error = %e, "Could not remove censored copies.");
            }
        }
    }
}

/// A new directory (mode 0700) under `root`, named `tmp-censored<random>`; the error is the
/// bare OS error, as tempfile's wrapped one would not read as Go's.
fn private_dir_in(root: &Path) -> io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let mut last = None;
    for _ in 0..16 {
        let path = root.join(format!("tmp-censored{:010}", random_suffix()));
        match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists)))
}

/// A name suffix: unpredictable enough for a directory that is created exclusively anyway.
fn random_suffix() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() as u32
}

/// A new temp file (mode 0600) in `dir`, named `<prefix><random>`. Unlike tempfile's own
/// constructors, the error is the bare OS error: it goes into Go-worded messages.
pub fn temp_file_in(dir: &Path, prefix: &str) -> io::Result<NamedTempFile> {
    use std::os::unix::fs::OpenOptionsExt;
    tempfile::Builder::new().prefix(prefix).make_in(dir, |p| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(p)
    })
}

/// Whether an error writing beside a file means "this directory is not ours to write", the
/// case a censored copy elsewhere solves; other errors (a full disk, say) would hit the copy
/// too.
pub fn is_permission(e: &io::Error) -> bool {
    use nix::errno::Errno;
    e.kind() == io::ErrorKind::PermissionDenied
        || matches!(
            e.raw_os_error().map(Errno::from_raw),
            Some(Errno::EROFS | Errno::EPERM | Errno::EACCES)
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_share_one_private_dir_removed_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let aside = Aside::new(tmp.path());
        let a = aside.file().unwrap().into_temp_path().keep().unwrap();
        let b = aside.file().unwrap().into_temp_path().keep().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.parent(), b.parent());
        let dir = a.parent().unwrap().to_path_buf();
        assert!(dir.starts_with(tmp.path()));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        drop(aside);
        assert!(!dir.exists());
    }

    #[test]
    fn an_unusable_root_is_a_path_error() {
        let aside = Aside::new("/nonexistent/tetrapod");
        let err = aside.file().unwrap_err().to_string();
        assert!(
            err == "mkdir /nonexistent/tetrapod/tmp-censored*: no such file or directory",
            "{err}"
        );
    }

    #[test]
    fn permission_errors() {
        assert!(is_permission(&io::Error::from_raw_os_error(13)));
        assert!(is_permission(&io::Error::from_raw_os_error(30)));
        assert!(!is_permission(&io::Error::from_raw_os_error(28)));
        let missing = temp_file_in(Path::new("/nonexistent/dir"), "x").unwrap_err();
        assert_eq!(missing.raw_os_error(), Some(2));
    }
}
