/*!
ENTRYPOINT_OPTIONS and the flags used when it is absent (upstream `pkg/entrypoint/options.go`).
Wrapper keys are inlined at the top level. In JSON, `timeout` and `grace_period` are integer
nanoseconds and 0 means the run-time default; as flags they are Go duration strings.
*/

use clap::Parser;
#[cfg(test)]
use pod_utils::options::go_flags;
use pod_utils::options::{LoadFailure, parse_go_bool, parse_go_duration};
use pod_utils::{duration, env, wrapper};
use serde::{Deserialize, Serialize};

/// Used when `timeout` is 0.
pub const DEFAULT_TIMEOUT: i64 = 2 * duration::HOUR;
/// Used when `grace_period` is 0.
pub const DEFAULT_GRACE_PERIOD: i64 = 15 * duration::SECOND;

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    #[serde(default)]
    pub timeout: i64,
    #[serde(default)]
    pub grace_period: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub artifact_dir: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub previous_marker: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub always_zero: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub propagate_error_code: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub copy_mode_only: bool,
    #[serde(default, rename = "copy_dst", skip_serializing_if = "String::is_empty")]
    pub copy_dst: String,
    #[serde(flatten)]
    pub wrapper: wrapper::Options,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    #[error("no process to wrap specified")]
    NoArgs,
    #[error("cannot propagate error code and always exit zero")]
    PropagateAndZero,
    #[error(transparent)]
    Wrapper(#[from] wrapper::OptionsError),
}

impl Options {
    pub fn validate(&self) -> Result<(), OptionsError> {
        if self.wrapper.args.is_empty() {
            return Err(OptionsError::NoArgs);
        }
        if self.propagate_error_code && self.always_zero {
            return Err(OptionsError::PropagateAndZero);
        }
        Ok(self.wrapper.validate()?)
    }

    /// The timeout in force: 0 means the 2h default.
    pub fn effective_timeout(&self) -> i64 {
        if self.timeout == 0 {
            DEFAULT_TIMEOUT
        } else {
            self.timeout
        }
    }

    /// The grace period in force: 0 means the 15s default.
    pub fn effective_grace_period(&self) -> i64 {
        if self.grace_period == 0 {
            DEFAULT_GRACE_PERIOD
        } else {
            self.grace_period
        }
    }
}

