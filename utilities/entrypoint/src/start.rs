/*!
Starting the test command (Go's `exec.Command(...).Start()`): `$PATH` lookup as Go's
`exec.LookPath`, and start errors worded as Go's (`fork/exec /x: permission denied`).
*/

use std::fmt;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use pod_utils::wrapper::go_errno_text;

/// Why the child could not be started, in Go's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StartError(String);

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
pub(crate) fn start(args: &[String], out: OwnedFd) -> Result<Child, StartError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::case;

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
    fn path_passes_through() {
        let out = case(&["sh", "-c", "echo $PATH"]).run();
        let path = std::env::var("PATH").unwrap();
        assert_eq!(out.log, format!("{path}\n"));
    }
}
