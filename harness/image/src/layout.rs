/*!
The OCI image layout on disk: `oci-layout`, `index.json` and content-addressed
`blobs/sha256/<hex>`. Every JSON document is written canonically (sorted keys, no whitespace):
oci-spec keeps annotations and labels in `HashMap`s, whose order changes from run to run.
*/

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use oci_spec::image::{
    Descriptor, Digest, ImageConfiguration, ImageIndex, ImageIndexBuilder, ImageManifest, MediaType,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::rootfs::sha256;

/// The annotation that names a manifest in `index.json` (`<program>:<tag>[-<arch>]`).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Canonical JSON: the bytes whose digest is the document's identity.
pub fn canonical_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut out, olpc_cjson::CanonicalFormatter::new());
    value.serialize(&mut ser).context("serialise JSON")?;
    Ok(out)
}

/// A descriptor for `bytes` of `media_type`.
pub fn descriptor(media_type: MediaType, bytes: &[u8]) -> Descriptor {
    let digest = Digest::from_str(&sha256(bytes)).expect("sha256 digests parse");
    Descriptor::new(media_type, bytes.len() as u64, digest)
}

/// Writes a layout into a fresh directory.
pub struct Writer {
    dir: PathBuf,
    manifests: Vec<Descriptor>,
}

impl Writer {
    /// Starts a layout in `dir`, which must not exist yet or be empty.
    pub fn create(dir: &Path) -> Result<Writer> {
        if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
            bail!("{} is not empty", dir.display());
        }
        std::fs::create_dir_all(dir.join("blobs/sha256"))
            .with_context(|| format!("create {}", dir.display()))?;
        Ok(Writer {
            dir: dir.to_path_buf(),
            manifests: Vec::new(),
        })
    }

    /// Stores a blob (once: equal bytes share one file) and returns its descriptor.
    pub fn blob(&mut self, media_type: MediaType, bytes: &[u8]) -> Result<Descriptor> {
        let d = descriptor(media_type, bytes);
        let path = blob_path(&self.dir, d.digest());
        if !path.exists() {
            std::fs::write(&path, bytes).with_context(|| format!("write {}", path.display()))?;
        }
        Ok(d)
    }

    /// Stores a JSON document canonically.
    pub fn json<T: Serialize>(&mut self, media_type: MediaType, value: &T) -> Result<Descriptor> {
        let bytes = canonical_json(value)?;
        self.blob(media_type, &bytes)
    }

    /// Lists `d` in `index.json` under `ref_name`.
    pub fn name(&mut self, mut d: Descriptor, ref_name: &str) {
        let mut annotations = d.annotations().clone().unwrap_or_default();
        annotations.insert(REF_NAME.to_string(), ref_name.to_string());
        d.set_annotations(Some(annotations));
        self.manifests.push(d);
    }

    /// Writes `oci-layout` and `index.json`.
    pub fn finish(self) -> Result<()> {
        std::fs::write(
            self.dir.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )?;
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(self.manifests)
            .build()?;
        std::fs::write(self.dir.join("index.json"), canonical_json(&index)?)?;
        Ok(())
    }
}

fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs")
        .join(digest.algorithm().as_ref())
        .join(digest.digest())
}

/// Reads a layout written by [`Writer`] (or any OCI layout).
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
    pub index: ImageIndex,
}

impl Layout {
    pub fn open(dir: &Path) -> Result<Layout> {
        let path = dir.join("index.json");
        let index = ImageIndex::from_file(&path)
            .with_context(|| format!("read {} (run `harness images`)", path.display()))?;
        Ok(Layout {
            dir: dir.to_path_buf(),
            index,
        })
    }

    /// Every ref name in `index.json`, with its descriptor.
    pub fn refs(&self) -> HashMap<String, &Descriptor> {
        self.index
            .manifests()
            .iter()
            .filter_map(|d| {
                let name = d.annotations().as_ref()?.get(REF_NAME)?;
                Some((name.clone(), d))
            })
            .collect()
    }

    /// The descriptor named `ref_name` (`clonerefs:<tag>-arm64`).
    pub fn find(&self, ref_name: &str) -> Result<&Descriptor> {
        self.refs().get(ref_name).copied().with_context(|| {
            format!(
                "{} has no image named {ref_name:?}",
                self.dir.join("index.json").display()
            )
        })
    }

    /// A blob's bytes, checked against its digest.
    pub fn blob(&self, d: &Descriptor) -> Result<Vec<u8>> {
        let path = blob_path(&self.dir, d.digest());
        let bytes = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
        if sha256(&bytes) != d.digest().to_string() || bytes.len() as u64 != d.size() {
            bail!("{} does not match its descriptor", path.display());
        }
        Ok(bytes)
    }

