/*!
Running the test command (upstream `pkg/entrypoint/run.go`) and copy mode
(`cmd/entrypoint/main.go`).

The run is a small event loop on one channel: the child-waiter thread, the previous-marker
watcher and the signal thread all send [`Event`]s, and the calling thread alone decides codes
and logs, so entrypoint's own log lines never race with the decision they describe. Output is
streamed by one pump thread into stdout and the process log: with tee(2)/splice(2) when stdout
is a pipe (the data never enters user space), else through one fixed buffer. The log side goes
through a pipe to a writer thread, so writing the file overlaps delivering stdout.

This module must not exit the process: it returns codes and `lib.rs` exits.
*/

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, splice, tee};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, pipe2};
use pod_utils::duration;
use pod_utils::logging::LogSink;
use pod_utils::wrapper::{self, MarkerResult, go_errno_text};

use crate::Options;

/// Something went wrong in entrypoint itself (upstream `InternalErrorCode`).
pub const INTERNAL_ERROR_CODE: i32 = 127;
/// The run was interrupted by SIGINT/SIGTERM (upstream `AbortedErrorCode`).
pub const ABORTED_ERROR_CODE: i32 = 130;
/// The previous step failed, so this one did not run (upstream `PreviousErrorCode`, 1000 + 130;
/// it exits as 106 after the OS truncates it to 8 bits).
pub const PREVIOUS_ERROR_CODE: i32 = 1130;

/// Read size of the output pump. 128 KiB matches what coreutils' `cat` uses, large enough that
/// the per-chunk lock and two writes vanish next to the copying itself.
const PUMP_BUFFER: usize = 128 * 1024;

/// What the run loop waits for.
#[derive(Debug)]
pub(crate) enum Event {
    /// SIGINT or SIGTERM reached entrypoint.
    Interrupt(Signal),
    /// The previous step's marker was read (or could not be).
    PreviousMarker(MarkerResult),
    /// The child was reaped and its output pipe reached EOF (Go's `cmd.Wait`).
    Exited,
}

/// Go's `*PathError` text: `open /x: permission denied`.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {text}", text = go_errno_text(source))]
pub struct PathError {
    op: &'static str,
    path: PathBuf,
    source: io::Error,
}

impl PathError {
    fn new(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> PathError {
        let path = path.to_path_buf();
        move |source| PathError { op, path, source }
    }
}

// ---------------------------------------------------------------------------------------------
// Copy mode
// ---------------------------------------------------------------------------------------------

/// Copies the running binary to `copy_dst` (the place-entrypoint init container). The source is
/// `argv0` as invoked, as upstream uses `os.Args[0]`: under qemu-user `/proc/self/exe` would be
/// the emulator itself.
pub fn copy_mode(o: &Options, argv0: &str) -> i32 {
    match copy_file(Path::new(argv0), Path::new(&o.copy_dst)) {
        Ok(()) => 0,
        Err(e) => {
            pod_utils::fatal!(error = %e, "Failed running in copy mode, this is a prow bug.");
            1
        }
    }
}

/// A copy-mode failure, worded as upstream's: `read info '<src>': stat <src>: ...`.
#[derive(Debug, thiserror::Error)]
#[error("{what} '{}': {source}", path.display())]
pub struct CopyError {
    what: &'static str,
    path: PathBuf,
    source: PathError,
}

impl CopyError {
    fn new(what: &'static str, op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Self {
        let path = path.to_path_buf();
        move |e| CopyError {
            what,
            source: PathError::new(op, &path)(e),
            path,
        }
    }
}

/// Byte-for-byte copy keeping the permission bits (applied on creation, under the umask, as Go's
/// `os.WriteFile`), creating the destination's parent directories with 0755. Streams rather than
/// reading the whole binary into memory first.
fn copy_file(src: &Path, dst: &Path) -> Result<(), CopyError> {
    tracing::info!("src is {}", src.display());
    let meta = fs::metadata(src).map_err(CopyError::new("read info", "stat", src))?;
    let mut input = File::open(src).map_err(CopyError::new("read file", "open", src))?;
    let parent = match dst.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(parent)
        .map_err(CopyError::new("create dir", "mkdir", parent))?;
    let mut output = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(meta.permissions().mode() & 0o777)
        .open(dst)
        .map_err(CopyError::new("write file", "open", dst))?;
    io::copy(&mut input, &mut output).map_err(CopyError::new("write file", "write", dst))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

/// Upstream's `Options.Run`: execute, write the marker, pick the exit code.
pub fn run(o: &Options, sink: &LogSink) -> i32 {
    let stdout = io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map(File::from)
        .ok();
    run_with(o, sink, stdout, &register_signals)
}

/// [`run`] with the stdout and signal source supplied (tests use a file and injected events).
pub(crate) fn run_with(
    o: &Options,
    sink: &LogSink,
    stdout: Option<File>,
    register: &dyn Fn(Sender<Event>) -> io::Result<()>,
) -> i32 {
    let Executed { code, err } = execute_process(o, sink, stdout, register);
    // By now the log output is stdout (or still stderr if the tee never started), as upstream.
    if let Some(e) = err {
        tracing::error!(error = %e, "Error executing test process");
    }
    let marker = Path::new(&o.wrapper.marker_file);
    if let Err(e) = wrapper::write_marker(marker, &o.wrapper.container_name, code) {
        tracing::error!(error = %e, "Error writing exit code to marker file");
        return INTERNAL_ERROR_CODE;
    }
    if o.always_zero { 0 } else { code }
}

/// Hands SIGINT/SIGTERM to a thread that forwards them as events. The handlers stay installed
/// after the run, so later signals are not fatal, as upstream's `signal.Notify` stays
/// registered. Installing handlers (rather than blocking the signals) matters for the child:
/// exec resets caught signals to their defaults, while a blocked mask or an inherited SIG_IGN
/// would be passed on and make the child deaf to our SIGINT.
fn register_signals(tx: Sender<Event>) -> io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for raw in signals.forever() {
                if let Ok(sig) = Signal::try_from(raw) {
                    // Once the run is over nobody listens; the signal is swallowed.
                    let _ = tx.send(Event::Interrupt(sig));
                }
            }
        })?;
    Ok(())
}

