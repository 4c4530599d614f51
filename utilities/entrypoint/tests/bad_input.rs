//! Malformed `ENTRYPOINT_OPTIONS` never panics: exit 1 and one fatal log line (see `bad_input`).

#[path = "../../pod-utils/tests/bad_input/mod.rs"]
mod bad_input;

use proptest::prelude::*;
use serde_json::json;

fn cmd() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_entrypoint"));
    c.env_clear().env("PATH", "/usr/bin:/bin");
    c
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(bad_input::CASES))]

    #[test]
    fn malformed_options_fail_cleanly(text in bad_input::bad_json(json!({"timeout": 10_000_000_000i64, "grace_period": 1_000_000_000i64, "args": ["/bin/false"], "container_name": "test", "process_log": "/nonexistent-tetrapod/process-log.txt", "marker_file": "/nonexistent-tetrapod/marker-file.txt", "metadata_file": "/nonexistent-tetrapod/metadata.json"}))) {
        let mut c = cmd();
        c.env("ENTRYPOINT_OPTIONS", &text);
        prop_assert_eq!(bad_input::fails_cleanly(c), Ok(()), "{}={}", "ENTRYPOINT_OPTIONS", text);
    }
}
