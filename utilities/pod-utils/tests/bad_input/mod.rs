//! Bad-input properties shared by the four utilities' black-box tests (included with `#[path]`):
//! any malformed `*_OPTIONS` or `JOB_SPEC` ends the binary with exit 1 and one fatal JSON log
//! line (upstream's `logrus.Fatalf`), never a panic, and nothing on stdout.
//!
//! Inputs are derived from a valid value, so they are near misses rather than noise: every
//! strict prefix of its JSON text, each top-level field given a value of the wrong type, and
//! JSON documents of the wrong kind. None of them can be valid, so the property is exact.

#![allow(dead_code)]

use proptest::prelude::*;
use serde_json::Value;

/// Cases per property: what the README reports as inputs tried.
pub const CASES: u32 = 256;

/// A value no field of the utilities' options accepts in place of `v`.
fn wrong_type(v: &Value, pick: u8) -> Value {
    match v {
        Value::String(_) => {
            [Value::from(7), Value::from(true), Value::Array(vec![])][pick as usize % 3].clone()
        }
        Value::Bool(_) => [Value::from("yes"), Value::from(1)][pick as usize % 2].clone(),
        Value::Number(_) => {
            [Value::from("ten"), Value::from(true), Value::Array(vec![])][pick as usize % 3].clone()
        }
        Value::Array(_) | Value::Object(_) => {
            [Value::from(3), Value::from("x")][pick as usize % 2].clone()
        }
        Value::Null => Value::from(false),
    }
}

/// Malformed variants of `valid` (a JSON object), as the text of the variable.
pub fn bad_json(valid: Value) -> impl Strategy<Value = String> {
    let text = valid.to_string();
    let keys: Vec<String> = valid
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect();
    assert!(!keys.is_empty());
    let n = text.len();
    let prefix = (1..n).prop_map(move |cut| {
        let mut cut = cut;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text[..cut].to_string()
    });
    let retyped = (0..keys.len(), any::<u8>()).prop_map(move |(i, pick)| {
        let mut v = valid.clone();
        let slot = v.get_mut(&keys[i]).expect("key");
        *slot = wrong_type(slot, pick);
        v.to_string()
    });
    let wrong_kind = prop_oneof![
        Just("null".to_string()),
        Just("[]".to_string()),
        Just("7".to_string()),
        Just("\"options\"".to_string()),
        "[a-z]{1,12}",
    ];
    prop_oneof![prefix, retyped, wrong_kind]
}

/// Runs `cmd` and checks the property; `Err` names what broke it.
pub fn fails_cleanly(mut cmd: std::process::Command) -> Result<(), String> {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("panicked") {
        return Err(format!("panicked: {stderr}"));
    }
    if out.status.code() != Some(1) {
        return Err(format!("exit {:?}, not 1: {stderr}", out.status));
    }
    if !out.stdout.is_empty() {
        return Err(format!("stdout: {}", String::from_utf8_lossy(&out.stdout)));
    }
    let lines: Vec<&str> = stderr.lines().collect();
    let [line] = lines[..] else {
        return Err(format!("{} lines, not one: {stderr}", lines.len()));
    };
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON ({e}): {line}"))?;
    if v["level"] != "fatal" || v["msg"].as_str().is_none_or(str::is_empty) {
        return Err(format!("not a fatal log line: {line}"));
    }
    Ok(())
}
