/*!
Image file systems as reproducible layers: a tree of entries becomes a tar with entries sorted by
path, fixed ownership, modes and mtime and no user or group names, gzipped with a fixed header
(no mtime, no file name, OS "unknown") at a fixed level. The same tree always gives the same bytes.

Two layers per image: the base (CA certificates, the `nonroot` user, `/tmp`), identical in every
image of every arch, so registries and nodes store it once; and the program.
*/

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use flate2::{Compression, GzBuilder};
use sha2::{Digest, Sha256};

/// The user every image runs as unless the pod says otherwise: root, as upstream's images (ko
/// on an alpine base that sets no user). Kubernetes' `runAsNonRoot` pods pick a user instead,
/// such as `nonroot`.
pub const DEFAULT_UID: u32 = 0;
pub const DEFAULT_GID: u32 = 0;
/// distroless's unprivileged `nonroot` user, listed in `/etc/passwd` for pods that run as it.
pub const NONROOT_UID: u32 = 65532;
pub const NONROOT_GID: u32 = 65532;
pub const NONROOT_HOME: &str = "/home/nonroot";
/// Where the images keep the CA bundle (and what `SSL_CERT_FILE` names).
pub const CA_BUNDLE_PATH: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Debian's copy of the Mozilla CA set, as the ca-certificates package ships it.
const MOZILLA_CERTS: &str = "/usr/share/ca-certificates/mozilla";

/// Part of the reproducibility contract: changing it changes every layer digest. 6, not 9: on
/// our binaries 9 saves about 0.5% for twice the time.
pub const GZIP_LEVEL: u32 = 6;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Dir,
    File(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kind: Kind,
    mode: u32,
    uid: u32,
    gid: u32,
}

/// A file tree, keyed by path without the leading `/`. The map's order is the tar's order: a
/// parent's path is a prefix of its children's, so it always comes first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    entries: BTreeMap<String, Entry>,
}

impl Tree {
    /// Adds a directory (and any missing parents, root-owned 0755).
    pub fn dir(&mut self, path: &str, mode: u32, uid: u32, gid: u32) -> &mut Self {
        let path = self.parents(path);
        self.entries.insert(
            path,
            Entry {
                kind: Kind::Dir,
                mode,
                uid,
                gid,
            },
        );
        self
    }

    /// Adds a root-owned file (and any missing parents).
    pub fn file(&mut self, path: &str, mode: u32, data: Vec<u8>) -> &mut Self {
        let path = self.parents(path);
        self.entries.insert(
            path,
            Entry {
                kind: Kind::File(data),
                mode,
                uid: 0,
                gid: 0,
            },
        );
        self
    }

    /// Normalises `path` and adds the parents it lacks.
    fn parents(&mut self, path: &str) -> String {
        let path = path.trim_matches('/').to_string();
        let mut at = 0;
        while let Some(i) = path[at..].find('/') {
            let parent = &path[..at + i];
            self.entries.entry(parent.to_string()).or_insert(Entry {
                kind: Kind::Dir,
                mode: 0o755,
                uid: 0,
                gid: 0,
            });
            at += i + 1;
        }
        path
    }

    /// The paths, in tar order (directories with a trailing `/`).
    pub fn paths(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|(p, e)| match e.kind {
                Kind::Dir => format!("{p}/"),
                Kind::File(_) => p.clone(),
            })
            .collect()
    }

    /// The uncompressed tar: every header fixed but for path, type, size and mode.
    pub fn tar(&self, mtime: u64) -> Result<Vec<u8>> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, e) in &self.entries {
            let mut h = tar::Header::new_ustar();
            h.set_mode(e.mode);
            h.set_uid(e.uid.into());
            h.set_gid(e.gid.into());
            h.set_mtime(mtime);
            match &e.kind {
                Kind::Dir => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    b.append_data(&mut h, format!("{path}/"), std::io::empty())?;
                }
                Kind::File(data) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, path, data.as_slice())?;
                }
            }
        }
        Ok(b.into_inner()?)
    }
}

/// A layer: its tar (whose digest is the config's diff_id) and the gzip that is the blob.
#[derive(Debug, Clone)]
pub struct Layer {
    pub tar: Vec<u8>,
    pub gzip: Vec<u8>,
}

impl Layer {
    pub fn new(tree: &Tree, mtime: u64) -> Result<Layer> {
        let tar = tree.tar(mtime)?;
        let gzip = gzip(&tar)?;
        Ok(Layer { tar, gzip })
    }

    /// `sha256:<hex>` of the uncompressed tar.
    pub fn diff_id(&self) -> String {
        sha256(&self.tar)
    }
}

/// gzip with a header that depends on nothing but the level: mtime 0, no name, OS 255.
pub fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut gz = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), Compression::new(GZIP_LEVEL));
    gz.write_all(data)?;
    Ok(gz.finish()?)
}

/// `sha256:<hex>`, the OCI digest form.
pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

/// The base layer's tree: CA bundle, `nonroot` user and group, its home and `/tmp`.
pub fn base_tree(ca_bundle: Vec<u8>) -> Tree {
    let mut t = Tree::default();
    t.file(
        "/etc/passwd",
        0o644,
        format!(
            "root:x:0:0:root:/root:/sbin/nologin\n\
             nonroot:x:{NONROOT_UID}:{NONROOT_GID}:nonroot:{NONROOT_HOME}:/sbin/nologin\n"
        )
        .into_bytes(),
    )
    .file(
        "/etc/group",
        0o644,
        format!("root:x:0:\nnonroot:x:{NONROOT_GID}:\n").into_bytes(),
    )
    // Static glibc still reads this for host lookups: files first, then DNS, as usual.
    .file(
        "/etc/nsswitch.conf",
        0o644,
        b"passwd: files\ngroup: files\nhosts: files dns\n".to_vec(),
    )
    .file(CA_BUNDLE_PATH, 0o644, ca_bundle)
    .dir("/root", 0o700, 0, 0)
    .dir(NONROOT_HOME, 0o700, NONROOT_UID, NONROOT_GID)
    .dir("/tmp", 0o1777, 0, 0);
    t
}

