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
        exit: o.exit.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

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
