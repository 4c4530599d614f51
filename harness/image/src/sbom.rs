/*!
One SPDX 2.3 JSON document per image: the program, every crate compiled into it for that target
with version, declared license and Cargo.lock checksum, the C libraries the `-sys` crates vendor
(OpenSSL, libgit2, libssh2, zlib), the static glibc and Rust standard library it links, and the
image's CA bundle.

Which crates: `cargo metadata --filter-platform <triple>` gives the packages and the resolve
graph; the closure of the program's package over normal dependencies is then narrowed to what
`cargo tree` reports for the lab build's own package selection. The metadata resolve unifies
features across the whole workspace (the harness, dev-dependencies), so alone it would list
crates the binary does not contain (quinn, tempfile, ...).
*/

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::{Value, json};

use super::source::Source;
use tetrapod_arch::Arch;

/// The SBOM's media type, as a layer and as the artifact type of its manifest.
pub const MEDIA_TYPE: &str = "application/spdx+json";

#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub packages: Vec<Package>,
    pub resolve: Resolve,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Package {
    pub id: String,
    pub name: String,
    pub version: String,
    pub license: Option<String>,
    pub source: Option<String>,
    pub repository: Option<String>,
    pub manifest_path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Resolve {
    pub nodes: Vec<Node>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Node {
    pub id: String,
    pub deps: Vec<NodeDep>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NodeDep {
    pub pkg: String,
    pub dep_kinds: Vec<DepKind>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DepKind {
    /// `None` for a normal dependency, else `dev` or `build`.
    pub kind: Option<String>,
}

impl Metadata {
    fn package(&self, id: &str) -> Option<&Package> {
        self.packages.iter().find(|p| p.id == id)
    }

    fn deps<'a>(
        &'a self,
        id: &'a str,
        kind: Option<&'a str>,
    ) -> impl Iterator<Item = &'a str> + 'a {
        self.resolve
            .nodes
            .iter()
            .filter(move |n| n.id == id)
            .flat_map(|n| n.deps.iter())
            .filter(move |d| d.dep_kinds.iter().any(|k| k.kind.as_deref() == kind))
            .map(|d| d.pkg.as_str())
    }

    /// The workspace package `name` and every package it reaches over normal dependencies,
    /// root first, the rest sorted by name and version.
    pub fn closure(&self, name: &str) -> Result<Vec<&Package>> {
        let root = self
            .packages
            .iter()
            .find(|p| p.name == name && p.source.is_none())
            .with_context(|| format!("no workspace package {name}"))?;
        let mut seen = BTreeSet::new();
        let mut todo = vec![root.id.as_str()];
        while let Some(id) = todo.pop() {
            if seen.insert(id) {
                todo.extend(self.deps(id, None));
            }
        }
        let mut rest: Vec<_> = seen
            .into_iter()
            .filter(|id| *id != root.id)
            .filter_map(|id| self.package(id))
            .collect();
        rest.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
        rest.insert(0, root);
        Ok(rest)
    }

    /// The version of a build-dependency `dep` of package `of` (openssl-src of openssl-sys).
    fn build_dep_version(&self, of: &Package, dep: &str) -> Option<String> {
        self.deps(&of.id, Some("build"))
            .filter_map(|id| self.package(id))
            .find(|p| p.name == dep)
            .map(|p| p.version.clone())
    }
}

/// `cargo tree --prefix depth -f '{p}'` output -> per root package, the (name, version) pairs
/// of its tree.
pub fn parse_tree(text: &str) -> BTreeMap<String, BTreeSet<(String, String)>> {
    let mut trees: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    let mut root = None;
    for line in text.lines() {
        let rest = line.trim_start_matches(|c: char| c.is_ascii_digit());
        let depth = &line[..line.len() - rest.len()];
        let mut words = rest.split_whitespace();
        let (Some(name), Some(version)) = (words.next(), words.next()) else {
            continue;
        };
        let Some(version) = version.strip_prefix('v') else {
            continue;
        };
        if depth == "0" {
            root = Some(name.to_string());
        }
        if let Some(r) = &root {
            trees
                .entry(r.clone())
                .or_default()
                .insert((name.to_string(), version.to_string()));
        }
    }
    trees
}

/// A row of the SBOM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    pub id: String,
    pub name: String,
    pub version: Option<String>,
    pub license: Option<String>,
    pub download: Option<String>,
    pub homepage: Option<String>,
    pub purl: Option<String>,
    pub sha256: Option<String>,
    pub comment: Option<String>,
}

impl Component {
    fn new(id: &str, name: &str, version: Option<String>, license: &str) -> Component {
        Component {
            id: spdx_id(id),
            name: name.to_string(),
            version,
            license: Some(license.to_string()),
            download: None,
            homepage: None,
            purl: None,
            sha256: None,
            comment: None,
        }
    }

    fn spdx(&self, purpose: &str) -> Value {
        let mut p = json!({
            "SPDXID": self.id,
            "name": self.name,
            "downloadLocation": self.download.as_deref().unwrap_or("NOASSERTION"),
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": self.license.as_deref().unwrap_or("NOASSERTION"),
            "copyrightText": "NOASSERTION",
            "primaryPackagePurpose": purpose,
        });
        let o = p.as_object_mut().expect("an object");
        if let Some(v) = &self.version {
            o.insert("versionInfo".into(), v.as_str().into());
        }
        if let Some(h) = &self.homepage {
            o.insert("homepage".into(), h.as_str().into());
        }
        if let Some(c) = &self.sha256 {
            o.insert(
                "checksums".into(),
                json!([{"algorithm": "SHA256", "checksumValue": c}]),
            );
        }
        if let Some(purl) = &self.purl {
            o.insert(
                "externalRefs".into(),
                json!([{
                    "referenceCategory": "PACKAGE-MANAGER",
                    "referenceType": "purl",
                    "referenceLocator": purl,
                }]),
            );
        }
        if let Some(c) = &self.comment {
            o.insert("comment".into(), c.as_str().into());
        }
        p
    }
}

/// SPDX ids allow letters, digits, `.` and `-` after `SPDXRef-`.
fn spdx_id(s: &str) -> String {
    let body: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("SPDXRef-{body}")
}

/// Old crates write `MIT/Apache-2.0`; SPDX wants `MIT OR Apache-2.0`.
fn license_expression(l: &str) -> String {
    l.split('/').map(str::trim).collect::<Vec<_>>().join(" OR ")
}

/// The crates (and vendored C libraries) of every lab program for one target.
#[derive(Debug, Clone)]
pub struct Crates {
    metadata: Metadata,
    built: BTreeMap<String, BTreeSet<(String, String)>>,
    checksums: HashMap<(String, String), String>,
    /// Debian's libssl-dev version when the lab build linked it ([`crate::Built::openssl_deb`]).
    openssl_deb: Option<(String, String)>,
}

impl Crates {
    /// Asks cargo about `arch`'s target, for the lab's package selection.
    pub fn load(lab: &crate::Built, arch: Arch) -> Result<Crates> {
        let triple = arch.target().triple.as_str();
        let root = lab.workspace.clone();
        let meta = cargo(
            &root,
            &[
                "metadata",
                "--format-version",
                "1",
                "--locked",
                "--filter-platform",
                triple,
            ],
        )?;
        let metadata: Metadata =
            serde_json::from_slice(&meta).context("parse cargo metadata output")?;
        let mut tree = vec![
            "tree",
            "--locked",
            "--target",
            triple,
            "-e",
            "normal",
            "--prefix",
            "depth",
            "--no-dedupe",
            "-f",
            "{p}",
        ];
        for p in &lab.programs {
            tree.extend(["-p", p.name]);
        }
        let built = parse_tree(&String::from_utf8_lossy(&cargo(&root, &tree)?));
        let lock = std::fs::read_to_string(root.join("Cargo.lock")).context("read Cargo.lock")?;
        Ok(Crates {
            metadata,
            built,
            checksums: lock_checksums(&lock)?,
            openssl_deb: (lab.openssl_deb)(arch).map(|v| (arch.target().debian.clone(), v)),
        })
    }

    /// The program's crate first, then its dependencies, then the C libraries they vendor.
    pub fn components(&self, program: &str, source: &Source) -> Result<Vec<Component>> {
        let built = self
            .built
            .get(program)
            .with_context(|| format!("cargo tree shows no {program}"))?;
        let closure: Vec<_> = self
            .metadata
            .closure(program)?
            .into_iter()
            .filter(|p| built.contains(&(p.name.clone(), p.version.clone())))
            .collect();
        let mut out = Vec::new();
        for p in &closure {
            let mut c = Component::new(
                &format!("crate-{}-{}", p.name, p.version),
                &p.name,
                Some(p.version.clone()),
                "NOASSERTION",
            );
            c.license = p.license.as_deref().map(license_expression);
            c.homepage = p.repository.clone();
            c.purl = Some(format!("pkg:cargo/{}@{}", p.name, p.version));
            if p.source.is_none() {
                c.download = Some(format!("git+{}@{}", source.url, source.revision));
            } else if p
                .source
                .as_deref()
                .is_some_and(|s| s.starts_with("registry+"))
            {
                c.download = Some(format!(
                    "https://crates.io/api/v1/crates/{}/{}/download",
                    p.name, p.version
                ));
                c.sha256 = self
                    .checksums
                    .get(&(p.name.clone(), p.version.clone()))
                    .cloned();
            }
            out.push(c);
        }
        for p in &closure {
            out.extend(self.vendored(p));
        }
        Ok(out)
    }

    /// The C library a `-sys` crate builds from source, if it is one we know.
    fn vendored(&self, p: &Package) -> Option<Component> {
        let dir = p.manifest_path.parent().unwrap_or(Path::new("."));
        let (name, version, license, via) = match p.name.as_str() {
            // openssl-src's version is `300.x.y+<OpenSSL version>`.
            "openssl-sys" if self.openssl_deb.is_some() => {
                let (debarch, v) = self.openssl_deb.as_ref()?;
                let upstream = v.split_once('-').map_or(v.as_str(), |(u, _)| u);
                let mut c = Component::new(
                    "c-openssl",
                    "openssl",
                    Some(upstream.to_string()),
                    "Apache-2.0",
                );
                c.purl = Some(format!("pkg:deb/debian/libssl-dev@{v}?arch={debarch}"));
                c.comment = Some(format!(
                    "C library linked from Debian's libssl-dev:{debarch} {v} (static libraries)"
                ));
                return Some(c);
            }
            "openssl-sys" => {
                let v = self.metadata.build_dep_version(p, "openssl-src")?;
                let openssl = v.split_once('+').map(|(_, v)| v.to_string());
                ("openssl", openssl, "Apache-2.0", format!("openssl-src {v}"))
            }
            // libgit2-sys's version is `0.x.y+<libgit2 version>`.
            "libgit2-sys" => (
                "libgit2",
                p.version.split_once('+').map(|(_, v)| v.to_string()),
                "GPL-2.0-only WITH GCC-exception-2.0",
                format!("libgit2-sys {}", p.version),
            ),
            "libssh2-sys" => (
                "libssh2",
                header_define(&dir.join("libssh2/include/libssh2.h"), "LIBSSH2_VERSION"),
                "BSD-3-Clause",
                format!("libssh2-sys {}", p.version),
            ),
            "libz-sys" => (
                "zlib",
                header_define(&dir.join("src/zlib/zlib.h"), "ZLIB_VERSION"),
                "Zlib",
                format!("libz-sys {}", p.version),
            ),
            _ => return None,
        };
        let mut c = Component::new(&format!("c-{name}"), name, version.clone(), license);
        c.purl = version.map(|v| format!("pkg:generic/{name}@{v}"));
        c.comment = Some(format!("C library built from the source vendored by {via}"));
        Some(c)
    }
}

/// `#define NAME "value"` from a C header.
fn header_define(path: &Path, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("#define")?.trim_start();
        let value = rest.strip_prefix(name)?;
        value
            .starts_with(char::is_whitespace)
            .then(|| value.trim().trim_matches('"').to_string())
    })
}

