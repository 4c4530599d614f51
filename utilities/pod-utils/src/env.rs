/*!
The one reader of the process environment. Upstream distinguishes an unset variable from an empty
one (`os.LookupEnv`), so every accessor here keeps that difference.
*/

use std::ffi::OsString;

/// Env var holding the serialised JobSpec (downward API).
pub const JOB_SPEC: &str = "JOB_SPEC";
pub const CLONEREFS_OPTIONS: &str = "CLONEREFS_OPTIONS";
pub const INITUPLOAD_OPTIONS: &str = "INITUPLOAD_OPTIONS";
pub const ENTRYPOINT_OPTIONS: &str = "ENTRYPOINT_OPTIONS";
pub const SIDECAR_OPTIONS: &str = "SIDECAR_OPTIONS";
pub const GCSUPLOAD_OPTIONS: &str = "GCSUPLOAD_OPTIONS";

/// `Some(value)` when the variable is present, even if empty; `None` when unset.
/// A value that is not UTF-8 is returned lossily: it can only be invalid JSON anyway.
pub fn lookup(name: &str) -> Option<String> {
    std::env::var_os(name).map(|v: OsString| v.to_string_lossy().into_owned())
}