/// Go's `syscall.Signal.String()` for the signals a child commonly dies of.
fn go_signal_name(s: Signal) -> &'static str {
    match s {
        Signal::SIGINT => "interrupt",
        Signal::SIGTERM => "terminated",
        Signal::SIGKILL => "killed",
        Signal::SIGHUP => "hangup",
        Signal::SIGQUIT => "quit",
        Signal::SIGABRT => "aborted",
        Signal::SIGSEGV => "segmentation fault",
        Signal::SIGBUS => "bus error",
        Signal::SIGFPE => "floating point exception",
        Signal::SIGILL => "illegal instruction",
        Signal::SIGPIPE => "broken pipe",
        Signal::SIGUSR1 => "user defined signal 1",
        Signal::SIGUSR2 => "user defined signal 2",
        Signal::SIGALRM => "alarm clock",
        other => other.as_str(),
    }
}

/// Where the child's output and entrypoint's own log lines go: stdout, then the process log
/// (Go's `io.MultiWriter(os.Stdout, processLogFile)`).
struct Output {
    stdout: Option<File>,
    log: Option<File>,
    /// The first write failure per destination, reported once the pump has stopped (logging
    /// from inside the lock would deadlock, since log lines come through here too).
    errors: Vec<String>,
}

impl Output {
    /// A destination that fails is dropped and the other keeps receiving data, so a closed
    /// stdout never stalls the child or truncates the process log.
    fn write_all(&mut self, buf: &[u8]) {
        for (name, dest) in [("stdout", &mut self.stdout), ("process log", &mut self.log)] {
            if let Some(f) = dest {
                if let Err(e) = f.write_all(buf) {
                    self.errors.push(format!("{name}: {e}"));
                    *dest = None;
                }
            }
        }
    }
}

impl Output {
    /// Reads the next `len` bytes of `src` into the process log only (they already reached
    /// stdout).
    fn finish_log_only(&mut self, mut src: &File, mut len: usize) {
        let mut buf = [0u8; 8192];
        while len > 0 {
            let want = len.min(buf.len());
            match src.read(&mut buf[..want]) {
                Ok(0) => return,
                Ok(n) => {
                    len -= n;
                    if let Some(f) = &mut self.log {
                        if let Err(e) = f.write_all(&buf[..n]) {
                            self.errors.push(format!("process log: {e}"));
                            self.log = None;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.errors.push(format!("reading output: {e}"));
                    return;
                }
            }
        }
    }
}

#[derive(Clone)]
struct SharedOutput(Arc<Mutex<Output>>);

impl SharedOutput {
    fn lock(&self) -> MutexGuard<'_, Output> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Write for SharedOutput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.lock().write_all(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Points the log sink at the tee for the duration of the run, then at stdout (upstream's
/// deferred `logrus.SetOutput(os.Stdout)`).
struct SinkGuard<'a> {
    sink: &'a LogSink,
    stdout: Option<File>,
}

impl Drop for SinkGuard<'_> {
    fn drop(&mut self) {
        match self.stdout.take() {
            Some(f) => self.sink.replace(f),
            None => self.sink.replace(io::sink()),
        };
    }
}

/// What `ExecuteProcess` returns: the marker code and, when something went wrong (including a
/// non-zero exit), upstream's error text for the "Error executing test process" line.
pub(crate) struct Executed {
    pub code: i32,
    pub err: Option<String>,
}

impl Executed {
    fn internal(err: impl fmt::Display) -> Self {
        Executed {
            code: INTERNAL_ERROR_CODE,
            err: Some(err.to_string()),
        }
    }
}

/// Upstream's `ExecuteProcess`: the code that goes into the marker, and what went wrong.
/// `register` hooks up SIGINT/SIGTERM to the event channel (tests inject events instead).
pub(crate) fn execute_process(
    o: &Options,
    sink: &LogSink,
    stdout: Option<File>,
    register: &dyn Fn(Sender<Event>) -> io::Result<()>,
) -> Executed {
    if !o.artifact_dir.is_empty() {
        if let Err(e) = fs::DirBuilder::new()
            .recursive(true)
            .mode(0o777)
            .create(&o.artifact_dir)
        {
            let e = PathError::new("mkdir", Path::new(&o.artifact_dir))(e);
            return Executed::internal(format!(
                "could not create artifact directory({}): {e}",
                o.artifact_dir
            ));
        }
    }
    let log_path = Path::new(&o.wrapper.process_log);
    let log = match File::create(log_path) {
        Ok(f) => f,
        Err(e) => {
            let e = PathError::new("open", log_path)(e);
            return Executed::internal(format!(
                "could not create process logfile({}): {e}",
                o.wrapper.process_log
            ));
        }
    };
    let restore_to = stdout.as_ref().and_then(|f| f.try_clone().ok());
    // The log is written on its own thread, fed through a pipe, so writing the file overlaps
    // delivering the output to stdout. Without a pipe or thread, it is written in line.
    let (log, writer) = match LogWriter::spawn(&log) {
        Ok((pipe, writer)) => (pipe, Some(writer)),
        Err(_) => (log, None),
    };
    let output = SharedOutput(Arc::new(Mutex::new(Output {
        stdout,
        log: Some(log),
        errors: Vec::new(),
    })));
    sink.replace(output.clone());
    let _restore = SinkGuard {
        sink,
        stdout: restore_to,
    };

    let (tx, rx) = mpsc::channel();
    if let Err(e) = register(tx.clone()) {
        tracing::warn!(error = %e, "Could not register for SIGINT and SIGTERM");
    }
    let executed = supervise(o, &output, &tx, &rx);
    let errors = std::mem::take(&mut output.lock().errors);
    for e in errors {
        tracing::warn!(error = %e, "Could not write process output");
    }
    if let Some(writer) = writer {
        // Closing our end lets the writer reach EOF; waiting for it means the process log is
        // complete before the marker is written.
        drop(output.lock().log.take());
        if let Some(e) = writer.finish() {
            tracing::warn!(error = %e, "Could not write process output");
        }
    }
    executed
}

/// The process log's writer thread and the file it owns.
struct LogWriter {
    handle: thread::JoinHandle<Option<String>>,
}

impl LogWriter {
    /// Starts the thread on a clone of `log`; returns the pipe to write the log through.
    fn spawn(log: &File) -> io::Result<(File, LogWriter)> {
        let log = log.try_clone()?;
        let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
        // As large as a pump round, so a round moves into it at once.
        let _ = fcntl(&write_end, FcntlArg::F_SETPIPE_SZ(ZERO_COPY_CHUNK as i32));
        let handle = thread::Builder::new()
            .name("process-log".into())
            .spawn(move || drain_into(File::from(read_end), log))?;
        Ok((File::from(write_end), LogWriter { handle }))
    }

