/*!
All normalisation in one place. Observations from different arches and runs are made comparable
by replacing what legitimately varies, and nothing else:

| placeholder | replaces |
|---|---|
| `[TIME]` | the `time` field of a JSON log line (RFC 3339) |
| `:[LINE]` | the line number in a JSON log line's `file` field (it moves as code is edited; the file stays) |

Everything else, including byte order, sizes and paths, must already be identical across arches.
*/

use crate::observe::Observation;

pub fn observation(o: &Observation) -> Observation {
    Observation {
        exit: o.exit,
        stdout: text(&o.stdout),
        stderr: text(&o.stderr),
    }
}

/// Normalises every line; JSON log lines field by field, other lines untouched.
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for line in s.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        out.push_str(&log_line(body).unwrap_or_else(|| body.to_string()));
        out.push_str(nl);
    }
    out
}

fn log_line(line: &str) -> Option<String> {
    let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line).ok()?;
    if !v.contains_key("component") || !v.contains_key("level") {
        return None;
    }
    if v.contains_key("time") {
        v.insert("time".into(), "[TIME]".into());
    }
    if let Some(serde_json::Value::String(f)) = v.get("file") {
        if let Some((file, line)) = f.rsplit_once(':') {
            if line.bytes().all(|b| b.is_ascii_digit()) {
                let f = format!("{file}:[LINE]");
                v.insert("file".into(), f.into());
            }
        }
    }
    serde_json::to_string(&v).ok()
}

/// Normalisation of a pod's observations (see the module doc for the general rules). On top of
/// log lines it replaces:
///
/// | placeholder | replaces |
/// |---|---|
/// | in-pod path (`/logs`, `/home/prow/go`...) | the backend's folder standing for that volume |
/// | `[POD]` | the backend's pod root |
/// | `[REPOS]` | `/tmp/tetrapod-lab/repos/<fixture>` (fixture git remotes) |
/// | `[TIMESTAMP]` | `"timestamp":N` in started.json / finished.json |
/// | `[DURATION]` | clone record durations, `(runtime: …)`, `# Total runtime: …`, log `duration` fields |
/// | `[RAND]` | the random digits of entrypoint's marker temp dirs and files, and of sidecar's censored copies (`tmp-censored…/tmp-censor…`) |
/// | (sorted) | a text made only of JSON log lines: concurrent uploads log in any order |
/// | (sorted) | clone records and clone-log blocks after the setup one: refs clone concurrently |
/// | (removed) | in objects and pod files, JSON log lines whose `msg` the fixture declares racy (see `Fixture::racy_lines`) |
/// | (removed) | qemu-user's own `qemu: uncaught target signal …` line when a guest dies from a signal |
pub struct Pod {
    paths: Vec<(String, String)>,
    repos: String,
    racy: Vec<String>,
}

macro_rules! re {
    ($s:expr) => {{
        static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
        RE.get_or_init(|| regex::Regex::new($s).expect("valid regex"))
    }};
}

impl Pod {
    pub fn new(path_map: &[(String, String)], fixture: &str, racy: &[String]) -> Self {
        let mut paths = path_map.to_vec();
        // Longest host path first, so nested folders win.
        paths.sort_by_key(|e| std::cmp::Reverse(e.0.len()));
        Pod {
            paths,
            repos: format!("{}/{fixture}", crate::git::REPOS_ROOT),
            racy: racy.to_vec(),
        }
    }

    /// A file's bytes without the fixture's racy log lines, or `None` when it has none of them.
    pub fn without_racy_lines(&self, data: &[u8]) -> Option<Vec<u8>> {
        if self.racy.is_empty() {
            return None;
        }
        let racy = |line: &[u8]| {
            serde_json::from_slice::<serde_json::Value>(line.strip_suffix(b"\n").unwrap_or(line))
                .ok()
                .and_then(|v| {
                    v.get("msg")?
                        .as_str()
                        .map(|m| self.racy.iter().any(|r| r == m))
                })
                .unwrap_or(false)
        };
        let lines: Vec<&[u8]> = data.split_inclusive(|&b| b == b'\n').collect();
        if !lines.iter().any(|l| racy(l)) {
            return None;
        }
        Some(
            lines
                .into_iter()
                .filter(|l| !racy(l))
                .flatten()
                .copied()
                .collect(),
        )
    }

