/*!
`docker save`-format archives of one per-arch image, for engines whose `docker load` (Docker
20.10 here) or import API does not take OCI layouts: `manifest.json` (`Config`, `RepoTags`,
`Layers`), the config blob as `<digest>.json` and each layer uncompressed as
`<diff_id>/layer.tar`. The image id the engine reports is the config's digest, as in the layout.
*/

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;

use super::layout::Layout;

/// Writes the image `ref_name` (`clonerefs:<tag>-arm64`) of the layout in `layout_dir` to `out`
/// as a `docker save` archive that loads as `repo_tag` (default: `ref_name`).
pub fn export(layout_dir: &Path, ref_name: &str, repo_tag: Option<&str>, out: &Path) -> Result<()> {
    let layout = Layout::open(layout_dir)?;
    let img = layout.image(ref_name)?;
    let hex = |d: &str| d.trim_start_matches("sha256:").to_string();
    let config_name = format!("{}.json", hex(img.manifest.config().digest().as_ref()));
    let mut files = vec![(config_name.clone(), img.config_bytes.clone())];
    let mut layer_names = Vec::new();
    for (i, diff_id) in img.config.rootfs().diff_ids().iter().enumerate() {
        let name = format!("{}/layer.tar", hex(diff_id));
        files.push((name.clone(), layout.layer_tar(&img, i)?));
        layer_names.push(name);
    }
    let manifest = json!([{
        "Config": config_name,
        "RepoTags": [repo_tag.unwrap_or(ref_name)],
        "Layers": layer_names,
    }]);
    files.push(("manifest.json".into(), serde_json::to_vec(&manifest)?));

    let tmp = out.with_extension("tmp");
    let file = std::fs::File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    let mut b = tar::Builder::new(std::io::BufWriter::new(file));
    for (name, data) in &files {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        b.append_data(&mut h, name, data.as_slice())?;
    }
    b.into_inner()?.flush()?;
    std::fs::rename(&tmp, out).with_context(|| format!("write {}", out.display()))?;
    Ok(())
}
