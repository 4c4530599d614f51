//! Placeholder until cloning lands (issue 4).
use crate::Options;

pub fn run(_o: &Options) -> i32 {
    pod_utils::fatal!("Failed to clone refs: cloning is not implemented yet");
    1
}
