/*!
The OCI documents of one image: config, manifest, the per-program index, and the SBOM's
artifact manifest (OCI 1.1: `artifactType`, an empty config, the SBOM as its one layer and the
image manifest as its `subject`).
*/

use std::collections::HashMap;

use anyhow::Result;
use oci_spec::image::{
    Arch as OciArch, ConfigBuilder, Descriptor, DescriptorBuilder, HistoryBuilder,
    ImageConfiguration, ImageConfigurationBuilder, ImageIndex, ImageIndexBuilder, ImageManifest,
    ImageManifestBuilder, MediaType, Os, Platform, PlatformBuilder, RootFsBuilder,
};

use super::rootfs::{CA_BUNDLE_PATH, DEFAULT_GID, DEFAULT_UID};
use super::source::Source;
use tetrapod_arch::Arch;

/// `PATH` as ko sets it, so the program is also found by name.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/ko-app";

/// The config's `User`: numeric, so it works without looking up `/etc/passwd`.
pub fn user() -> String {
    format!("{DEFAULT_UID}:{DEFAULT_GID}")
}

/// OCI annotations (and config labels) every document carries.
pub fn annotations(source: &Source, program: &str) -> HashMap<String, String> {
    HashMap::from([
        (
            "org.opencontainers.image.revision".to_string(),
            source.revision.clone(),
        ),
        (
            "org.opencontainers.image.source".to_string(),
            source.url.clone(),
        ),
        (
            "org.opencontainers.image.created".to_string(),
            source.created(),
        ),
        (
            "org.opencontainers.image.title".to_string(),
            program.to_string(),
        ),
    ])
}

pub fn platform(arch: Arch) -> Result<Platform> {
    let mut p = PlatformBuilder::default()
        .architecture(OciArch::from(arch.oci_architecture()))
        .os(Os::Linux);
    if let Some(v) = arch.oci_variant() {
        p = p.variant(v.to_string());
    }
    Ok(p.build()?)
}

/// What goes into one image's config.
pub struct ConfigInput<'a> {
    pub arch: Arch,
    pub program: &'a str,
    /// The binary's path in the image: the entrypoint.
    pub path: &'a str,
    pub diff_ids: Vec<String>,
    pub source: &'a Source,
}

pub fn config(c: &ConfigInput) -> Result<ImageConfiguration> {
    let created = c.source.created();
    let run = ConfigBuilder::default()
        .user(user())
        .env(vec![
            format!("PATH={PATH}"),
            format!("SSL_CERT_FILE={CA_BUNDLE_PATH}"),
        ])
        .entrypoint(vec![c.path.to_string()])
        .labels(annotations(c.source, c.program))
        .build()?;
    let history = vec![
        HistoryBuilder::default()
            .created(created.clone())
            .created_by("tetrapod harness images: CA certificates, nonroot user, /tmp".to_string())
            .build()?,
        HistoryBuilder::default()
            .created(created.clone())
            .created_by(format!("tetrapod harness images: {}", c.path))
            .build()?,
    ];
    let mut b = ImageConfigurationBuilder::default()
        .created(created)
        .architecture(OciArch::from(c.arch.oci_architecture()))
        .os(Os::Linux)
        .config(run)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(c.diff_ids.clone())
                .build()?,
        )
        .history(history);
    if let Some(v) = c.arch.oci_variant() {
        b = b.variant(v.to_string());
    }
    Ok(b.build()?)
}

pub fn manifest(
    config: Descriptor,
    layers: Vec<Descriptor>,
    annotations: HashMap<String, String>,
) -> Result<ImageManifest> {
    Ok(ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config)
        .layers(layers)
        .annotations(annotations)
        .build()?)
}

/// An index; without annotations when `annotations` is empty (the referrers index).
pub fn index(
    manifests: Vec<Descriptor>,
    annotations: HashMap<String, String>,
) -> Result<ImageIndex> {
    let mut b = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests);
    if !annotations.is_empty() {
        b = b.annotations(annotations);
    }
    Ok(b.build()?)
}

/// The SBOM's manifest: `empty` is the descriptor of the `{}` config blob, `sbom` of the SPDX
/// document, `subject` of the image it describes.
pub fn sbom_manifest(
    empty: Descriptor,
    sbom: Descriptor,
    subject: &Descriptor,
    source: &Source,
) -> Result<ImageManifest> {
    let subject = Descriptor::new(
        subject.media_type().clone(),
        subject.size(),
        subject.digest().clone(),
    );
    Ok(ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .artifact_type(MediaType::Other(super::sbom::MEDIA_TYPE.to_string()))
        .config(empty)
        .layers(vec![sbom])
        .subject(subject)
        .annotations(HashMap::from([(
            "org.opencontainers.image.created".to_string(),
            source.created(),
        )]))
        .build()?)
}

/// `d` with a platform (for index entries).
pub fn with_platform(d: &Descriptor, arch: Arch) -> Result<Descriptor> {
    Ok(DescriptorBuilder::default()
        .media_type(d.media_type().clone())
        .digest(d.digest().clone())
        .size(d.size())
        .platform(platform(arch)?)
        .build()?)
}

/// `d` with a title annotation (for the SBOM layer, so tools can save it under a name).
pub fn with_title(d: &Descriptor, title: &str) -> Result<Descriptor> {
    Ok(DescriptorBuilder::default()
        .media_type(d.media_type().clone())
        .digest(d.digest().clone())
        .size(d.size())
        .annotations(HashMap::from([(
            "org.opencontainers.image.title".to_string(),
            title.to_string(),
        )]))
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::canonical_json;
    use tetrapod_arch::ALL;

    fn source() -> Source {
        Source {
            revision: "0123456789abcdef0123456789abcdef01234567".into(),
            epoch: 1_700_000_000,
            url: "https://example.invalid/tetrapod".into(),
            describe: "0123456".into(),
        }
    }

    #[test]
    fn config_names_the_arch_user_and_entrypoint() {
        for arch in ALL {
            let src = source();
            let c = config(&ConfigInput {
                arch,
                program: "sidecar",
                path: "/ko-app/sidecar",
                diff_ids: vec!["sha256:00".into()],
                source: &src,
            })
            .unwrap();
            let v: serde_json::Value =
                serde_json::from_slice(&canonical_json(&c).unwrap()).unwrap();
            assert_eq!(v["architecture"], arch.oci_architecture());
            assert_eq!(v["os"], "linux");
            assert_eq!(
                v.get("variant").and_then(|v| v.as_str()),
                arch.oci_variant()
            );
            assert_eq!(v["created"], "2023-11-14T22:13:20Z");
            assert_eq!(v["config"]["User"], "0:0");
            assert_eq!(v["config"]["Entrypoint"][0], "/ko-app/sidecar");
            assert_eq!(
                v["config"]["Labels"]["org.opencontainers.image.revision"],
                src.revision
            );
            assert_eq!(v["rootfs"]["type"], "layers");
        }
    }

    #[test]
    fn arm64_index_entries_carry_the_v8_variant() {
        let p = serde_json::to_value(platform(Arch::Arm64).unwrap()).unwrap();
        assert_eq!(
            p,
            serde_json::json!({"architecture": "arm64", "os": "linux", "variant": "v8"})
        );
        let p = serde_json::to_value(platform(Arch::Ppc64le).unwrap()).unwrap();
        assert_eq!(
            p,
            serde_json::json!({"architecture": "ppc64le", "os": "linux"})
        );
    }
}