/// (name, version) -> sha256 of the `.crate`, from Cargo.lock.
fn lock_checksums(lock: &str) -> Result<HashMap<(String, String), String>> {
    #[derive(Deserialize)]
    struct Lock {
        package: Vec<LockPackage>,
    }
    #[derive(Deserialize)]
    struct LockPackage {
        name: String,
        version: String,
        checksum: Option<String>,
    }
    let lock: Lock = toml::from_str(lock).context("parse Cargo.lock")?;
    Ok(lock
        .package
        .into_iter()
        .filter_map(|p| Some(((p.name, p.version), p.checksum?)))
        .collect())
}

fn cargo(root: &Path, args: &[&str]) -> Result<Vec<u8>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(root)
        .args(args)
        .output()
        .context("could not run cargo")?;
    if !out.status.success() {
        bail!(
            "cargo {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// What else is in every binary and image: the static glibc, Rust's standard library, and the
/// CA bundle. Versions the host cannot tell are left out (SPDX's NOASSERTION).
#[derive(Debug, Clone, Default)]
pub struct System {
    pub rust_release: Option<String>,
    /// Per arch: the Debian package that provided the static libc (`libc6-dev-s390x-cross`) and
    /// its version.
    pub glibc: BTreeMap<Arch, (String, String)>,
    pub ca_certificates: Option<String>,
}

impl System {
    /// Asks dpkg for the libc packages the lab links against.
    pub fn probe(rust_release: Option<String>, ca_certificates: Option<String>) -> System {
        let mut glibc = BTreeMap::new();
        for arch in tetrapod_arch::ALL {
            let pkg = match arch {
                Arch::Amd64 => "libc6-dev".to_string(),
                a => format!("libc6-dev-{}-cross", a.target().debian),
            };
            if let Some(v) = super::rootfs::debian_version(&pkg) {
                glibc.insert(arch, (pkg, v));
            }
        }
        System {
            rust_release,
            glibc,
            ca_certificates,
        }
    }
}

/// Everything one image's SBOM says.
pub struct Subject<'a> {
    pub program: &'a str,
    pub arch: Arch,
    /// Where the binary is in the image.
    pub path: &'a str,
    /// sha256 hex of the binary as shipped.
    pub binary_sha256: String,
    /// The image manifest's digest.
    pub manifest_digest: String,
    pub source: &'a Source,
    pub components: &'a [Component],
    pub system: &'a System,
}

/// The SPDX 2.3 document, as pretty JSON (its bytes are a blob; struct order is fixed).
pub fn spdx(s: &Subject) -> Result<Vec<u8>> {
    let mut packages = Vec::new();
    let mut rels = vec![rel("SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-image")];

    let name = format!("{} image", s.program);
    let mut image = Component::new("image", &name, Some(s.source.revision.clone()), "");
    image.license = None;
    image.download = Some(format!("git+{}@{}", s.source.url, s.source.revision));
    image.purl = Some(format!(
        "pkg:oci/{}@{}?arch={}",
        s.program,
        s.manifest_digest.replace(':', "%3A"),
        s.arch.oci_architecture()
    ));
    packages.push(image.spdx("CONTAINER"));

    let (app, libs) = s
        .components
        .split_first()
        .context("no components: the program's own crate comes first")?;
    let mut app = app.clone();
    app.sha256 = Some(s.binary_sha256.clone());
    app.comment = Some(format!(
        "{} in the image: the stripped lab-profile build",
        s.path
    ));
    packages.push(app.spdx("APPLICATION"));
    rels.push(rel("SPDXRef-image", "CONTAINS", &app.id));

    let mut linked: Vec<Component> = libs.to_vec();
    if let Some(r) = &s.system.rust_release {
        let mut std = Component::new("rust-std", "rust-std", Some(r.clone()), "MIT OR Apache-2.0");
        std.purl = Some(format!("pkg:generic/rust-std@{r}"));
        std.comment = Some("Rust standard library, linked statically".into());
        linked.push(std);
    }
    if let Some((pkg, v)) = s.system.glibc.get(&s.arch) {
        let upstream = v.split(['-', '+']).next().unwrap_or(v).to_string();
        let mut g = Component::new("glibc", "glibc", Some(upstream), "LGPL-2.1-or-later");
        g.purl = Some(format!("pkg:deb/debian/{pkg}@{v}"));
        g.comment = Some(format!("static C library from Debian's {pkg} {v}"));
        linked.push(g);
    }
    for c in &linked {
        packages.push(c.spdx("LIBRARY"));
        rels.push(rel(&app.id, "STATIC_LINK", &c.id));
    }

    let mut ca = Component::new(
        "ca-certificates",
        "ca-certificates",
        s.system.ca_certificates.clone(),
        "MPL-2.0",
    );
    ca.purl = s
        .system
        .ca_certificates
        .as_ref()
        .map(|v| format!("pkg:deb/debian/ca-certificates@{v}"));
    ca.comment = Some(format!(
        "Mozilla CA set at {}",
        super::rootfs::CA_BUNDLE_PATH
    ));
    packages.push(ca.spdx("DATA"));
    rels.push(rel("SPDXRef-image", "CONTAINS", &ca.id));

    let doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("tetrapod-{}-{}", s.program, s.arch),
        "documentNamespace": format!(
            "{}/spdx/{}/{}-{}", s.source.url, s.source.revision, s.program, s.arch
        ),
        "creationInfo": {
            "created": s.source.created(),
            "creators": [format!("Tool: tetrapod-harness-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": packages,
        "relationships": rels,
    });
    let mut out = serde_json::to_vec_pretty(&doc)?;
    out.push(b'\n');
    Ok(out)
}

fn rel(a: &str, kind: &str, b: &str) -> Value {
    json!({"spdxElementId": a, "relationshipType": kind, "relatedSpdxElement": b})
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A workspace `app` -> `lib` -> `shared`, with a dev-dependency `devonly` and a build
    /// dependency `builder` that must not count.
    fn metadata() -> Metadata {
        let pkg = |id: &str, name: &str, source: Option<&str>| {
            json!({
                "id": id, "name": name, "version": "1.0.0", "license": "MIT/Apache-2.0",
                "source": source, "repository": null, "manifest_path": "/x/Cargo.toml"
            })
        };
        let reg = Some("registry+https://github.com/rust-lang/crates.io-index");
        let dep =
            |pkg: &str, kind: Option<&str>| json!({"pkg": pkg, "dep_kinds": [{"kind": kind}]});
        serde_json::from_value(json!({
            "packages": [
                pkg("app-id", "app", None), pkg("lib-id", "lib", reg),
                pkg("shared-id", "shared", reg), pkg("devonly-id", "devonly", reg),
                pkg("builder-id", "builder", reg), pkg("other-id", "other", None),
            ],
            "resolve": {"nodes": [
                {"id": "app-id", "deps": [dep("lib-id", None), dep("devonly-id", Some("dev")),
                                          dep("builder-id", Some("build"))]},
                {"id": "lib-id", "deps": [dep("shared-id", None)]},
                {"id": "shared-id", "deps": []},
                {"id": "devonly-id", "deps": [dep("shared-id", None)]},
                {"id": "builder-id", "deps": []},
                {"id": "other-id", "deps": [dep("shared-id", None)]},
            ]}
        }))
        .unwrap()
    }

    #[test]
    fn closure_follows_normal_dependencies_only() {
        let m = metadata();
        let names: Vec<_> = m
            .closure("app")
            .unwrap()
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, ["app", "lib", "shared"]);
        assert!(
            m.closure("lib").is_err(),
            "only workspace packages are roots"
        );
        assert_eq!(
            m.build_dep_version(m.package("app-id").unwrap(), "builder"),
            Some("1.0.0".into())
        );
    }

    #[test]
    fn tree_output_is_split_per_root() {
        let text = "0app v0.1.0 (/w/app)\n1lib v1.0.0\n2shared v1.0.0\n\
                    0tool v0.1.0 (/w/tool)\n1shared v1.0.0\n";
        let t = parse_tree(text);
        let app: Vec<_> = t["app"].iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(app, ["app", "lib", "shared"]);
        assert_eq!(t["tool"].len(), 2);
    }

    #[test]
    fn licenses_and_ids_are_spdx() {
        assert_eq!(license_expression("MIT/Apache-2.0"), "MIT OR Apache-2.0");
        assert_eq!(license_expression("MIT OR Apache-2.0"), "MIT OR Apache-2.0");
        assert_eq!(
            spdx_id("crate-libgit2-sys-0.18.8+1.9.7"),
            "SPDXRef-crate-libgit2-sys-0.18.8-1.9.7"
        );
    }

    #[test]
    fn header_defines_are_read() {
        let d = tempfile::tempdir().unwrap();
        let h = d.path().join("z.h");
        std::fs::write(
            &h,
            "#define ZLIB_VERSION_X 1\n#define ZLIB_VERSION \"1.3.2\"\n",
        )
        .unwrap();
        assert_eq!(header_define(&h, "ZLIB_VERSION"), Some("1.3.2".into()));
    }

    #[test]
    fn lock_checksums_are_keyed_by_name_and_version() {
        let lock = "version = 4\n[[package]]\nname = \"a\"\nversion = \"1.0.0\"\n\
                    checksum = \"abc\"\n[[package]]\nname = \"local\"\nversion = \"0.1.0\"\n";
        let c = lock_checksums(lock).unwrap();
        assert_eq!(c[&("a".into(), "1.0.0".into())], "abc");
        assert_eq!(c.len(), 1);
    }
}
