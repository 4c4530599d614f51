/*!
initupload: the second init container (upstream `cmd/initupload`, `pkg/initupload`). It reads
clonerefs' records and records the job's start in blob storage.
*/

pub mod options;
mod run;

pub use options::Options;

/// Load, validate, run; returns the process exit code.
pub fn uumain(args: Vec<String>) -> i32 {
    let _log = pod_utils::logging::init("initupload");
    let opts = match options::load(args) {
        Ok(o) => o,
        Err(e) => return pod_utils::options_failure(e),
    };
    if let Err(e) = opts.validate() {
        pod_utils::fatal!("Invalid options: {e}");
        return 1;
    }
    run::run(&opts)
}
