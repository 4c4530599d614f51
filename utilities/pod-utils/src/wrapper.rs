/*!
The wrapper contract between entrypoint and sidecar (upstream `pkg/pod-utils/wrapper`): where the
wrapped process's log and exit-code marker go. Entrypoint inlines these keys at its top level;
sidecar lists one per test container in `entries`.
*/

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container_name: String,
    #[serde(default)]
    pub process_log: String,
    #[serde(default)]
    pub marker_file: String,
    #[serde(default)]
    pub metadata_file: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    #[error("no log file specified with --process-log")]
    NoProcessLog,
    #[error("no marker file specified with --marker-file")]
    NoMarkerFile,
}

impl Options {
    pub fn validate(&self) -> Result<(), OptionsError> {
        if self.process_log.is_empty() {
            return Err(OptionsError::NoProcessLog);
        }
        if self.marker_file.is_empty() {
            return Err(OptionsError::NoMarkerFile);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_requires_log_then_marker() {
        let mut o = Options {
            process_log: "/l".into(),
            marker_file: "/m".into(),
            ..Default::default()
        };
        assert_eq!(o.validate(), Ok(()));
        o.marker_file.clear();
        assert_eq!(o.validate(), Err(OptionsError::NoMarkerFile));
        o.process_log.clear();
        assert_eq!(o.validate(), Err(OptionsError::NoProcessLog));
    }

    #[test]
    fn encodes_like_the_decorator() {
        let o = Options {
            args: vec!["/bin/ls".into(), "-l".into()],
            container_name: "test".into(),
            process_log: "/logs/process-log.txt".into(),
            marker_file: "/logs/marker-file.txt".into(),
            metadata_file: "/logs/artifacts/metadata.json".into(),
        };
        assert_eq!(
            serde_json::to_string(&o).unwrap(),
            r#"{"args":["/bin/ls","-l"],"container_name":"test","process_log":"/logs/process-log.txt","marker_file":"/logs/marker-file.txt","metadata_file":"/logs/artifacts/metadata.json"}"#
        );
    }
}
