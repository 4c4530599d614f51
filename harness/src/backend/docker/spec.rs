/*!
The pure half of the Docker backend: how the emulation mode is chosen, how a pod container
becomes a container's entrypoint, command and environment in each mode, how Docker's exit codes
map back to the qemu backend's exit texts, and how the backend names and labels what it creates.
No I/O but reading one binfmt_misc entry.
*/

use std::path::Path;

use serde_json::Value;

use crate::pod::{Container, Endpoints};

/// The label every container and network the backend creates carries; its value is the run id.
pub const LABEL: &str = "tetrapod.lab";

/// Where the host's static qemu is bind-mounted when the kernel cannot run the arch by itself.
pub const EMULATOR_PATH: &str = "/tetrapod/qemu";

/// How a foreign-arch container's binaries are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The host's arch.
    Native,
    /// binfmt_misc runs them, with the interpreter opened at registration (flag F), so it also
    /// works inside containers, whose file systems have no qemu.
    Binfmt,
    /// The host's static qemu is mounted into each container and put in front of its process
    /// and of the test command entrypoint starts.
    Explicit,
}

impl Mode {
    pub fn describe(self) -> &'static str {
        match self {
            Mode::Native => "native",
            Mode::Binfmt => "binfmt_misc (flag F) runs the foreign binaries",
            Mode::Explicit => "explicit emulator: the host's qemu is each container's entrypoint",
        }
    }
}

/// Whether a binfmt_misc entry (the text of `/proc/sys/fs/binfmt_misc/qemu-<cpu>`) is enabled
/// and has the F flag: without F the kernel would look the interpreter up inside the container.
pub fn binfmt_usable(entry: &str) -> bool {
    let enabled = entry.lines().any(|l| l.trim() == "enabled");
    let fixed = entry
        .lines()
        .filter_map(|l| l.strip_prefix("flags:"))
        .any(|f| f.trim().contains('F'));
    enabled && fixed
}

/// The binfmt_misc entry for an emulator binary: `qemu-s390x-static` -> `qemu-s390x`.
pub fn binfmt_entry(emulator: &Path) -> String {
    let name = emulator
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    name.trim_end_matches("-static").to_string()
}

/// The mode for an arch whose emulator is `emulator` (`None`: the host's arch).
pub fn mode(emulator: Option<&Path>) -> Mode {
    let Some(emu) = emulator else {
        return Mode::Native;
    };
    let entry = Path::new("/proc/sys/fs/binfmt_misc").join(binfmt_entry(emu));
    match std::fs::read_to_string(entry) {
        Ok(s) if binfmt_usable(&s) => Mode::Binfmt,
        _ => Mode::Explicit,
    }
}

/// The container's Entrypoint and Cmd. As Kubernetes does, the pod's `command` replaces the
/// image's entrypoint and `args` are the command; in explicit mode the emulator comes first and
/// the whole argv is its arguments.
pub fn entrypoint_and_cmd(c: &Container, mode: Mode) -> (Vec<String>, Vec<String>) {
    let argv = c.argv();
    match mode {
        Mode::Explicit => {
            let mut e = vec![EMULATOR_PATH.to_string()];
            e.extend(argv);
            (e, vec![])
        }
        Mode::Native | Mode::Binfmt => {
            let (first, rest) = argv.split_at(1);
            (first.to_vec(), rest.to_vec())
        }
    }
}

/// The container's environment as `K=V`: the pod's, with the storage endpoint filled in and
/// `QEMU_*` dropped (qemu would apply them to the guest and its children; see `runner`). In
/// explicit mode the test command in ENTRYPOINT_OPTIONS gets the emulator in front, since
/// entrypoint's child is a foreign binary too.
pub fn env(c: &Container, endpoints: &Endpoints, mode: Mode) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in &c.env {
        if k.starts_with("QEMU_") {
            continue;
        }
        let v = endpoints.fill(v);
        let v = if k == "ENTRYPOINT_OPTIONS" && mode == Mode::Explicit {
            emulated_entrypoint_options(&v)
        } else {
            v
        };
        out.push(format!("{k}={v}"));
    }
    out
}

