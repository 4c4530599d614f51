//! Malformed `SIDECAR_OPTIONS` never panics: exit 1 and one fatal log line (see `bad_input`).

#[path = "../../pod-utils/tests/bad_input/mod.rs"]
mod bad_input;

use proptest::prelude::*;
use serde_json::json;

fn cmd() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_sidecar"));
    c.env_clear().env("PATH", "/usr/bin:/bin");
    c
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(bad_input::CASES))]

    #[test]
    fn malformed_options_fail_cleanly(text in bad_input::bad_json(json!({"gcs_options": {"bucket": "b", "path_strategy": "explicit", "dry_run": true}, "entries": [{"args": ["/bin/false"], "process_log": "/nonexistent-tetrapod/p", "marker_file": "/nonexistent-tetrapod/m", "metadata_file": "/nonexistent-tetrapod/md"}]}))) {
        let mut c = cmd();
        c.env("SIDECAR_OPTIONS", &text);
        prop_assert_eq!(bad_input::fails_cleanly(c), Ok(()), "{}={}", "SIDECAR_OPTIONS", text);
    }
}
