/*!
Go's `filepath.Walk`, which every walk in upstream's censoring uses: names in byte order, `lstat`
so directory symlinks are not followed, and the callback sees each error and decides whether the
walk goes on. Keeping one implementation keeps the three walks (secrets, items, unpacked
archives) in step with each other.
*/

use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::goerr::PathError;

/// What the callback wants after seeing a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Visit {
    Continue,
    /// Do not descend into this directory (only meaningful for directories).
    SkipDir,
}

/// One visited path.
pub(crate) struct Node<'a> {
    pub path: &'a Path,
    /// Path relative to the walk's root, `/`-separated; "." for the root itself.
    pub rel: &'a [u8],
    /// `lstat` of the path, or why it (or, for a directory, its listing) failed.
    pub meta: Result<&'a Metadata, PathError>,
}

impl Node<'_> {
    /// The base name as Go's `FileInfo.Name()` gives it.
    pub fn name(&self) -> OsString {
        base_name(self.path)
    }
}

/// Go's `filepath.Base`: trailing slashes dropped, "/" for the root, "." for "".
pub(crate) fn base_name(p: &Path) -> OsString {
    let bytes = p.as_os_str().as_bytes();
    let trimmed = {
        let mut end = bytes.len();
        while end > 1 && bytes[end - 1] == b'/' {
            end -= 1;
        }
        &bytes[..end]
    };
    if trimmed.is_empty() {
        return OsString::from(".");
    }
    if trimmed == b"/" {
        return OsString::from("/");
    }
    let start = trimmed
        .iter()
        .rposition(|b| *b == b'/')
        .map_or(0, |i| i + 1);
    OsString::from_vec(trimmed[start..].to_vec())
}

/// Walks `root` in Go's order. The callback's error stops the walk and is returned.
pub(crate) fn walk<E>(
    root: &Path,
    f: &mut dyn FnMut(Node<'_>) -> Result<Visit, E>,
) -> Result<(), E> {
    match fs::symlink_metadata(root) {
        Err(e) => {
            f(Node {
                path: root,
                rel: b".",
                meta: Err(PathError::new("lstat", lossy(root), e)),
            })?;
            Ok(())
        }
        Ok(meta) => walk_at(root, b".", &meta, f),
    }
}

fn walk_at<E>(
    path: &Path,
    rel: &[u8],
    meta: &Metadata,
    f: &mut dyn FnMut(Node<'_>) -> Result<Visit, E>,
) -> Result<(), E> {
    if !meta.is_dir() {
        f(Node {
            path,
            rel,
            meta: Ok(meta),
        })?;
        return Ok(());
    }
    // As upstream: the listing is read before the callback sees the directory, and a listing
    // error is handed to the callback instead of the metadata.
    let names = match read_names(path) {
        Ok(names) => names,
        Err(e) => {
            f(Node {
                path,
                rel,
                meta: Err(e),
            })?;
            return Ok(());
        }
    };
    if f(Node {
        path,
        rel,
        meta: Ok(meta),
    })? == Visit::SkipDir
    {
        return Ok(());
    }
    for name in names {
        let child = path.join(&name);
        let child_rel = if rel == b"." {
            name.as_bytes().to_vec()
        } else {
            let mut r = rel.to_vec();
            r.push(b'/');
            r.extend_from_slice(name.as_bytes());
            r
        };
        match fs::symlink_metadata(&child) {
            Err(e) => {
                f(Node {
                    path: &child,
                    rel: &child_rel,
                    meta: Err(PathError::new("lstat", lossy(&child), e)),
                })?;
            }
            Ok(m) => walk_at(&child, &child_rel, &m, f)?,
        }
    }
    Ok(())
}

fn read_names(dir: &Path) -> Result<Vec<OsString>, PathError> {
    let entries = fs::read_dir(dir).map_err(|e| PathError::new("open", lossy(dir), e))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| PathError::new("readdirent", lossy(dir), e))?;
        names.push(entry.file_name());
    }
    // Go sorts names as byte strings.
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// A path as text for error messages.
pub(crate) fn lossy(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The directory holding `p` ("." for a bare name): where upstream puts its temp files.
pub(crate) fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_name_like_go() {
        for (p, want) in [
            ("", "."),
            ("/", "/"),
            ("//", "/"),
            ("a", "a"),
            ("a/b/", "b"),
            ("/x/..data", "..data"),
            ("..", ".."),
        ] {
            assert_eq!(base_name(Path::new(p)), OsString::from(want), "{p}");
        }
    }

    #[test]
    fn walks_in_byte_order_with_relative_paths_and_skips() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("b/skip")).unwrap();
        fs::create_dir_all(root.join("a")).unwrap();
        fs::write(root.join("B"), "").unwrap();
        fs::write(root.join("a/z"), "").unwrap();
        fs::write(root.join("b/skip/hidden"), "").unwrap();
        fs::write(root.join("b/y"), "").unwrap();
        std::os::unix::fs::symlink(root.join("a"), root.join("c")).unwrap();
        let mut seen = Vec::new();
        walk::<()>(root, &mut |n| {
            seen.push(String::from_utf8(n.rel.to_vec()).unwrap());
            let m = n.meta.as_ref().unwrap();
            Ok(if m.is_dir() && n.name() == "skip" {
                Visit::SkipDir
            } else {
                Visit::Continue
            })
        })
        .unwrap();
        assert_eq!(seen, [".", "B", "a", "a/z", "b", "b/skip", "b/y", "c"]);
    }

    #[test]
    fn missing_root_reports_lstat() {
        let mut errs = Vec::new();
        walk::<()>(Path::new("/nonexistent/tetrapod"), &mut |n| {
            errs.push(n.meta.unwrap_err().to_string());
            Ok(Visit::Continue)
        })
        .unwrap();
        assert_eq!(
            errs,
            ["lstat /nonexistent/tetrapod: no such file or directory"]
        );
    }
}
