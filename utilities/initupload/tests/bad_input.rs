//! Malformed `INITUPLOAD_OPTIONS` never panics: exit 1 and one fatal log line (see `bad_input`).

#[path = "../../pod-utils/tests/bad_input/mod.rs"]
mod bad_input;

use proptest::prelude::*;
use serde_json::json;

fn cmd() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_initupload"));
    c.env_clear().env("PATH", "/usr/bin:/bin");
    c
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(bad_input::CASES))]

    #[test]
    fn malformed_options_fail_cleanly(text in bad_input::bad_json(json!({"bucket": "b", "path_strategy": "explicit", "dry_run": true}))) {
        let mut c = cmd();
        c.env("INITUPLOAD_OPTIONS", &text);
        prop_assert_eq!(bad_input::fails_cleanly(c), Ok(()), "{}={}", "INITUPLOAD_OPTIONS", text);
    }

    /// Valid options, a malformed `JOB_SPEC`.
    #[test]
    fn malformed_job_spec_fails_cleanly(
        text in bad_input::bad_json(json!({"type": "periodic", "job": "j", "buildid": "1", "prowjobid": "p"}))
    ) {
        let mut c = cmd();
        c.env("INITUPLOAD_OPTIONS", json!({"bucket": "b", "path_strategy": "explicit", "dry_run": true}).to_string())
            .env("JOB_SPEC", &text);
        prop_assert_eq!(bad_input::fails_cleanly(c), Ok(()), "JOB_SPEC={}", text);
    }
}
