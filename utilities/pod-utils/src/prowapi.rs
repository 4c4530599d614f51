/*!
The ProwJob API types the pod utilities read (upstream `pkg/apis/prowjobs/v1`): `Refs`, `Pull`
and `GCSConfiguration`, with upstream's JSON names, field order and `omitempty` rules, so that a
value decoded from upstream JSON re-encodes to the same bytes.
*/

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn none_or_empty<T>(v: &Option<Vec<T>>) -> bool {
    v.as_ref().is_none_or(Vec::is_empty)
}

/// What to check out: a repository at a base ref, with pulls merged on top.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Refs {
    #[serde(default)]
    pub org: String,
    #[serde(default)]
    pub repo: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub repo_link: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub base_ref: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub base_sha: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub base_link: String,
    /// `None` and `Some(vec![])` differ for upstream's `reflect.DeepEqual` (see started.json).
    #[serde(default, skip_serializing_if = "none_or_empty")]
    pub pulls: Option<Vec<Pull>>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path_alias: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub workdir: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub auxiliary: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub clone_uri: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub skip_submodules: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub clone_depth: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub skip_fetch_head: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blobless_fetch: Option<bool>,
    #[serde(default, skip_serializing_if = "none_or_empty")]
    pub sparse_checkout_files: Option<Vec<String>>,
}

/// A pull request to merge on top of the base.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Pull {
    #[serde(default)]
    pub number: i64,
    #[serde(default)]
    pub author: String,
    #[serde(default)]
    pub sha: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title: String,
    #[serde(default, rename = "ref", skip_serializing_if = "String::is_empty")]
    pub ref_: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub head_ref: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub link: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub commit_link: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub author_link: String,
}

impl Refs {
    pub fn pulls(&self) -> &[Pull] {
        self.pulls.as_deref().unwrap_or_default()
    }

    /// `PULL_REFS` and started.json's `repos` value: `base_ref[:base_sha][,num:sha[:ref]]...`.
    pub fn to_refs_string(&self) -> String {
        let mut s = self.base_ref.clone();
        if !self.base_sha.is_empty() {
            s.push(':');
            s.push_str(&self.base_sha);
        }
        for p in self.pulls() {
            s.push_str(&format!(",{}:{}", p.number, p.sha));
            if !p.ref_.is_empty() {
                s.push(':');
                s.push_str(&p.ref_);
            }
        }
        s
    }

    /// `org/repo`, or just `org` when the repo is empty.
    pub fn org_repo_string(&self) -> String {
        if self.repo.is_empty() {
            self.org.clone()
        } else {
            format!("{}/{}", self.org, self.repo)
        }
    }

    /// The commit this ref "is": first pull's sha, else base sha, else base ref.
    pub fn revision(&self) -> &str {
        if let Some(p) = self.pulls().first() {
            return &p.sha;
        }
        if !self.base_sha.is_empty() {
            return &self.base_sha;
        }
        &self.base_ref
    }
}

/// Blob storage layout, as in `decoration_config.gcs_configuration` and inlined into
/// INITUPLOAD_OPTIONS and SIDECAR_OPTIONS' `gcs_options`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct GcsConfiguration {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bucket: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path_prefix: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path_strategy: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default_org: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default_repo: String,
    #[serde(
        default,
        rename = "mediaTypes",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub media_types: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub job_url_prefix: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub local_output_dir: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compress_file_types: Vec<String>,
}

pub const PATH_STRATEGY_LEGACY: &str = "legacy";
pub const PATH_STRATEGY_SINGLE: &str = "single";
pub const PATH_STRATEGY_EXPLICIT: &str = "explicit";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GcsConfigError {
    #[error(
        "path {0:?} has invalid format, expected either <bucket-name>[/<path>] or <storage-provider>://<bucket-name>[/<path>]"
    )]
    BadBucket(String),
    #[error("invalid extension media type {0:?}: mime: no media type")]
    BadMediaType(String),
    #[error(r#"gcs_path_strategy must be one of "legacy", "explicit", or "single""#)]
    BadStrategy,
    #[error("default org and repo must be provided for GCS strategy {0:?}")]
    MissingDefaults(String),
}

impl GcsConfiguration {
    /// Upstream's `GCSConfiguration.Validate`, checks in the same order.
    pub fn validate(&self) -> Result<(), GcsConfigError> {
        parse_bucket(&self.bucket)?;
        for v in self.media_types.values() {
            if !is_media_type(v) {
                return Err(GcsConfigError::BadMediaType(v.clone()));
            }
        }
        match self.path_strategy.as_str() {
            PATH_STRATEGY_LEGACY | PATH_STRATEGY_SINGLE | PATH_STRATEGY_EXPLICIT => {}
            _ => return Err(GcsConfigError::BadStrategy),
        }
        if self.path_strategy != PATH_STRATEGY_EXPLICIT
            && (self.default_org.is_empty() || self.default_repo.is_empty())
        {
            return Err(GcsConfigError::MissingDefaults(self.path_strategy.clone()));
        }
        Ok(())
    }
}