/// ENTRYPOINT_OPTIONS with the emulator put before the wrapped command's `args`; options that
/// are no JSON object (the probes' bad options) are left for entrypoint to reject. As binfmt_misc
/// only takes executable ELF files of the arch, only `fixture-job` (the lab's one foreign test
/// program) gets it: any other command (missing, not executable) reaches exec as it is, so its
/// start error is the one a cluster node gives.
pub fn emulated_entrypoint_options(json: &str) -> String {
    let Ok(mut v) = serde_json::from_str::<Value>(json) else {
        return json.to_string();
    };
    match v.get_mut("args").and_then(Value::as_array_mut) {
        Some(args)
            if args.first().and_then(Value::as_str) == Some(crate::pod::FIXTURE_JOB_PATH) =>
        {
            args.insert(0, Value::from(EMULATOR_PATH));
            v.to_string()
        }
        _ => json.to_string(),
    }
}

/// This run's label value: the pid (to tell a live run from a stale one) and the start time.
pub fn run_id(pid: u32, started_unix_secs: u64) -> String {
    format!("{pid}-{started_unix_secs:x}")
}

/// Whether an object labeled `value` was left by a run that is gone: not ours, and its pid is
/// no live process (a value we cannot read is stale too).
pub fn is_stale(value: &str, ours: &str, alive: impl Fn(u32) -> bool) -> bool {
    if value == ours {
        return false;
    }
    match value
        .split_once('-')
        .and_then(|(p, _)| p.parse::<u32>().ok())
    {
        Some(pid) => !alive(pid),
        None => true,
    }
}

