/*!
SIDECAR_OPTIONS and the flags used when it is absent (upstream `pkg/sidecar/options.go`). The
deprecated forms (`wrapper_options`, top-level censoring keys) are accepted and folded into the
current ones once, at validation, instead of mutating the decoded value.
*/

use clap::Parser;
use pod_utils::options::LoadFailure;
use pod_utils::{gcsupload, wrapper};
use serde::{Deserialize, Serialize};

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct CensoringOptions {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_directories: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub censoring_concurrency: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub censoring_buffer_size: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include_directories: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_directories: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ini_filenames: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_secret_length: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    #[serde(default)]
    pub gcs_options: gcsupload::Options,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapper_options: Option<wrapper::Options>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entries: Vec<wrapper::Options>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub entry_error: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub ignore_interrupts: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub write_memory_profile: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub censoring_options: Option<CensoringOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_directories: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub censoring_concurrency: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub censoring_buffer_size: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    #[error(
        "cannot use deprecated options (secret_directories, censoring_{{concurrency,buffer_size}}) and new options (censoring_options) at the same time"
    )]
    DeprecatedAndNew,
    #[error("no wrapper.Option entries")]
    NoEntries,
    #[error("entry {0}: {1}")]
    Entry(usize, wrapper::OptionsError),
    #[error(transparent)]
    Gcs(#[from] gcsupload::OptionsError),
}

/// Options after the deprecated forms are folded in: what the run uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validated {
    pub gcs_options: gcsupload::Options,
    /// `wrapper_options` (when given) first, then `entries`.
    pub entries: Vec<wrapper::Options>,
    /// True when `wrapper_options` was used, which upstream warns about at upload.
    pub deprecated_wrapper: bool,
    pub entry_error: bool,
    pub ignore_interrupts: bool,
    pub censoring: Option<CensoringOptions>,
}

impl Options {
    pub fn validate(self) -> Result<Validated, OptionsError> {
        let deprecated = self.secret_directories.is_some()
            || self.censoring_concurrency.is_some()
            || self.censoring_buffer_size.is_some();
        let censoring = match (deprecated, self.censoring_options) {
            (true, Some(_)) => return Err(OptionsError::DeprecatedAndNew),
            (true, None) => Some(CensoringOptions {
                secret_directories: self.secret_directories.unwrap_or_default(),
                censoring_concurrency: self.censoring_concurrency,
                censoring_buffer_size: self.censoring_buffer_size,
                ..Default::default()
            }),
            (false, c) => c,
        };
        let deprecated_wrapper = self.wrapper_options.is_some();
        let entries: Vec<wrapper::Options> = self
            .wrapper_options
            .into_iter()
            .chain(self.entries)
            .collect();
        if entries.is_empty() {
            return Err(OptionsError::NoEntries);
        }
        for (i, e) in entries.iter().enumerate() {
            e.validate().map_err(|err| OptionsError::Entry(i, err))?;
        }
        self.gcs_options.validate()?;
        Ok(Validated {
            gcs_options: self.gcs_options,
            entries,
            deprecated_wrapper,
            entry_error: self.entry_error,
            ignore_interrupts: self.ignore_interrupts,
            censoring,
        })
    }
}

/// sidecar waits for the test containers' markers, then uploads their logs, artifacts and
/// finished.json, censoring secrets first. Options come from SIDECAR_OPTIONS (JSON) when it is
/// set; these flags are used otherwise (they cannot name entries, so they never validate).
#[derive(Parser, Debug)]
#[command(name = "sidecar", version, about, long_about = None)]
struct Flags {
    #[command(flatten)]
    gcs: gcsupload::Flags,
    /// Extra files or directories to upload
    items: Vec<String>,
}

/// Upstream's `options.Load`: JSON from SIDECAR_OPTIONS wins; flags otherwise.
pub fn load(args: Vec<String>) -> Result<Options, LoadFailure> {
    pod_utils::options::load(
        pod_utils::env::SIDECAR_OPTIONS,
        args,
        gcsupload::FLAG_NAMES,
        |argv| {
            let f = Flags::try_parse_from(argv)?;
            let gcs_options = f.gcs.into_options(f.items).map_err(|e| {
                clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("{e}\n"))
            })?;
            Ok(Options {
                gcs_options,
                ..Default::default()
            })
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_names_are_the_flags_clap_knows() {
        use clap::CommandFactory;
        let mut want: Vec<String> = pod_utils::gcsupload::FLAG_NAMES
            .iter()
            .map(std::string::ToString::to_string)
            .collect();
        want.sort();
        assert_eq!(want, pod_utils::options::flag_table(Flags::command()));
    }

    const DECORATED: &str = r#"{"gcs_options":{"items":["/logs/artifacts"],"bucket":"bucket","path_strategy":"single","default_org":"org","default_repo":"repo","gcs_credentials_file":"/secrets/gcs/service-account.json","dry_run":false},"entries":[{"args":["/bin/ls","-l","-a"],"container_name":"test","process_log":"/logs/process-log.txt","marker_file":"/logs/marker-file.txt","metadata_file":"/logs/artifacts/metadata.json"}],"censoring_options":{}}"#;

    #[test]
    fn decorator_json_round_trips_and_validates() {
        let o: Options = serde_json::from_str(DECORATED).unwrap();
        assert_eq!(serde_json::to_string(&o).unwrap(), DECORATED);
        let v = o.validate().unwrap();
        assert_eq!(v.entries.len(), 1);
        assert_eq!(v.censoring, Some(CensoringOptions::default()));
    }

    #[test]
    fn deprecated_forms_fold_in() {
        let o: Options = serde_json::from_str(
            r#"{"gcs_options":{"dry_run":true,"path_strategy":"explicit"},"wrapper_options":{"process_log":"/a","marker_file":"/b"},"entries":[{"process_log":"/c","marker_file":"/d"}],"secret_directories":["/s"]}"#,
        )
        .unwrap();
        let v = o.validate().unwrap();
        assert_eq!(v.entries[0].process_log, "/a");
        assert_eq!(v.entries[1].process_log, "/c");
        assert!(v.deprecated_wrapper);
        assert_eq!(v.censoring.unwrap().secret_directories, ["/s"]);
        let both: Options = serde_json::from_str(
            r#"{"entries":[{"process_log":"/c","marker_file":"/d"}],"secret_directories":["/s"],"censoring_options":{}}"#,
        )
        .unwrap();
        assert_eq!(both.validate(), Err(OptionsError::DeprecatedAndNew));
    }

    #[test]
    fn entries_are_required_and_checked() {
        assert_eq!(Options::default().validate(), Err(OptionsError::NoEntries));
        let o: Options = serde_json::from_str(r#"{"entries":[{"process_log":"/c"}]}"#).unwrap();
        assert_eq!(
            o.validate().unwrap_err().to_string(),
            "entry 0: no marker file specified with --marker-file"
        );
    }
}
