/*!
Options shared by initupload and sidecar for uploading to blob storage (upstream
`pkg/gcsupload`): the `GCSConfiguration` inlined, credentials files and `dry_run`.
*/

use serde::{Deserialize, Serialize};

use crate::prowapi::{GcsConfigError, GcsConfiguration};

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sub_dir: String,
    #[serde(flatten)]
    pub gcs: GcsConfiguration,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gcs_credentials_file: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub s3_credentials_file: String,
    /// Absent in JSON means false; the `--dry-run` flag defaults to true.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    #[error("GCS upload was requested no GCS bucket was provided")]
    NoBucket,
    #[error(transparent)]
    Config(#[from] GcsConfigError),
}

impl Options {
    /// Upstream's `Options.Validate`: a local output dir skips every other check.
    pub fn validate(&self) -> Result<(), OptionsError> {
        if !self.gcs.local_output_dir.is_empty() {
            return Ok(());
        }
        if !self.dry_run && self.gcs.bucket.is_empty() {
            return Err(OptionsError::NoBucket);
        }
        Ok(self.gcs.validate()?)
    }
}

/// The gcsupload flags, used when the options variable is absent (initupload, sidecar).
/// The group id keeps clap from clashing with a utility's own struct also named `Flags`.
#[derive(clap::Args, Debug, Clone)]
#[group(id = "gcsupload-flags")]
pub struct Flags {
    /// Optional sub-directory of the job's path to which artifacts are uploaded
    #[arg(long = "sub-dir", default_value = "")]
    pub sub_dir: String,
    /// how to encode org and repo into GCS paths (legacy, single, explicit)
    #[arg(long = "path-strategy", default_value = "explicit")]
    pub path_strategy: String,
    /// optional default org for GCS path encoding
    #[arg(long = "default-org", default_value = "")]
    pub default_org: String,
    /// optional default repo for GCS path encoding
    #[arg(long = "default-repo", default_value = "")]
    pub default_repo: String,
    /// GCS path to upload into
    #[arg(long = "gcs-path", default_value = "", value_parser = crate::gcs::path::parse)]
    pub gcs_path: crate::gcs::path::GcsPath,
    /// do not interact with GCS
    #[arg(long = "dry-run", default_value = "true", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = crate::options::parse_go_bool)]
    pub dry_run: bool,
    /// Extension media types, colon-delimited {extension}:{media-type} (log:text/plain);
    /// repeat the flag for more. Upstream's help says comma-delimited, but its flag type keeps
    /// each value whole, so `--media-type=a:x/y,b:z/w` maps `a` to `x/y,b:z/w`.
    #[arg(long = "media-type")]
    pub media_type: Vec<String>,
    /// If specified, files are copied to this dir instead of uploading to GCS
    #[arg(long = "local-output-dir", default_value = "")]
    pub local_output_dir: String,
    /// file where Google Cloud authentication credentials are stored
    #[arg(long = "gcs-credentials-file", default_value = "")]
    pub gcs_credentials_file: String,
    /// file where S3 credentials are stored
    #[arg(long = "s3-credentials-file", default_value = "")]
    pub s3_credentials_file: String,
}

