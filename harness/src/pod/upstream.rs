/*!
The lab's decorate against upstream's: for the cases of upstream's `decorate/podspec_test.go`
that the fixture schema can express, the pod its golden files record, written here from those
facts, compared container by container with what [`decorate`] renders. Compared: container order
and names, command and args, env names in order and values (the options and JOB_SPEC as JSON,
their keys in Go's field order), mounts in order, volumes, security contexts.

Out of scope and stripped or left unwritten: images, resources, service accounts, grace
periods, labels, restart and termination-message policies (our [`Pod`] has none); the lab's
additions (see [`strip_lab`]); upstream's credentials (GCS, ssh keys, cookiefile: the lab has
none, see each case); values the fixture schema fixes (see [`pull`], [`PROW_JOB_ID`]).
*/

use std::collections::BTreeMap;
use std::fmt::{self, Write};
use std::path::PathBuf;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::decorate::{decorate, job_spec};
use super::{BUCKET, Container, Pod, PodSecurityContext, SecurityContext, VolumeSource};
use crate::fixture::Fixture;
use crate::git::BuiltRepo;

/// JSON that keeps its objects' key order, so Go's field order is checked too.
#[derive(Debug, Clone)]
enum J {
    Leaf(Value),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl From<&str> for J {
    fn from(s: &str) -> J {
        J::Leaf(s.into())
    }
}
impl From<i64> for J {
    fn from(n: i64) -> J {
        J::Leaf(n.into())
    }
}
impl From<bool> for J {
    fn from(b: bool) -> J {
        J::Leaf(b.into())
    }
}
impl From<Vec<J>> for J {
    fn from(v: Vec<J>) -> J {
        J::Arr(v)
    }
}
impl From<Vec<&str>> for J {
    fn from(v: Vec<&str>) -> J {
        J::Arr(v.into_iter().map(J::from).collect())
    }
}

/// An object, keys in the order written.
macro_rules! obj {
    ($($k:literal : $v:expr),* $(,)?) => {
        J::Obj(vec![$(($k.to_string(), J::from($v))),*])
    };
}

impl J {
    /// Go's embedded structs: `b`'s fields inlined after `a`'s.
    fn then(self, b: J) -> J {
        match (self, b) {
            (J::Obj(mut a), J::Obj(b)) => {
                a.extend(b);
                J::Obj(a)
            }
            _ => panic!("only objects inline"),
        }
    }

    fn drop_key(&mut self, key: &str) {
        match self {
            J::Obj(fields) => {
                fields.retain(|(k, _)| k != key);
                fields.iter_mut().for_each(|(_, v)| v.drop_key(key));
            }
            J::Arr(items) => items.iter_mut().for_each(|v| v.drop_key(key)),
            J::Leaf(_) => {}
        }
    }

    /// As JSON text, keys in order.
    fn compact(&self) -> String {
        match self {
            J::Leaf(v) => v.to_string(),
            J::Arr(items) => {
                let items: Vec<String> = items.iter().map(J::compact).collect();
                format!("[{}]", items.join(","))
            }
            J::Obj(fields) => {
                let fields: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{}:{}", Value::from(k.as_str()), v.compact()))
                    .collect();
                format!("{{{}}}", fields.join(","))
            }
        }
    }

