/*!
Goldens: one per probe (later, per fixture), named without the arch, so every arch must match the
same file. The tests compare through insta; the matrix command reads the same files directly so
that it can report every cell instead of stopping at the first panic.
*/

use std::path::PathBuf;

use crate::build::workspace_root;

/// Where the goldens live (insta's snapshot folder of the lab test).
pub fn snapshot_dir() -> PathBuf {
    workspace_root().join("harness/tests/snapshots")
}

/// The stored golden for `name`, without insta's header.
pub fn golden(name: &str) -> Option<String> {
    let text = std::fs::read_to_string(snapshot_dir().join(format!("{name}.snap"))).ok()?;
    // insta's files: `---\n<yaml header>\n---\n<content>`.
    let rest = text.strip_prefix("---\n")?;
    let (_, body) = rest.split_once("\n---\n")?;
    Some(body.to_string())
}

/// The first line where `got` departs from `want`, for a one-line failure message.
pub fn first_difference(want: &str, got: &str) -> Option<String> {
    let (w, g) = (want.trim_end(), got.trim_end());
    if w == g {
        return None;
    }
    for (i, (a, b)) in w.lines().zip(g.lines()).enumerate() {
        if a != b {
            return Some(format!("line {}: golden {a:?}, got {b:?}", i + 1));
        }
    }
    let (wl, gl) = (w.lines().count(), g.lines().count());
    Some(format!("golden has {wl} lines, got {gl}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_the_line() {
        assert_eq!(first_difference("a\nb\n", "a\nb"), None);
        assert_eq!(
            first_difference("a\nb", "a\nc").as_deref(),
            Some(r#"line 2: golden "b", got "c""#)
        );
        assert_eq!(
            first_difference("a", "a\nb").as_deref(),
            Some("golden has 1 lines, got 2")
        );
    }
}
