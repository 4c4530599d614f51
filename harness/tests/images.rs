//! The OCI images (`harness images`): built from the lab's binaries (built once per run, like the
//! lab test does), checked for reproducibility, smoke-tested per arch under the configured user,
//! exported to the real Docker engine and pushed to a real registry (Debian's docker-registry).
//!
//! One layout is built per test process and shared; the reproducibility test builds a second.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use harness::image::layout::{Layout, StoredImage};
use harness::image::{self, ImageSet, Options};
use harness::runner::Runner;
use harness::target::{ALL, Arch};
use harness::toolchain::Toolchain;
use harness::{build, image::push::Destination};
use testsupport::free_port;

const TAG: &str = "t1";

struct Built {
    _dir: tempfile::TempDir,
    set: ImageSet,
}

/// Options for a layout in `out`, with the default source facts and a fixed tag.
fn options(out: PathBuf) -> Options {
    let rust = Toolchain::load().ok().map(|t| t.rustc_release);
    image::options(ALL.to_vec(), Some(out), Some(TAG.into()), rust).expect("image options")
}

/// The lab's binaries for every arch (incremental: seconds when they are current).
/// `TETRAPOD_IMAGES_NO_BUILD=1` packages what `target/lab` holds, like `images --no-build`.
fn lab_binaries() -> Result<(), String> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            if std::env::var_os("TETRAPOD_IMAGES_NO_BUILD").is_some_and(|v| v == "1") {
                return Ok(());
            }
            let tc = Toolchain::load().map_err(|e| e.to_string())?;
            build::build(&tc, &ALL).map_err(|e| format!("{e:#}"))
        })
        .clone()
}

/// The shared layout.
fn built() -> &'static Built {
    static LAYOUT: OnceLock<Result<Built, String>> = OnceLock::new();
    let b = LAYOUT.get_or_init(|| {
        lab_binaries()?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let set =
            image::build(&options(dir.path().join("layout"))).map_err(|e| format!("{e:#}"))?;
        Ok(Built { _dir: dir, set })
    });
    match b {
        Ok(b) => b,
        Err(e) => panic!("building the image layout failed: {e}"),
    }
}

fn layout() -> Layout {
    Layout::open(&built().set.dir).unwrap()
}

#[test]
fn two_builds_of_a_commit_are_identical_byte_for_byte() {
    let first = built();
    let dir = tempfile::tempdir().unwrap();
    let second = image::build(&options(dir.path().join("layout"))).unwrap();
    let (a, b) = (layout(), Layout::open(&second.dir).unwrap());
    let read = |p: &Path| std::fs::read(p).unwrap();
    assert_eq!(
        read(&a.dir.join("index.json")),
        read(&b.dir.join("index.json"))
    );
    assert_eq!(
        read(&a.dir.join("oci-layout")),
        read(&b.dir.join("oci-layout"))
    );
    let digests = a.blob_digests().unwrap();
    assert_eq!(digests, b.blob_digests().unwrap());
    for d in &digests {
        let rel = format!("blobs/{}", d.replace(':', "/"));
        assert!(read(&a.dir.join(&rel)) == read(&b.dir.join(&rel)), "{d}");
    }
    for (p, q) in first.set.programs.iter().zip(&second.programs) {
        assert_eq!(p.index, q.index, "{}", p.program.name);
    }
    // 5 programs x 4 arches: manifest, config, app layer, SBOM, SBOM manifest; plus 5 indexes,
    // the shared base layer and the empty config.
    assert_eq!(digests.len(), 5 * 4 * 5 + 5 + 2);
}

#[test]
fn index_json_names_every_index_image_and_sbom() {
    let l = layout();
    let refs = l.refs();
    for p in image::programs() {
        let idx = refs[&image::ref_name(p.name, TAG, None)];
        assert_eq!(
            idx.media_type().to_string(),
            "application/vnd.oci.image.index.v1+json"
        );
        let index: oci_spec::image::ImageIndex = l.json(idx).unwrap();
        assert_eq!(index.manifests().len(), ALL.len());
        for (arch, m) in ALL.iter().zip(index.manifests()) {
            let platform = m.platform().as_ref().unwrap();
            assert_eq!(platform.architecture().to_string(), arch.oci_architecture());
            assert_eq!(platform.variant().as_deref(), arch.oci_variant());
            let named = refs[&image::ref_name(p.name, TAG, Some(*arch))];
            assert_eq!(named.digest(), m.digest());
            let sbom = refs[&image::sbom_ref_name(p.name, TAG, *arch)];
            let sm: oci_spec::image::ImageManifest = l.json(sbom).unwrap();
            assert_eq!(sm.subject().as_ref().unwrap().digest(), m.digest());
            assert_eq!(
                sm.artifact_type().as_ref().unwrap().to_string(),
                "application/spdx+json"
            );
        }
        let ann = index.annotations().as_ref().unwrap();
        assert_eq!(
            ann["org.opencontainers.image.source"],
            image::source::REPOSITORY
        );
        assert_eq!(ann["org.opencontainers.image.revision"].len(), 40);
    }
}

