/*!
INITUPLOAD_OPTIONS and the flags used when it is absent (upstream `pkg/initupload/options.go`):
the gcsupload options inlined, plus `log`, the clone records written by clonerefs.
*/

use clap::Parser;
use pod_utils::gcsupload;
use pod_utils::options::LoadFailure;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    #[serde(flatten)]
    pub gcs: gcsupload::Options,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub log: String,
}

impl Options {
    pub fn validate(&self) -> Result<(), gcsupload::OptionsError> {
        self.gcs.validate()
    }
}

/// initupload records the start of a Prow job in blob storage: started.json, the clone log and
/// records, and a failed finished.json when cloning failed. Options come from INITUPLOAD_OPTIONS
/// (JSON) when it is set; these flags are used otherwise.
#[derive(Parser, Debug)]
#[command(name = "initupload", version, about, long_about = None)]
struct Flags {
    /// Path to the clone records log
    #[arg(long = "clone-log", default_value = "")]
    clone_log: String,
    #[command(flatten)]
    gcs: gcsupload::Flags,
    /// Extra files or directories to upload
    items: Vec<String>,
}

/// Upstream's `options.Load`: JSON from INITUPLOAD_OPTIONS wins; flags otherwise.
pub fn load(args: Vec<String>) -> Result<Options, LoadFailure> {
    let mut names = vec!["clone-log"];
    names.extend_from_slice(gcsupload::FLAG_NAMES);
    pod_utils::options::load(pod_utils::env::INITUPLOAD_OPTIONS, args, &names, |argv| {
        let f = Flags::try_parse_from(argv)?;
        let gcs = f.gcs.into_options(f.items).map_err(|e| {
            clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("{e}\n"))
        })?;
        Ok(Options {
            gcs,
            log: f.clone_log,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_names_are_the_flags_clap_knows() {
        use clap::CommandFactory;
        let mut want: Vec<String> = std::iter::once("clone-log")
            .chain(pod_utils::gcsupload::FLAG_NAMES.iter().copied())
            .map(str::to_string)
            .collect();
        want.sort();
        assert_eq!(want, pod_utils::options::flag_table(Flags::command()));
    }

    #[test]
    fn upstream_json_is_accepted() {
        let json = r#"{"bucket":"prow-artifacts","path_strategy":"explicit","gcs_credentials_file":"/secrets/gcs/service-account.json","dry_run":false,"log":"/logs/clone.json"}"#;
        let o: Options = serde_json::from_str(json).unwrap();
        assert_eq!(o.log, "/logs/clone.json");
        assert_eq!(o.validate(), Ok(()));
        assert_eq!(serde_json::to_string(&o).unwrap(), json);
        let s3: Options = serde_json::from_str(
            r#"{"bucket":"s3://prow-artifacts","path_strategy":"explicit","s3_credentials_file":"/secrets/s3-storage/service-account.json","dry_run":false}"#,
        )
        .unwrap();
        assert_eq!(
            s3.gcs.s3_credentials_file,
            "/secrets/s3-storage/service-account.json"
        );
    }

    #[test]
    fn empty_strategy_is_invalid() {
        let o: Options = serde_json::from_str(r#"{"bucket":"b","dry_run":true}"#).unwrap();
        assert!(o.validate().is_err());
    }
}
