/*!
finished.json as sidecar writes it (testgrid's `metadata.Finished`): `timestamp`, `passed`,
`metadata` (omitted when empty), `result`, `revision` (omitted when empty), compact, in that order,
with Go's encoding of the metadata values. `job-version` and `repo-version` are never set here.
*/

use crate::gojson::encode_str;
use crate::metadata::CombinedMetadata;

/// The job's outcome as finished.json's `result` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobResult {
    Success,
    Failure,
    Aborted,
}

impl JobResult {
    /// Passing wins over aborting: a run whose markers are all 0 succeeded.
    pub fn from_outcome(passed: bool, aborted: bool) -> Self {
        if passed {
            JobResult::Success
        } else if aborted {
            JobResult::Aborted
        } else {
            JobResult::Failure
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobResult::Success => "SUCCESS",
            JobResult::Failure => "FAILURE",
            JobResult::Aborted => "ABORTED",
        }
    }
}

#[derive(Debug)]
pub struct Finished<'a> {
    /// Unix seconds at upload time.
    pub timestamp: i64,
    pub passed: bool,
    pub metadata: &'a CombinedMetadata,
    pub result: JobResult,
    pub revision: &'a str,
}

impl Finished<'_> {
    /// The compact JSON document, byte for byte as Go's `json.Marshal` writes it.
    pub fn to_json(&self) -> String {
        let mut out = format!(
            "{{\"timestamp\":{},\"passed\":{}",
            self.timestamp, self.passed
        );
        if !self.metadata.is_empty() {
            out.push_str(",\"metadata\":");
            self.metadata.encode(&mut out);
        }
        out.push_str(",\"result\":\"");
        out.push_str(self.result.as_str());
        out.push('"');
        if !self.revision.is_empty() {
            out.push_str(",\"revision\":");
            encode_str(self.revision, &mut out);
        }
        out.push('}');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn result_precedence() {
        assert_eq!(JobResult::from_outcome(true, true), JobResult::Success);
        assert_eq!(JobResult::from_outcome(false, true), JobResult::Aborted);
        assert_eq!(JobResult::from_outcome(false, false), JobResult::Failure);
    }

    #[test]
    fn contract_example() {
        let mut metadata = CombinedMetadata::default();
        metadata.values.insert("hello".into(), json!("world"));
        let f = Finished {
            timestamp: 1700000000,
            passed: true,
            metadata: &metadata,
            result: JobResult::Success,
            revision: "abc123",
        };
        assert_eq!(
            f.to_json(),
            r#"{"timestamp":1700000000,"passed":true,"metadata":{"hello":"world"},"result":"SUCCESS","revision":"abc123"}"#
        );
    }

    #[test]
    fn empty_metadata_and_revision_are_omitted() {
        let metadata = CombinedMetadata::default();
        let f = Finished {
            timestamp: 5,
            passed: false,
            metadata: &metadata,
            result: JobResult::Aborted,
            revision: "",
        };
        assert_eq!(
            f.to_json(),
            r#"{"timestamp":5,"passed":false,"result":"ABORTED"}"#
        );
    }
}
