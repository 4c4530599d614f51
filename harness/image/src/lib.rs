/*!
Daemonless, reproducible OCI images of the pod utilities, the way ko builds Go images: for each
program and arch, an image of two layers (a shared base with CA certificates and the `nonroot`
user; the stripped lab binary at `/ko-app/<utility>`), a multi-arch index per program, and an
SPDX SBOM per image, all written as one OCI image layout. It reads what the lab's build left ([`Built`]: the
workspace, the programs and where their binaries are) and knows nothing else of the lab.

Names in the layout's `index.json` (`org.opencontainers.image.ref.name`):
`<program>:<tag>` (the index), `<program>:<tag>-<arch>` (one arch, the suffix tags Prow users
know) and `<program>:<tag>-<arch>.sbom` (the SBOM artifact, whose `subject` is that image).
The fixture job image (`fixture-job`, for the lab's Docker backend) is built the same way but is
not pushed.

Every timestamp is the commit's (or `SOURCE_DATE_EPOCH`), so a commit always gives the same
digests. Modules: [`source`] (git facts), [`rootfs`] (layers), [`manifest`] (OCI documents),
[`layout`] (the directory), [`sbom`], [`docker`] (`docker save` archives), [`push`].
*/

pub mod docker;
pub mod layout;
pub mod manifest;
pub mod push;
pub mod rootfs;
pub mod sbom;
pub mod source;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use oci_spec::image::{Descriptor, MediaType};

use rootfs::Layer;
use source::Source;
use tetrapod_arch::Arch;
use tetrapod_arch::elf::check_elf;

/// The size each image should stay under (compressed layers + config + manifest).
pub const SIZE_TARGET: u64 = 5 * 1024 * 1024;

/// What an image is built from: a lab program and where it lives in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub name: &'static str,
    pub path: String,
    /// Part of the published set (the utilities), or lab-only (the fixture job).
    pub shipped: bool,
}

/// `<program>:<tag>` for the index, `<program>:<tag>-<arch>` for one arch.
pub fn ref_name(program: &str, tag: &str, arch: Option<Arch>) -> String {
    match arch {
        None => format!("{program}:{tag}"),
        Some(a) => format!("{program}:{tag}-{a}"),
    }
}

/// The name of an image's SBOM artifact.
pub fn sbom_ref_name(program: &str, tag: &str, arch: Arch) -> String {
    format!("{}.sbom", ref_name(program, tag, Some(arch)))
}

/// What the lab's build left for the images, as its caller lays it out: the image crate knows
/// nothing of where binaries are built, only where to find them.
#[derive(Debug, Clone)]
pub struct Built {
    /// The cargo workspace the programs come from: its git facts, `Cargo.lock` and `cargo tree`
    /// feed the image annotations and the SBOM.
    pub workspace: PathBuf,
    /// Every program, in image order; each is a binary crate of the workspace.
    pub programs: Vec<Program>,
    /// The stripped binary of `program` for `arch`.
    pub binary: fn(Arch, &str) -> PathBuf,
    /// Debian's libssl-dev version `arch`'s binaries link statically, when they do (else
    /// openssl-src's build is in them, and the SBOM says which).
    pub openssl_deb: fn(Arch) -> Option<String>,
}

/// One build of the image set.
#[derive(Debug, Clone)]
pub struct Options {
    pub built: Built,
    pub arches: Vec<Arch>,
    pub out: PathBuf,
    pub tag: String,
    pub source: Source,
    pub system: sbom::System,
}

impl Options {
    /// Options from the command line's values; the tag is `git describe --always --dirty` of
    /// the workspace when not given.
    pub fn new(
        built: Built,
        arches: Vec<Arch>,
        out: PathBuf,
        tag: Option<String>,
        rust_release: Option<String>,
    ) -> Result<Options> {
        let source = Source::from_git(&built.workspace)?;
        let tag = tag.unwrap_or_else(|| source.describe.clone());
        source::check_tag(&tag)?;
        let (_, ca_version) = rootfs::ca_bundle()?;
        Ok(Options {
            built,
            arches,
            out,
            tag,
            system: sbom::System::probe(rust_release, ca_version),
            source,
        })
    }
}

/// One per-arch image as written.
#[derive(Debug, Clone)]
pub struct ArchImage {
    pub arch: Arch,
    /// The manifest's descriptor, with its platform.
    pub manifest: Descriptor,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    /// The SBOM artifact manifest.
    pub sbom: Descriptor,
    /// The binary's size, uncompressed.
    pub binary_size: u64,
}

impl ArchImage {
    /// What a pull transfers: compressed layers, config and manifest.
    pub fn compressed_size(&self) -> u64 {
        self.layers
            .iter()
            .map(oci_spec::image::Descriptor::size)
            .sum::<u64>()
            + self.config.size()
            + self.manifest.size()
    }
}

