//! Malformed `CLONEREFS_OPTIONS` never panics: exit 1 and one fatal log line (see `bad_input`).

#[path = "../../pod-utils/tests/bad_input/mod.rs"]
mod bad_input;

use proptest::prelude::*;
use serde_json::json;

fn cmd() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_clonerefs"));
    c.env_clear().env("PATH", "/usr/bin:/bin");
    c
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(bad_input::CASES))]

    #[test]
    fn malformed_options_fail_cleanly(text in bad_input::bad_json(json!({"src_root": "/nonexistent-tetrapod/src", "log": "/nonexistent-tetrapod/clone.json", "git_user_name": "ci-robot", "git_user_email": "ci-robot@k8s.io", "refs": [{"org": "o", "repo": "r", "base_ref": "main"}]}))) {
        let mut c = cmd();
        c.env("CLONEREFS_OPTIONS", &text);
        prop_assert_eq!(bad_input::fails_cleanly(c), Ok(()), "{}={}", "CLONEREFS_OPTIONS", text);
    }
}
