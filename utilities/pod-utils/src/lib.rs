/*!
What Prow's four pod utilities share, with module names that follow upstream's Go packages
(`pkg/pod-utils/{options,downwardapi,wrapper,gcs}`, `pkg/gcsupload`, `pkg/apis/prowjobs/v1`).

This crate does no process-level work of its own: the utilities' binaries decide exit codes, and
everything here returns typed errors.
*/

pub mod clone;
pub mod downwardapi;
pub mod duration;
pub mod env;
pub mod gcs;
pub mod gcsupload;
pub mod gofmt;
pub mod gopath;
pub mod gourl;
pub mod logging;
pub mod options;
pub mod prowapi;
pub mod proxy;
pub mod wrapper;

/// The command line, lossily decoded: upstream's flags are all text, and a non-UTF-8 argument
/// must not panic.
pub fn args() -> Vec<String> {
    std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

/// The process status for an exit code, truncated to 8 bits as the OS does with Go's
/// `os.Exit` (1130 becomes 106, -1 becomes 255).
pub fn exit_code(code: i32) -> std::process::ExitCode {
    std::process::ExitCode::from((code & 0xff) as u8)
}

/// Logs why options could not be loaded and returns the exit code: 1 for bad JSON (a fatal log
/// line, as upstream), clap's own code (0 for help, 2 for usage errors) for flags.
pub fn options_failure(e: options::LoadFailure) -> i32 {
    match e {
        options::LoadFailure::Json(e) => {
            fatal!("Could not resolve options: {e}");
            1
        }
        options::LoadFailure::Flags(e) => {
            let _ = e.print();
            e.exit_code()
        }
    }
}
