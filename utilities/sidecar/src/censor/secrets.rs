/*!
Loading the secrets to censor (upstream `loadSecrets`): every file under each secret directory,
walked in byte order, skipping Kubernetes' `..`-prefixed bookkeeping entries and following file
symlinks (projected keys are symlinks). A file's whole content is one secret; docker config files
and configured INI files add their sensitive fields after it, so the whole file keeps priority.
Any error aborts loading, and the caller then censors nothing, as upstream.
*/

use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde_json::Value;

use super::ini::{self, IniError};
use super::walk::{Visit, lossy, walk};
use crate::goerr::PathError;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("{0}")]
    Io(PathError),
    #[error("could not read {path} as a docker secret: {source}")]
    Parse { path: String, source: ParseError },
}

/// Why a docker config or INI file could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("json: cannot unmarshal {found} into Go value of type {want}")]
    JsonType {
        found: &'static str,
        want: &'static str,
    },
    #[error("{0}")]
    Ini(#[from] IniError),
}

/// All secrets in load order.
pub fn load(dirs: &[String], ini_filenames: &[String]) -> Result<Vec<Vec<u8>>, SecretsError> {
    let mut secrets = Vec::new();
    for dir in dirs {
        walk(Path::new(dir), &mut |node| {
            let name = node.name();
            let meta = node.meta.map_err(SecretsError::Io)?;
            if name.as_encoded_bytes().starts_with(b"..") {
                return Ok(if meta.is_dir() {
                    Visit::SkipDir
                } else {
                    Visit::Continue
                });
            }
            if meta.is_dir() {
                return Ok(Visit::Continue);
            }
            let raw = read(node.path)?;
            let extra = if ini_filenames.iter().any(|n| name.as_os_str() == n.as_str()) {
                ini::values(&raw).map_err(ParseError::from)
            } else if name == ".dockercfg" {
                dockercfg_auths(&raw)
            } else if name == ".dockerconfigjson" {
                dockerconfigjson_auths(&raw)
            } else {
                Ok(Vec::new())
            }
            .map_err(|source| SecretsError::Parse {
                path: lossy(node.path),
                source,
            })?;
            secrets.push(raw);
            secrets.extend(extra);
            Ok(Visit::Continue)
        })?;
    }
    Ok(secrets)
}

/// `os.ReadFile`: follows symlinks; a directory opens but fails to read.
fn read(path: &Path) -> Result<Vec<u8>, SecretsError> {
    let name = lossy(path);
    let mut f = File::open(path).map_err(|e| SecretsError::Io(PathError::new("open", &name, e)))?;
    let mut raw = Vec::new();
    f.read_to_end(&mut raw)
        .map_err(|e| SecretsError::Io(PathError::new("read", &name, e)))?;
    Ok(raw)
}

const AUTH_MAP: &str = "map[string]sidecar.authEntry";
const AUTH_ENTRY: &str = "sidecar.authEntry";

/// `auth` then `password` of every registry in a `kubernetes.io/dockercfg` secret.
pub(crate) fn dockercfg_auths(content: &[u8]) -> Result<Vec<Vec<u8>>, ParseError> {
    let v: Value = serde_json::from_slice(content)?;
    registries(&v, AUTH_MAP)
}

/// The same from the `auths` map of a `kubernetes.io/dockerconfigjson` secret.
pub(crate) fn dockerconfigjson_auths(content: &[u8]) -> Result<Vec<Vec<u8>>, ParseError> {
    let v: Value = serde_json::from_slice(content)?;
    let obj = match &v {
        Value::Null => return Ok(Vec::new()),
        Value::Object(o) => o,
        other => {
            return Err(ParseError::JsonType {
                found: json_kind(other),
                want: "struct { Auths map[string]sidecar.authEntry \"json:\\\"auths\\\"\" }",
            });
        }
    };
    // Go's decoder matches field names case-insensitively.
    match field(obj, "auths") {
        Some(auths) => registries(auths, AUTH_MAP),
        None => Ok(Vec::new()),
    }
}