    /// One key or item a line, so a difference reads as a line of the diff.
    fn render(&self, indent: usize, out: &mut String) {
        let pad = "  ".repeat(indent + 1);
        match self {
            J::Leaf(v) => out.push_str(&v.to_string()),
            J::Arr(items) if items.is_empty() => out.push_str("[]"),
            J::Obj(fields) if fields.is_empty() => out.push_str("{}"),
            J::Arr(items) => {
                out.push_str("[\n");
                for v in items {
                    out.push_str(&pad);
                    v.render(indent + 1, out);
                    out.push_str(",\n");
                }
                out.push_str(&"  ".repeat(indent));
                out.push(']');
            }
            J::Obj(fields) => {
                out.push_str("{\n");
                for (k, v) in fields {
                    let _ = write!(out, "{pad}{k:?}: ");
                    v.render(indent + 1, out);
                    out.push_str(",\n");
                }
                out.push_str(&"  ".repeat(indent));
                out.push('}');
            }
        }
    }
}

impl<'de> Deserialize<'de> for J {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<J, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = J;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_unit<E>(self) -> Result<J, E> {
                Ok(J::Leaf(Value::Null))
            }
            fn visit_bool<E>(self, b: bool) -> Result<J, E> {
                Ok(b.into())
            }
            fn visit_i64<E>(self, n: i64) -> Result<J, E> {
                Ok(n.into())
            }
            fn visit_u64<E>(self, n: u64) -> Result<J, E> {
                Ok(J::Leaf(n.into()))
            }
            fn visit_f64<E>(self, n: f64) -> Result<J, E> {
                Ok(J::Leaf(n.into()))
            }
            fn visit_str<E>(self, s: &str) -> Result<J, E> {
                Ok(s.into())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<J, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = a.next_element()? {
                    v.push(x);
                }
                Ok(J::Arr(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<J, A::Error> {
                let mut v = Vec::new();
                while let Some(kv) = a.next_entry()? {
                    v.push(kv);
                }
                Ok(J::Obj(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// The env vars whose values are JSON.
const JSON_ENV: &[&str] = &[
    "CLONEREFS_OPTIONS",
    "INITUPLOAD_OPTIONS",
    "ENTRYPOINT_OPTIONS",
    "SIDECAR_OPTIONS",
    "JOB_SPEC",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    EmptyDir,
    Secret,
    HostPath,
}

/// A container as upstream renders it, in the lab's terms.
struct Want {
    name: &'static str,
    command: Option<Vec<&'static str>>,
    args: Vec<&'static str>,
    env: Vec<(&'static str, J)>,
    mounts: Vec<(&'static str, &'static str)>,
    working_dir: Option<&'static str>,
    security: SecurityContext,
}

impl Want {
    fn new(name: &'static str) -> Want {
        Want {
            name,
            command: None,
            args: vec![],
            env: vec![],
            mounts: vec![],
            working_dir: None,
            security: SecurityContext::default(),
        }
    }

    fn render(&self) -> String {
        let env: Vec<(String, J)> = self
            .env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let mounts: Vec<(String, String)> = self
            .mounts
            .iter()
            .map(|(v, p)| (v.to_string(), p.to_string()))
            .collect();
        let command = self
            .command
            .as_ref()
            .map(|c| c.iter().map(std::string::ToString::to_string).collect());
        let args: Vec<String> = self
            .args
            .iter()
            .map(std::string::ToString::to_string)
            .collect();
        render(
            self.name,
            &command,
            &args,
            &env,
            &mounts,
            self.working_dir,
            self.security,
        )
    }
}

struct WantPod {
    init: Vec<Want>,
    containers: Vec<Want>,
    volumes: Vec<(&'static str, Kind)>,
    security: PodSecurityContext,
}

fn render(
    name: &str,
    command: &Option<Vec<String>>,
    args: &[String],
    env: &[(String, J)],
    mounts: &[(String, String)],
    working_dir: Option<&str>,
    security: SecurityContext,
) -> String {
    let mut out = format!("container {name}\ncommand {command:?}\nargs {args:?}\n");
    for (k, v) in env {
        let _ = write!(out, "env {k} = ");
        v.render(0, &mut out);
        out.push('\n');
    }
    for (volume, path) in mounts {
        let _ = writeln!(out, "mount {volume} at {path}");
    }
    let _ = writeln!(out, "workingDir {working_dir:?}\nsecurity {security:?}");
    out
}

fn render_ours(c: &Container) -> String {
    let env: Vec<(String, J)> = c
        .env
        .iter()
        .map(|(k, v)| {
            let j = match serde_json::from_str::<J>(v) {
                Ok(mut j) if JSON_ENV.contains(&k.as_str()) => {
                    // Lab: every ref clones the fixture's local repository.
                    j.drop_key("clone_uri");
                    j
                }
                _ => v.as_str().into(),
            };
            (k.clone(), j)
        })
        .collect();
    let mounts: Vec<(String, String)> = c
        .mounts
        .iter()
        .map(|m| (m.volume.clone(), m.path.clone()))
        .collect();
    render(
        &c.name,
        &c.command,
        &c.args,
        &env,
        &mounts,
        c.working_dir.as_deref(),
        c.security,
    )
}

/// The lab's own parts, which upstream has no counterpart for: the storage emulator's address,
/// the fixture job's metadata path, the fixture repositories' volume, and the s3 and local
/// storage volumes (these cases upload to GCS, where upstream mounts credentials instead).
fn strip_lab(pod: &mut Pod) {
    const ENV: &[&str] = &["STORAGE_EMULATOR_HOST", "FIXTURE_METADATA_FILE"];
    const VOLUMES: &[&str] = &["repos", "s3-credentials", "output"];
    for c in pod.init_containers.iter_mut().chain(&mut pod.containers) {
        c.env.retain(|(k, _)| !ENV.contains(&k.as_str()));
        c.mounts.retain(|m| !VOLUMES.contains(&m.volume.as_str()));
    }
    pod.volumes.retain(|v| !VOLUMES.contains(&v.name.as_str()));
}

/// Upstream's TestDecorate calls decorate with a made-up environment (`custom=env`) in place of
/// the downward API's, JOB_SPEC among it, so the test containers there get neither; drop ours.
fn as_test_decorate(f: &Fixture, repos: &BTreeMap<String, BuiltRepo>, pod: &mut Pod) {
    let downward: Vec<String> = job_spec(f, repos)
        .unwrap()
        .env(true)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    for c in &mut pod.containers {
        if c.name == "sidecar" {
            for (k, v) in &mut c.env {
                if k == "JOB_SPEC" {
                    v.clear();
                }
            }
        } else {
            c.env.retain(|(k, _)| !downward.contains(k));
        }
    }
    for c in &mut pod.init_containers {
        for (k, v) in &mut c.env {
            if k == "JOB_SPEC" {
                v.clear();
            }
        }
    }
}

/// Compares `ours` with `want`; the differences, as unified diffs.
fn differences(case: &str, ours: &Pod, want: &WantPod) -> Vec<String> {
    let mut diffs = Vec::new();
    let mut check = |what: &str, want: String, got: String| {
        if want != got {
            diffs.push(format!(
                "{case}: {what}\n{}",
                similar::TextDiff::from_lines(&want, &got)
                    .unified_diff()
                    .header("upstream", "lab")
            ));
        }
    };
    let names = |cs: &[Container]| cs.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    let want_names = |cs: &[Want]| cs.iter().map(|c| c.name.to_string()).collect::<Vec<_>>();
    for (what, ours, want) in [
        ("init containers", &ours.init_containers, &want.init),
        ("containers", &ours.containers, &want.containers),
    ] {
        check(
            what,
            format!("{:?}\n", want_names(want)),
            format!("{:?}\n", names(ours)),
        );
        for (o, w) in ours.iter().zip(want) {
            check(&format!("container {}", w.name), w.render(), render_ours(o));
        }
    }
    let volumes = |v: &[(String, Kind)]| {
        v.iter()
            .map(|(n, k)| format!("{n} {k:?}\n"))
            .collect::<String>()
    };
    let ours_volumes: Vec<(String, Kind)> = ours
        .volumes
        .iter()
        .map(|v| {
            let k = match v.source {
                VolumeSource::EmptyDir => Kind::EmptyDir,
                VolumeSource::Secret(_) => Kind::Secret,
                VolumeSource::HostPath(_) => Kind::HostPath,
            };
            (v.name.clone(), k)
        })
        .collect();
    let want_volumes: Vec<(String, Kind)> = want
        .volumes
        .iter()
        .map(|(n, k)| (n.to_string(), *k))
        .collect();
    check("volumes", volumes(&want_volumes), volumes(&ours_volumes));
    check(
        "pod securityContext",
        format!("{:?}\n", want.security),
        format!("{:?}\n", ours.security),
    );
    diffs
}

fn fixture(name: &str, text: &str) -> Fixture {
    let mut f: Fixture = toml::from_str(text).unwrap();
    f.name = name.into();
    f
}

/// Recipes with the SHAs upstream's cases name, so refs resolve to them.
fn repos(recipes: Vec<(&str, Vec<(&str, &str)>)>) -> BTreeMap<String, BuiltRepo> {
    recipes
        .into_iter()
        .map(|(name, branches)| {
            let built = BuiltRepo {
                path: PathBuf::from("/nonexistent").join(name),
                branches: branches
                    .iter()
                    .map(|(b, sha)| (b.to_string(), sha.to_string()))
                    .collect(),
            };
            (name.to_string(), built)
        })
        .collect()
}

/// A pull as the lab writes it. The fixture schema fixes author and title (upstream's cases
/// have "author-name" and "pull-title", or nothing), and head_ref is the recipe branch holding
/// the pull (upstream's TestDecorate pull has none).
fn pull(number: i64, sha: &str, head_ref: &str) -> J {
    let title = format!("Pull {number}");
    obj! {
        "number": number,
        "author": "fixture-author",
        "sha": sha,
        "title": title.as_str(),
        "head_ref": head_ref,
    }
}

/// Upstream's PROW_JOB_ID is the ProwJob's name, "pod"; the lab names its job after the fixture.
const PROW_JOB_ID: &str = "lab-pod";

/// GCSConfiguration with the lab's bucket in place of upstream's "bucket"/"my-bucket".
fn gcs(strategy: &str, org: &str, repo: &str) -> J {
    obj! {
        "bucket": BUCKET,
        "path_strategy": strategy,
        "default_org": org,
        "default_repo": repo,
    }
}

/// gcsupload.Options: upstream's also carry `gcs_credentials_file`, the lab has none.
fn upload(gcs: &J) -> J {
    gcs.clone().then(obj! {"dry_run": false})
}

fn wrapper(args: Vec<&str>, name: &str, prefixed: bool) -> J {
    let (log, marker, metadata) = if prefixed {
        (
            format!("/logs/{name}-log.txt"),
            format!("/logs/{name}-marker.txt"),
            format!("/logs/artifacts/{name}-metadata.json"),
        )
    } else {
        (
            "/logs/process-log.txt".into(),
            "/logs/marker-file.txt".into(),
            "/logs/artifacts/metadata.json".into(),
        )
    };
    obj! {
        "args": args,
        "container_name": name,
        "process_log": log.as_str(),
        "marker_file": marker.as_str(),
        "metadata_file": metadata.as_str(),
    }
}

fn entrypoint(timeout: i64, grace: i64, wrapper: &J) -> J {
    obj! {
        "timeout": timeout,
        "grace_period": grace,
        "artifact_dir": "/logs/artifacts",
    }
    .then(wrapper.clone())
}

fn sidecar(upload: &J, entries: Vec<J>, extra: J) -> J {
    obj! {
        "gcs_options": obj! {"items": vec!["/logs/artifacts"]}.then(upload.clone()),
        "entries": entries,
    }
    .then(extra)
}

fn clonerefs(refs: Vec<J>) -> J {
    obj! {
        "src_root": "/home/prow/go",
        "log": "/logs/clone.json",
        "git_user_name": "ci-robot",
        "git_user_email": "ci-robot@k8s.io",
        "refs": refs,
        "github_api_endpoints": vec!["https://api.github.com"],
    }
}

fn clonerefs_container(refs: Vec<J>) -> Want {
    Want {
        env: vec![("CLONEREFS_OPTIONS", clonerefs(refs))],
        mounts: vec![
            ("logs", "/logs"),
            ("code", "/home/prow/go"),
            ("clonerefs-tmp", "/tmp"),
        ],
        ..Want::new("clonerefs")
    }
}

fn place_entrypoint() -> Want {
    Want {
        args: vec!["--copy-mode-only"],
        mounts: vec![("tools", "/tools")],
        ..Want::new("place-entrypoint")
    }
}

// Upstream's TestDecorate cases: one container `test` running `/bin/ls -l -a` with a secret
// volume `secret`, refs org/repo@main with pull 1 and other/something@release, timeout 1m,
// grace period 1h, single path strategy.

const DECORATE_FIXTURE: &str = r#"
description = "upstream TestDecorate"
[job]
type = "presubmit"
name = "job-name"
[job.refs]
org = "org"
repo = "repo"
recipe = "repo"
base_ref = "main"
pin_base_sha = true
pulls = [{ number = 1, branch = "pull-1" }]
[[job.extra_refs]]
org = "other"
repo = "something"
recipe = "something"
base_ref = "release"
pin_base_sha = true
[secrets.secret]
token = "s3cr3t"
[[containers]]
name = "test"
command = ["/bin/ls", "-l", "-a"]
secrets = ["secret"]
[decoration]
timeout = "1m"
grace_period = "1h"
path_strategy = "single"
default_org = "org"
default_repo = "repo"
"#;

fn decorate_repos() -> BTreeMap<String, BuiltRepo> {
    repos(vec![
        ("repo", vec![("main", "abcd1234"), ("pull-1", "aksdjhfkds")]),
        ("something", vec![("release", "sldijfsd")]),
    ])
}

/// What upstream's TestDecorate renders; `censor` and `ignore` are its two variants.
fn decorate_want(censor: bool, ignore: bool) -> WantPod {
    let gcs = gcs("single", "org", "repo");
    let upload = upload(&gcs);
    let entry = wrapper(vec!["/bin/ls", "-l", "-a"], "test", false);
    let mut extra = J::Obj(vec![]);
    if ignore {
        extra = extra.then(obj! {"ignore_interrupts": true});
    }
    // Upstream mounts the secret at /secret; fixture secrets mount at /etc/<name>.
    let censoring = if censor {
        obj! {"secret_directories": vec!["/etc/secret"]}
    } else {
        obj! {}
    };
    extra = extra.then(obj! {"censoring_options": censoring});
    let mut sidecar_mounts = vec![("logs", "/logs")];
    if censor {
        sidecar_mounts.push(("secret", "/etc/secret"));
    }
    WantPod {
        init: vec![
            clonerefs_container(vec![
                obj! {
                    "org": "org", "repo": "repo", "base_ref": "main", "base_sha": "abcd1234",
                    "pulls": vec![pull(1, "aksdjhfkds", "pull-1")],
                },
                obj! {"org": "other", "repo": "something", "base_ref": "release", "base_sha": "sldijfsd"},
            ]),
            Want {
                env: vec![
                    (
                        "INITUPLOAD_OPTIONS",
                        upload.clone().then(obj! {"log": "/logs/clone.json"}),
                    ),
                    ("JOB_SPEC", "".into()),
                ],
                mounts: vec![("logs", "/logs")],
                ..Want::new("initupload")
            },
            place_entrypoint(),
        ],
        containers: vec![
            Want {
                command: Some(vec!["/tools/entrypoint"]),
                env: vec![
                    ("ARTIFACTS", "/logs/artifacts".into()),
                    ("GOPATH", "/home/prow/go".into()),
                    (
                        "ENTRYPOINT_OPTIONS",
                        entrypoint(60_000_000_000, 3_600_000_000_000, &entry),
                    ),
                ],
                mounts: vec![
                    ("secret", "/etc/secret"),
                    ("logs", "/logs"),
                    ("tools", "/tools"),
                    ("code", "/home/prow/go"),
                ],
                working_dir: Some("/home/prow/go/src/github.com/org/repo"),
                ..Want::new("test")
            },
            Want {
                env: vec![
                    ("JOB_SPEC", "".into()),
                    ("SIDECAR_OPTIONS", sidecar(&upload, vec![entry], extra)),
                ],
                mounts: sidecar_mounts,
                ..Want::new("sidecar")
            },
        ],
        // Without upstream's gcs-credentials secret.
        volumes: vec![
            ("secret", Kind::Secret),
            ("logs", Kind::EmptyDir),
            ("tools", Kind::EmptyDir),
            ("clonerefs-tmp", Kind::EmptyDir),
            ("code", Kind::EmptyDir),
        ],
        security: PodSecurityContext::default(),
    }
}

// Upstream's TestProwJobToPod cases: job `job-name`, build `blabla`, timeout 2h, grace period
// 10s, legacy path strategy with kubernetes/kubernetes defaults; presubmits have refs
// org-name/repo-name@base-ref (base-sha) with pull 1 (pull-sha) and path alias somewhere/else;
// containers run `/bin/thing some args` with MY_ENV=rocks. Each case names the credentials it
// also has (GCS secret, ssh keys, cookiefile), left out here with what they add: their volumes
// and mounts, clonerefs' key_files, cookie_path and --cookiefile, JOB_SPEC's secret names.
// JOB_SPEC's utility_images and default_service_account_name are left out too (images and
// service accounts are out of scope).

fn prowjob_fixture(
    type_: &str,
    head_ref: Option<&str>,
    rest: &str,
) -> (Fixture, BTreeMap<String, BuiltRepo>) {
    let refs = match head_ref {
        Some(h) => format!(
            r#"
[job.refs]
org = "org-name"
repo = "repo-name"
recipe = "repo"
base_ref = "base-ref"
pin_base_sha = true
path_alias = "somewhere/else"
pulls = [{{ number = 1, branch = "{h}" }}]
"#
        ),
        None => String::new(),
    };
    let text = format!(
        r#"
description = "upstream TestProwJobToPod"
[job]
type = "{type_}"
name = "job-name"
build_id = "blabla"
{refs}
{rest}
"#
    );
    let mut f = fixture("pod", &text);
    f.decoration.timeout = "2h".into();
    f.decoration.grace_period = "10s".into();
    f.decoration.path_strategy = "legacy".into();
    f.decoration.default_org = "kubernetes".into();
    f.decoration.default_repo = "kubernetes".into();
    let branches: Vec<(&str, &str)> = match head_ref {
        Some(h) => vec![("base-ref", "base-sha"), (h, "pull-sha")],
        None => vec![],
    };
    (f, repos(vec![("repo", branches)]))
}

const ONE_CONTAINER: &str = r#"
[[containers]]
name = "only"
command = ["/bin/thing", "some", "args"]
env = { MY_ENV = "rocks" }
"#;

fn presubmit_refs(head_ref: &str) -> J {
    obj! {
        "org": "org-name", "repo": "repo-name", "base_ref": "base-ref", "base_sha": "base-sha",
        "pulls": vec![pull(1, "pull-sha", head_ref)],
        "path_alias": "somewhere/else",
    }
}

fn extra_ref() -> J {
    obj! {"org": "extra-org", "repo": "extra-repo"}
}

fn job_spec_json(type_: &str, refs: Option<J>, extra_refs: Vec<J>, decoration: J) -> J {
    let mut fields = vec![
        ("type".to_string(), J::from(type_)),
        ("job".into(), "job-name".into()),
        ("buildid".into(), "blabla".into()),
        ("prowjobid".into(), PROW_JOB_ID.into()),
    ];
    if let Some(r) = refs {
        fields.push(("refs".into(), r));
    }
    if !extra_refs.is_empty() {
        fields.push(("extra_refs".into(), extra_refs.into()));
    }
    fields.push(("decoration_config".into(), decoration));
    J::Obj(fields)
}

fn prowjob_decoration(gcs: &J) -> J {
    obj! {"timeout": "2h0m0s", "grace_period": "10s", "gcs_configuration": gcs.clone()}
}

/// The test container's env: its own, the downward API's (sorted, with ARTIFACTS and GOPATH),
/// then ENTRYPOINT_OPTIONS.
fn test_env(
    my_env: &'static str,
    spec: &J,
    head_ref: Option<&str>,
    ep: J,
) -> Vec<(&'static str, J)> {
    let type_ = if head_ref.is_some() {
        "presubmit"
    } else {
        "periodic"
    };
    let mut env: Vec<(&'static str, J)> = vec![
        ("MY_ENV", my_env.into()),
        ("ARTIFACTS", "/logs/artifacts".into()),
        ("BUILD_ID", "blabla".into()),
        ("BUILD_NUMBER", "blabla".into()),
        ("CI", "true".into()),
        ("GOPATH", "/home/prow/go".into()),
        ("JOB_NAME", "job-name".into()),
        ("JOB_SPEC", spec.clone()),
        ("JOB_TYPE", type_.into()),
        ("PROW_JOB_ID", PROW_JOB_ID.into()),
    ];
    if let Some(h) = head_ref {
        env.extend([
            ("PULL_BASE_REF", "base-ref".into()),
            ("PULL_BASE_SHA", "base-sha".into()),
            ("PULL_HEAD_REF", h.into()),
            ("PULL_NUMBER", "1".into()),
            ("PULL_PULL_SHA", "pull-sha".into()),
            ("PULL_REFS", "base-ref:base-sha,1:pull-sha".into()),
            // The lab's title, see `pull`.
            ("PULL_TITLE", "Pull 1".into()),
            ("REPO_NAME", "repo-name".into()),
            ("REPO_OWNER", "org-name".into()),
            ("SRC_BASE", "else".into()),
            ("SRC_HOST", "somewhere".into()),
        ]);
    }
    env.push(("ENTRYPOINT_OPTIONS", ep));
    env
}

/// The pod of a TestProwJobToPod case: `tests` are (name, MY_ENV, wrapped args).
fn prowjob_want(
    spec: &J,
    head_ref: Option<&str>,
    clone: Option<Vec<J>>,
    gcs: &J,
    tests: &[(&'static str, &'static str, Vec<&'static str>)],
    security: PodSecurityContext,
) -> WantPod {
    let upload = upload(gcs);
    let prefixed = tests.len() > 1;
    let entries: Vec<J> = tests
        .iter()
        .map(|(name, _, args)| wrapper(args.clone(), name, prefixed))
        .collect();
    let cloned = clone.is_some();
    let mut init = vec![];
    if let Some(refs) = clone {
        init.push(clonerefs_container(refs));
    }
    let initupload_opts = if cloned {
        upload.clone().then(obj! {"log": "/logs/clone.json"})
    } else {
        upload.clone()
    };
    init.push(Want {
        env: vec![
            ("INITUPLOAD_OPTIONS", initupload_opts),
            ("JOB_SPEC", spec.clone()),
        ],
        mounts: if cloned {
            vec![("logs", "/logs")]
        } else {
            vec![]
        },
        ..Want::new("initupload")
    });
    init.push(place_entrypoint());
    let mut containers: Vec<Want> = tests
        .iter()
        .zip(&entries)
        .map(|((name, my_env, _), entry)| {
            let mut mounts = vec![("logs", "/logs"), ("tools", "/tools")];
            if cloned {
                mounts.push(("code", "/home/prow/go"));
            }
            Want {
                command: Some(vec!["/tools/entrypoint"]),
                env: test_env(
                    my_env,
                    spec,
                    head_ref,
                    entrypoint(7_200_000_000_000, 10_000_000_000, entry),
                ),
                mounts,
                working_dir: cloned.then_some("/home/prow/go/src/somewhere/else"),
                ..Want::new(name)
            }
        })
        .collect();
    containers.push(Want {
        env: vec![
            ("JOB_SPEC", spec.clone()),
            (
                "SIDECAR_OPTIONS",
                sidecar(&upload, entries, obj! {"censoring_options": obj! {}}),
            ),
        ],
        mounts: vec![("logs", "/logs")],
        ..Want::new("sidecar")
    });
    let mut volumes = vec![("logs", Kind::EmptyDir), ("tools", Kind::EmptyDir)];
    if cloned {
        volumes.extend([("clonerefs-tmp", Kind::EmptyDir), ("code", Kind::EmptyDir)]);
    }
    WantPod {
        init,
        containers,
        volumes,
        security,
    }
}

/// One of upstream's cases: its name there, our fixture for it with its recipes, the pod
/// upstream renders, and whether it is a TestDecorate case.
type Case = (
    &'static str,
    Fixture,
    BTreeMap<String, BuiltRepo>,
    WantPod,
    bool,
);

fn cases() -> Vec<Case> {
    let mut cases = vec![];
    let gcs_k8s = gcs("legacy", "kubernetes", "kubernetes");

    cases.push((
        "TestDecorate/basic happy case",
        fixture("pod", DECORATE_FIXTURE),
        decorate_repos(),
        decorate_want(false, false),
        true,
    ));
    let mut f = fixture("pod", DECORATE_FIXTURE);
    f.decoration.censor_secrets = true;
    cases.push((
        "TestDecorate/censor secrets in sidecar",
        f,
        decorate_repos(),
        decorate_want(true, false),
        true,
    ));
    let mut f = fixture("pod", DECORATE_FIXTURE);
    f.decoration.upload_ignores_interrupts = true;
    cases.push((
        "TestDecorate/ignore interrupts in sidecar",
        f,
        decorate_repos(),
        decorate_want(false, true),
        true,
    ));

    // 4: a presubmit with a path alias; also a GCS secret and ssh keys.
    let (f, r) = prowjob_fixture("presubmit", Some("fixes-9"), ONE_CONTAINER);
    let spec = job_spec_json(
        "presubmit",
        Some(presubmit_refs("fixes-9")),
        vec![],
        prowjob_decoration(&gcs_k8s),
    );
    let want = prowjob_want(
        &spec,
        Some("fixes-9"),
        Some(vec![presubmit_refs("fixes-9")]),
        &gcs_k8s,
        &[("test", "rocks", vec!["/bin/thing", "some", "args"])],
        PodSecurityContext::default(),
    );
    cases.push(("TestProwJobToPod/4", f, r, want, false));

    // 5: a periodic without refs; also a GCS secret and ssh keys (unused without clonerefs).
    let (f, r) = prowjob_fixture("periodic", None, ONE_CONTAINER);
    let spec = job_spec_json("periodic", None, vec![], prowjob_decoration(&gcs_k8s));
    let want = prowjob_want(
        &spec,
        None,
        None,
        &gcs_k8s,
        &[("test", "rocks", vec!["/bin/thing", "some", "args"])],
        PodSecurityContext::default(),
    );
    cases.push(("TestProwJobToPod/5", f, r, want, false));

    // 6: skip_cloning with refs and an extra ref; also a GCS secret and ssh keys.
    let extra = r#"
[[job.extra_refs]]
org = "extra-org"
repo = "extra-repo"
recipe = "extra"
base_ref = ""
[decoration]
skip_cloning = true
"#;
    let (f, r) = prowjob_fixture(
        "presubmit",
        Some("best-branch-name"),
        &format!("{extra}{ONE_CONTAINER}"),
    );
    let decoration = prowjob_decoration(&gcs_k8s).then(obj! {"skip_cloning": true});
    let spec = job_spec_json(
        "presubmit",
        Some(presubmit_refs("best-branch-name")),
        vec![extra_ref()],
        decoration,
    );
    let want = prowjob_want(
        &spec,
        Some("best-branch-name"),
        None,
        &gcs_k8s,
        &[("test", "rocks", vec!["/bin/thing", "some", "args"])],
        PodSecurityContext::default(),
    );
    cases.push(("TestProwJobToPod/6", f, r, want, false));

    // 7: two containers and an extra ref, cloned; also a GCS secret, ssh keys and a cookiefile.
    let two = r#"
[[job.extra_refs]]
org = "extra-org"
repo = "extra-repo"
recipe = "extra"
base_ref = ""
[[containers]]
name = "test-0"
command = ["/bin/thing", "some", "args"]
env = { MY_ENV = "rocks" }
[[containers]]
name = "test-1"
command = ["/bin/otherthing", "other", "args"]
env = { MY_ENV = "stones" }
"#;
    let (f, r) = prowjob_fixture("presubmit", Some("pr-head-ref-11"), two);
    let spec = job_spec_json(
        "presubmit",
        Some(presubmit_refs("pr-head-ref-11")),
        vec![extra_ref()],
        prowjob_decoration(&gcs_k8s),
    );
    let want = prowjob_want(
        &spec,
        Some("pr-head-ref-11"),
        Some(vec![presubmit_refs("pr-head-ref-11"), extra_ref()]),
        &gcs_k8s,
        &[
            ("test-0", "rocks", vec!["/bin/thing", "some", "args"]),
            ("test-1", "stones", vec!["/bin/otherthing", "other", "args"]),
        ],
        PodSecurityContext::default(),
    );
    cases.push(("TestProwJobToPod/7", f, r, want, false));

    // 9: media types and the decoration's users; also a default service account and a
    // cookiefile, no GCS secret.
    let users = r#"
[decoration]
run_as_user = 1000
run_as_group = 1000
fs_group = 2000
media_types = { log = "text/plain" }
"#;
    let (f, r) = prowjob_fixture(
        "presubmit",
        Some("orig-branch-name"),
        &format!("{users}{ONE_CONTAINER}"),
    );
    let gcs_media = gcs_k8s
        .clone()
        .then(obj! {"mediaTypes": obj! {"log": "text/plain"}});
    let decoration = prowjob_decoration(&gcs_media).then(obj! {
        "run_as_user": 1000, "run_as_group": 1000, "fs_group": 2000,
    });
    let spec = job_spec_json(
        "presubmit",
        Some(presubmit_refs("orig-branch-name")),
        vec![],
        decoration,
    );
    let want = prowjob_want(
        &spec,
        Some("orig-branch-name"),
        Some(vec![presubmit_refs("orig-branch-name")]),
        &gcs_media,
        &[("test", "rocks", vec!["/bin/thing", "some", "args"])],
        PodSecurityContext {
            run_as_user: Some(1000),
            run_as_group: Some(1000),
            fs_group: Some(2000),
        },
    );
    cases.push(("TestProwJobToPod/9", f, r, want, false));
    cases
}

#[test]
fn decorate_renders_the_pods_upstream_renders() {
    let mut diffs = Vec::new();
    for (case, f, repos, want, test_decorate) in cases() {
        let mut pod = decorate(&f, &repos).unwrap_or_else(|e| panic!("{case}: {e:#}"));
        strip_lab(&mut pod);
        if test_decorate {
            as_test_decorate(&f, &repos, &mut pod);
        }
        diffs.extend(differences(case, &pod, &want));
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

/// The comparison itself: a reordered key, a missing mount, a changed env value all show.
#[test]
fn the_comparison_sees_order_and_content() {
    let (case, f, repos, want, _) = cases().swap_remove(3);
    let mut pod = decorate(&f, &repos).unwrap();
    strip_lab(&mut pod);
    assert!(differences(case, &pod, &want).is_empty());

    let mut reordered = pod.clone();
    let sidecar = reordered.containers.last_mut().unwrap();
    let opts = sidecar.env_value("SIDECAR_OPTIONS").unwrap().to_string();
    let mut j: J = serde_json::from_str(&opts).unwrap();
    if let J::Obj(fields) = &mut j {
        fields.reverse();
    }
    let text = j.compact();
    assert_ne!(text, opts);
    let content = |s: &str| serde_json::from_str::<Value>(s).unwrap();
    assert_eq!(content(&text), content(&opts), "same content");
    for (k, v) in &mut sidecar.env {
        if k == "SIDECAR_OPTIONS" {
            *v = text.clone();
        }
    }
    assert_eq!(differences(case, &reordered, &want).len(), 1);

    let mut unmounted = pod.clone();
    unmounted.init_containers[0].mounts.pop();
    assert_eq!(differences(case, &unmounted, &want).len(), 1);

    let mut changed = pod;
    changed.containers[0].env[0].1 = "pebbles".into();
    assert_eq!(differences(case, &changed, &want).len(), 1);
}
