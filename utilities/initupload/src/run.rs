/*!
What initupload does once its options are valid (upstream `pkg/initupload/run.go`): read
clonerefs' records, upload started.json and the clone logs, and on a clone failure also a
failing finished.json and build-log.txt before exiting non-zero.

A clone log that cannot be read or parsed stops the run before anything is uploaded.
*/

use std::collections::BTreeMap;
use std::path::PathBuf;

use pod_utils::clone::{self, Record};
use pod_utils::downwardapi::{self, JobSpec, SpecError};
use pod_utils::gcsupload::{self, UploadSource};
use serde::Serialize;

use crate::Options;

/// Names of the files initupload writes under the job's directory.
pub const STARTED_FILE: &str = "started.json";
pub const FINISHED_FILE: &str = "finished.json";
pub const CLONE_LOG_FILE: &str = "clone-log.txt";
pub const CLONE_RECORDS_FILE: &str = "clone-records.json";
pub const BUILD_LOG_FILE: &str = "build-log.txt";

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("could not resolve job spec: {0}")]
    Spec(#[from] SpecError),
    #[error("could not read clone log: {0}")]
    ReadLog(std::io::Error),
    #[error("could not unmarshal clone records: {0}")]
    ParseLog(serde_json::Error),
    #[error("failed to upload to blob storage: {0}")]
    Upload(#[from] gcsupload::UploadError),
    #[error("cloning the appropriate refs failed")]
    CloneFailed,
    #[error("could not start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// started.json (testgrid `metadata.Started`), keys in upstream's order.
#[derive(Serialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct Started {
    pub timestamp: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub node: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pull: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub repos: BTreeMap<String, String>,
    #[serde(rename = "repo-commit", skip_serializing_if = "String::is_empty")]
    pub repo_commit: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(rename = "job-version", skip_serializing_if = "String::is_empty")]
    pub job_version: String,
    #[serde(rename = "repo-version", skip_serializing_if = "String::is_empty")]
    pub repo_version: String,
}

/// The failing finished.json initupload writes when cloning failed (testgrid `Finished`).
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub timestamp: i64,
    pub passed: bool,
    pub result: &'static str,
}

/// Upstream `SpecToStarted`: the repos of every ref, the first pull of `refs`, and the commit
/// of the main refs (the final SHA of the clone record for exactly those refs, else their
/// revision).
pub fn spec_to_started(spec: &JobSpec, records: &[Record], now: i64) -> Started {
    let mut version = spec
        .main_refs()
        .and_then(|main| records.iter().find(|r| &r.refs == main))
        .map(|r| r.final_sha.clone())
        .unwrap_or_default();
    if version.is_empty() {
        version = spec.revision().to_string();
    }
    let mut started = Started {
        timestamp: now,
        repo_commit: version.clone(),
        repo_version: version,
        ..Default::default()
    };
    if let Some(refs) = &spec.refs {
        if let Some(p) = refs.pulls().first() {
            started.pull = p.number.to_string();
        }
        started
            .repos
            .insert(format!("{}/{}", refs.org, refs.repo), refs.to_refs_string());
    }
    for r in &spec.extra_refs {
        started
            .repos
            .insert(format!("{}/{}", r.org, r.repo), r.to_refs_string());
    }
    started
}