/// One program's images and index.
#[derive(Debug, Clone)]
pub struct ProgramImages {
    pub program: Program,
    pub index: Descriptor,
    pub images: Vec<ArchImage>,
}

/// The whole layout, as written.
#[derive(Debug, Clone)]
pub struct ImageSet {
    pub dir: PathBuf,
    pub tag: String,
    pub programs: Vec<ProgramImages>,
}

impl ImageSet {
    /// A Markdown table: each image's compressed size against [`SIZE_TARGET`].
    pub fn size_table(&self) -> String {
        let mut s = String::from(
            "| image | arch | manifest digest | binary | compressed | <= 5 MiB |\n\
             |---|---|---|---:|---:|---|\n",
        );
        for p in &self.programs {
            for i in &p.images {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} |",
                    ref_name(p.program.name, &self.tag, Some(i.arch)),
                    i.arch,
                    &i.manifest.digest().to_string()[..19],
                    mib(i.binary_size),
                    mib(i.compressed_size()),
                    if i.compressed_size() <= SIZE_TARGET {
                        "yes"
                    } else {
                        "NO"
                    }
                );
            }
        }
        s
    }
}

fn mib(n: u64) -> String {
    format!("{:.2} MiB", n as f64 / (1024.0 * 1024.0))
}

/// Builds every program's images for `opts.arches` from the built binaries and writes the layout to `opts.out`, replacing an earlier layout there.
pub fn build(opts: &Options) -> Result<ImageSet> {
    let tmp = sibling(&opts.out, &format!("tmp-{}", std::process::id()))?;
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    let programs = write_layout(opts, &tmp).inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&tmp);
    })?;
    replace_layout(&tmp, &opts.out)?;
    Ok(ImageSet {
        dir: opts.out.clone(),
        tag: opts.tag.clone(),
        programs,
    })
}

fn write_layout(opts: &Options, dir: &Path) -> Result<Vec<ProgramImages>> {
    let mut w = layout::Writer::create(dir)?;
    let epoch = opts.source.epoch;
    let (ca, _) = rootfs::ca_bundle()?;
    let base = Layer::new(&rootfs::base_tree(ca), epoch)?;
    let base_desc = w.blob(MediaType::ImageLayerGzip, &base.gzip)?;
    let empty = w.blob(MediaType::EmptyJSON, b"{}")?;
    let mut crates = BTreeMap::new();
    for &arch in &opts.arches {
        crates.insert(arch, sbom::Crates::load(&opts.built, arch)?);
    }
    let mut out = Vec::new();
    let mut apps = program_layers(opts)?;
    for program in &opts.built.programs {
        let mut images = Vec::new();
        for &arch in &opts.arches {
            let app = apps
                .remove(&(program.name, arch))
                .expect("a layer for every program and arch");
            let app_desc = w.blob(MediaType::ImageLayerGzip, &app.gzip)?;
            let config = manifest::config(&manifest::ConfigInput {
                arch,
                program: program.name,
                path: &program.path,
                diff_ids: vec![base.diff_id(), app.diff_id.clone()],
                source: &opts.source,
            })?;
            let config_desc = w.json(MediaType::ImageConfig, &config)?;
            let layers = vec![base_desc.clone(), app_desc];
            let m = manifest::manifest(
                config_desc.clone(),
                layers.clone(),
                manifest::annotations(&opts.source, program.name),
            )?;
            let m_desc = manifest::with_platform(&w.json(MediaType::ImageManifest, &m)?, arch)?;
            w.name(
                m_desc.clone(),
                &ref_name(program.name, &opts.tag, Some(arch)),
            );

            let doc = sbom::spdx(&sbom::Subject {
                program: program.name,
                arch,
                path: &program.path,
                binary_sha256: app.binary_sha256.clone(),
                manifest_digest: m_desc.digest().to_string(),
                source: &opts.source,
                components: &crates[&arch].components(program.name, &opts.source)?,
                system: &opts.system,
            })?;
            let doc_desc = manifest::with_title(
                &w.blob(MediaType::Other(sbom::MEDIA_TYPE.into()), &doc)?,
                &format!("{}-{arch}.spdx.json", program.name),
            )?;
            let sm = manifest::sbom_manifest(empty.clone(), doc_desc, &m_desc, &opts.source)?;
            let sm_desc = w.json(MediaType::ImageManifest, &sm)?;
            let mut named = sm_desc.clone();
            named.set_artifact_type(Some(MediaType::Other(sbom::MEDIA_TYPE.into())));
            w.name(named, &sbom_ref_name(program.name, &opts.tag, arch));

            images.push(ArchImage {
                arch,
                manifest: m_desc,
                config: config_desc,
                layers,
                sbom: sm_desc,
                binary_size: app.binary_size,
            });
        }
        let idx = manifest::index(
            images.iter().map(|i| i.manifest.clone()).collect(),
            manifest::annotations(&opts.source, program.name),
        )?;
        let idx_desc = w.json(MediaType::ImageIndex, &idx)?;
        w.name(idx_desc.clone(), &ref_name(program.name, &opts.tag, None));
        out.push(ProgramImages {
            program: program.clone(),
            index: idx_desc,
            images,
        });
    }
    w.finish()?;
    Ok(out)
}