    pub fn text(&self, s: &str) -> String {
        // Emulator noise, not the guest's output (native runs print nothing of the kind).
        let s = re!(r"(?m)^qemu: uncaught target signal \d+ \([^)]*\) - core dumped\n")
            .replace_all(s, "");
        let mut t = s.replace(&self.repos, "[REPOS]");
        for (host, inpod) in &self.paths {
            if host != inpod {
                t = t.replace(host.as_str(), inpod);
            }
        }
        // Before placeholders make the JSON invalid.
        let t = clone_records_in_ref_order(&t).unwrap_or(t);
        let t = text(&t);
        let t = re!(r#""timestamp":\d+"#).replace_all(&t, r#""timestamp":[TIMESTAMP]"#);
        let t = re!(r#""duration":\d+"#).replace_all(&t, r#""duration":[DURATION]"#);
        let t = re!(r#""duration":"[^"]*""#).replace_all(&t, r#""duration":"[DURATION]""#);
        let t = re!(r"\(runtime: [^)]*\)").replace_all(&t, "(runtime: [DURATION])");
        let t = re!(r"# Total runtime: \S+").replace_all(&t, "# Total runtime: [DURATION]");
        let t = re!(r"tmp-censored\d+/tmp-censor[A-Za-z0-9]+")
            .replace_all(&t, "tmp-censored[RAND]/tmp-censor[RAND]");
        let t = clone_log_in_ref_order(&t).unwrap_or_else(|| t.into_owned());
        sort_if_all_log_lines(t)
    }

    /// Marker temp dirs and files carry random digits: `test123/temp-marker456` -> `test[RAND]/temp-marker[RAND]`.
    pub fn log_file_name(&self, name: &str) -> String {
        let n = re!(r"^([A-Za-z_-]+)\d+/").replace(name, "${1}[RAND]/");
        re!(r"temp-marker\d+")
            .replace_all(&n, "temp-marker[RAND]")
            .into_owned()
    }
}

/// clonerefs clones its refs concurrently and, like upstream, records each ref when its clone
/// ends: after the environment setup record, `clone.json` / `clone-records.json` are in
/// completion order. They are compared with those records sorted (by their text, which starts
/// with the refs); the JSON is otherwise kept byte for byte.
fn clone_records_in_ref_order(t: &str) -> Option<String> {
    if !t.starts_with(r#"[{"refs":"#) {
        return None;
    }
    let mut records: Vec<Box<serde_json::value::RawValue>> = serde_json::from_str(t).ok()?;
    if records.len() > 2 {
        records[1..].sort_by(|a, b| a.get().cmp(b.get()));
    }
    let joined: Vec<&str> = records.iter().map(|r| r.get()).collect();
    // serde_json keeps each record's raw text; only the array's own brackets and commas are
    // rebuilt, as compactly as clonerefs writes them. A trailing newline, if any, stays.
    let tail = &t[t.trim_end().len()..];
    Some(format!("[{}]{tail}", joined.join(",")))
}

/// The clone log initupload renders from those records, in the same completion order: each
/// record's block ends with its `# Total runtime:` line; the blocks after the first (the
/// environment setup) are compared sorted.
fn clone_log_in_ref_order(t: &str) -> Option<String> {
    if !t.starts_with("Environment setup") {
        return None;
    }
    const END: &str = "# Total runtime: [DURATION]\n";
    let mut blocks: Vec<&str> = t.split_inclusive(END).collect();
    // Text after the last record (none today) stays where it is.
    let rest = match blocks.last() {
        Some(b) if !b.ends_with(END) => blocks.pop(),
        _ => None,
    };
    if blocks.len() > 2 {
        blocks[1..].sort_unstable();
    }
    Some(blocks.concat() + rest.unwrap_or(""))
}

/// A utility's own log (every line a JSON log line) is compared as a sorted list: uploads run
/// concurrently, so their lines interleave differently from run to run. Mixed text (a build log
/// with the test's output) keeps its order.
fn sort_if_all_log_lines(t: String) -> String {
    let all_logs = !t.is_empty()
        && t.lines().all(|l| {
            l.starts_with('{') && l.contains("\"component\":") && l.contains("\"level\":")
        });
    if !all_logs {
        return t;
    }
    let mut lines: Vec<&str> = t.lines().collect();
    lines.sort_unstable();
    let mut out = lines.join("\n");
    if t.ends_with('\n') {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_records_compare_in_ref_order_after_the_setup_record() {
        let setup = r#"{"refs":{"org":"","repo":""}}"#;
        let a = r#"{"refs":{"org":"o","repo":"a"},"final_sha":"1"}"#;
        let b = r#"{"refs":{"org":"o","repo":"b"},"final_sha":"2"}"#;
        let done_b_first = format!("[{setup},{b},{a}]");
        let done_a_first = format!("[{setup},{a},{b}]");
        let want = Some(done_a_first.clone());
        assert_eq!(clone_records_in_ref_order(&done_b_first), want);
        assert_eq!(clone_records_in_ref_order(&done_a_first), want);
        assert_eq!(clone_records_in_ref_order("[1,2]"), None);
    }

    #[test]
    fn clone_log_blocks_compare_in_ref_order_after_the_setup_block() {
        let setup = "Environment setup\n# Final SHA: \n# Total runtime: [DURATION]\n";
        let a = "# Cloning o/a at main\n$ git init\n# Final SHA: 1\n# Total runtime: [DURATION]\n";
        let b = "# Cloning o/b at main\n# Final SHA: 2\n# Total runtime: [DURATION]\n";
        let want = format!("{setup}{a}{b}");
        assert_eq!(
            clone_log_in_ref_order(&format!("{setup}{b}{a}")),
            Some(want.clone())
        );
        assert_eq!(clone_log_in_ref_order(&want), Some(want.clone()));
        assert_eq!(clone_log_in_ref_order("# Cloning o/a at main\n"), None);
    }

    #[test]
    fn racy_lines_leave_files_by_their_msg_only() {
        let n = Pod::new(&[], "f", &["gone".to_string()]);
        let data = b"keep\n{\"msg\":\"gone\"}\n{\"msg\":\"gone too\"}\nnot json gone\n";
        let got = n.without_racy_lines(data).expect("a racy line");
        assert_eq!(got, b"keep\n{\"msg\":\"gone too\"}\nnot json gone\n");
        assert_eq!(n.without_racy_lines(b"keep\n"), None);
        assert_eq!(Pod::new(&[], "f", &[]).without_racy_lines(data), None);
    }

    #[test]
    fn log_lines_lose_time_and_line_only() {
        let got = text(concat!(
            r#"{"component":"sidecar","file":"utilities/sidecar/src/lib.rs:27","func":"sidecar","level":"fatal","msg":"x","severity":"fatal","time":"2026-11-27T17:00:00Z"}"#,
            "\nplain 2026-11-27T17:00:00Z\n",
            r#"{"time":"t"}"#
        ));
        assert_eq!(
            got,
            concat!(
                r#"{"component":"sidecar","file":"utilities/sidecar/src/lib.rs:[LINE]","func":"sidecar","level":"fatal","msg":"x","severity":"fatal","time":"[TIME]"}"#,
                "\nplain 2026-11-27T17:00:00Z\n",
                r#"{"time":"t"}"#
            )
        );
    }
}