/// A Docker object name: `tetrapod-<run>-<seq>-<arch>-<pod>-<what>`, in the characters DNS
/// and Docker both accept (fixture names have `_`, which host names may not).
pub fn object_name(run: &str, seq: u64, arch: &str, pod: &str, what: &str) -> String {
    format!("tetrapod-{run}-{seq}-{arch}-{pod}-{what}")
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The fake-gcs-server container's name, which the pod's containers resolve through Docker's
/// DNS: short, since a DNS label has at most 63 characters.
pub fn gcs_name(run: &str, seq: u64) -> String {
    format!("tetrapod-{run}-{seq}-gcs")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::Image;
    use crate::pod::STORAGE_ENDPOINT;

    fn container(command: Option<&[&str]>, args: &[&str], env: &[(&str, &str)]) -> Container {
        Container {
            name: "c".into(),
            image: Image::Utility(crate::utility::Utility::Sidecar),
            command: command.map(|c| c.iter().map(std::string::ToString::to_string).collect()),
            args: args.iter().map(std::string::ToString::to_string).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            mounts: vec![],
            working_dir: None,
            security: Default::default(),
        }
    }

    #[test]
    fn binfmt_needs_enabled_and_the_fix_flag() {
        let with = "enabled\ninterpreter /usr/bin/qemu-s390x-static\nflags: F\noffset 0\n";
        assert!(binfmt_usable(with));
        assert!(binfmt_usable(
            "enabled\ninterpreter /usr/bin/qemu-s390x-static\nflags: OCF\n"
        ));
        assert!(!binfmt_usable(
            "enabled\ninterpreter /usr/bin/qemu-s390x-static\nflags: \n"
        ));
        assert!(!binfmt_usable(
            "disabled\ninterpreter /usr/bin/qemu-s390x-static\nflags: F\n"
        ));
        assert!(!binfmt_usable(""));
        assert_eq!(
            binfmt_entry(Path::new("/usr/bin/qemu-ppc64le-static")),
            "qemu-ppc64le"
        );
        assert_eq!(mode(None), Mode::Native);
    }

    #[test]
    fn argv_per_mode() {
        let image_default = container(None, &["--copy-mode-only"], &[]);
        for m in [Mode::Native, Mode::Binfmt] {
            assert_eq!(
                entrypoint_and_cmd(&image_default, m),
                (
                    vec!["/ko-app/sidecar".to_string()],
                    vec!["--copy-mode-only".to_string()]
                )
            );
        }
        assert_eq!(
            entrypoint_and_cmd(&image_default, Mode::Explicit),
            (
                vec![
                    EMULATOR_PATH.to_string(),
                    "/ko-app/sidecar".to_string(),
                    "--copy-mode-only".to_string()
                ],
                vec![]
            )
        );
        let own_command = container(Some(&["/tools/entrypoint"]), &[], &[]);
        assert_eq!(
            entrypoint_and_cmd(&own_command, Mode::Native),
            (vec!["/tools/entrypoint".to_string()], vec![])
        );
        assert_eq!(
            entrypoint_and_cmd(&own_command, Mode::Explicit).0,
            [EMULATOR_PATH, "/tools/entrypoint"]
        );
    }

    #[test]
    fn env_fills_the_endpoint_drops_qemu_and_wraps_the_child() {
        let opts = r#"{"args":["/usr/local/bin/fixture-job","print","x"],"timeout":1}"#;
        let c = container(
            None,
            &[],
            &[
                ("ENTRYPOINT_OPTIONS", opts),
                ("QEMU_STRACE", "1"),
                ("STORAGE_EMULATOR_HOST", STORAGE_ENDPOINT),
            ],
        );
        let endpoints = Endpoints {
            storage: "gcs:4443".into(),
            proxy: String::new(),
        };
        let native = env(&c, &endpoints, Mode::Native);
        assert_eq!(
            native,
            [
                format!("ENTRYPOINT_OPTIONS={opts}"),
                "STORAGE_EMULATOR_HOST=gcs:4443".to_string()
            ]
        );
        assert_eq!(env(&c, &endpoints, Mode::Binfmt), native);
        let explicit = env(&c, &endpoints, Mode::Explicit);
        let v: Value =
            serde_json::from_str(explicit[0].strip_prefix("ENTRYPOINT_OPTIONS=").unwrap()).unwrap();
        assert_eq!(
            v["args"],
            serde_json::json!([EMULATOR_PATH, "/usr/local/bin/fixture-job", "print", "x"])
        );
        assert_eq!(v["timeout"], 1);
        // Only the arch's ELF goes through the emulator, as with binfmt_misc: a missing or
        // non-executable command reaches exec unchanged.
        for cmd in ["/no/such/command", "/etc/creds/run.sh"] {
            let opts = format!(r#"{{"args":["{cmd}"]}}"#);
            assert_eq!(emulated_entrypoint_options(&opts), opts);
        }
        for bad in ["{", "", "{}", "[1]"] {
            let c = container(None, &[], &[("ENTRYPOINT_OPTIONS", bad)]);
            assert_eq!(
                env(&c, &Endpoints::default(), Mode::Explicit),
                [format!("ENTRYPOINT_OPTIONS={bad}")]
            );
        }
    }

    #[test]
    fn names_and_staleness() {
        let run = run_id(4242, 0x6561_f2a0);
        assert_eq!(run, "4242-6561f2a0");
        assert_eq!(
            object_name(&run, 3, "s390x", "presubmit_one_pull", "initupload"),
            "tetrapod-4242-6561f2a0-3-s390x-presubmit-one-pull-initupload"
        );
        assert_eq!(
            object_name(&run, 0, "amd64", "Big Log", "net"),
            "tetrapod-4242-6561f2a0-0-amd64-big-log-net"
        );
        let gcs = gcs_name(&run, 12);
        assert!(gcs.len() <= 63 && !gcs.contains('_'), "{gcs}");
        let alive = |pid: u32| pid == 7;
        assert!(!is_stale(&run, &run, alive), "our own objects");
        assert!(is_stale("99-1", &run, alive), "a dead run");
        assert!(!is_stale("7-1", &run, alive), "another live run");
        assert!(is_stale("garbage", &run, alive));
    }
}
