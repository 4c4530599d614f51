/*!
entrypoint: wraps a Prow test container's command (upstream `cmd/entrypoint`, `pkg/entrypoint`).
It enforces the timeout and grace period, tees output into the process log and writes the
exit-code marker that sidecar waits for. `--copy-mode-only` copies the binary into the tools
volume (the `place-entrypoint` init container).
*/

mod copy;
pub mod options;
mod pump;
mod run;
mod signals;
mod start;
mod supervise;
#[cfg(test)]
mod testing;

pub use run::{ABORTED_ERROR_CODE, INTERNAL_ERROR_CODE, PREVIOUS_ERROR_CODE};

pub use options::Options;

/// Load, copy or validate, run; returns the process exit code (before 8-bit truncation).
pub fn uumain(args: Vec<String>) -> i32 {
    let log = pod_utils::logging::init("entrypoint");
    // Copy mode reads the binary from the path it was invoked as (Go's `os.Args[0]`).
    let argv0 = args.first().cloned().unwrap_or_default();
    let opts = match options::load(args) {
        Ok(o) => o,
        Err(e) => return pod_utils::options_failure(e),
    };
    if opts.copy_mode_only {
        return copy::copy_mode(&opts, &argv0);
    }
    if let Err(e) = opts.validate() {
        pod_utils::fatal!("Invalid options: {e}");
        return 1;
    }
    run::run(&opts, &log)
}