/// entrypoint wraps a test command: it enforces the timeout and grace period, tees the output
/// into the process log and writes the exit-code marker. Options come from ENTRYPOINT_OPTIONS
/// (JSON) when it is set; these flags are used otherwise.
#[derive(Parser, Debug)]
#[command(name = "entrypoint", version, about, long_about = None)]
struct Flags {
    /// Timeout for the test command (Go duration)
    #[arg(long, default_value = "2h", value_parser = parse_go_duration)]
    timeout: i64,
    /// Grace period after the timeout before the test command is killed (Go duration)
    #[arg(long = "grace-period", default_value = "15s", value_parser = parse_go_duration)]
    grace_period: i64,
    /// directory where test artifacts should be placed for upload to persistent storage
    #[arg(long = "artifact-dir", default_value = "")]
    artifact_dir: String,
    /// If set, entrypoint only copies itself to --copy-destination and exits
    #[arg(long = "copy-mode-only", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = parse_go_bool)]
    copy_mode_only: bool,
    /// Destination of the copy in copy mode
    #[arg(long = "copy-destination", default_value = "/tools/entrypoint")]
    copy_destination: String,
    /// Exit with the test command's code when it is interrupted or times out
    #[arg(long = "propagate-error-code", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = parse_go_bool)]
    propagate_error_code: bool,
    /// path to the log where stdout and stderr are streamed for the process we execute
    #[arg(long = "process-log", default_value = "")]
    process_log: String,
    /// file we write the return code of the process we execute once it has finished running
    #[arg(long = "marker-file", default_value = "")]
    marker_file: String,
    /// path to the metadata file generated from the job
    #[arg(long = "metadata-file", default_value = "")]
    metadata_file: String,
    /// The test command and its arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

const FLAG_NAMES: &[&str] = &[
    "timeout",
    "grace-period",
    "artifact-dir",
    "copy-mode-only",
    "copy-mode-only?",
    "copy-destination",
    "propagate-error-code",
    "propagate-error-code?",
    "process-log",
    "marker-file",
    "metadata-file",
];

/// Upstream's `options.Load`: JSON from ENTRYPOINT_OPTIONS wins; flags otherwise.
pub fn load(args: Vec<String>) -> Result<Options, LoadFailure> {
    pod_utils::options::load(env::ENTRYPOINT_OPTIONS, args, FLAG_NAMES, |argv| {
        let f = Flags::try_parse_from(argv)?;
        Ok(Options {
            timeout: f.timeout,
            grace_period: f.grace_period,
            artifact_dir: f.artifact_dir,
            previous_marker: String::new(),
            always_zero: false,
            propagate_error_code: f.propagate_error_code,
            copy_mode_only: f.copy_mode_only,
            copy_dst: f.copy_destination,
            wrapper: wrapper::Options {
                args: f.args,
                container_name: String::new(),
                process_log: f.process_log,
                marker_file: f.marker_file,
                metadata_file: f.metadata_file,
            },
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_names_are_the_flags_clap_knows() {
        use clap::CommandFactory;
        let mut want: Vec<String> = FLAG_NAMES
            .iter()
            .map(std::string::ToString::to_string)
            .collect();
        want.sort();
        assert_eq!(want, pod_utils::options::flag_table(Flags::command()));
    }

    #[test]
    fn decorator_json_round_trips() {
        let json = r#"{"timeout":7200000000000,"grace_period":10000000000,"artifact_dir":"/logs/artifacts","args":["/bin/thing","some","args"],"container_name":"test","process_log":"/logs/process-log.txt","marker_file":"/logs/marker-file.txt","metadata_file":"/logs/artifacts/metadata.json"}"#;
        let o: Options = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_string(&o).unwrap(), json);
        assert_eq!(o.validate(), Ok(()));
    }

    #[test]
    fn validation_order() {
        let mut o = Options::default();
        assert_eq!(o.validate(), Err(OptionsError::NoArgs));
        o.wrapper.args = vec!["x".into()];
        o.always_zero = true;
        o.propagate_error_code = true;
        assert_eq!(o.validate(), Err(OptionsError::PropagateAndZero));
        o.always_zero = false;
        assert_eq!(
            o.validate().unwrap_err().to_string(),
            "no log file specified with --process-log"
        );
    }

    #[test]
    fn flags_use_go_syntax_and_defaults() {
        let f = Flags::try_parse_from(go_flags(
            [
                "entrypoint",
                "-timeout=90m",
                "-process-log",
                "/l",
                "--marker-file=/m",
                "ls",
                "-la",
            ],
            FLAG_NAMES,
        ))
        .unwrap();
        assert_eq!(f.timeout, 90 * duration::MINUTE);
        assert_eq!(f.grace_period, 15 * duration::SECOND);
        assert_eq!(f.copy_destination, "/tools/entrypoint");
        assert_eq!(f.args, ["ls", "-la"]);
        let f =
            Flags::try_parse_from(go_flags(["entrypoint", "-copy-mode-only"], FLAG_NAMES)).unwrap();
        assert!(f.copy_mode_only);
        let f =
            Flags::try_parse_from(go_flags(["e", "--copy-mode-only=false"], FLAG_NAMES)).unwrap();
        assert!(!f.copy_mode_only);
    }

    #[test]
    fn zero_durations_mean_defaults() {
        let o = Options::default();
        assert_eq!(o.effective_timeout(), 2 * duration::HOUR);
        assert_eq!(o.effective_grace_period(), 15 * duration::SECOND);
    }
}
