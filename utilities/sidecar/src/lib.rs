/*!
sidecar: runs beside the test containers (upstream `cmd/sidecar`, `pkg/sidecar`), waits for their
markers, censors secrets and uploads logs, artifacts and finished.json.
*/

mod buildlog;
pub mod censor;
mod finished;
mod goerr;
mod gojson;
mod logfile;
mod metadata;
pub mod options;
mod run;

pub use options::Options;
pub use run::{FINISHED_FILE_NAME, LOG_FILE_NAME};

/// Sets up logging, loads, validates and runs; returns the process exit code.
pub fn uumain(args: Vec<String>) -> i32 {
    let sink = pod_utils::logging::init("sidecar");
    // Created before the options are read so that everything sidecar logs, from the start,
    // can be uploaded.
    let log = match logfile::LogFile::setup(&sink) {
        Ok(log) => log,
        Err(e) => {
            pod_utils::fatal!(error = %e, "Unable to set up log file");
            return 1;
        }
    };
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
    run::run(opts, &log)
}
