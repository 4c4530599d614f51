/*!
entrypoint: wraps a Prow test container's command (upstream `cmd/entrypoint`, `pkg/entrypoint`).
It enforces the timeout and grace period, tees output into the process log and writes the
exit-code marker that sidecar waits for. `--copy-mode-only` copies the binary into the tools
volume (the `place-entrypoint` init container).
*/

pub mod options;
mod run;

pub use options::Options;

/// Load, copy or validate, run; returns the process exit code (before 8-bit truncation).
pub fn uumain(args: Vec<String>) -> i32 {
    let _log = pod_utils::logging::init("entrypoint");
    let opts = match options::load(args) {
        Ok(o) => o,
        Err(e) => return pod_utils::options_failure(e),
    };
    if opts.copy_mode_only {
        return run::copy_mode(&opts);
    }
    if let Err(e) = opts.validate() {
        pod_utils::fatal!("Invalid options: {e}");
        return 1;
    }
    run::run(&opts)
}
