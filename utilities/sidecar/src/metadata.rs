/*!
The `metadata` object of finished.json (upstream `combineMetadata`): the top-level keys of every
entry's metadata file, shallow-merged in entry order, plus `sidecar-errors` naming the entries
whose file could not be used. A missing file is not an error: most tests write none.

Errors are kept as typed values and encoded the way Go's `json.Marshal` encodes the error values
upstream stores (`*fs.PathError`, `*json.SyntaxError`, `*json.UnmarshalTypeError`).
*/

use std::collections::BTreeMap;
use std::io::{self, Read};

use pod_utils::wrapper;
use serde_json::{Map, Value};

use crate::goerr::PathError;
use crate::gojson::{encode_str, encode_value};

/// The key under which per-entry errors are reported.
pub const ERROR_KEY: &str = "sidecar-errors";

/// Why one entry's metadata file was not merged.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error(transparent)]
    Path(#[from] PathError),
    /// The file is not JSON; `offset` is Go's: bytes read when the error was found.
    #[error("{message}")]
    Syntax { message: String, offset: usize },
    /// Valid JSON, but not an object.
    #[error("json: cannot unmarshal {value} into Go value of type map[string]interface {{}}")]
    Type { value: &'static str, offset: usize },
    /// Not upstream's: a file sidecar could not censor and so did not upload (see
    /// [`withheld_key`]); encoded as the reason's text.
    #[error("{0}")]
    Withheld(String),
}

impl MetadataError {
    /// The JSON Go writes for the error value: exported fields only, in declaration order.
    pub fn go_json(&self) -> String {
        match self {
            MetadataError::Path(p) => p.go_json(),
            MetadataError::Syntax { offset, .. } => format!("{{\"Offset\":{offset}}}"),
            // `Type` is a reflect.Type, which has no exported fields.
            MetadataError::Type { value, offset } => format!(
                "{{\"Value\":\"{value}\",\"Type\":{{}},\"Offset\":{offset},\"Struct\":\"\",\"Field\":\"\"}}"
            ),
            MetadataError::Withheld(why) => {
                let mut out = String::new();
                encode_str(why, &mut out);
                out
            }
        }
    }
}

/// finished.json's `metadata`, before encoding.
#[derive(Debug, Default)]
pub struct CombinedMetadata {
    /// Merged top-level keys; a later entry's key replaces an earlier one.
    pub values: Map<String, Value>,
    /// Keyed by [`name_entry`].
    pub errors: BTreeMap<String, MetadataError>,
}

impl CombinedMetadata {
    /// Upstream omits `metadata` when the map is empty.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty() && self.errors.is_empty()
    }

    /// Appends the object as Go encodes the `map[string]interface{}`: keys sorted, and
    /// `sidecar-errors` (when present) replacing any merged key of that name.
    pub fn encode(&self, out: &mut String) {
        let mut keys: Vec<&str> = self.values.keys().map(String::as_str).collect();
        if !self.errors.is_empty() && !self.values.contains_key(ERROR_KEY) {
            keys.push(ERROR_KEY);
        }
        keys.sort_unstable();
        out.push('{');
        for (i, key) in keys.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            encode_str(key, out);
            out.push(':');
            if key == ERROR_KEY && !self.errors.is_empty() {
                self.encode_errors(out);
            } else if let Some(v) = self.values.get(key) {
                encode_value(v, out);
            }
        }
        out.push('}');
    }

    fn encode_errors(&self, out: &mut String) {
        out.push('{');
        for (i, (name, err)) in self.errors.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            encode_str(name, out);
            out.push(':');
            out.push_str(&err.go_json());
        }
        out.push('}');
    }
}

/// How a withheld file is named in `sidecar-errors`: `withheld: <local path>` (entries are
/// `entry <i>: ...`, so the two never collide).
pub fn withheld_key(path: &std::path::Path) -> String {
    format!("withheld: {}", path.display())
}

/// How upstream names an entry in `sidecar-errors`: `entry <i>: <args joined by spaces>`.
pub fn name_entry(idx: usize, entry: &wrapper::Options) -> String {
    format!("entry {idx}: {}", entry.args.join(" "))
}