#[test]
fn sboms_list_the_crates_and_c_libraries_of_each_binary() {
    let l = layout();
    let doc = |program: &str, arch: Arch| -> serde_json::Value {
        let sm: oci_spec::image::ImageManifest = l
            .json(l.find(&image::sbom_ref_name(program, TAG, arch)).unwrap())
            .unwrap();
        serde_json::from_slice(&l.blob(&sm.layers()[0]).unwrap()).unwrap()
    };
    let names = |d: &serde_json::Value| -> BTreeMap<String, String> {
        d["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let v = p["versionInfo"].as_str().unwrap_or("").to_string();
                (p["name"].as_str().unwrap().to_string(), v)
            })
            .collect()
    };
    let clonerefs = doc("clonerefs", Arch::S390x);
    assert_eq!(clonerefs["spdxVersion"], "SPDX-2.3");
    let c = names(&clonerefs);
    for lib in [
        "git2",
        "libgit2-sys",
        "pod-utils",
        "serde",
        "libgit2",
        "openssl",
        "libssh2",
        "zlib",
    ] {
        assert!(c.contains_key(lib), "clonerefs SBOM lacks {lib}: {c:?}");
    }
    let lock = std::fs::read_to_string(build::workspace_root().join("Cargo.lock")).unwrap();
    let openssl_src = lock
        .split("name = \"openssl-src\"\nversion = \"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap();
    // Debian's libssl-dev when provisioning unpacked it, else openssl-src's OpenSSL.
    match build::prebuilt_openssl(Arch::S390x) {
        Some(deb) => assert_eq!(Some(c["openssl"].as_str()), deb.split('-').next()),
        None => assert_eq!(c["openssl"], openssl_src.split('+').nth(1).unwrap()),
    }
    // Crates only the harness or dev-dependencies bring in are not in a utility's SBOM.
    for absent in ["quinn", "tempfile", "oci-client", "insta"] {
        assert!(!c.contains_key(absent), "clonerefs SBOM lists {absent}");
    }
    let job = names(&doc("fixture-job", Arch::Amd64));
    assert!(
        !job.contains_key("openssl") && !job.contains_key("git2"),
        "{job:?}"
    );
    let sidecar = doc("sidecar", Arch::Arm64);
    let rels = sidecar["relationships"].as_array().unwrap();
    assert!(rels.iter().any(|r| r["relationshipType"] == "DESCRIBES"));
    assert!(rels.iter().any(|r| r["relationshipType"] == "STATIC_LINK"));
}

/// `0:0` -> (0, 0).
fn user(img: &StoredImage) -> (u32, u32) {
    let u = img
        .config
        .config()
        .as_ref()
        .unwrap()
        .user()
        .clone()
        .unwrap();
    let (uid, gid) = u.split_once(':').expect("numeric uid:gid");
    (uid.parse().unwrap(), gid.parse().unwrap())
}

/// Unpacks an image into a directory the image's user can traverse.
fn unpack(l: &Layout, img: &StoredImage) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    l.unpack(img, dir.path()).unwrap();
    dir
}

/// The binary the entrypoint names, run for `arch` as the config's user with its environment.
fn command(arch: Arch, root: &Path, img: &StoredImage) -> Command {
    let cfg = img.config.config().as_ref().unwrap();
    let entry = &cfg.entrypoint().as_ref().unwrap()[0];
    let bin = root.join(entry.trim_start_matches('/'));
    build::check_elf(&bin, arch).unwrap();
    let mut cmd = Runner::new(arch, None).unwrap().command(&bin).unwrap();
    let (uid, gid) = user(img);
    cmd.env_clear().uid(uid).gid(gid).current_dir(root);
    for kv in cfg.env().as_deref().unwrap_or_default() {
        let (k, v) = kv.split_once('=').unwrap();
        cmd.env(k, v);
    }
    cmd
}

