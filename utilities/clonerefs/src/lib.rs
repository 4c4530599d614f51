/*!
clonerefs: checks out a Prow job's refs (upstream `cmd/clonerefs`, `pkg/clonerefs`,
`pkg/pod-utils/clone`) and writes the clone records that initupload reports.
*/

mod auth;
mod fetch;
mod ghapp;
mod mergemsg;
pub mod options;
mod proxy;
mod refclone;
mod run;

pub use options::Options;
pub use run::{RETRY_DELAYS, Settings, create_records, run_with};

/// Load, validate, run; returns the process exit code.
pub fn uumain(args: Vec<String>) -> i32 {
    let _log = pod_utils::logging::init("clonerefs");
    let opts = match options::load(args) {
        Ok(o) => o,
        Err(e) => return pod_utils::options_failure(e),
    };
    match opts.validate() {
        Ok(warnings) => {
            for w in warnings {
                tracing::warn!("{w}");
            }
        }
        Err(e) => {
            pod_utils::fatal!("Invalid options: {e}");
            return 1;
        }
    }
    run::run(&opts)
}
