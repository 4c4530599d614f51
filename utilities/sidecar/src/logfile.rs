/*!
sidecar's own log, uploaded as `sidecar-logs.json` (upstream `LogSetup` and the `sync.Once` in
`doUpload`). From start-up every log line goes to stderr and to a temp file
`$TMPDIR/sidecar-logs*.txt`; at the first upload the file is closed and logging continues on
stderr only, so the artifact holds the lines up to the start of that upload. The file is removed
when this value is dropped.
*/

use std::io;
use std::path::Path;
use std::sync::Once;

use pod_utils::logging::{LogSink, Tee};
use tempfile::NamedTempFile;

pub struct LogFile {
    file: NamedTempFile,
    sink: LogSink,
    detached: Once,
}

impl LogFile {
    /// Creates the temp file and tees `sink` into it.
    pub fn setup(sink: &LogSink) -> io::Result<Self> {
        let file = tempfile::Builder::new()
            .prefix("sidecar-logs")
            .suffix(".txt")
            .tempfile()?;
        let tee = file.as_file().try_clone()?;
        drop(sink.replace(Tee(io::stderr(), tee)));
        Ok(LogFile {
            file,
            sink: sink.clone(),
            detached: Once::new(),
        })
    }

    /// Stops logging into the file (only the first call does anything) and returns its path,
    /// ready to be uploaded.
    pub fn detach(&self) -> &Path {
        self.detached.call_once(|| {
            // Dropping the tee closes its handle on the file.
            drop(self.sink.replace(io::stderr()));
            let _ = self.file.as_file().sync_all();
        });
        self.file.path()
    }

    #[cfg(test)]
    fn path(&self) -> &Path {
        self.file.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pod_utils::logging::JsonLayer;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn lines_before_detach_reach_the_file_only() {
        let sink = LogSink::stderr();
        let log = LogFile::setup(&sink).unwrap();
        let name = log
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            name.starts_with("sidecar-logs") && name.ends_with(".txt"),
            "{name}"
        );
        let subscriber = tracing_subscriber::registry().with(JsonLayer {
            component: "sidecar",
            sink: sink.clone(),
        });
        let path = tracing::subscriber::with_default(subscriber, || {
            tracing::info!("before the upload");
            let path = log.detach().to_path_buf();
            tracing::info!("after the upload");
            assert_eq!(log.detach(), path, "a second detach changes nothing");
            path
        });
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        let line: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(line["msg"], "before the upload");
        assert_eq!(line["component"], "sidecar");
        drop(log);
        assert!(!path.exists(), "the temp file is removed on drop");
    }
}