/// A storage location split into provider (`gs`, `s3`, `file`...), bucket and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoragePath {
    pub scheme: String,
    pub bucket: String,
    pub path: String,
}

/// Upstream's `ParsePath`: a bare bucket means `gs://`; anything else must look like
/// `<scheme>://<bucket>[/<path>]`.
pub fn parse_bucket(bucket: &str) -> Result<StoragePath, GcsConfigError> {
    let full = if bucket.contains("://") {
        bucket.to_string()
    } else {
        format!("gs://{bucket}")
    };
    let bad = || GcsConfigError::BadBucket(bucket.to_string());
    let (scheme, rest) = full.split_once("://").ok_or_else(bad)?;
    let scheme_ok = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !scheme_ok || rest.chars().any(|c| c.is_control() || c == ' ') {
        return Err(bad());
    }
    let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
    Ok(StoragePath {
        scheme: scheme.to_string(),
        bucket: bucket.to_string(),
        path: path.to_string(),
    })
}

/// Whether `v` parses as a MIME media type (`type/subtype[; params]`), as `mime.ParseMediaType`.
fn is_media_type(v: &str) -> bool {
    let base = v.split(';').next().unwrap_or("").trim();
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b))
    };
    match base.split_once('/') {
        Some((t, s)) => token(t) && token(s),
        None => token(base),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_string_matches_upstream_examples() {
        let mut r = Refs {
            base_ref: "master".into(),
            base_sha: "abc123".into(),
            ..Default::default()
        };
        assert_eq!(r.to_refs_string(), "master:abc123");
        r.base_ref = "base-ref".into();
        r.base_sha = "base-sha".into();
        r.pulls = Some(vec![
            Pull {
                number: 1,
                sha: "pull-sha".into(),
                ..Default::default()
            },
            Pull {
                number: 2,
                sha: "second-pull-sha".into(),
                ..Default::default()
            },
        ]);
        assert_eq!(
            r.to_refs_string(),
            "base-ref:base-sha,1:pull-sha,2:second-pull-sha"
        );
        let g = Refs {
            base_ref: "master".into(),
            base_sha: "abc".into(),
            pulls: Some(vec![Pull {
                number: 123,
                sha: "def".into(),
                ref_: "refs/changes/00/123/1".into(),
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert_eq!(
            g.to_refs_string(),
            "master:abc,123:def:refs/changes/00/123/1"
        );
    }

    #[test]
    fn refs_json_round_trips_in_upstream_order() {
        let json = r#"{"org":"o","repo":"r","base_ref":"main","pulls":[{"number":1,"author":"a","sha":"s","ref":"pull/1/head"}],"path_alias":"k8s.io/r","workdir":true,"clone_depth":2,"blobless_fetch":false}"#;
        let r: Refs = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_string(&r).unwrap(), json);
        let empty: Refs = serde_json::from_str("{}").unwrap();
        assert_eq!(
            serde_json::to_string(&empty).unwrap(),
            r#"{"org":"","repo":""}"#
        );
    }

    #[test]
    fn bucket_forms() {
        let p = parse_bucket("my-bucket").unwrap();
        assert_eq!(
            (p.scheme.as_str(), p.bucket.as_str(), p.path.as_str()),
            ("gs", "my-bucket", "")
        );
        let p = parse_bucket("s3://b/pfx/x").unwrap();
        assert_eq!(
            (p.scheme.as_str(), p.bucket.as_str(), p.path.as_str()),
            ("s3", "b", "pfx/x")
        );
        assert!(parse_bucket("://bucket").is_err());
        assert!(parse_bucket("").is_ok());
    }

    #[test]
    fn validate_rules() {
        let mut c = GcsConfiguration {
            bucket: "b".into(),
            path_strategy: "explicit".into(),
            ..Default::default()
        };
        assert_eq!(c.validate(), Ok(()));
        c.path_strategy = "legacy".into();
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            r#"default org and repo must be provided for GCS strategy "legacy""#
        );
        c.path_strategy = "nope".into();
        assert_eq!(c.validate(), Err(GcsConfigError::BadStrategy));
        c.path_strategy = "explicit".into();
        c.media_types.insert("log".into(), "text/plain".into());
        assert_eq!(c.validate(), Ok(()));
        c.media_types.insert("x".into(), String::new());
        assert!(matches!(c.validate(), Err(GcsConfigError::BadMediaType(_))));
    }
}