fn smoke(arch: Arch) {
    let l = layout();
    for p in image::programs() {
        let img = l.image(&image::ref_name(p.name, TAG, Some(arch))).unwrap();
        assert_eq!(
            img.config.architecture().to_string(),
            arch.oci_architecture()
        );
        assert_eq!(img.config.variant().as_deref(), arch.oci_variant());
        // Root unless the pod says otherwise, as upstream's images.
        assert_eq!(user(&img), (0, 0));
        let root = unpack(&l, &img);
        let entry = &img
            .config
            .config()
            .as_ref()
            .unwrap()
            .entrypoint()
            .as_ref()
            .unwrap()[0];
        assert_eq!(entry, &p.path);
        let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
        assert!(passwd.contains("nonroot:x:65532:65532:"), "{passwd}");
        assert!(
            root.path()
                .join("etc/ssl/certs/ca-certificates.crt")
                .is_file()
        );
        if !p.shipped {
            // The fixture job proves the user is applied: it reports its own credentials, as
            // the config's user and as the `nonroot` user a pod may pick.
            let out = command(arch, root.path(), &img).arg("id").output().unwrap();
            let id = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{arch} fixture-job: {out:?}");
            assert!(id.starts_with("uid=0 gid=0 "), "{arch}: {id}");
            let out = command(arch, root.path(), &img)
                .arg("id")
                .uid(65532)
                .gid(65532)
                .output()
                .unwrap();
            let id = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{arch} fixture-job as nonroot: {out:?}"
            );
            assert!(id.starts_with("uid=65532 gid=65532 "), "{arch}: {id}");
            continue;
        }
        let out = command(arch, root.path(), &img)
            .arg("--help")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            matches!(out.status.code(), Some(0 | 2)),
            "{arch} {} --help: {:?}\n{text}",
            p.name,
            out.status
        );
        assert!(
            text.to_lowercase().contains("usage"),
            "{arch} {}: {text}",
            p.name
        );
    }
}

#[test]
fn smoke_amd64() {
    smoke(Arch::Amd64);
}

#[test]
fn smoke_arm64() {
    smoke(Arch::Arm64);
}

#[test]
fn smoke_ppc64le() {
    smoke(Arch::Ppc64le);
}

#[test]
fn smoke_s390x() {
    smoke(Arch::S390x);
}

#[test]
fn images_stay_under_the_size_target_or_say_so() {
    let table = built().set.size_table();
    println!("{table}");
    let rows = table
        .lines()
        .filter(|l| l.contains(&format!(":{TAG}-")))
        .count();
    assert_eq!(rows, 5 * ALL.len());
    for p in &built().set.programs {
        for i in &p.images {
            let over = i.compressed_size() > image::SIZE_TARGET;
            let row = table
                .lines()
                .find(|l| l.starts_with(&format!("| {}:{TAG}-{} ", p.program.name, i.arch)))
                .unwrap();
            assert_eq!(row.ends_with("| NO |"), over, "{row}");
        }
    }
}

/// Each shipped binary carries at most one TLS stack (README, "One TLS stack per binary"):
/// rustls in the two that upload, OpenSSL only in clonerefs (libgit2 and libssh2 need it), none
/// in entrypoint. Markers: rustls's own source paths in panic locations, and OpenSSL's version
/// text, which libcrypto always embeds.
#[test]
fn each_binary_links_one_tls_stack_at_most() {
    if let Err(e) = lab_binaries() {
        panic!("building the lab binaries failed: {e}");
    }
    let has = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    for &arch in ALL.iter() {
        for (bin, rustls, openssl) in [
            ("clonerefs", false, true),
            ("initupload", true, false),
            ("sidecar", true, false),
            ("entrypoint", false, false),
        ] {
            let bytes = std::fs::read(build::binary(arch, bin)).unwrap();
            let got = (has(&bytes, b"rustls"), has(&bytes, b"OpenSSL 3."));
            assert_eq!(got, (rustls, openssl), "{arch} {bin}: (rustls, OpenSSL)");
        }
    }
}

// --- Docker --------------------------------------------------------------------------------------

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("run docker")
}

