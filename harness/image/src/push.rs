/*!
Pushes the shipped programs from a layout to an OCI registry with oci-client: per program
(repository `<prefix>/<program>`), each arch's blobs and manifest (tag `<tag>-<arch>`), its SBOM
artifact (tag `<tag>-<arch>.sbom`, and listed in the referrers tag schema's `sha256-<digest>`
index, for registries without the referrers API, such as distribution 2.8), then the index (tag
`<tag>`). Manifests are sent as the layout stores them, so the registry's digests are the layout's.

Plain HTTP for loopback registries, HTTPS otherwise. Anonymous unless
`TETRAPOD_REGISTRY_USERNAME` and `TETRAPOD_REGISTRY_PASSWORD` are set (basic auth).
*/

use std::net::IpAddr;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use http::HeaderValue;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};

use super::layout::{Layout, canonical_json};
use super::{Program, ref_name, sbom_ref_name};

/// `--push REGISTRY/REPO-PREFIX`, e.g. `127.0.0.1:5000/tetrapod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub registry: String,
    /// May be empty: then repositories are named by the program alone.
    pub prefix: String,
}

impl FromStr for Destination {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim_end_matches('/');
        let (registry, prefix) = s.split_once('/').unwrap_or((s, ""));
        if registry.is_empty() {
            bail!(
                "{s:?} names no registry: expected REGISTRY[/PREFIX], e.g. 127.0.0.1:5000/tetrapod"
            );
        }
        Ok(Destination {
            registry: registry.to_string(),
            prefix: prefix.to_string(),
        })
    }
}

impl Destination {
    /// The repository of `program`.
    pub fn repository(&self, program: &str) -> String {
        if self.prefix.is_empty() {
            program.to_string()
        } else {
            format!("{}/{program}", self.prefix)
        }
    }

    /// Loopback registries (`127.0.0.1:5000`, `localhost`, `[::1]:5000`) are spoken to over
    /// plain HTTP.
    pub fn is_loopback(&self) -> bool {
        let host = match self.registry.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or(rest),
            None => self.registry.split(':').next().unwrap_or(&self.registry),
        };
        host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

/// What a push put where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// `registry/repository:tag`
    pub reference: String,
    pub digest: String,
}

/// Pushes every shipped program of the layout at `layout_dir` tagged `tag`.
pub fn push(
    layout: &Layout,
    programs: &[Program],
    tag: &str,
    dest: &Destination,
) -> Result<Vec<Pushed>> {
    // reqwest is built without a default crypto provider: ring, already in the tree.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let protocol = if dest.is_loopback() {
        ClientProtocol::HttpsExcept(vec![dest.registry.clone()])
    } else {
        ClientProtocol::Https
    };
    let client = Client::new(ClientConfig {
        protocol,
        ..Default::default()
    });
    let auth = match (
        std::env::var("TETRAPOD_REGISTRY_USERNAME"),
        std::env::var("TETRAPOD_REGISTRY_PASSWORD"),
    ) {
        (Ok(u), Ok(p)) => RegistryAuth::Basic(u, p),
        _ => RegistryAuth::Anonymous,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        client.store_auth_if_needed(&dest.registry, &auth).await;
        let p = Pusher {
            client: &client,
            layout,
            dest,
        };
        let mut out = Vec::new();
        for program in programs.iter().filter(|p| p.shipped) {
            out.extend(p.program(program.name, tag).await?);
        }
        Ok(out)
    })
}

struct Pusher<'a> {
    client: &'a Client,
    layout: &'a Layout,
    dest: &'a Destination,
}

