/*!
Go's wording for failed file operations (`*fs.PathError`, `*os.LinkError`): upstream's censoring
errors embed them (`open /logs/x: no such file or directory`), and the aggregate text is what
sidecar logs.
*/

use std::io;

use pod_utils::wrapper::go_errno_text;

/// Which operation failed on which path, and why: `<op> <path>: <errno text>`.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {}", go_errno_text(source))]
pub struct PathError {
    pub op: &'static str,
    pub path: String,
    pub source: io::Error,
}

impl PathError {
    pub fn new(op: &'static str, path: impl Into<String>, source: io::Error) -> Self {
        PathError {
            op,
            path: path.into(),
            source,
        }
    }
}

/// A failed rename: `rename <from> <to>: <errno text>`.
#[derive(Debug, thiserror::Error)]
#[error("rename {from} {to}: {}", go_errno_text(source))]
pub struct RenameError {
    pub from: String,
    pub to: String,
    pub source: io::Error,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_wording() {
        let e = PathError::new("open", "/logs/x", io::Error::from_raw_os_error(2));
        assert_eq!(e.to_string(), "open /logs/x: no such file or directory");
        let r = RenameError {
            from: "/a".into(),
            to: "/b".into(),
            source: io::Error::from_raw_os_error(13),
        };
        assert_eq!(r.to_string(), "rename /a /b: permission denied");
    }
}
