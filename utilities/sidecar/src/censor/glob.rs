//! Include/exclude globs with the semantics of `github.com/mattn/go-zglob` v0.0.2 `Match`, the
//! version upstream pins. Only a segment holding `*` makes a pattern a glob; anything else must equal
//! the path exactly. In a glob, `**/` matches any number of whole directories (including none), `*`
//! matches within one segment, `{a,b}` is an alternation, and everything else is literal. Patterns
//! are cleaned like Go's `path.Clean` first, and, as upstream, a path no longer than the pattern's
//! literal root (the part before the first `*` segment; "." when the pattern starts with one) never
//! matches, so `*` does not match a one-byte name.

use regex::bytes::Regex;

/// A compiled pattern.
#[derive(Debug, Clone)]
pub(crate) struct Glob {
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    /// No `*` anywhere: an exact comparison with the pattern as written.
    Exact(Vec<u8>),
    Pattern {
        root_len: usize,
        re: Regex,
    },
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("error parsing regexp: {0}")]
pub struct GlobError(String);

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, GlobError> {
        let mut mask = String::new();
        let mut root: Option<String> = None;
        for (n, seg) in pattern.split('/').enumerate() {
            if root.is_none() && seg.contains('*') {
                root = Some(if mask.is_empty() {
                    ".".to_string()
                } else {
                    mask.clone()
                });
            }
            let seg = expand(n, seg);
            mask = pod_utils::gopath::join(&[&mask, &seg]);
            if n == 0 && mask.is_empty() {
                mask = "/".to_string();
            }
        }
        let Some(root) = root else {
            return Ok(Glob {
                kind: Kind::Exact(pattern.as_bytes().to_vec()),
            });
        };
        let mask = pod_utils::gopath::clean(if mask.is_empty() { "." } else { &mask });
        let re = translate(&mask);
        let re = Regex::new(&re).map_err(|e| GlobError(e.to_string()))?;
        Ok(Glob {
            kind: Kind::Pattern {
                root_len: pod_utils::gopath::clean(&root).len(),
                re,
            },
        })
    }

    /// Whether `name` (a `/`-separated relative path, as raw bytes) matches.
    pub fn matches(&self, name: &[u8]) -> bool {
        match &self.kind {
            Kind::Exact(p) => p == name,
            Kind::Pattern { root_len, re } => {
                name != b"." && name.len() > *root_len && re.is_match(name)
            }
        }
    }
}

/// zglob expands `~` in the first segment and whole-segment `$VAR` / `$(VAR)` references.
fn expand(n: usize, seg: &str) -> String {
    if n == 0 && seg == "~" {
        return pod_utils::env::lookup("HOME").unwrap_or_default();
    }
    let name = seg
        .strip_prefix("$(")
        .and_then(|s| s.strip_suffix(')'))
        .or_else(|| seg.strip_prefix('$'));
    if let Some(name) = name {
        let mut chars = name.chars();
        let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && name.len() >= 2
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if valid {
            let v = pod_utils::env::lookup(name).unwrap_or_default();
            return v.trim_matches(['(', ')']).trim_matches('"').to_string();
        }
    }
    seg.to_string()
}

/// The regular expression zglob builds for a cleaned mask. Go's regexp matches invalid UTF-8
/// byte by byte, so the wildcards here are byte classes.
fn translate(mask: &str) -> String {
    let cc: Vec<char> = mask.chars().collect();
    let mut out = String::from("^");
    let mut i = 0;
    while i < cc.len() {
        let c = cc[i];
        if c == '*' {
            if i + 2 < cc.len() && cc[i + 1] == '*' && cc[i + 2] == '/' {
                out.push_str("(?:(?-u:[^\\n])*/)?");
                i += 3;
            } else {
                out.push_str("(?-u:[^/])*");
                i += 1;
            }
            continue;
        }
        if c == '{' {
            let mut alt = String::new();
            let mut closed = None;
            for (j, &d) in cc.iter().enumerate().skip(i + 1) {
                match d {
                    ',' => alt.push('|'),
                    '}' => {
                        closed = Some(j);
                        break;
                    }
                    d => alt.push_str(&regex::escape(&d.to_string())),
                }
            }
            if !alt.is_empty() {
                out.push('(');
                out.push_str(&alt);
                out.push(')');
                // Without a closing brace zglob goes on from the next character, so the text
                // after `{` is matched twice: once in the group, once literally.
                i = closed.unwrap_or(i) + 1;
                continue;
            }
            if let Some(j) = closed {
                // `{}`: zglob emits nothing for the braces' content but still the `}` itself.
                i = j;
                out.push_str(&regex::escape("}"));
                i += 1;
                continue;
            }
        }
        out.push_str(&regex::escape(&c.to_string()));
        i += 1;
    }
    if out.ends_with('/') {
        out.push_str("(?-u:[^/])*");
    }
    out.push('$');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, name: &str) -> bool {
        Glob::new(p).unwrap().matches(name.as_bytes())
    }

    #[test]
    fn double_star_spans_directories_including_none() {
        assert!(m("**/exclude", "exclude"));
        assert!(m("**/exclude", "a/b/exclude"));
        assert!(!m("**/exclude", "a/b/excluded"));
        assert!(!m("**/exclude", "exclude/file"));
        assert!(m("/usr/**/*", "/usr/bin/bash"));
        assert!(m("/usr/bin/**/*", "/usr/bin/bash"));
        assert!(!m("/tmp/**/*", "/usr/bin/bash"));
    }

    #[test]
    fn single_star_stays_in_a_segment() {
        assert!(m("first/*", "first/file"));
        assert!(!m("first/*", "first/second/file"));
        assert!(m("*.log", "build.log"));
        assert!(!m("*.log", "dir/build.log"));
    }

    #[test]
    fn upstream_quirks() {
        // A path no longer than the pattern's root never matches: "*" has root ".".
        assert!(!m("*", "a"));
        assert!(m("*", "ab"));
        assert!(!m("**/*", "."));
        // No `*`: exact comparison, no cleaning, other metacharacters are literal.
        assert!(m("a/b", "a/b"));
        assert!(!m("a//b", "a/b"));
        assert!(!m("{a,b}", "a"));
        assert!(!m("a?", "ab"));
        // Alternation only in a glob; `*` inside braces is literal.
        assert!(m("*/{x,y}.txt", "d/y.txt"));
        assert!(!m("*/{x,y}.txt", "d/z.txt"));
        assert!(m("{*,q}/f", "*/f"));
        // Patterns are cleaned before translation.
        assert!(m("./a//*/", "a/b"));
        // Regex metacharacters are literal.
        assert!(m("*.tar.gz", "x.tar.gz"));
        assert!(!m("*.tar.gz", "x_tar_gz"));
        assert!(m("*(1)", "file(1)"));
    }

    #[test]
    fn invalid_utf8_names_match_wildcards() {
        let g = Glob::new("**/*.log").unwrap();
        assert!(g.matches(b"d\xff/x\xfe.log"));
    }
}