    /// Waits for the writer; returns its first failure.
    fn finish(self) -> Option<String> {
        self.handle
            .join()
            .unwrap_or_else(|_| Some("process log: writer thread failed".into()))
    }
}

/// Moves everything from `src` into `log` until EOF: by splice(2), or by copying where the file
/// system refuses it. After a write failure the rest is read and dropped, so the pump never
/// blocks on a full pipe; the first failure is returned.
fn drain_into(src: File, mut log: File) -> Option<String> {
    let mut failed: Option<String> = None;
    let mut splicing = true;
    let mut buf = Vec::new();
    loop {
        if splicing && failed.is_none() {
            match splice(
                &src,
                None,
                &log,
                None,
                ZERO_COPY_CHUNK,
                SpliceFFlags::SPLICE_F_MOVE,
            ) {
                Ok(0) => return None,
                Ok(_) | Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(Errno::EINVAL | Errno::ENOSYS) => splicing = false,
                Err(e) => failed = Some(format!("process log: {}", io::Error::from(e))),
            }
            continue;
        }
        if buf.is_empty() {
            buf = vec![0u8; PUMP_BUFFER];
        }
        match (&src).read(&mut buf) {
            Ok(0) => return failed,
            Ok(n) => {
                if failed.is_none() {
                    if let Err(e) = log.write_all(&buf[..n]) {
                        failed = Some(format!("process log: {e}"));
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return failed.or(Some(format!("reading process log pipe: {e}"))),
        }
    }
}

/// Steps 5-7 of `ExecuteProcess`: previous marker, start, wait.
fn supervise(
    o: &Options,
    output: &SharedOutput,
    tx: &Sender<Event>,
    rx: &Receiver<Event>,
) -> Executed {
    if !o.previous_marker.is_empty() {
        let r = wait_for_previous(PathBuf::from(&o.previous_marker), tx, rx);
        if let Some(err) = r.err {
            return Executed::internal(format!(
                "wait for previous marker {}: {err}",
                o.previous_marker
            ));
        }
        if r.return_code != 0 {
            tracing::info!("Skipping as previous step exited {}", r.return_code);
            return Executed {
                code: PREVIOUS_ERROR_CODE,
                err: None,
            };
        }
    }

    let (read_end, write_end) = match pipe2(OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => {
            return Executed::internal(format!(
                "could not start the process: pipe: {}",
                io::Error::from(e)
            ));
        }
    };
    let child = match start(&o.wrapper.args, write_end) {
        Ok(c) => c,
        Err(e) => {
            // Upstream writes this to the process log only, with no newline.
            let text = format!("could not start the process: {e}");
            let mut out = output.lock();
            if let Some(log) = &mut out.log {
                if let Err(e) = log.write_all(text.as_bytes()) {
                    return Executed::internal(format!("{text}, {e}"));
                }
            }
            return Executed::internal(text);
        }
    };
    let started = Instant::now();
    let child = Supervised {
        pid: Pid::from_raw(child.id() as i32),
        state: Arc::default(),
    }
    .watch(child, read_end, output.clone(), tx.clone());
    let child = match child {
        Ok(c) => c,
        Err(e) => return Executed::internal(format!("could not start the output threads: {e}")),
    };

    let timeout = o.effective_timeout();
    let deadline = started.checked_add(Duration::from_nanos(timeout.max(0) as u64));
    let grace = o.effective_grace_period();
    loop {
        let event = match deadline {
            Some(d) => rx.recv_timeout(d.saturating_duration_since(Instant::now())),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match event {
            Ok(Event::Exited) => {
                let code = child.code();
                return Executed {
                    code,
                    // Go's ExitError text: "exit status 12", "signal: killed".
                    err: (code != 0)
                        .then(|| format!("wrapped process failed: {}", child.state_text())),
                };
            }
            Ok(Event::Interrupt(sig)) => {
                tracing::error!("Entrypoint received interrupt: {}", go_signal_name(sig));
                child.gracefully_terminate(Some(sig), grace, rx);
                return Executed {
                    code: if o.propagate_error_code {
                        child.code()
                    } else {
                        ABORTED_ERROR_CODE
                    },
                    err: Some("process aborted".into()),
                };
            }
            Ok(Event::PreviousMarker(_)) => continue,
            // We hold a sender, so the channel cannot disconnect; treat it as the timeout.
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                tracing::error!(
                    "Process did not finish before {} timeout",
                    duration::format(timeout)
                );
                child.gracefully_terminate(None, grace, rx);
                return Executed {
                    code: if o.propagate_error_code {
                        child.code()
                    } else {
                        INTERNAL_ERROR_CODE
                    },
                    err: Some("process timed out".into()),
                };
            }
        }
    }
}

/// Waits for `previous_marker` on a helper thread; the first SIGINT/SIGTERM cancels the wait.
fn wait_for_previous(path: PathBuf, tx: &Sender<Event>, rx: &Receiver<Event>) -> MarkerResult {
    let cancel = Arc::new(AtomicBool::new(false));
    let (c, t) = (cancel.clone(), tx.clone());
    let spawned = thread::Builder::new()
        .name("previous-marker".into())
        .spawn(move || {
            let r = wrapper::wait_for_markers(&[path], &c);
            let r = r.into_iter().next().unwrap_or(MarkerResult {
                return_code: -1,
                err: Some("no result".into()),
            });
            let _ = t.send(Event::PreviousMarker(r));
        });
    if let Err(e) = spawned {
        return MarkerResult {
            return_code: -1,
            err: Some(format!("could not start the marker watcher: {e}")),
        };
    }
    loop {
        match rx.recv() {
            Ok(Event::PreviousMarker(r)) => return r,
            Ok(Event::Interrupt(sig)) => {
                tracing::error!("Received interrupt {}, cancelling...", go_signal_name(sig));
                cancel.store(true, Ordering::SeqCst);
            }
            Ok(Event::Exited) => continue,
            // Unreachable while the caller holds a sender; report it as a cancelled wait.
            Err(_) => {
                return MarkerResult {
                    return_code: -1,
                    err: Some("cancelled: context canceled".into()),
                };
            }
        }
    }
}

/// Why the child could not be started, in Go's words.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StartError(String);

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Go's `exec.LookPath` on Unix: a name with a slash is used as is; otherwise the first
/// `$PATH` entry holding a non-directory with an execute bit, refusing a relative result
/// (Go's `ErrDot`).
fn look_path(name: &str, path_var: Option<&str>) -> Result<PathBuf, StartError> {
    if name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    for dir in path_var.unwrap_or("").split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(name);
        let executable = fs::metadata(&candidate)
            .is_ok_and(|m| !m.is_dir() && m.permissions().mode() & 0o111 != 0);
        if executable {
            if candidate.is_absolute() {
                return Ok(candidate);
            }
            return Err(StartError(format!(
                "exec: {name:?}: cannot run executable found relative to current directory"
            )));
        }
    }
    Err(StartError(format!(
        "exec: {name:?}: executable file not found in $PATH"
    )))
}

/// Starts `args` with stdin from /dev/null and stdout+stderr on `out`, inheriting the
/// environment, working directory and process group, as upstream.
fn start(args: &[String], out: OwnedFd) -> Result<Child, StartError> {
    let Some((name, rest)) = args.split_first() else {
        return Err(StartError("exec: no command".into()));
    };
    let path = look_path(name, pod_utils::env::lookup("PATH").as_deref())?;
    let fork_exec = |e: io::Error| {
        StartError(format!(
            "fork/exec {}: {}",
            path.display(),
            go_errno_text(&e)
        ))
    };
    let err_out = out.try_clone().map_err(fork_exec)?;
    // The Command owns the pipe's write end; it is dropped (closed in this process) on return,
    // so EOF on the read end means every writer has gone.
    let mut cmd = Command::new(&path);
    cmd.arg0(name)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err_out));
    // A pre-exec hook makes std fork and exec, reporting an exec error through a close-on-exec
    // pipe, instead of glibc's posix_spawn, which reports it through memory shared with a
    // vfork child: qemu-user emulates vfork as fork, so that error was lost and the test
    // seemed to exit 127 ("exit status 127" instead of "fork/exec ...: no such file").
    // SAFETY: the hook does nothing, so it cannot break the post-fork async-signal-safety rules.
    unsafe {
        cmd.pre_exec(|| Ok(()));
    }
    cmd.spawn().map_err(fork_exec)
}

/// Copies the child's output into `output` until EOF: zero-copy while that works, then through
/// one fixed buffer.
fn pump(src: File, output: SharedOutput) {
    if let ZeroCopy::Eof = pump_zero_copy(&src, &output) {
        return;
    }
    pump_copy(src, output);
}

/// How far the zero-copy pump got.
enum ZeroCopy {
    /// All output was delivered.
    Eof,
    /// Not possible (stdout is not a pipe, the file system refuses splice) or a destination
    /// failed; nothing is pending, the copying pump carries on.
    Fallback,
}

/// Largest slice moved per tee/splice round; the pipe is enlarged to match.
const ZERO_COPY_CHUNK: usize = 1 << 20;

/// The fast path when stdout is a pipe (as a container's is): tee(2) duplicates the pipe's
/// pages into stdout and splice(2) moves the same bytes into the process log writer's pipe, so
/// the data never enters user space. Each round runs under the output lock, as a chunk of the
/// copying pump does, so log lines still land between chunks.
fn pump_zero_copy(src: &File, output: &SharedOutput) -> ZeroCopy {
    // A larger pipe means fewer rounds; failing to grow it only costs speed.
    let _ = fcntl(src, FcntlArg::F_SETPIPE_SZ(ZERO_COPY_CHUNK as i32));
    // So does a larger stdout pipe: the reader takes a whole round at once instead of the
    // default 64 KiB, while the log writer thread puts the same round into the file.
    if let Some(stdout) = &output.lock().stdout {
        let _ = fcntl(stdout, FcntlArg::F_SETPIPE_SZ(ZERO_COPY_CHUNK as i32));
    }
    loop {
        // Wait for data (or EOF) without holding the lock, so log lines are not held up.
        let mut fds = [PollFd::new(src.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return ZeroCopy::Fallback,
        }
        let mut out = output.lock();
        let out = &mut *out;
        let (Some(stdout), Some(log)) = (&out.stdout, &out.log) else {
            return ZeroCopy::Fallback;
        };
        let n = match tee(src, stdout, ZERO_COPY_CHUNK, SpliceFFlags::empty()) {
            Ok(0) => return ZeroCopy::Eof,
            Ok(n) => n,
            Err(Errno::EINTR | Errno::EAGAIN) => continue,
            // Nothing was duplicated. EINVAL: not pipes; ENOSYS: e.g. an emulator without
            // tee(2); anything but a broken stdout is left for the copying pump to meet.
            Err(Errno::EPIPE) => {
                out.errors
                    .push(format!("stdout: {}", io::Error::from(Errno::EPIPE)));
                out.stdout = None;
                return ZeroCopy::Fallback;
            }
            Err(_) => return ZeroCopy::Fallback,
        };
        let mut left = n;
        while left > 0 {
            match splice(src, None, log, None, left, SpliceFFlags::SPLICE_F_MOVE) {
                Ok(0) => break,
                Ok(k) => left -= k,
                Err(Errno::EINTR | Errno::EAGAIN) => continue,
                Err(_) => {
                    // These bytes already went to stdout: hand them to the log by copying,
                    // then let the copying pump take over.
                    out.finish_log_only(src, left);
                    return ZeroCopy::Fallback;
                }
            }
        }
    }
}

/// The copying pump: one fixed buffer, read then write to each destination.
fn pump_copy(mut src: File, output: SharedOutput) {
    let mut buf = vec![0u8; PUMP_BUFFER];
    loop {
        match src.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => output.lock().write_all(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                output.lock().errors.push(format!("reading output: {e}"));
                return;
            }
        }
    }
}

/// The running child as the run loop sees it: its PID and, once reaped, how it ended.
struct Supervised {
    pid: Pid,
    /// Go's `ProcessState`: set when the child is reaped.
    state: Arc<Mutex<Option<ExitStatus>>>,
}

impl Supervised {
    /// Starts the pump and the waiter; the waiter sends [`Event::Exited`] once the child is
    /// reaped AND its output reached EOF, as Go's `cmd.Wait`.
    fn watch(
        self,
        mut child: Child,
        read_end: OwnedFd,
        output: SharedOutput,
        tx: Sender<Event>,
    ) -> io::Result<Self> {
        let pump = thread::Builder::new()
            .name("output".into())
            .spawn(move || pump(File::from(read_end), output))?;
        let slot = self.state.clone();
        thread::Builder::new().name("wait".into()).spawn(move || {
            // wait() only fails for a child that is not ours; it then stays "not reaped" (-1).
            if let Ok(status) = child.wait() {
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(status);
            }
            let _ = pump.join();
            let _ = tx.send(Event::Exited);
        })?;
        Ok(self)
    }

