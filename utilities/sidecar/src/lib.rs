/*!
sidecar: runs beside the test containers (upstream `cmd/sidecar`, `pkg/sidecar`), waits for their
markers, censors secrets and uploads logs, artifacts and finished.json.
*/

pub mod censor;
pub mod options;
mod run;

pub use options::Options;

/// Load, validate, run; returns the process exit code.
pub fn uumain(args: Vec<String>) -> i32 {
    let _log = pod_utils::logging::init("sidecar");
    let opts = match options::load(args) {
        Ok(o) => o,
        Err(e) => return pod_utils::options_failure(e),
    };
    let opts = match opts.validate() {
        Ok(v) => v,
        Err(e) => {
            pod_utils::fatal!("Invalid options: {e}");
            return 1;
        }
    };
    run::run(opts)
}