/// A program's layer for one arch, and what the SBOM says about its binary.
struct ProgramLayer {
    diff_id: String,
    gzip: Vec<u8>,
    binary_size: u64,
    /// sha256 hex of the binary.
    binary_sha256: String,
}

/// Every program's layer for every arch, compressed on all cores (gzip is most of the time).
fn program_layers(opts: &Options) -> Result<BTreeMap<(&'static str, Arch), ProgramLayer>> {
    let jobs: Vec<(Program, Arch)> = opts
        .built
        .programs
        .iter()
        .cloned()
        .flat_map(|p| opts.arches.iter().map(move |&a| (p.clone(), a)))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.min(jobs.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((program, arch)) = jobs.get(i) else {
                        break;
                    };
                    let r = program_layer(&opts.built, program, *arch, opts.source.epoch);
                    results
                        .lock()
                        .expect("no panics while holding it")
                        .push(((program.name, *arch), r));
                }
            });
        }
    });
    let mut out = BTreeMap::new();
    for (key, r) in results.into_inner().expect("threads are done") {
        out.insert(key, r?);
    }
    Ok(out)
}

fn program_layer(built: &Built, program: &Program, arch: Arch, epoch: u64) -> Result<ProgramLayer> {
    let bin = (built.binary)(arch, program.name);
    let binary = std::fs::read(&bin).with_context(|| {
        format!(
            "read {} (build it: `cargo run -p harness -- build --arch {arch}`)",
            bin.display()
        )
    })?;
    check_elf(&bin, arch)?;
    let binary_size = binary.len() as u64;
    let binary_sha256 = rootfs::sha256(&binary)["sha256:".len()..].to_string();
    let layer = Layer::new(&rootfs::program_tree(&program.path, binary), epoch)?;
    Ok(ProgramLayer {
        diff_id: layer.diff_id(),
        gzip: layer.gzip,
        binary_size,
        binary_sha256,
    })
}

/// `<dir>.<suffix>` beside `dir`.
fn sibling(dir: &Path, suffix: &str) -> Result<PathBuf> {
    let name = dir
        .file_name()
        .with_context(|| format!("{} has no directory name", dir.display()))?;
    Ok(dir.with_file_name(format!("{}.{suffix}", name.to_string_lossy())))
}

/// Moves the new layout into place; only ever deletes an earlier OCI layout (or nothing).
fn replace_layout(new: &Path, dest: &Path) -> Result<()> {
    if dest.exists() {
        let empty = std::fs::read_dir(dest)?.next().is_none();
        if !empty && !dest.join("oci-layout").exists() {
            bail!(
                "{} exists and is no OCI layout: not replacing it",
                dest.display()
            );
        }
        let old = sibling(dest, &format!("old-{}", std::process::id()))?;
        std::fs::rename(dest, &old)?;
        std::fs::remove_dir_all(&old)?;
    } else if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::rename(new, dest).with_context(|| format!("move the layout to {}", dest.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(ref_name("clonerefs", "v1", None), "clonerefs:v1");
        assert_eq!(
            ref_name("clonerefs", "v1", Some(Arch::S390x)),
            "clonerefs:v1-s390x"
        );
        assert_eq!(
            sbom_ref_name("sidecar", "v1", Arch::Amd64),
            "sidecar:v1-amd64.sbom"
        );
    }

    #[test]
    fn replacing_refuses_what_is_not_a_layout() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("images");
        std::fs::create_dir(&dest).unwrap();
        std::fs::write(dest.join("precious"), "x").unwrap();
        let new = d.path().join("new");
        std::fs::create_dir(&new).unwrap();
        assert!(replace_layout(&new, &dest).is_err());
        assert!(dest.join("precious").exists());
        std::fs::write(dest.join("oci-layout"), "{}").unwrap();
        std::fs::write(new.join("oci-layout"), "new").unwrap();
        replace_layout(&new, &dest).unwrap();
        assert_eq!(std::fs::read(dest.join("oci-layout")).unwrap(), b"new");
        assert!(!dest.join("precious").exists());
    }
}
