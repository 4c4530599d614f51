/*!
The images the Docker backend runs, loaded into the engine once per arch per lab run: the four
utilities and `fixture-job`, built by the daemonless image builder ([`crate::image`]) into an OCI
layout under `target/lab/docker/<arch>/`, and a one-layer scratch image of fake-gcs-server (the
static linux-amd64 binary from the Python venv). Each goes in as a `docker save` archive; an
image whose id (its config digest) the engine already has is not loaded again.
*/

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use bollard::query_parameters::ImportImageOptions;
use futures_util::StreamExt;
use oci_spec::image::MediaType;

use super::engine::Engine;
use crate::build;
use crate::image::{self, docker, layout, manifest, rootfs, source::Source};
use crate::target::Arch;

/// The tag of the lab's images (ref names in the layout; the engine's tags add the arch).
const TAG: &str = "lab";

/// Where fake-gcs-server lives in its image.
pub const GCS_PATH: &str = "/fake-gcs-server";

/// Image ids (`sha256:...`) by program name.
pub type Ids = BTreeMap<String, String>;

static ARCHES: Mutex<BTreeMap<Arch, Arc<Ids>>> = Mutex::new(BTreeMap::new());
static GCS: Mutex<Option<String>> = Mutex::new(None);

fn dir() -> PathBuf {
    build::lab_dir().join("docker")
}

/// The image ids of the lab's programs for `arch`, built and loaded on the first call.
pub fn for_arch(engine: &Engine, arch: Arch) -> Result<Arc<Ids>> {
    let mut done = ARCHES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(ids) = done.get(&arch) {
        return Ok(ids.clone());
    }
    let out = dir().join(arch.name());
    let layout_dir = out.join("layout");
    let opts = image::options(vec![arch], Some(layout_dir.clone()), Some(TAG.into()), None)?;
    let set = image::build(&opts).with_context(|| format!("build the {arch} images"))?;
    let mut ids = Ids::new();
    let (mut loaded, mut kept) = (0, 0);
    for p in &set.programs {
        let img = p
            .images
            .iter()
            .find(|i| i.arch == arch)
            .context("the layout lacks the arch")?;
        let id = img.config.digest().to_string();
        if engine.has_image(&id) {
            kept += 1;
        } else {
            let tar = out.join(format!("{}.tar", p.program.name));
            docker::export(
                &layout_dir,
                &image::ref_name(p.program.name, TAG, Some(arch)),
                Some(&format!("tetrapod-lab/{}:{arch}", p.program.name)),
                &tar,
            )?;
            load(engine, &tar, &id)?;
            let _ = std::fs::remove_file(&tar);
            loaded += 1;
        }
        ids.insert(p.program.name.to_string(), id);
    }
    eprintln!("docker backend: {arch} images: {loaded} loaded, {kept} already in the engine");
    let ids = Arc::new(ids);
    done.insert(arch, ids.clone());
    Ok(ids)
}

/// The fake-gcs-server image's id, built and loaded on the first call.
pub fn fake_gcs(engine: &Engine) -> Result<String> {
    let mut done = GCS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(id) = done.as_ref() {
        return Ok(id.clone());
    }
    let bin = testsupport::FakeGcs::binary().with_context(|| {
        format!(
            "no fake-gcs-server under {}: run `qemu/provision`",
            testsupport::venv_dir().display()
        )
    })?;
    let out = dir().join("fake-gcs-server");
    let layout_dir = out.join("layout");
    let name = format!("fake-gcs-server:{TAG}");
    // Compressing the 30 MB binary is slow in a debug build: remember which binary gave which
    // id, and skip the build when the engine still has that image.
    let meta = std::fs::metadata(&bin)?;
    let stamp = format!(
        "{} {} {:?}",
        bin.display(),
        meta.len(),
        meta.modified().ok()
    );
    let cache = out.join("id");
    let cached = std::fs::read_to_string(&cache)
        .ok()
        .and_then(|c| c.strip_prefix(&format!("{stamp}\n")).map(str::to_string))
        .filter(|id| engine.has_image(id));
    if let Some(id) = cached {
        *done = Some(id.clone());
        return Ok(id);
    }
    let id = write_gcs_layout(&bin, &layout_dir, &name)?;
    std::fs::write(&cache, format!("{stamp}\n{id}"))?;
    if !engine.has_image(&id) {
        let tar = out.join("fake-gcs-server.tar");
        docker::export(
            &layout_dir,
            &name,
            Some(&format!("tetrapod-lab/{name}")),
            &tar,
        )?;
        load(engine, &tar, &id)?;
        let _ = std::fs::remove_file(&tar);
    }
    *done = Some(id.clone());
    Ok(id)
}

/// A one-layer scratch image holding only the server binary (and `/tmp`); returns its id.
fn write_gcs_layout(bin: &Path, layout_dir: &Path, name: &str) -> Result<String> {
    let binary = std::fs::read(bin).with_context(|| format!("read {}", bin.display()))?;
    let mut tree = rootfs::program_tree(GCS_PATH, binary);
    tree.dir("/tmp", 0o1777, 0, 0);
    // The binary is the only input: a fixed epoch keeps the id, so the engine's copy is reused.
    let layer = rootfs::Layer::new(&tree, 0)?;
    if layout_dir.exists() {
        std::fs::remove_dir_all(layout_dir)?;
    }
    let mut w = layout::Writer::create(layout_dir)?;
    let layer_desc = w.blob(MediaType::ImageLayerGzip, &layer.gzip)?;
    let source = Source {
        revision: String::new(),
        epoch: 0,
        url: "https://github.com/fsouza/fake-gcs-server".into(),
        describe: TAG.into(),
    };
    let mut config = manifest::config(&manifest::ConfigInput {
        arch: Arch::Amd64,
        program: "fake-gcs-server",
        path: GCS_PATH,
        diff_ids: vec![layer.diff_id()],
        source: &source,
    })?;
    // The utilities' config has a base layer and the program's; this image has only the latter,
    // and engines refuse a history with more non-empty entries than layers.
    let history = config.history().clone().unwrap_or_default();
    config.set_history(Some(history.into_iter().skip(1).collect()));
    let config_desc = w.json(MediaType::ImageConfig, &config)?;
    let m = manifest::manifest(config_desc.clone(), vec![layer_desc], HashMap::new())?;
    let m_desc = w.json(MediaType::ImageManifest, &m)?;
    w.name(m_desc, name);
    w.finish()?;
    Ok(config_desc.digest().to_string())
}

/// Loads a `docker save` archive and checks that the engine now has image `id`.
fn load(engine: &Engine, tar: &Path, id: &str) -> Result<()> {
    let bytes = std::fs::read(tar).with_context(|| format!("read {}", tar.display()))?;
    let opts = ImportImageOptions {
        quiet: true,
        ..Default::default()
    };
    engine.block_on(async {
        let mut s = engine
            .docker
            .import_image(opts, bollard::body_full(bytes.into()), None);
        while let Some(r) = s.next().await {
            r.with_context(|| format!("load {}", tar.display()))?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    anyhow::ensure!(
        engine.has_image(id),
        "loaded {} but the engine has no image {id}",
        tar.display()
    );
    Ok(())
}
