/*!
Goldens: one per behaviour (probe, fixture, pitfall), named without the arch, so every arch and
backend must match the same file. This module owns loading them, the first difference, the
unified diff and the insta binding: the tests compare through insta ([`assert_golden`], so
`cargo insta review` works); the matrix reads the same files ([`against_golden`]) so that it can
report every cell instead of stopping at the first panic.
*/

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use crate::build::workspace_root;
use crate::target::Arch;

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

/// The unified diff from `want` (the golden) to `got`.
pub fn unified_diff(want: &str, got: &str) -> String {
    similar::TextDiff::from_lines(want, got)
        .unified_diff()
        .context_radius(3)
        .header("golden", "observed")
        .to_string()
}

/// How an observation departs from its golden, when it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// One line: the first difference, or that there is no golden.
    pub first: String,
    /// The unified diff, when there is a golden to diff against.
    pub diff: Option<String>,
}

/// Compares `got` with the golden `name`: `None` when they agree.
pub fn against_golden(name: &str, got: &str) -> Option<Mismatch> {
    let Some(want) = golden(name) else {
        return Some(Mismatch {
            first: format!("no golden {name}.snap"),
            diff: None,
        });
    };
    first_difference(&want, got).map(|first| Mismatch {
        first,
        diff: Some(unified_diff(&want, got)),
    })
}

/// Compares `got` with the golden `name` through insta (a mismatch leaves a `.snap.new` to
/// review) and turns a mismatch into one line naming the arch and the first differing line.
pub fn assert_golden(arch: Arch, name: &str, description: &str, got: &str) -> Result<(), String> {
    let first = golden(name).and_then(|want| first_difference(&want, got));
    let result = catch_unwind(AssertUnwindSafe(|| {
        insta::with_settings!({
            snapshot_path => snapshot_dir(),
            prepend_module_to_snapshot => false,
            omit_expression => true,
            description => description,
        }, {
            insta::assert_snapshot!(name, got);
        });
    }));
    result.map_err(|_| {
        format!(
            "{arch} differs from golden {name}: {}",
            first.unwrap_or_else(|| "no golden yet (review with `cargo insta review`)".into())
        )
    })
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

    #[test]
    fn a_missing_golden_is_a_mismatch_without_a_diff() {
        let m = against_golden("no_such_case__anywhere", "x").expect("mismatch");
        assert_eq!(m.first, "no golden no_such_case__anywhere.snap");
        assert_eq!(m.diff, None);
    }

    #[test]
    fn the_diff_runs_from_golden_to_observed() {
        let d = unified_diff("a\nb\n", "a\nc\n");
        assert!(
            d.contains("--- golden") && d.contains("+++ observed"),
            "{d}"
        );
        assert!(d.contains("-b\n") && d.contains("+c\n"), "{d}");
    }
}