/// The long names of [`Flags`], for [`crate::options::go_flags`].
pub const FLAG_NAMES: &[&str] = &[
    "sub-dir",
    "path-strategy",
    "default-org",
    "default-repo",
    "gcs-path",
    "dry-run",
    "dry-run?",
    "media-type",
    "local-output-dir",
    "gcs-credentials-file",
    "s3-credentials-file",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagError {
    #[error("invalid extension media type {0:?}: missing colon delimiter")]
    MediaType(String),
}

impl Flags {
    /// Turns flags into options as upstream's `Complete` + `Validate` do: `--gcs-path` sets the
    /// bucket (without scheme) and the path prefix, unless a local output dir is given.
    pub fn into_options(self, items: Vec<String>) -> Result<Options, FlagError> {
        let mut media_types = std::collections::BTreeMap::new();
        for entry in &self.media_type {
            let (ext, ty) = entry
                .split_once(':')
                .ok_or_else(|| FlagError::MediaType(entry.clone()))?;
            media_types.insert(ext.to_string(), ty.to_string());
        }
        let mut gcs = GcsConfiguration {
            path_strategy: self.path_strategy,
            default_org: self.default_org,
            default_repo: self.default_repo,
            media_types,
            local_output_dir: self.local_output_dir,
            ..Default::default()
        };
        if gcs.local_output_dir.is_empty() && !self.gcs_path.is_empty() {
            gcs.bucket = self.gcs_path.bucket;
            gcs.path_prefix = self.gcs_path.object;
        }
        Ok(Options {
            items,
            sub_dir: self.sub_dir,
            gcs,
            gcs_credentials_file: self.gcs_credentials_file,
            s3_credentials_file: self.s3_credentials_file,
            dry_run: self.dry_run,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_defaults_and_order() {
        let o: Options = serde_json::from_str(
            r#"{"bucket":"prow-artifacts","path_strategy":"explicit","gcs_credentials_file":"/secrets/gcs/service-account.json","dry_run":false}"#,
        )
        .unwrap();
        assert!(!o.dry_run);
        assert_eq!(o.validate(), Ok(()));
        assert_eq!(
            serde_json::to_string(&o).unwrap(),
            r#"{"bucket":"prow-artifacts","path_strategy":"explicit","gcs_credentials_file":"/secrets/gcs/service-account.json","dry_run":false}"#
        );
    }

    #[test]
    fn validate_rules() {
        let mut o = Options::default();
        assert_eq!(o.validate(), Err(OptionsError::NoBucket));
        o.dry_run = true;
        // Upstream quirk: dry run with no bucket then fails only on the strategy.
        assert_eq!(
            o.validate(),
            Err(OptionsError::Config(GcsConfigError::BadStrategy))
        );
        o.gcs.local_output_dir = "/output".into();
        assert_eq!(o.validate(), Ok(()));
    }

    #[test]
    fn flags_flatten_into_a_struct_of_the_same_name() {
        use clap::CommandFactory;
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            gcs: super::Flags,
        }
        Flags::command().debug_assert();
        let f = <Flags as clap::Parser>::try_parse_from([
            "x",
            "--gcs-path=gs://b/p",
            "--dry-run=false",
        ])
        .unwrap();
        let o = f.gcs.into_options(vec![]).unwrap();
        assert_eq!(
            (o.gcs.bucket.as_str(), o.gcs.path_prefix.as_str(), o.dry_run),
            ("b", "p", false)
        );
    }

    fn flags(args: &[&str]) -> Result<super::Flags, clap::Error> {
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            gcs: super::Flags,
        }
        let argv = std::iter::once("x").chain(args.iter().copied());
        <Flags as clap::Parser>::try_parse_from(argv).map(|f| f.gcs)
    }

    #[test]
    fn media_type_values_are_not_split_on_commas() {
        let f = flags(&[
            "--media-type=log:text/plain,txt:text/x",
            "--media-type=a:b/c",
        ])
        .unwrap();
        let o = f.into_options(vec![]).unwrap();
        let types: Vec<(&str, &str)> = o
            .gcs
            .media_types
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(types, [("a", "b/c"), ("log", "text/plain,txt:text/x")]);
        let err = flags(&["--media-type=log"]).unwrap().into_options(vec![]);
        assert_eq!(
            err.unwrap_err().to_string(),
            r#"invalid extension media type "log": missing colon delimiter"#
        );
    }

    #[test]
    fn gcs_path_flag_is_checked_as_upstreams_path_type() {
        let err = flags(&["--gcs-path=s3://b/p"]).err().unwrap();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(
            err.to_string()
                .contains("must use a gs://, file://, or local filesystem url: s3://b/p"),
            "{err}"
        );
        for bad in ["gs://b:1/p", "gs://b/p?q=1", "gs://b/p#f", "gs:b"] {
            assert!(flags(&[&format!("--gcs-path={bad}")]).is_err(), "{bad}");
        }
        // A local output dir wins: upstream's Validate returns before applying the path.
        let f = flags(&["--gcs-path=gs://b/p", "--local-output-dir=/out"]).unwrap();
        let o = f.into_options(vec![]).unwrap();
        assert_eq!(
            (o.gcs.bucket.as_str(), o.gcs.path_prefix.as_str()),
            ("", "")
        );
    }
}