impl Pusher<'_> {
    fn reference(&self, program: &str, tag: &str) -> Reference {
        Reference::with_tag(
            self.dest.registry.clone(),
            self.dest.repository(program),
            tag.to_string(),
        )
    }

    async fn program(&self, program: &str, tag: &str) -> Result<Vec<Pushed>> {
        let mut out = Vec::new();
        let index_desc = self.layout.find(&ref_name(program, tag, None))?;
        let index: ImageIndex = self.layout.json(index_desc)?;
        for m in index.manifests() {
            let arch_name = m
                .platform()
                .as_ref()
                .map(|p| p.architecture().to_string())
                .context("index entry without a platform")?;
            let arch = tetrapod_arch::ALL
                .into_iter()
                .find(|a| a.oci_architecture() == arch_name)
                .with_context(|| format!("unknown architecture {arch_name}"))?;
            let arch_tag = format!("{tag}-{arch}");
            out.push(self.manifest(program, &arch_tag, m).await?);
            let sbom = self.layout.find(&sbom_ref_name(program, tag, arch))?;
            out.push(
                self.manifest(program, &format!("{arch_tag}.sbom"), sbom)
                    .await?,
            );
            self.referrer(program, m, sbom).await?;
        }
        out.push(self.raw(program, tag, index_desc).await?);
        Ok(out)
    }

    /// An image (or artifact) manifest: its blobs first, then the manifest itself.
    async fn manifest(&self, program: &str, tag: &str, d: &Descriptor) -> Result<Pushed> {
        let m: ImageManifest = self.layout.json(d)?;
        let r = self.reference(program, tag);
        for blob in std::iter::once(m.config()).chain(m.layers()) {
            let digest = blob.digest().to_string();
            let exists = self
                .client
                .blob_exists(&r, &digest)
                .await
                .with_context(|| format!("HEAD blob {digest} in {r}"))?;
            if !exists {
                let bytes = self.layout.blob(blob)?;
                self.client
                    .push_blob(&r, bytes, &digest)
                    .await
                    .with_context(|| format!("push blob {digest} to {r}"))?;
            }
        }
        self.raw(program, tag, d).await
    }

    /// Sends a manifest's stored bytes under `tag`.
    async fn raw(&self, program: &str, tag: &str, d: &Descriptor) -> Result<Pushed> {
        let r = self.reference(program, tag);
        let body = self.layout.blob(d)?;
        let content_type = HeaderValue::from_str(d.media_type().as_ref())?;
        self.client
            .push_manifest_raw(&r, body, content_type)
            .await
            .with_context(|| format!("push manifest {r}"))?;
        Ok(Pushed {
            reference: r.whole(),
            digest: d.digest().to_string(),
        })
    }

    /// Adds `sbom` to the referrers tag schema index of `subject` (`sha256-<hex>`), keeping
    /// what other tools listed there.
    async fn referrer(&self, program: &str, subject: &Descriptor, sbom: &Descriptor) -> Result<()> {
        let tag = subject.digest().to_string().replace(':', "-");
        let r = self.reference(program, &tag);
        let existing = self
            .client
            .pull_manifest_raw(
                &r,
                &RegistryAuth::Anonymous,
                &[MediaType::ImageIndex.as_ref()],
            )
            .await
            .ok()
            .and_then(|(bytes, _)| serde_json::from_slice::<ImageIndex>(&bytes).ok());
        let mut manifests = existing.map(|i| i.manifests().clone()).unwrap_or_default();
        if manifests.iter().any(|m| m.digest() == sbom.digest()) {
            return Ok(());
        }
        let mut entry = Descriptor::new(
            sbom.media_type().clone(),
            sbom.size(),
            sbom.digest().clone(),
        );
        entry.set_artifact_type(Some(MediaType::Other(super::sbom::MEDIA_TYPE.into())));
        manifests.push(entry);
        let index = super::manifest::index(manifests, Default::default())?;
        let body = canonical_json(&index)?;
        self.client
            .push_manifest_raw(
                &r,
                body,
                HeaderValue::from_str(MediaType::ImageIndex.as_ref())?,
            )
            .await
            .with_context(|| format!("push referrers index {r}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        let d: Destination = "127.0.0.1:5000/tetrapod".parse().unwrap();
        assert_eq!(d.registry, "127.0.0.1:5000");
        assert_eq!(d.repository("clonerefs"), "tetrapod/clonerefs");
        assert!(d.is_loopback());
        let d: Destination = "registry.example/org/prow/".parse().unwrap();
        assert_eq!(d.repository("sidecar"), "org/prow/sidecar");
        assert!(!d.is_loopback());
        let d: Destination = "localhost:5000".parse().unwrap();
        assert_eq!(d.repository("sidecar"), "sidecar");
        assert!(d.is_loopback());
        assert!("[::1]:5000/x".parse::<Destination>().unwrap().is_loopback());
        assert!("/x".parse::<Destination>().is_err());
    }
}