/// Reads and merges every entry's metadata file (upstream `combineMetadata`).
pub fn combine_metadata(entries: &[wrapper::Options]) -> CombinedMetadata {
    let mut combined = CombinedMetadata::default();
    for (i, entry) in entries.iter().enumerate() {
        let file = entry.metadata_file.as_str();
        match read_metadata(file) {
            Ok(None) => {}
            Ok(Some(piece)) => combined.values.extend(piece),
            Err(err) => {
                match &err {
                    MetadataError::Path(p) if p.op == "stat" => {
                        tracing::error!(error = %err, "Failed to stat {file}");
                    }
                    MetadataError::Path(_) => tracing::error!(error = %err, "cannot read {file}"),
                    _ => tracing::error!(error = %err, "Failed to unmarshal {file}"),
                }
                combined.errors.insert(name_entry(i, entry), err);
            }
        }
    }
    combined
}

/// One metadata file: `None` when it does not exist (an empty path never does).
fn read_metadata(file: &str) -> Result<Option<Map<String, Value>>, MetadataError> {
    match std::fs::metadata(file) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(PathError::new("stat", file, e).into()),
    }
    let mut f = std::fs::File::open(file).map_err(|e| PathError::new("open", file, e))?;
    let mut raw = Vec::new();
    f.read_to_end(&mut raw)
        .map_err(|e| PathError::new("read", file, e))?;
    parse_object(&raw)
}

/// Go's `json.Unmarshal` into `map[string]interface{}`: `null` leaves the map empty, any other
/// non-object is a type error. Invalid UTF-8 inside strings is replaced, as Go does, rather
/// than rejected.
fn parse_object(raw: &[u8]) -> Result<Option<Map<String, Value>>, MetadataError> {
    let parsed = match serde_json::from_slice::<Value>(raw) {
        Ok(v) => v,
        Err(e) if std::str::from_utf8(raw).is_err() && e.is_syntax() => {
            let lossy = String::from_utf8_lossy(raw);
            serde_json::from_str::<Value>(&lossy).map_err(|e| syntax_error(lossy.as_bytes(), &e))?
        }
        Err(e) => return Err(syntax_error(raw, &e)),
    };
    let value = match parsed {
        Value::Object(map) => return Ok(Some(map)),
        Value::Null => return Ok(None),
        Value::Array(_) => "array",
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
    };
    Err(MetadataError::Type {
        value,
        offset: type_error_offset(raw, value == "array"),
    })
}

/// Go's offset for a top-level type error: just past `[` for an array, the end of the
/// literal for a scalar.
fn type_error_offset(raw: &[u8], array: bool) -> usize {
    let is_ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    if array {
        raw.iter().take_while(|b| is_ws(b)).count() + 1
    } else {
        raw.len() - raw.iter().rev().take_while(|b| is_ws(b)).count()
    }
}

