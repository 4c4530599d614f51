/*!
Which build logs sidecar uploads (upstream `logReadersFuncs`): one entry's process log becomes
`build-log.txt`; with several entries each becomes `<container_name>-build-log.txt`, and entries
whose names collide overwrite one another, later wins, as in upstream's map. A log that cannot be
opened is replaced by a one-line note saying why, so the upload still shows something.
*/

use std::path::PathBuf;

use pod_utils::wrapper;

use crate::goerr::PathError;

/// What to upload for one build log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogContent {
    /// The process log itself, read at upload time (it can be large: never buffered here).
    File(PathBuf),
    /// `Failed to open <path>: <Go error>\n`.
    Note(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildLog {
    /// The object name under the job's upload path.
    pub name: String,
    pub content: LogContent,
}

/// The build logs for `entries`, one per distinct name, in entry order.
pub fn build_logs(entries: &[wrapper::Options]) -> Vec<BuildLog> {
    let mut logs: Vec<BuildLog> = Vec::with_capacity(entries.len());
    for entry in entries {
        let name = if entries.len() > 1 {
            format!("{}-build-log.txt", entry.container_name)
        } else {
            "build-log.txt".to_string()
        };
        let path = entry.process_log.as_str();
        let content = match std::fs::File::open(path) {
            Ok(_) => LogContent::File(PathBuf::from(path)),
            Err(e) => {
                let err = PathError::new("open", path, e);
                tracing::error!(error = %err, "Failed to open {path}");
                LogContent::Note(format!("Failed to open {path}: {err}\n"))
            }
        };
        match logs.iter_mut().find(|l| l.name == name) {
            Some(existing) => existing.content = content,
            None => logs.push(BuildLog { name, content }),
        }
    }
    logs
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn read(log: &BuildLog) -> String {
        match &log.content {
            LogContent::File(p) => std::fs::read_to_string(p).unwrap(),
            LogContent::Note(n) => n.clone(),
        }
    }

    fn run_case(dir: &Path, containers: &[(&str, &str, Option<&str>)]) -> Vec<(String, String)> {
        let entries: Vec<wrapper::Options> = containers
            .iter()
            .map(|(name, file, content)| {
                let p = dir.join(file);
                if let Some(c) = content {
                    std::fs::write(&p, c).unwrap();
                }
                wrapper::Options {
                    container_name: name.to_string(),
                    process_log: p.to_string_lossy().into_owned(),
                    ..Default::default()
                }
            })
            .collect();
        build_logs(&entries)
            .iter()
            .map(|l| (l.name.clone(), read(l)))
            .collect()
    }

    // Upstream TestLogReaders.
    #[test]
    fn one_container_named_or_not_is_build_log_txt() {
        for name in ["test", ""] {
            let dir = tempfile::tempdir().unwrap();
            let got = run_case(
                dir.path(),
                &[(name, "process-log.txt", Some("hello world"))],
            );
            assert_eq!(got, [("build-log.txt".into(), "hello world".into())]);
        }
    }

    #[test]
    fn several_containers_are_prefixed() {
        let dir = tempfile::tempdir().unwrap();
        let got = run_case(
            dir.path(),
            &[
                ("test1", "test1-log.txt", Some("hello")),
                ("test2", "test2-log.txt", Some("world")),
            ],
        );
        assert_eq!(
            got,
            [
                ("test1-build-log.txt".into(), "hello".into()),
                ("test2-build-log.txt".into(), "world".into())
            ]
        );
    }

    #[test]
    fn a_missing_log_becomes_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let got = run_case(
            dir.path(),
            &[
                ("test1", "test1-log.txt", Some("hello")),
                ("test2", "test2-log.txt", None),
                ("test3", "test3-log.txt", Some("world")),
            ],
        );
        let missing = dir.path().join("test2-log.txt");
        let missing = missing.display();
        assert_eq!(got[1].0, "test2-build-log.txt");
        assert_eq!(
            got[1].1,
            format!("Failed to open {missing}: open {missing}: no such file or directory\n")
        );
        assert_eq!(got[2], ("test3-build-log.txt".into(), "world".into()));
    }

    #[test]
    fn colliding_names_later_wins() {
        let dir = tempfile::tempdir().unwrap();
        let got = run_case(
            dir.path(),
            &[("", "a.txt", Some("first")), ("", "b.txt", Some("second"))],
        );
        assert_eq!(got, [("-build-log.txt".into(), "second".into())]);
    }
}