/// Compact JSON as Go's `json.Marshal` writes it: serde_json's text with `<`, `>`, `&`,
/// U+2028 and U+2029 escaped. Those characters only ever occur inside strings in JSON text, so
/// replacing them everywhere is exact.
pub fn go_json<T: Serialize>(v: &T) -> Vec<u8> {
    let s = serde_json::to_string(v).unwrap_or_default();
    s.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
        .into_bytes()
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// What the clone log yields: whether any clone failed, the records, and the files to upload.
#[derive(Debug, Default)]
pub struct CloneLog {
    pub failed: bool,
    pub records: Vec<Record>,
    pub uploads: Vec<(String, UploadSource)>,
}

/// The clone log's uploads and whether any clone failed (upstream `processCloneLog`).
pub fn process_clone_log(log: &str, now: i64) -> Result<CloneLog, RunError> {
    let data = std::fs::read(log).map_err(RunError::ReadLog)?;
    // Go decodes JSON `null` into an empty slice.
    let records: Vec<Record> = serde_json::from_slice::<Option<Vec<Record>>>(&data)
        .map_err(RunError::ParseLog)?
        .unwrap_or_default();
    let text: String = records.iter().map(clone::format_record).collect();
    let failed = records.iter().any(|r| r.failed);
    let mut uploads = vec![
        (
            CLONE_LOG_FILE.to_string(),
            UploadSource::Bytes(text.clone().into_bytes()),
        ),
        (
            CLONE_RECORDS_FILE.to_string(),
            UploadSource::File(PathBuf::from(log)),
        ),
    ];
    if failed {
        uploads.push((
            BUILD_LOG_FILE.to_string(),
            UploadSource::Bytes(text.into_bytes()),
        ));
        let finished = Finished {
            timestamp: now,
            passed: false,
            result: "FAILURE",
        };
        uploads.push((
            FINISHED_FILE.to_string(),
            UploadSource::Bytes(go_json(&finished)),
        ));
    }
    Ok(CloneLog {
        failed,
        records,
        uploads,
    })
}

/// Upstream `Options.Run`.
pub fn run_options(o: &Options) -> Result<(), RunError> {
    let spec = downwardapi::resolve_spec_from_env()?;
    let now = now_unix();
    let CloneLog {
        failed,
        records,
        mut uploads,
    } = if o.log.is_empty() {
        CloneLog::default()
    } else {
        process_clone_log(&o.log, now)?
    };
    let started = spec_to_started(&spec, &records, now);
    uploads.push((
        STARTED_FILE.to_string(),
        UploadSource::Bytes(go_json(&started)),
    ));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    rt.block_on(gcsupload::run(&o.gcs, &spec, uploads))?;
    if failed {
        return Err(RunError::CloneFailed);
    }
    Ok(())
}

/// Runs and turns the outcome into the exit code, logging a failure as upstream's fatal line.
pub fn run(o: &Options) -> i32 {
    match run_options(o) {
        Ok(()) => 0,
        Err(e) => {
            pod_utils::fatal!(error = %e, "Failed to initialize job");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pod_utils::prowapi::{Pull, Refs};

    fn refs(org: &str, repo: &str, base_ref: &str) -> Refs {
        Refs {
            org: org.into(),
            repo: repo.into(),
            base_ref: base_ref.into(),
            ..Default::default()
        }
    }

    // Upstream TestSpecToStarted.
    #[test]
    fn spec_to_started_cases() {
        let mut with_pull = refs("kubernetes", "test-infra", "master");
        with_pull.base_sha = "deadbeef".into();
        with_pull.pulls = Some(vec![Pull {
            number: 123,
            sha: "abcd1234".into(),
            ..Default::default()
        }]);
        let spec = JobSpec {
            refs: Some(with_pull),
            ..Default::default()
        };
        assert_eq!(
            String::from_utf8(go_json(&spec_to_started(&spec, &[], 7))).unwrap(),
            r#"{"timestamp":7,"pull":"123","repos":{"kubernetes/test-infra":"master:deadbeef,123:abcd1234"},"repo-commit":"abcd1234","repo-version":"abcd1234"}"#
        );

        let spec = JobSpec {
            refs: Some(refs("kubernetes", "test-infra", "master")),
            ..Default::default()
        };
        let s = spec_to_started(&spec, &[], 1);
        assert_eq!((s.repo_commit.as_str(), s.pull.as_str()), ("master", ""));

        let main = refs("kubernetes", "test-infra", "master");
        let record = Record {
            refs: main.clone(),
            final_sha: "aaaaaaaa".into(),
            ..Default::default()
        };
        let spec = JobSpec {
            refs: Some(main),
            extra_refs: vec![refs("kubernetes", "release", "v1.10")],
            ..Default::default()
        };
        assert_eq!(
            String::from_utf8(go_json(&spec_to_started(&spec, &[record], 2))).unwrap(),
            r#"{"timestamp":2,"repos":{"kubernetes/release":"v1.10","kubernetes/test-infra":"master"},"repo-commit":"aaaaaaaa","repo-version":"aaaaaaaa"}"#
        );

        let extra = refs("kubernetes", "release", "v1.10");
        let record = Record {
            refs: extra.clone(),
            final_sha: "aaaaaaaa".into(),
            ..Default::default()
        };
        let spec = JobSpec {
            extra_refs: vec![extra],
            ..Default::default()
        };
        let s = spec_to_started(&spec, &[record], 3);
        assert_eq!(s.repo_commit, "aaaaaaaa");
        assert_eq!(s.pull, "");
    }

    #[test]
    fn record_match_is_deep_equality_as_decoded() {
        // `"pulls":[]` in JOB_SPEC differs from an absent `pulls` in the record, as in Go.
        let spec: JobSpec =
            serde_json::from_str(r#"{"refs":{"org":"o","repo":"r","base_ref":"main","pulls":[]}}"#)
                .unwrap();
        let record: Record = serde_json::from_str(
            r#"{"refs":{"org":"o","repo":"r","base_ref":"main"},"final_sha":"f"}"#,
        )
        .unwrap();
        assert_eq!(
            spec_to_started(&spec, std::slice::from_ref(&record), 0).repo_commit,
            "main"
        );
        let same: JobSpec =
            serde_json::from_str(r#"{"refs":{"org":"o","repo":"r","base_ref":"main"}}"#).unwrap();
        assert_eq!(spec_to_started(&same, &[record], 0).repo_commit, "f");
        // A record with an empty final SHA falls back to the revision.
        let empty = Record {
            refs: same.refs.clone().unwrap(),
            ..Default::default()
        };
        assert_eq!(spec_to_started(&same, &[empty], 0).repo_commit, "main");
        // Periodic without refs: no repos, no commit.
        assert_eq!(
            String::from_utf8(go_json(&spec_to_started(&JobSpec::default(), &[], 5))).unwrap(),
            r#"{"timestamp":5}"#
        );
    }

    #[test]
    fn go_json_escapes_html_characters() {
        let mut s = Started::default();
        s.repos.insert("o/r".into(), "a<b>&c\u{2028}".into());
        assert_eq!(
            String::from_utf8(go_json(&s)).unwrap(),
            r#"{"timestamp":0,"repos":{"o/r":"a\u003cb\u003e\u0026c\u2028"}}"#
        );
        let f = Finished {
            timestamp: 9,
            passed: false,
            result: "FAILURE",
        };
        assert_eq!(
            String::from_utf8(go_json(&f)).unwrap(),
            r#"{"timestamp":9,"passed":false,"result":"FAILURE"}"#
        );
    }

    #[test]
    fn clone_log_processing() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("clone.json");
        std::fs::write(
            &log,
            r#"[{"refs":{"org":"","repo":""},"commands":[{"command":"mkdir","output":"ok\n"}]},{"refs":{"org":"o","repo":"r","base_ref":"main"},"failed":true,"final_sha":""}]"#,
        )
        .unwrap();
        let CloneLog {
            failed,
            records,
            uploads,
        } = process_clone_log(log.to_str().unwrap(), 42).unwrap();
        assert!(failed);
        assert_eq!(records.len(), 2);
        let names: Vec<&str> = uploads.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                CLONE_LOG_FILE,
                CLONE_RECORDS_FILE,
                BUILD_LOG_FILE,
                FINISHED_FILE
            ]
        );
        let text = "Environment setup\n$ mkdir\nok\n# Final SHA: \n# Total runtime: 0s\n\
                    # FAILED\n# Cloning o/r at main\n# Final SHA: \n# Total runtime: 0s\n";
        assert_eq!(uploads[0].1, UploadSource::Bytes(text.as_bytes().to_vec()));
        assert_eq!(uploads[1].1, UploadSource::File(log.clone()));
        assert_eq!(uploads[2].1, UploadSource::Bytes(text.as_bytes().to_vec()));
        assert_eq!(
            uploads[3].1,
            UploadSource::Bytes(br#"{"timestamp":42,"passed":false,"result":"FAILURE"}"#.to_vec())
        );

        std::fs::write(&log, "null").unwrap();
        let c = process_clone_log(log.to_str().unwrap(), 0).unwrap();
        assert!(!c.failed && c.records.is_empty() && c.uploads.len() == 2);

        std::fs::write(&log, "{").unwrap();
        let err = process_clone_log(log.to_str().unwrap(), 0).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("could not unmarshal clone records: ")
        );
        let err = process_clone_log("/nonexistent/clone.json", 0).unwrap_err();
        assert!(err.to_string().starts_with("could not read clone log: "));
    }
}