/// The program layer's tree: one executable at `path`.
pub fn program_tree(path: &str, binary: Vec<u8>) -> Tree {
    let mut t = Tree::default();
    t.file(path, 0o755, binary);
    t
}

/// The CA bundle: Debian's Mozilla set, concatenated in file-name order, and the
/// ca-certificates package version. Not the host's `/etc/ssl/certs` bundle, which may carry
/// local CAs (this machine's has a proxy's) and would make the images depend on the host.
pub fn ca_bundle() -> Result<(Vec<u8>, Option<String>)> {
    ca_bundle_from(Path::new(MOZILLA_CERTS)).map(|b| (b, debian_version("ca-certificates")))
}

fn ca_bundle_from(dir: &Path) -> Result<Vec<u8>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| {
            format!(
                "read {} (Debian's ca-certificates package): run `qemu/provision`",
                dir.display()
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "crt"))
        .collect();
    files.sort();
    anyhow::ensure!(!files.is_empty(), "no certificates in {}", dir.display());
    let mut out = Vec::new();
    for f in files {
        let mut pem = std::fs::read(&f).with_context(|| format!("read {}", f.display()))?;
        if !pem.ends_with(b"\n") {
            pem.push(b'\n');
        }
        out.extend(pem);
    }
    Ok(out)
}

/// The installed version of a Debian package, if dpkg knows it.
pub fn debian_version(package: &str) -> Option<String> {
    let out = std::process::Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", package])
        .output()
        .ok()?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !v.is_empty()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(tar_bytes: &[u8]) -> Vec<(String, u32, u64, u64, u64, Vec<u8>)> {
        let mut a = tar::Archive::new(tar_bytes);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let h = e.header().clone();
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut data).unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    h.mtime().unwrap(),
                    data,
                )
            })
            .collect()
    }

    #[test]
    fn insertion_order_does_not_matter() {
        let mut a = Tree::default();
        a.file("/b/x", 0o644, b"x".to_vec())
            .file("/a", 0o600, b"a".to_vec());
        let mut b = Tree::default();
        b.file("a", 0o600, b"a".to_vec())
            .file("b/x", 0o644, b"x".to_vec());
        assert_eq!(a.tar(7).unwrap(), b.tar(7).unwrap());
        assert_eq!(a.paths(), ["a", "b/", "b/x"]);
    }

    #[test]
    fn parents_come_first_and_headers_are_fixed() {
        let t = base_tree(b"PEM".to_vec());
        let got = entries(&t.tar(1_700_000_000).unwrap());
        let paths: Vec<_> = got.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            paths,
            [
                "etc/",
                "etc/group",
                "etc/nsswitch.conf",
                "etc/passwd",
                "etc/ssl/",
                "etc/ssl/certs/",
                "etc/ssl/certs/ca-certificates.crt",
                "home/",
                "home/nonroot/",
                "root/",
                "tmp/"
            ]
        );
        for (path, mode, uid, gid, mtime, _) in &got {
            assert_eq!(*mtime, 1_700_000_000, "{path}");
            let nonroot = path == "home/nonroot/";
            assert_eq!((*uid, *gid), if nonroot { (65532, 65532) } else { (0, 0) });
            let want = match path.as_str() {
                "tmp/" => 0o1777,
                "home/nonroot/" | "root/" => 0o700,
                p if p.ends_with('/') => 0o755,
                _ => 0o644,
            };
            assert_eq!(*mode, want, "{path}");
        }
        let passwd = &got.iter().find(|e| e.0 == "etc/passwd").unwrap().5;
        assert!(
            String::from_utf8_lossy(passwd)
                .contains("nonroot:x:65532:65532:nonroot:/home/nonroot:")
        );
        // No host user or group names leak into the headers.
        let bytes = t.tar(0).unwrap();
        let mut a = tar::Archive::new(&bytes[..]);
        for e in a.entries().unwrap() {
            let e = e.unwrap();
            assert_eq!(e.header().username_bytes(), Some(&b""[..]));
            assert_eq!(e.header().groupname_bytes(), Some(&b""[..]));
        }
    }

    #[test]
    fn gzip_header_is_fixed_and_the_layer_is_reproducible() {
        let z = gzip(b"hello").unwrap();
        // magic, deflate, no flags (no name), mtime 0, XFL (0: neither fastest nor best), OS 255
        assert_eq!(&z[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
        let t = program_tree("/ko-app/x", vec![1, 2, 3]);
        let (a, b) = (Layer::new(&t, 5).unwrap(), Layer::new(&t, 5).unwrap());
        assert_eq!(a.gzip, b.gzip);
        assert_eq!(a.diff_id(), sha256(&a.tar));
        assert_ne!(sha256(&a.gzip), a.diff_id());
        let mut unpacked = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(&a.gzip[..]),
            &mut unpacked,
        )
        .unwrap();
        assert_eq!(unpacked, a.tar);
    }

    #[test]
    fn digests_are_sha256_of_the_bytes() {
        assert_eq!(
            sha256(b"{}"),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    #[test]
    fn ca_bundle_concatenates_in_name_order() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("b.crt"), "B\n").unwrap();
        std::fs::write(d.path().join("a.crt"), "A").unwrap();
        std::fs::write(d.path().join("readme"), "not a cert").unwrap();
        assert_eq!(ca_bundle_from(d.path()).unwrap(), b"A\nB\n");
    }
}
