//! Placeholder until uploads land (issue 4).
use crate::Options;

pub fn run(_o: &Options) -> i32 {
    if let Err(e) = pod_utils::downwardapi::resolve_spec_from_env() {
        pod_utils::fatal!("Could not resolve job spec: {e}");
        return 1;
    }
    pod_utils::fatal!("Failed to initialize job: uploading is not implemented yet");
    1
}
