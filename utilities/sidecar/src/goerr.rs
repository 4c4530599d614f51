/*!
Go's wording for OS errors. Upstream prints `*fs.PathError` values (`open /logs/x: no such file or
directory`) into build logs and finished.json, and encodes them as JSON structs, so the text and
shape of an error are part of what sidecar uploads.
*/

use std::io;

use pod_utils::wrapper::go_errno_text;

use crate::gojson::encode_str;

/// An `*fs.PathError`: which operation failed on which path, and why.
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

    /// `json.Marshal` of the Go value: exported fields in declaration order. `Err` is a
    /// `syscall.Errno`, an integer type, so it encodes as the errno number; an error without one
    /// would be a struct with no exported fields, `{}`.
    pub fn go_json(&self) -> String {
        let mut out = String::from("{\"Op\":");
        encode_str(self.op, &mut out);
        out.push_str(",\"Path\":");
        encode_str(&self.path, &mut out);
        out.push_str(",\"Err\":");
        match self.source.raw_os_error() {
            Some(code) => out.push_str(&code.to_string()),
            None => out.push_str("{}"),
        }
        out.push('}');
        out
    }
}

/// A failed rename (`*os.LinkError`): `rename <from> <to>: <errno text>`.
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
    fn path_errors_read_and_encode_as_go() {
        let enoent = io::Error::from_raw_os_error(2);
        let e = PathError::new("open", "/logs/x", enoent);
        assert_eq!(e.to_string(), "open /logs/x: no such file or directory");
        assert_eq!(e.go_json(), r#"{"Op":"open","Path":"/logs/x","Err":2}"#);
    }

    #[test]
    fn renames_read_as_go() {
        let r = RenameError {
            from: "/a".into(),
            to: "/b".into(),
            source: io::Error::from_raw_os_error(13),
        };
        assert_eq!(r.to_string(), "rename /a /b: permission denied");
    }

    #[test]
    fn errors_without_errno_encode_as_empty_struct() {
        let e = PathError::new("read", "/x", io::Error::other("boom"));
        assert_eq!(e.go_json(), r#"{"Op":"read","Path":"/x","Err":{}}"#);
        assert_eq!(e.to_string(), "read /x: boom");
    }
}
