/*!
Runs a probe and collects what a user could see of it: exit status, stdout, stderr.
*/

use std::process::Stdio;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::build;
use crate::probe::Probe;
use crate::runner::Runner;

/// What one run showed, before normalisation.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Observation {
    /// Exit code, or `signal N` when the process died from a signal.
    pub exit: String,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `probe` with a clean environment (only PATH, and the probe's own variables).
pub fn run(runner: &Runner, probe: &Probe) -> Result<Observation> {
    let bin = build::binary(runner.arch, probe.utility);
    let mut cmd = runner.command(&bin)?;
    cmd.args(&probe.args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(probe.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null());
    let out = cmd
        .output()
        .with_context(|| format!("could not run {} for {}", bin.display(), runner.arch))?;
    Ok(Observation {
        exit: exit_text(&out.status),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

pub fn exit_text(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c.to_string(),
        (None, Some(s)) => format!("signal {s}"),
        _ => "unknown".to_string(),
    }
}
