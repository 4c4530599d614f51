/*!
The output pump: one thread streams the child's output into stdout and the process log, with
tee(2)/splice(2) when stdout is a pipe (the data never enters user space), else through one
fixed buffer. The log side goes through a pipe to a writer thread, so writing the file overlaps
delivering stdout.
*/

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, splice, tee};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::unistd::pipe2;

/// Read size of the output pump. 128 KiB matches what coreutils' `cat` uses, large enough that
/// the per-chunk lock and two writes vanish next to the copying itself.
const PUMP_BUFFER: usize = 128 * 1024;

/// Where the child's output and entrypoint's own log lines go: stdout, then the process log
/// (Go's `io.MultiWriter(os.Stdout, processLogFile)`).
pub(crate) struct Output {
    stdout: Option<File>,
    pub(crate) log: Option<File>,
    /// The first write failure per destination, reported once the pump has stopped (logging
    /// from inside the lock would deadlock, since log lines come through here too).
    pub(crate) errors: Vec<String>,
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
pub(crate) struct SharedOutput(Arc<Mutex<Output>>);

impl SharedOutput {
    /// Nothing failed yet; `log` is the process log (or the pipe to its writer).
    pub(crate) fn new(stdout: Option<File>, log: File) -> Self {
        SharedOutput(Arc::new(Mutex::new(Output {
            stdout,
            log: Some(log),
            errors: Vec::new(),
        })))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Output> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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

/// Copies the child's output into `output` until EOF: zero-copy while that works, then through
/// one fixed buffer.
pub(crate) fn pump(src: File, output: SharedOutput) {
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

/// The process log's writer thread and the file it owns.
pub(crate) struct LogWriter {
    handle: thread::JoinHandle<Option<String>>,
}

impl LogWriter {
    /// Starts the thread on a clone of `log`; returns the pipe to write the log through.
    pub(crate) fn spawn(log: &File) -> io::Result<(File, LogWriter)> {
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
    pub(crate) fn finish(self) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::run_with;
    use crate::testing::case;
    use pod_utils::logging::LogSink;
    use std::fs;

    #[test]
    fn output_is_captured_in_the_log_and_stdout() {
        let out = case(&["sh", "-c", "echo test; echo err >&2"]).run();
        assert_eq!(out.code, 0);
        assert_eq!(out.log, "test\nerr\n");
        assert_eq!(out.stdout, out.log);
        assert_eq!(out.marker.as_deref(), Some("0"));
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
}