fn registries(v: &Value, want: &'static str) -> Result<Vec<Vec<u8>>, ParseError> {
    let map = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Object(m) => m,
        other => {
            return Err(ParseError::JsonType {
                found: json_kind(other),
                want,
            });
        }
    };
    let mut out = Vec::new();
    for entry in map.values() {
        let entry = match entry {
            Value::Null => continue,
            Value::Object(e) => e,
            other => {
                return Err(ParseError::JsonType {
                    found: json_kind(other),
                    want: AUTH_ENTRY,
                });
            }
        };
        for key in ["auth", "password"] {
            match field(entry, key) {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) if s.is_empty() => {}
                Some(Value::String(s)) => out.push(s.clone().into_bytes()),
                Some(other) => {
                    return Err(ParseError::JsonType {
                        found: json_kind(other),
                        want: "string",
                    });
                }
            }
        }
    }
    Ok(out)
}

fn field<'a>(obj: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn sorted(v: Vec<Vec<u8>>) -> Vec<String> {
        let mut s: Vec<String> = v
            .into_iter()
            .map(|b| String::from_utf8(b).unwrap())
            .collect();
        s.sort();
        s
    }

    const EXPECTED: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

    #[test]
    fn load_docker_credentials() {
        let cfg = br#"{
            "registry": {"password": "a", "auth": "b"},
            "other": {"password": "c", "auth": "d"},
            "third": {"auth": "e"},
            "fourth": {"password": "f", "email": "not-a-secret@example.com"}
        }"#;
        assert_eq!(sorted(dockercfg_auths(cfg).unwrap()), EXPECTED);
        let json = br#"{"auths": {
            "registry": {"password": "a", "auth": "b"},
            "other": {"Password": "c", "auth": "d"},
            "third": {"auth": "e"},
            "fourth": {"password": "f"}
        }}"#;
        assert_eq!(sorted(dockerconfigjson_auths(json).unwrap()), EXPECTED);
        assert!(dockercfg_auths(b"notreallyjson").is_err());
        assert!(dockerconfigjson_auths(b"notreallyjson").is_err());
        assert_eq!(
            dockercfg_auths(br#"{"r": {"password": 1}}"#)
                .unwrap_err()
                .to_string(),
            "json: cannot unmarshal number into Go value of type string"
        );
        assert!(dockercfg_auths(b"[]").is_err());
    }

    #[test]
    fn auth_comes_before_password_per_registry() {
        let got = dockercfg_auths(br#"{"r": {"password": "p", "auth": "a"}}"#).unwrap();
        assert_eq!(got, [b"a".to_vec(), b"p".to_vec()]);
    }

    #[test]
    fn walk_order_skips_and_extras() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("..2024_01_01/sub")).unwrap();
        fs::write(root.join("..2024_01_01/sub/key"), "hidden").unwrap();
        fs::write(root.join("..data"), "hidden").unwrap();
        fs::write(root.join("b"), "second").unwrap();
        fs::write(root.join("a"), "first").unwrap();
        fs::write(root.join(".awscred"), "[default]\nk = inivalue\n").unwrap();
        fs::write(root.join(".dockercfg"), r#"{"r":{"auth":"dockerauth"}}"#).unwrap();
        std::os::unix::fs::symlink(root.join("a"), root.join("link")).unwrap();
        let got = load(
            &[root.to_string_lossy().into_owned()],
            &[".awscred".to_string()],
        )
        .unwrap();
        let got: Vec<String> = got
            .into_iter()
            .map(|b| String::from_utf8(b).unwrap())
            .collect();
        assert_eq!(
            got,
            [
                "[default]\nk = inivalue\n",
                "inivalue",
                r#"{"r":{"auth":"dockerauth"}}"#,
                "dockerauth",
                "first",
                "second",
                "first",
            ]
        );
    }

    #[test]
    fn any_error_aborts_loading() {
        let err = load(&["/nonexistent/secrets".to_string()], &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "lstat /nonexistent/secrets: no such file or directory"
        );
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(".dockerconfigjson"), "{").unwrap();
        let err = load(&[dir.path().to_string_lossy().into_owned()], &[]).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "could not read {}/.dockerconfigjson as a docker secret: ",
                dir.path().display()
            )),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("d")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("d"), dir.path().join("l")).unwrap();
        let err = load(&[dir.path().to_string_lossy().into_owned()], &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("read {}/l: is a directory", dir.path().display())
        );
    }
}