/// Removes the test's images from the engine, also when an assertion fails.
struct Loaded(Vec<String>);

impl Drop for Loaded {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = docker(&["rmi", "-f", name]);
        }
    }
}

#[test]
#[cfg_attr(not(has_docker_engine), ignore = "needs a Docker Engine")]
fn docker_archive_loads_into_the_engine() {
    let l = layout();
    let work = tempfile::tempdir().unwrap();
    let prefix = format!("tetrapod-images-test-{}", std::process::id());
    let mut loaded = Loaded(Vec::new());
    for (program, arch) in [
        ("clonerefs", Arch::Arm64),
        ("sidecar", Arch::S390x),
        ("entrypoint", Arch::Amd64),
        ("fixture-job", Arch::Amd64),
    ] {
        let r = image::ref_name(program, TAG, Some(arch));
        let name = format!("{prefix}/{r}");
        let tar = work.path().join(format!("{program}-{arch}.tar"));
        image::docker::export(&l.dir, &r, Some(&name), &tar).unwrap();
        loaded.0.push(name.clone());
        let out = docker(&["load", "-i", tar.to_str().unwrap()]);
        assert!(out.status.success(), "docker load: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&name),
            "{out:?}"
        );

        let out = docker(&["image", "inspect", &name]);
        assert!(out.status.success(), "{out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let v = &v[0];
        let img = l.image(&r).unwrap();
        assert_eq!(v["Id"], img.manifest.config().digest().to_string());
        assert_eq!(v["Architecture"], arch.oci_architecture());
        assert_eq!(v["Os"], "linux");
        if let Some(variant) = arch.oci_variant() {
            assert_eq!(v["Variant"], variant);
        }
        assert_eq!(v["Config"]["User"], "0:0");
        let path = image::programs()
            .into_iter()
            .find(|p| p.name == program)
            .unwrap()
            .path;
        assert_eq!(v["Config"]["Entrypoint"], serde_json::json!([path]));
        assert_eq!(
            v["Config"]["Labels"]["org.opencontainers.image.revision"],
            img.config
                .config()
                .as_ref()
                .unwrap()
                .labels()
                .as_ref()
                .unwrap()["org.opencontainers.image.revision"]
        );
    }
    // The native images run in the engine, as root by default and as any user a pod names
    // (no network needed).
    let run = |user: Option<&str>, image: &str, args: &[&str]| {
        let mut a = vec!["run", "--rm", "--network", "none"];
        if let Some(u) = user {
            a.extend(["--user", u]);
        }
        a.push(image);
        a.extend(args);
        docker(&a)
    };
    let out = run(
        None,
        &format!("{prefix}/entrypoint:{TAG}-amd64"),
        &["--help"],
    );
    assert!(matches!(out.status.code(), Some(0 | 2)), "{out:?}");
    let job = format!("{prefix}/fixture-job:{TAG}-amd64");
    let out = run(None, &job, &["id"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("uid=0 gid=0 "),
        "{out:?}"
    );
    let out = run(Some("65532"), &job, &["id"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("uid=65532 gid=65532 "),
        "{out:?}"
    );
    drop(loaded);
    for name in ["clonerefs", "sidecar"] {
        let out = docker(&["image", "ls", "-q", &format!("{prefix}/{name}")]);
        assert!(out.stdout.is_empty(), "{name} left in the engine");
    }
}

#[test]
fn docker_archive_refuses_an_index() {
    let l = layout();
    let out = tempfile::tempdir().unwrap();
    let err = image::docker::export(
        &l.dir,
        &image::ref_name("clonerefs", TAG, None),
        None,
        &out.path().join("x.tar"),
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("not an image manifest"),
        "{err:#}"
    );
}

// --- registry ------------------------------------------------------------------------------------

/// Debian's docker-registry (distribution 2.8), on a free loopback port, storing in a tempdir.
struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

impl Registry {
    fn start() -> Result<Registry, String> {
        if !Path::new(REGISTRY_BIN).exists() {
            return Err(format!("{REGISTRY_BIN} is missing: run `qemu/provision`"));
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = free_port().map_err(|e| e.to_string())?;
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    \
                 rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let log =
            std::fs::File::create(dir.path().join("registry.log")).map_err(|e| e.to_string())?;
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut r = Registry {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if get(port, "/v2/", "").map(|r| r.status) == Ok(200) {
                return Ok(r);
            }
            if let Ok(Some(s)) = r.child.try_wait() {
                return Err(format!("docker-registry exited: {s}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err("docker-registry did not answer /v2/".into())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Response {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

/// A bare HTTP/1.1 GET, so the read-back does not go through the client that pushed.
fn get(port: u16, path: &str, accept: &str) -> Result<Response, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or("no status")?;
    let headers: BTreeMap<_, _> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.get("transfer-encoding").map(String::as_str) == Some("chunked") {
        body = dechunk(&body);
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
    out
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

#[test]
#[cfg_attr(
    not(has_docker_registry),
    ignore = "needs docker-registry: run qemu/provision"
)]
fn push_to_a_real_registry_and_read_back() {
    let registry = Registry::start().unwrap_or_else(|e| panic!("docker-registry: {e}"));
    let l = layout();
    let dest: Destination = format!("127.0.0.1:{}/tetrapod", registry.port)
        .parse()
        .unwrap();
    let pushed = image::push::push(&l, &image::programs(), TAG, &dest).unwrap();
    // Twice: blobs already there are skipped, the referrers index is not duplicated.
    assert_eq!(
        image::push::push(&l, &image::programs(), TAG, &dest).unwrap(),
        pushed
    );
    let port = registry.port;
    for p in image::programs() {
        let tags = get(port, &format!("/v2/tetrapod/{}/tags/list", p.name), "").unwrap();
        if !p.shipped {
            assert_eq!(tags.status, 404, "{} was pushed", p.name);
            continue;
        }
        assert_eq!(tags.status, 200);
        let v: serde_json::Value = serde_json::from_slice(&tags.body).unwrap();
        let mut got: Vec<_> = v["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        got.sort();
        let mut want = vec![TAG.to_string()];
        for arch in ALL {
            let d = l.find(&image::ref_name(p.name, TAG, Some(arch))).unwrap();
            want.push(format!("{TAG}-{arch}"));
            want.push(format!("{TAG}-{arch}.sbom"));
            want.push(d.digest().to_string().replace(':', "-"));
        }
        want.sort();
        assert_eq!(got, want, "{}", p.name);

        let index = l.find(&image::ref_name(p.name, TAG, None)).unwrap();
        let r = get(
            port,
            &format!("/v2/tetrapod/{}/manifests/{TAG}", p.name),
            OCI_INDEX,
        )
        .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(
            r.headers["docker-content-digest"],
            index.digest().to_string()
        );
        assert_eq!(r.body, l.blob(index).unwrap());

        for arch in ALL {
            let name = image::ref_name(p.name, TAG, Some(arch));
            let m = l.find(&name).unwrap();
            let path = format!("/v2/tetrapod/{}/manifests/{TAG}-{arch}", p.name);
            let r = get(port, &path, OCI_MANIFEST).unwrap();
            assert_eq!(r.status, 200, "{name}");
            assert_eq!(r.headers["docker-content-digest"], m.digest().to_string());
            let img = l.image(&name).unwrap();
            let blob = |d: &str| get(port, &format!("/v2/tetrapod/{}/blobs/{d}", p.name), "");
            let config = blob(img.manifest.config().digest().as_ref()).unwrap();
            assert_eq!(config.body, img.config_bytes);

            // The SBOM, found the way OCI 1.1 clients do without a referrers API.
            let referrers = format!(
                "/v2/tetrapod/{}/manifests/{}",
                p.name,
                m.digest().to_string().replace(':', "-")
            );
            let r = get(port, &referrers, OCI_INDEX).unwrap();
            let idx: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            let sbom = l.find(&image::sbom_ref_name(p.name, TAG, arch)).unwrap();
            assert_eq!(idx["manifests"].as_array().unwrap().len(), 1);
            assert_eq!(idx["manifests"][0]["digest"], sbom.digest().to_string());
            assert_eq!(idx["manifests"][0]["artifactType"], "application/spdx+json");
            let sm: oci_spec::image::ImageManifest = l.json(sbom).unwrap();
            let doc = blob(sm.layers()[0].digest().as_ref()).unwrap();
            let doc: serde_json::Value = serde_json::from_slice(&doc.body).unwrap();
            assert_eq!(doc["spdxVersion"], "SPDX-2.3");
        }
    }
    drop(registry);
}
