//! Placeholder until the entrypoint run loop lands (issue 3).
use crate::Options;

pub fn copy_mode(_o: &Options) -> i32 {
    pod_utils::fatal!("Failed running in copy mode, this is a prow bug.");
    1
}

pub fn run(_o: &Options) -> i32 {
    tracing::error!("running the test command is not implemented yet");
    127
}