    /// A JSON blob, parsed.
    pub fn json<T: DeserializeOwned>(&self, d: &Descriptor) -> Result<T> {
        serde_json::from_slice(&self.blob(d)?).with_context(|| format!("parse blob {}", d.digest()))
    }

    /// Every blob file's digest, sorted: for comparing two layouts.
    pub fn blob_digests(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.dir.join("blobs/sha256"))? {
            out.push(format!("sha256:{}", e?.file_name().to_string_lossy()));
        }
        out.sort();
        Ok(out)
    }

    /// The path of a blob, for readers that stream.
    pub fn blob_path(&self, d: &Descriptor) -> PathBuf {
        blob_path(&self.dir, d.digest())
    }

    /// The per-arch image named `ref_name`.
    pub fn image(&self, ref_name: &str) -> Result<StoredImage> {
        let d = self.find(ref_name)?;
        if *d.media_type() != MediaType::ImageManifest {
            bail!(
                "{ref_name} is a {}, not an image manifest: name one arch ({ref_name}-<arch>)",
                d.media_type()
            );
        }
        let manifest: ImageManifest = self.json(d)?;
        let config_bytes = self.blob(manifest.config())?;
        let config = ImageConfiguration::from_reader(&config_bytes[..])
            .with_context(|| format!("parse the config of {ref_name}"))?;
        Ok(StoredImage {
            descriptor: d.clone(),
            manifest,
            config,
            config_bytes,
        })
    }

    /// A layer as an uncompressed tar, checked against the config's diff_id.
    pub fn layer_tar(&self, img: &StoredImage, i: usize) -> Result<Vec<u8>> {
        let d = &img.manifest.layers()[i];
        let blob = self.blob(d)?;
        let tar = match d.media_type() {
            MediaType::ImageLayerGzip => {
                let mut out = Vec::new();
                std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&blob[..]), &mut out)
                    .with_context(|| format!("gunzip layer {}", d.digest()))?;
                out
            }
            MediaType::ImageLayer => blob,
            other => bail!("layer {} has unsupported media type {other}", d.digest()),
        };
        let want = img.config.rootfs().diff_ids().get(i);
        if want != Some(&sha256(&tar)) {
            bail!("layer {} does not match diff_id {want:?}", d.digest());
        }
        Ok(tar)
    }

    /// Unpacks every layer in order into `dest`, keeping modes (and, as root, ownership). Our
    /// layers have no whiteouts, so none are handled.
    pub fn unpack(&self, img: &StoredImage, dest: &Path) -> Result<()> {
        for i in 0..img.manifest.layers().len() {
            let tar = self.layer_tar(img, i)?;
            let mut a = tar::Archive::new(&tar[..]);
            a.set_preserve_permissions(true);
            a.set_preserve_ownerships(true);
            a.set_overwrite(true);
            a.unpack(dest)
                .with_context(|| format!("unpack into {}", dest.display()))?;
        }
        Ok(())
    }
}

/// A per-arch image read back from a layout.
#[derive(Debug, Clone)]
pub struct StoredImage {
    /// Its descriptor in `index.json`.
    pub descriptor: Descriptor,
    pub manifest: ImageManifest,
    pub config: ImageConfiguration,
    /// The config blob as stored (its digest is the image id Docker shows).
    pub config_bytes: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_hash_map_keys() {
        let m: HashMap<_, _> = (0..20).map(|i| (format!("k{i:02}"), i)).collect();
        let s = String::from_utf8(canonical_json(&m).unwrap()).unwrap();
        assert!(s.starts_with(r#"{"k00":0,"k01":1,"#), "{s}");
        assert!(!s.contains(' '));
    }

    #[test]
    fn round_trip_by_ref_name() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("layout");
        let mut w = Writer::create(&dir).unwrap();
        let a = w.blob(MediaType::ImageLayerGzip, b"layer").unwrap();
        let again = w.blob(MediaType::ImageLayerGzip, b"layer").unwrap();
        assert_eq!(a, again);
        w.name(a.clone(), "x:1-amd64");
        w.finish().unwrap();
        assert!(Writer::create(&dir).is_err(), "refuses a non-empty dir");
        let l = Layout::open(&dir).unwrap();
        let found = l.find("x:1-amd64").unwrap();
        assert_eq!(found.digest(), a.digest());
        assert_eq!(l.blob(found).unwrap(), b"layer");
        assert_eq!(l.blob_digests().unwrap(), [a.digest().to_string()]);
        assert!(l.find("x:2").is_err());
        std::fs::write(l.blob_path(found), b"tampered").unwrap();
        assert!(l.blob(found).is_err());
    }
}