/// serde_json reports a 1-based line and the byte column of the offending byte; Go counts the
/// bytes consumed including that byte, which is the same position as a flat offset.
fn syntax_error(raw: &[u8], e: &serde_json::Error) -> MetadataError {
    let line_start: usize = raw
        .split_inclusive(|b| *b == b'\n')
        .take(e.line().saturating_sub(1))
        .map(<[u8]>::len)
        .sum();
    MetadataError::Syntax {
        message: e.to_string(),
        offset: (line_start + e.column()).min(raw.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::Path;

    fn entries_for(dir: &Path, pieces: &[&str]) -> Vec<wrapper::Options> {
        pieces
            .iter()
            .enumerate()
            .map(|(i, piece)| {
                let p = dir.join(format!("metadata-{i}.txt"));
                match *piece {
                    "missing" => {}
                    "read-error" => std::fs::create_dir(&p).unwrap(),
                    content => std::fs::write(&p, content).unwrap(),
                }
                wrapper::Options {
                    metadata_file: p.to_string_lossy().into_owned(),
                    ..Default::default()
                }
            })
            .collect()
    }

    fn encoded(m: &CombinedMetadata) -> String {
        let mut s = String::new();
        m.encode(&mut s);
        s
    }

    // Upstream TestCombineMetadata.
    #[test]
    fn missing_file_is_no_problem() {
        let dir = tempfile::tempdir().unwrap();
        let m = combine_metadata(&entries_for(dir.path(), &["missing"]));
        assert!(m.is_empty());
        let empty_path = wrapper::Options::default();
        assert!(combine_metadata(&[empty_path]).is_empty());
    }

    #[test]
    fn simple_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let m = combine_metadata(&entries_for(dir.path(), &[r#"{"hello": "world"}"#]));
        assert_eq!(Value::Object(m.values.clone()), json!({"hello": "world"}));
        assert!(m.errors.is_empty());
        assert_eq!(encoded(&m), r#"{"hello":"world"}"#);
    }

    #[test]
    fn merge_pieces_later_wins() {
        let dir = tempfile::tempdir().unwrap();
        let m = combine_metadata(&entries_for(
            dir.path(),
            &[
                r#"{"hello": "hello", "world": "world", "first": 1}"#,
                r#"{"hello": "hola", "world": "world", "second": 2}"#,
            ],
        ));
        assert_eq!(
            encoded(&m),
            r#"{"first":1,"hello":"hola","second":2,"world":"world"}"#
        );
    }

    #[test]
    fn errors_go_into_sidecar_errors() {
        let dir = tempfile::tempdir().unwrap();
        let entries = entries_for(
            dir.path(),
            &[
                r#"{"hello": "there"}"#,
                "missing",
                "read-error",
                "json-error",
                r#"{"world": "thanks"}"#,
            ],
        );
        let m = combine_metadata(&entries);
        assert_eq!(
            Value::Object(m.values.clone()),
            json!({"hello": "there", "world": "thanks"})
        );
        let names: Vec<&String> = m.errors.keys().collect();
        assert_eq!(names, ["entry 2: ", "entry 3: "]);
        let dir2 = entries[2].metadata_file.clone();
        assert_eq!(
            encoded(&m),
            format!(
                r#"{{"hello":"there","sidecar-errors":{{"entry 2: ":{{"Op":"read","Path":"{dir2}","Err":21}},"entry 3: ":{{"Offset":1}}}},"world":"thanks"}}"#
            )
        );
    }

    #[test]
    fn entry_names_join_args() {
        let e = wrapper::Options {
            args: vec!["/bin/ls".into(), "-l".into()],
            ..Default::default()
        };
        assert_eq!(name_entry(3, &e), "entry 3: /bin/ls -l");
    }

    #[test]
    fn stat_errors_other_than_missing_are_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "{}").unwrap();
        let below = file.join("metadata.json");
        let e = wrapper::Options {
            metadata_file: below.to_string_lossy().into_owned(),
            ..Default::default()
        };
        let m = combine_metadata(&[e]);
        let err = &m.errors["entry 0: "];
        assert_eq!(
            err.go_json(),
            format!(r#"{{"Op":"stat","Path":"{}","Err":20}}"#, below.display())
        );
        assert_eq!(
            err.to_string(),
            format!("stat {}: not a directory", below.display())
        );
    }

    #[test]
    fn go_offsets_for_syntax_and_type_errors() {
        let offset = |raw: &str| match parse_object(raw.as_bytes()) {
            Err(e) => e.go_json(),
            Ok(v) => format!("ok {v:?}"),
        };
        assert_eq!(offset(""), r#"{"Offset":0}"#);
        assert_eq!(offset(r#"{"a":}"#), r#"{"Offset":6}"#);
        assert_eq!(offset(r#"{"a":1"#), r#"{"Offset":6}"#);
        assert_eq!(offset("{\n\"a\":1,\n}"), r#"{"Offset":10}"#);
        assert_eq!(offset("{} x"), r#"{"Offset":4}"#);
        assert_eq!(
            offset(" [1]"),
            r#"{"Value":"array","Type":{},"Offset":2,"Struct":"","Field":""}"#
        );
        assert_eq!(
            offset("\"x\"\n"),
            r#"{"Value":"string","Type":{},"Offset":3,"Struct":"","Field":""}"#
        );
        assert_eq!(
            offset("12"),
            r#"{"Value":"number","Type":{},"Offset":2,"Struct":"","Field":""}"#
        );
        assert_eq!(
            offset("true"),
            r#"{"Value":"bool","Type":{},"Offset":4,"Struct":"","Field":""}"#
        );
        assert_eq!(offset("null"), "ok None");
    }

    #[test]
    fn invalid_utf8_is_replaced_not_rejected() {
        let m = parse_object(b"{\"a\":\"x\xffy\"}").unwrap().unwrap();
        assert_eq!(m["a"], json!("x\u{fffd}y"));
    }

    #[test]
    fn merged_key_named_sidecar_errors_is_replaced() {
        let mut m = CombinedMetadata::default();
        m.values.insert(ERROR_KEY.into(), json!("mine"));
        assert_eq!(encoded(&m), r#"{"sidecar-errors":"mine"}"#);
        m.errors.insert(
            "entry 0: ".into(),
            MetadataError::Syntax {
                message: "x".into(),
                offset: 1,
            },
        );
        assert_eq!(
            encoded(&m),
            r#"{"sidecar-errors":{"entry 0: ":{"Offset":1}}}"#
        );
    }
}