    fn state(&self) -> Option<ExitStatus> {
        *self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The code for the marker (Go's `ExitCode()`): the exit status, or -1 if killed by a
    /// signal or not reaped.
    fn code(&self) -> i32 {
        self.state().and_then(|s| s.code()).unwrap_or(-1)
    }

    /// Go's `ProcessState.String()`: `exit status 12`, `signal: killed`.
    fn state_text(&self) -> String {
        match self.state() {
            None => "process not reaped".into(),
            Some(s) => match (s.code(), s.signal()) {
                (Some(c), _) => format!("exit status {c}"),
                (None, Some(n)) => {
                    let name = Signal::try_from(n)
                        .map(go_signal_name)
                        .map(str::to_string)
                        .unwrap_or_else(|_| format!("signal {n}"));
                    let core = if s.core_dumped() {
                        " (core dumped)"
                    } else {
                        ""
                    };
                    format!("signal: {name}{core}")
                }
                (None, None) => s.to_string(),
            },
        }
    }

    /// Signals the child's PID only (no process group, as upstream). A child already reaped is
    /// left alone, so a reused PID is never hit; that is not worth a log line (upstream logs Go's
    /// "process already finished" when it loses that race).
    fn signal(&self, sig: Signal, what: &str) {
        if self.state().is_some() {
            return;
        }
        if let Err(e) = kill(self.pid, sig) {
            tracing::error!(error = %io::Error::from(e), "{what}");
        }
    }

    /// Upstream's `gracefullyTerminate`: SIGINT (plus the received signal, if any), then up to
    /// `grace` for the child to finish, then SIGKILL without waiting further.
    fn gracefully_terminate(&self, received: Option<Signal>, grace: i64, rx: &Receiver<Event>) {
        self.signal(Signal::SIGINT, "Could not interrupt process after timeout");
        if let Some(sig) = received {
            let what = format!(
                "Could not send signal {} to process after timeout",
                go_signal_name(sig)
            );
            self.signal(sig, &what);
        }
        let deadline = Instant::now().checked_add(Duration::from_nanos(grace.max(0) as u64));
        loop {
            let event = match deadline {
                Some(d) => rx.recv_timeout(d.saturating_duration_since(Instant::now())),
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match event {
                Ok(Event::Exited) => {
                    // Upstream logs this at error level too.
                    tracing::error!(
                        "Process gracefully exited before {} grace period",
                        duration::format(grace)
                    );
                    return;
                }
                // Later signals are swallowed, as upstream.
                Ok(Event::Interrupt(_) | Event::PreviousMarker(_)) => continue,
                Err(_) => {
                    tracing::error!(
                        "Process did not exit before {} grace period",
                        duration::format(grace)
                    );
                    self.signal(Signal::SIGKILL, "Could not kill process after grace period");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pod_utils::logging::JsonLayer;
    use serde_json::Value;
    use tracing_subscriber::layer::SubscriberExt;

    /// One upstream `TestOptions_Run` case in a temp dir.
    struct Case {
        dir: tempfile::TempDir,
        opts: Options,
        /// Deliver the interrupt only once the child created `ready` (so its traps are set).
        wait_ready: bool,
    }

    struct Outcome {
        code: i32,
        /// The process log, split into child text and parsed entrypoint log lines.
        log: String,
        stdout: String,
        stderr: String,
        marker: Option<String>,
    }

    impl Outcome {
        /// The `msg`s of entrypoint's own JSON lines in the process log, with their levels.
        fn messages(&self) -> Vec<(String, String)> {
            self.log
                .lines()
                .filter(|l| l.starts_with('{'))
                .map(|l| {
                    let v: Value = serde_json::from_str(l).expect("JSON log line");
                    assert_eq!(v["component"], "entrypoint");
                    (
                        v["level"].as_str().unwrap().to_string(),
                        v["msg"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        }

        /// The error of the "Error executing test process" line, which upstream logs after the
        /// tee is gone (on stdout, or stderr if the tee never started).
        fn execute_error(&self) -> Option<String> {
            let lines = self.stdout.lines().chain(self.stderr.lines());
            let found: Vec<String> = lines
                .filter(|l| l.starts_with('{'))
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .filter(|v| v["msg"] == "Error executing test process")
                .map(|v| v["error"].as_str().unwrap().to_string())
                .collect();
            assert!(found.len() <= 1, "{found:?}");
            found.into_iter().next()
        }

        /// The process log without entrypoint's own lines.
        fn child_output(&self) -> String {
            self.log
                .split_inclusive('\n')
                .filter(|l| !l.starts_with('{'))
                .collect()
        }
    }

    fn case(args: &[&str]) -> Case {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = Options {
            timeout: duration::parse("10s").unwrap(),
            grace_period: duration::parse("1s").unwrap(),
            ..Options::default()
        };
        opts.wrapper.args = args.iter().map(|s| s.to_string()).collect();
        opts.wrapper.process_log = dir.path().join("process-log.txt").display().to_string();
        opts.wrapper.marker_file = dir.path().join("marker-file.txt").display().to_string();
        Case {
            dir,
            opts,
            wait_ready: false,
        }
    }

    impl Case {
        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn run(&self) -> Outcome {
            self.run_interrupted(None)
        }

        /// Runs with `interrupt` delivered (as an event, and so to the child by entrypoint)
        /// after the given delay.
        fn run_interrupted(&self, interrupt: Option<(u64, Signal)>) -> Outcome {
            let stderr_path = self.path("stderr");
            let sink = LogSink::new(File::create(&stderr_path).unwrap());
            let layer = JsonLayer {
                component: "entrypoint",
                sink: sink.clone(),
            };
            let stdout_path = self.path("stdout");
            let stdout = File::create(&stdout_path).unwrap();
            let ready = self.wait_ready.then(|| self.path("ready"));
            let register = move |tx: Sender<Event>| -> io::Result<()> {
                if let Some((ms, sig)) = interrupt {
                    let ready = ready.clone();
                    thread::spawn(move || {
                        thread::sleep(Duration::from_millis(ms));
                        let start = Instant::now();
                        while ready.as_ref().is_some_and(|r| !r.exists())
                            && start.elapsed() < Duration::from_secs(10)
                        {
                            thread::sleep(Duration::from_millis(10));
                        }
                        let _ = tx.send(Event::Interrupt(sig));
                    });
                }
                Ok(())
            };
            let subscriber = tracing_subscriber::registry().with(layer);
            let code = tracing::subscriber::with_default(subscriber, || {
                run_with(&self.opts, &sink, Some(stdout), &register)
            });
            Outcome {
                code,
                log: fs::read_to_string(&self.opts.wrapper.process_log).unwrap_or_default(),
                stdout: fs::read_to_string(stdout_path).unwrap(),
                stderr: fs::read_to_string(stderr_path).unwrap(),
                marker: fs::read_to_string(&self.opts.wrapper.marker_file).ok(),
            }
        }
    }

    fn msg(level: &str, m: &str) -> (String, String) {
        (level.to_string(), m.to_string())
    }

    #[test]
    fn success() {
        let out = case(&["true"]).run();
        assert_eq!(out.code, 0);
        assert_eq!(out.log, "");
        assert_eq!(out.marker.as_deref(), Some("0"));
        assert_eq!(out.execute_error(), None);
    }

    #[test]
    fn output_is_captured_in_the_log_and_stdout() {
        let out = case(&["sh", "-c", "echo test; echo err >&2"]).run();
        assert_eq!(out.code, 0);
        assert_eq!(out.log, "test\nerr\n");
        assert_eq!(out.stdout, out.log);
        assert_eq!(out.marker.as_deref(), Some("0"));
    }

    #[test]
    fn failure_code_is_recorded() {
        let out = case(&["sh", "-c", "exit 12"]).run();
        assert_eq!((out.code, out.marker.as_deref()), (12, Some("12")));
        let out = case(&["sh", "-c", "echo test; exit 12"]).run();
        assert_eq!((out.code, out.marker.as_deref()), (12, Some("12")));
        assert_eq!(out.log, "test\n");
        assert_eq!(
            out.execute_error().as_deref(),
            Some("wrapped process failed: exit status 12")
        );
    }

    #[test]
    fn zero_copy_to_a_stdout_pipe_delivers_everything() {
        let c = case(&[
            "sh",
            "-c",
            "i=0; while [ $i -lt 3000 ]; do echo line $i of some build output; i=$((i+1)); done",
        ]);
        let (r, w) = pipe2(OFlag::O_CLOEXEC).unwrap();
        let reader = thread::spawn(move || {
            let mut got = String::new();
            File::from(r).read_to_string(&mut got).unwrap();
            got
        });
        let sink = LogSink::new(io::sink());
        let code = run_with(&c.opts, &sink, Some(File::from(w)), &|_| Ok(()));
        assert_eq!(code, 0);
        // The sink keeps a handle on stdout for later lines; let the reader see EOF.
        drop(sink);
        let log = fs::read_to_string(&c.opts.wrapper.process_log).unwrap();
        assert_eq!(log.lines().count(), 3000);
        assert!(log.ends_with("line 2999 of some build output\n"));
        assert_eq!(reader.join().unwrap(), log);
    }

    #[test]
    fn killed_by_a_signal_is_minus_one() {
        let out = case(&["sh", "-c", "kill -9 $$"]).run();
        assert_eq!((out.code, out.marker.as_deref()), (-1, Some("-1")));
        assert_eq!(
            out.execute_error().as_deref(),
            Some("wrapped process failed: signal: killed")
        );
    }

    #[test]
    fn waits_for_output_eof_like_go() {
        // A grandchild holding stdout keeps entrypoint waiting, as Go's cmd.Wait does.
        let out = case(&["sh", "-c", "(sleep 0.3; echo late) & echo early"]).run();
        assert_eq!(out.code, 0);
        assert_eq!(out.log, "early\nlate\n");
    }

    #[test]
    fn timeout_with_graceful_exit() {
        let mut c = case(&["sleep", "5"]);
        c.opts.timeout = duration::SECOND;
        let start = Instant::now();
        let out = c.run();
        assert!(start.elapsed() < Duration::from_secs(3));
        assert_eq!((out.code, out.marker.as_deref()), (127, Some("127")));
        assert_eq!(
            out.messages(),
            [
                msg("error", "Process did not finish before 1s timeout"),
                msg("error", "Process gracefully exited before 1s grace period"),
            ]
        );
        // Entrypoint's own lines also reach stdout; the error line comes after the tee.
        assert!(out.stdout.starts_with(&out.log));
        assert_eq!(out.execute_error().as_deref(), Some("process timed out"));
    }

    #[test]
    fn timeout_with_child_ignoring_sigint() {
        let mut c = case(&["sh", "-c", "trap '' INT; sleep 5 >/dev/null"]);
        c.opts.timeout = duration::SECOND;
        let start = Instant::now();
        let out = c.run();
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "{:?}",
            start.elapsed()
        );
        assert_eq!((out.code, out.marker.as_deref()), (127, Some("127")));
        assert_eq!(
            out.messages(),
            [
                msg("error", "Process did not finish before 1s timeout"),
                msg("error", "Process did not exit before 1s grace period"),
            ]
        );
    }

    #[test]
    fn timeout_with_propagation_uses_the_childs_code() {
        let mut c = case(&[
            "sh",
            "-c",
            "trap 'kill $!; exit 4' INT; sleep 5 >/dev/null 2>&1 & wait",
        ]);
        c.opts.timeout = duration::SECOND / 2;
        c.opts.propagate_error_code = true;
        let out = c.run();
        assert_eq!((out.code, out.marker.as_deref()), (4, Some("4")));
        // Killed after the grace period and never reaped in time: -1.
        let mut c = case(&["sh", "-c", "trap '' INT; sleep 5 >/dev/null"]);
        c.opts.timeout = duration::SECOND / 2;
        c.opts.grace_period = duration::SECOND / 2;
        c.opts.propagate_error_code = true;
        let out = c.run();
        assert_eq!((out.code, out.marker.as_deref()), (-1, Some("-1")));
    }

    #[test]
    fn path_passes_through() {
        let out = case(&["sh", "-c", "echo $PATH"]).run();
        let path = std::env::var("PATH").unwrap();
        assert_eq!(out.log, format!("{path}\n"));
    }

    #[test]
    fn always_zero_keeps_the_marker_code() {
        let mut c = case(&["sh", "-c", "exit 7"]);
        c.opts.always_zero = true;
        let out = c.run();
        assert_eq!((out.code, out.marker.as_deref()), (0, Some("7")));
    }

    #[test]
    fn marker_write_failure_is_127_even_with_always_zero() {
        let mut c = case(&["true"]);
        c.opts.always_zero = true;
        c.opts.wrapper.marker_file = c.path("missing/marker").display().to_string();
        let out = c.run();
        assert_eq!((out.code, out.marker), (127, None));
    }

    #[test]
    fn previous_failure_skips_the_command() {
        let mut c = case(&["touch", "ran"]);
        fs::write(c.path("previous"), "9").unwrap();
        c.opts.previous_marker = c.path("previous").display().to_string();
        c.opts.wrapper.args[1] = c.path("ran").display().to_string();
        let out = c.run();
        assert_eq!((out.code, out.marker.as_deref()), (1130, Some("1130")));
        assert_eq!(
            out.messages(),
            [msg("info", "Skipping as previous step exited 9")]
        );
        assert!(!c.path("ran").exists());
    }

    #[test]
    fn previous_success_runs_the_command() {
        for (args, want) in [(["sh", "-c", "exit 0"], 0), (["sh", "-c", "exit 3"], 3)] {
            let mut c = case(&args);
            fs::write(c.path("previous"), "0").unwrap();
            c.opts.previous_marker = c.path("previous").display().to_string();
            let out = c.run();
            assert_eq!(out.code, want);
            assert_eq!(out.marker, Some(want.to_string()));
        }
    }

    #[test]
    fn previous_marker_written_later_is_waited_for() {
        let mut c = case(&["sh", "-c", "exit 5"]);
        let previous = c.path("previous");
        c.opts.previous_marker = previous.display().to_string();
        let writer = thread::spawn(move || {
            thread::sleep(Duration::from_millis(200));
            wrapper::write_marker(&previous, "first", 0).unwrap();
        });
        let out = c.run();
        writer.join().unwrap();
        assert_eq!(out.code, 5);
    }

    #[test]
    fn interrupt_cancels_the_previous_marker_wait() {
        let mut c = case(&["true"]);
        c.opts.previous_marker = c.path("never").display().to_string();
        let out = c.run_interrupted(Some((100, Signal::SIGINT)));
        assert_eq!((out.code, out.marker.as_deref()), (127, Some("127")));
        let msgs = out.messages();
        assert_eq!(
            msgs[0],
            msg("error", "Received interrupt interrupt, cancelling...")
        );
        assert_eq!(msgs.len(), 1);
        assert_eq!(
            out.execute_error(),
            Some(format!(
                "wait for previous marker {}: cancelled: context canceled",
                c.opts.previous_marker
            ))
        );
    }

    #[test]
    fn sigterm_with_and_without_propagation() {
        for (propagate, want) in [(true, 3), (false, 130)] {
            let mut c = case(&["sh", "-c", ""]);
            let script = format!(
                "trap 'kill $!; exit 3' INT TERM; sleep 10 >/dev/null 2>&1 & touch {}; wait",
                c.path("ready").display()
            );
            c.opts.wrapper.args[2] = script;
            c.wait_ready = true;
            c.opts.grace_period = 0;
            c.opts.propagate_error_code = propagate;
            let out = c.run_interrupted(Some((300, Signal::SIGTERM)));
            assert_eq!(out.code, want, "propagate={propagate}");
            assert_eq!(out.execute_error().as_deref(), Some("process aborted"));
            assert_eq!(out.marker, Some(want.to_string()));
            assert_eq!(
                out.messages(),
                [
                    msg("error", "Entrypoint received interrupt: terminated"),
                    msg("error", "Process gracefully exited before 15s grace period"),
                ]
            );
        }
    }

    #[test]
    fn start_error_text_has_no_newline() {
        let out = case(&["./this-command-does-not-exist"]).run();
        assert_eq!((out.code, out.marker.as_deref()), (127, Some("127")));
        assert_eq!(
            out.log,
            "could not start the process: fork/exec ./this-command-does-not-exist: no such file or directory"
        );
        // Upstream writes it to the process log only.
        assert!(out.stdout.lines().all(|l| l.starts_with('{')));
        assert_eq!(
            out.execute_error().as_deref(),
            Some(
                "could not start the process: fork/exec ./this-command-does-not-exist: no such file or directory"
            )
        );
        let out = case(&["this-command-does-not-exist"]).run();
        assert_eq!(
            out.child_output(),
            r#"could not start the process: exec: "this-command-does-not-exist": executable file not found in $PATH"#
        );
    }

    #[test]
    fn a_file_that_is_not_executable_is_a_start_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("script.sh");
        fs::write(&file, "#!/bin/sh\necho never\n").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        let file = file.display().to_string();
        let out = case(&[&file]).run();
        assert_eq!((out.code, out.marker.as_deref()), (127, Some("127")));
        let want = format!("could not start the process: fork/exec {file}: permission denied");
        assert_eq!(out.log, want);
        assert_eq!(out.execute_error().as_deref(), Some(want.as_str()));
    }

    #[test]
    fn look_path_follows_go() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("tool");
        fs::write(&exe, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&exe, fs::Permissions::from_mode(0o644)).unwrap();
        let path_var = dir.path().display().to_string();
        // Not executable: skipped.
        assert!(look_path("tool", Some(&path_var)).is_err());
        fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(look_path("tool", Some(&path_var)).unwrap(), exe);
        assert_eq!(look_path("a/b", None).unwrap(), PathBuf::from("a/b"));
        assert_eq!(
            look_path("sh", Some("relative-dir-that-does-not-exist:bin-nope")),
            Err(StartError(
                r#"exec: "sh": executable file not found in $PATH"#.into()
            ))
        );
    }

    #[test]
    fn artifact_dir_is_created() {
        let mut c = case(&["true"]);
        c.opts.artifact_dir = c.path("a/b/artifacts").display().to_string();
        assert_eq!(c.run().code, 0);
        assert!(c.path("a/b/artifacts").is_dir());
    }

    #[test]
    fn artifact_dir_failure_is_127_without_a_process_log() {
        let mut c = case(&["true"]);
        fs::write(c.path("file"), "").unwrap();
        c.opts.artifact_dir = c.path("file/artifacts").display().to_string();
        let out = c.run();
        assert_eq!((out.code, out.marker.as_deref()), (127, Some("127")));
        assert!(!c.path("process-log.txt").exists());
        // Logged before any tee: on stderr.
        assert_eq!(
            out.execute_error(),
            Some(format!(
                "could not create artifact directory({0}): mkdir {0}: not a directory",
                c.opts.artifact_dir
            ))
        );
        assert!(out.stderr.contains("Error executing test process"));
    }

    #[test]
    fn process_log_failure_is_127() {
        let mut c = case(&["true"]);
        c.opts.wrapper.process_log = c.path("missing/log").display().to_string();
        let out = c.run();
        assert_eq!((out.code, out.marker.as_deref()), (127, Some("127")));
    }

    #[test]
    fn copy_keeps_content_and_mode_and_creates_the_parent() {
        for mode in [0o644, 0o755] {
            let dir = tempfile::tempdir().unwrap();
            let src = dir.path().join("src");
            fs::write(&src, b"\x7fELF binary\x00bytes").unwrap();
            fs::set_permissions(&src, fs::Permissions::from_mode(mode)).unwrap();
            let dst = dir.path().join("tools/sub/entrypoint");
            copy_file(&src, &dst).unwrap();
            assert_eq!(fs::read(&dst).unwrap(), fs::read(&src).unwrap());
            let got = fs::metadata(&dst).unwrap().permissions().mode() & 0o777;
            assert_eq!(got, mode);
        }
    }

    #[test]
    fn log_writer_delivers_every_byte_in_order_before_finish_returns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("process-log.txt");
        let log = File::create(&path).unwrap();
        let (mut pipe, writer) = LogWriter::spawn(&log).unwrap();
        let mut want = Vec::new();
        for i in 0..20_000 {
            let line = format!("line {i} of the test's output\n");
            pipe.write_all(line.as_bytes()).unwrap();
            want.extend_from_slice(line.as_bytes());
        }
        drop(pipe);
        assert_eq!(writer.finish(), None);
        assert_eq!(fs::read(&path).unwrap(), want);
    }

    #[test]
    fn log_writer_failure_is_reported_and_the_pipe_still_drains() {
        // /dev/full refuses every write with ENOSPC; the writer must keep reading, or this
        // test's writes (more than a pipe holds) would block forever.
        let full = fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let (mut pipe, writer) = LogWriter::spawn(&full).unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..64 {
            pipe.write_all(&chunk).unwrap();
        }
        drop(pipe);
        let err = writer.finish().expect("a write failure");
        assert!(err.starts_with("process log: "), "{err}");
    }

    #[test]
    fn copy_errors_read_like_go() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("missing");
        let err = copy_file(&src, &dir.path().join("dst")).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "read info '{0}': stat {0}: no such file or directory",
                src.display()
            )
        );
    }
}
