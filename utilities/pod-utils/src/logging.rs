/*!
Upstream's log shape (`logrusutil.ComponentInit`): one JSON object per line with the keys
`component`, `file`, `func`, `level`, `msg`, `severity`, `time` plus any event fields, sorted by
name, because logrus' JSON formatter sorts them.

Events come from `tracing`; a field `fatal = true` turns an error into logrus' `fatal` level, which
the binaries use for the one line they print before exiting 1. The output can be redirected after
start-up (entrypoint tees into the process log, sidecar into a temp file it uploads), so the sink
is a shared handle rather than a fixed writer.
*/

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};

type BoxWrite = Box<dyn Write + Send>;

/// Where log lines go; cloning shares the same destination.
#[derive(Clone)]
pub struct LogSink(Arc<Mutex<BoxWrite>>);

impl LogSink {
    pub fn new(w: impl Write + Send + 'static) -> Self {
        LogSink(Arc::new(Mutex::new(Box::new(w))))
    }

    pub fn stderr() -> Self {
        LogSink::new(io::stderr())
    }

    /// Swaps the destination, returning the old one (flushed) so the caller can close it.
    pub fn replace(&self, w: impl Write + Send + 'static) -> BoxWrite {
        let mut guard = self.lock();
        let _ = guard.flush();
        std::mem::replace(&mut *guard, Box::new(w))
    }

    fn lock(&self) -> MutexGuard<'_, BoxWrite> {
        // A panic while logging must not silence every later line.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_line(&self, line: &[u8]) {
        let mut w = self.lock();
        // Logging is best effort: a closed stderr must not take the utility down.
        let _ = w.write_all(line);
        let _ = w.flush();
    }
}

/// Writes every line to both writers, as Go's `io.MultiWriter`.
pub struct Tee<A, B>(pub A, pub B);

impl<A: Write, B: Write> Write for Tee<A, B> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(buf)?;
        self.1.write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()?;
        self.1.flush()
    }
}

/// Installs the logrus-shaped JSON logger for `component` as the global subscriber and returns
/// its sink. Calling it twice keeps the first subscriber (tests may call it repeatedly).
pub fn init(component: &'static str) -> LogSink {
    let sink = LogSink::stderr();
    let subscriber = tracing_subscriber::registry().with(JsonLayer {
        component,
        sink: sink.clone(),
    });
    let _ = tracing::subscriber::set_global_default(subscriber);
    sink
}

/// Renders one event as upstream does. Public so that tests and the entrypoint's tee can format
/// lines without a global subscriber.
pub struct JsonLayer {
    pub component: &'static str,
    pub sink: LogSink,
}

/// The crates whose events are the utilities' own log lines.
const OWN_CRATES: &[&str] = &[
    "pod_utils",
    "clonerefs",
    "initupload",
    "entrypoint",
    "sidecar",
];

/// Upstream logs only its own lines, at info and above (sidecar: debug and above). Libraries'
/// events (HTTP clients and the like) would add noise and nondeterminism, so only their warnings
/// and errors get through.
fn enabled(meta: &tracing::Metadata<'_>, component: &str) -> bool {
    let target = meta.target();
    let own = OWN_CRATES
        .iter()
        .any(|c| target == *c || target.starts_with(&format!("{c}::")));
    let max = match (own, component) {
        (false, _) => Level::WARN,
        (true, "sidecar") => Level::DEBUG,
        (true, _) => Level::INFO,
    };
    *meta.level() <= max
}

impl<S: Subscriber> Layer<S> for JsonLayer {
    fn enabled(&self, meta: &tracing::Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        enabled(meta, self.component)
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let level = if fields.fatal {
            "fatal"
        } else {
            level_name(*meta.level())
        };
        let mut obj = fields.map;
        obj.insert("component".into(), Value::from(self.component));
        obj.insert("level".into(), Value::from(level));
        obj.insert("severity".into(), Value::from(level));
        obj.insert("time".into(), Value::from(now_rfc3339()));
        obj.insert(
            "file".into(),
            Value::from(format!(
                "{}:{}",
                meta.file().unwrap_or("?"),
                meta.line().unwrap_or(0)
            )),
        );
        obj.insert(
            "func".into(),
            Value::from(meta.module_path().unwrap_or("?")),
        );
        obj.entry("msg".to_string()).or_insert(Value::from(""));
        let mut line = serde_json::to_vec(&obj).unwrap_or_default();
        line.push(b'\n');
        self.sink.write_line(&line);
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// RFC 3339 in UTC with whole seconds, Go's `time.RFC3339` in a UTC container.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    now.format(&fmt).unwrap_or_default()
}

#[derive(Default)]
struct Fields {
    map: BTreeMap<String, Value>,
    fatal: bool,
}

impl Fields {
    fn put(&mut self, field: &Field, v: Value) {
        let name = match field.name() {
            "message" => "msg",
            n => n,
        };
        self.map.insert(name.to_string(), v);
    }
}

impl Visit for Fields {
    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == "fatal" {
            self.fatal = value;
        } else {
            self.put(field, Value::from(value));
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::from(format!("{value:?}")));
    }
}

/// Logs `msg` at logrus' fatal level. The caller exits with status 1 right after, as
/// `logrus.Fatal` would.
#[macro_export]
macro_rules! fatal {
    ($($arg:tt)*) => {
        ::tracing::error!(fatal = true, $($arg)*)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn library_noise_is_filtered() {
        let buf = Buf::default();
        let layer = JsonLayer {
            component: "initupload",
            sink: LogSink::new(buf.clone()),
        };
        let sub = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(sub, || {
            tracing::debug!(target: "hyper_util::client", "connecting");
            tracing::warn!(target: "hyper_util::client", "trouble");
            tracing::debug!(target: "pod_utils::gcsupload", "own debug");
            tracing::info!(target: "pod_utils::gcsupload", "own info");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(
            !text.contains("connecting") && !text.contains("own debug"),
            "{text}"
        );
        assert!(
            text.contains("trouble") && text.contains("own info"),
            "{text}"
        );
    }

    #[test]
    fn lines_have_upstream_keys_sorted() {
        let buf = Buf::default();
        let layer = JsonLayer {
            component: "sidecar",
            sink: LogSink::new(buf.clone()),
        };
        let sub = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(sub, || {
            tracing::warn!(dest = "a/b", "Would upload");
            crate::fatal!("Invalid options: {}", "boom");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        let keys: Vec<&String> = first.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "component",
                "dest",
                "file",
                "func",
                "level",
                "msg",
                "severity",
                "time"
            ]
        );
        assert_eq!(first["level"], "warning");
        assert_eq!(first["msg"], "Would upload");
        let second: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(second["level"], "fatal");
        assert_eq!(second["severity"], "fatal");
        assert_eq!(second["msg"], "Invalid options: boom");
        assert!(second.get("fatal").is_none());
    }
}
