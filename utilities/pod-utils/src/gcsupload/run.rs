/*!
Assembling and uploading a job's targets (upstream `gcsupload.Options.Run`): the job's storage
paths, extra files from the caller, gathered artifacts, substitutes from censoring, and the
upload itself to blob storage or a local directory.
*/

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::Options;
use crate::downwardapi::JobSpec;
use crate::gcs::{self, MediaTypes, RepoPathBuilder, Targets, Upload, UploadConfig};
use crate::gopath;
use crate::prowapi::GcsConfigError;

/// An extra file a caller uploads under the job's directory (started.json, logs...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadSource {
    Bytes(Vec<u8>),
    /// Read when the upload happens (and again on each retry).
    File(std::path::PathBuf),
}

/// Local files whose bytes are not to be uploaded as they are: sidecar's censoring puts a
/// censored copy elsewhere when it cannot rewrite a file in place, or withholds a file it could
/// not censor. Keyed by the path the upload would read (an item, a file under an item, a log).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Substitutes(BTreeMap<PathBuf, Substitute>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Substitute {
    /// Upload this file's bytes instead.
    Copy(PathBuf),
    /// Upload nothing for it.
    Withhold,
}

impl Substitutes {
    pub fn insert(&mut self, original: impl Into<PathBuf>, with: Substitute) {
        self.0.insert(original.into(), with);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Applies the substitutes to `targets`: copies are read instead of their originals (the
    /// object keeps its name and headers), withheld files are dropped with a warning.
    fn apply(&self, targets: &mut Targets) {
        if self.0.is_empty() {
            return;
        }
        targets.retain(|dest, upload| {
            let gcs::Source::File(path) = &mut upload.source else {
                return true;
            };
            match self.0.get(path.as_path()) {
                None => true,
                Some(Substitute::Copy(copy)) => {
                    *path = copy.clone();
                    true
                }
                Some(Substitute::Withhold) => {
                    tracing::warn!(dest = %dest, path = %path.display(), "Withholding file from upload");
                    false
                }
            }
        });
    }
}

/// Why [`run`] failed. The text follows upstream's wrapping.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("assembleTargets: {0}")]
    Assemble(#[from] AssembleError),
    #[error("failed to upload to blob storage: {0}")]
    Remote(gcs::UploadError),
    #[error("failed to copy files to {dir:?}: {source}")]
    Local {
        dir: String,
        source: gcs::UploadError,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssembleError {
    #[error(transparent)]
    Path(#[from] gcs::TargetError),
    #[error("parse bucket {0:?}: {1}")]
    Bucket(String, GcsConfigError),
}

/// The run's storage directories (upstream `PathsForJob`): the job directory with any path
/// prefix, and the upload root (the job directory plus `sub_dir`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobPaths {
    pub job_base: String,
    pub blob_path: String,
    pub builder: Option<RepoPathBuilder>,
}

pub fn paths_for_job(opts: &Options, spec: &JobSpec) -> Result<JobPaths, gcs::TargetError> {
    let c = &opts.gcs;
    let builder = RepoPathBuilder::for_strategy(&c.path_strategy, &c.default_org, &c.default_repo);
    let mut job_base = gcs::path_for_spec(spec, builder.as_ref())?;
    if !c.path_prefix.is_empty() {
        job_base = gopath::join(&[&c.path_prefix, &job_base]);
    }
    let blob_path = if opts.sub_dir.is_empty() {
        job_base.clone()
    } else {
        gopath::join(&[&job_base, &opts.sub_dir])
    };
    Ok(JobPaths {
        job_base,
        blob_path,
        builder,
    })
}

/// Whether a bucket string has a URL scheme, as Go's `url.Parse` finds one.
fn has_scheme(bucket: &str) -> bool {
    match bucket.split_once(':') {
        Some((s, _)) => {
            s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        }
        None => false,
    }
}

/// Splits the run's uploads into the "normal" targets (presubmit alias, latest-build markers,
/// items) and the caller's extra targets under the upload root (upstream `assembleTargets`).
pub fn assemble_targets(
    opts: &Options,
    spec: &JobSpec,
    extra: Vec<(String, UploadSource)>,
    types: &MediaTypes,
) -> Result<(Targets, Targets), AssembleError> {
    let paths = paths_for_job(opts, spec)?;
    let mut blob_path = paths.blob_path.clone();
    let mut targets = Targets::new();
    if opts.gcs.local_output_dir.is_empty() {
        if let Some(alias) = gcs::alias_for_spec(spec)? {
            let bucket = &opts.gcs.bucket;
            crate::prowapi::parse_bucket(bucket)
                .map_err(|e| AssembleError::Bucket(bucket.clone(), e))?;
            let full = if has_scheme(bucket) {
                format!("{bucket}/{}", paths.job_base)
            } else {
                format!("gs://{}", gopath::join(&[bucket, &paths.job_base]))
            };
            let mut o = gcs::WriterOptions::default();
            o.metadata.insert("x-goog-meta-link".into(), full.clone());
            targets.insert(alias, Upload::data(full).with_options(o));
        }
        for marker in gcs::latest_build_for_spec(spec, paths.builder.as_ref()) {
            let (dir, file) = split(&marker);
            let (name, o) = gcs::writer_options_from_file_name(file, types);
            targets.insert(
                gopath::join(&[dir, &name]),
                Upload::data(spec.build_id.clone()).with_options(o),
            );
        }
    } else {
        // Local mode roots everything in the output dir.
        blob_path.clear();
    }
    for item in &opts.items {
        let meta = match std::fs::metadata(item) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("Encountered error in resolving items to upload for {item}: {e}");
                continue;
            }
        };
        let base = std::path::Path::new(item)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| item.clone());
        if meta.is_dir() {
            gather_artifacts(
                std::path::Path::new(item),
                &blob_path,
                &base,
                &mut targets,
                types,
            );
        } else {
            let (name, o) = gcs::writer_options_from_file_name(&base, types);
            let dest = gopath::join(&[&blob_path, &name]);
            if targets.contains_key(&dest) {
                tracing::warn!("Encountered duplicate upload of {dest}, skipping...");
                continue;
            }
            targets.insert(dest, Upload::file(item).with_options(o));
        }
    }
    let mut extras = Targets::new();
    for (dest, source) in extra {
        let upload = match source {
            UploadSource::Bytes(b) => Upload::data(b),
            UploadSource::File(p) => Upload::file(p),
        };
        extras.insert(gopath::join(&[&blob_path, &dest]), upload);
    }
    Ok((targets, extras))
}

/// Go's `path.Split`: directory with its trailing slash, and the last element.
fn split(p: &str) -> (&str, &str) {
    match p.rfind('/') {
        Some(i) => (&p[..=i], &p[i + 1..]),
        None => ("", p),
    }
}

/// Adds every non-directory under `root` as `<blob>/<sub_dir>/<relative path>`, with the name
/// simplified and `#` escaped as `%23` (upstream `gatherArtifacts`). Symlinks are not followed
/// into directories; unreadable entries are skipped.
fn gather_artifacts(
    root: &std::path::Path,
    blob_path: &str,
    sub_dir: &str,
    targets: &mut Targets,
    types: &MediaTypes,
) {
    tracing::info!(
        "Gathering artifacts from artifact directory: {}",
        root.display()
    );
    let mut stack = vec![(root.to_path_buf(), String::new())];
    let mut files = Vec::new();
    while let Some((path, rel)) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_dir() {
            files.push((path, if rel.is_empty() { ".".to_string() } else { rel }));
            continue;
        }
        let Ok(rd) = std::fs::read_dir(&path) else {
            continue;
        };
        let mut names: Vec<String> = rd
            .filter_map(std::result::Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        // Reverse-sorted onto the stack, so walked in lexical order like filepath.Walk.
        names.sort();
        for n in names.into_iter().rev() {
            let child_rel = if rel.is_empty() {
                n.clone()
            } else {
                format!("{rel}/{n}")
            };
            stack.push((path.join(&n), child_rel));
        }
    }
    for (path, rel) in files {
        let (dir, file) = {
            let joined = gopath::join(&[blob_path, sub_dir, &rel]);
            let (d, f) = split(&joined);
            (d.to_string(), f.to_string())
        };
        let (name, o) = gcs::writer_options_from_file_name(&file, types);
        let dest = gopath::join(&[&dir, &name]).replace('#', "%23");
        if targets.contains_key(&dest) {
            tracing::warn!("Encountered duplicate upload of {dest}, skipping...");
            continue;
        }
        tracing::info!(
            "Found {} in artifact directory. Uploading as {dest}",
            path.display()
        );
        targets.insert(dest, Upload::file(path).with_options(o));
    }
}

/// Uploads a run's files (upstream gcsupload `Run`): the normal targets, then `extra` under the
/// upload root; the second batch is tried even when the first failed, and the first error wins.
pub async fn run(
    opts: &Options,
    spec: &JobSpec,
    extra: Vec<(String, UploadSource)>,
) -> Result<(), UploadError> {
    run_with(
        opts,
        spec,
        extra,
        &Substitutes::default(),
        &UploadConfig::default(),
    )
    .await
}

/// [`run`] with [`Substitutes`] for some local files and explicit pacing (tests shorten the
/// retry pauses).
pub async fn run_with(
    opts: &Options,
    spec: &JobSpec,
    extra: Vec<(String, UploadSource)>,
    substitutes: &Substitutes,
    cfg: &UploadConfig,
) -> Result<(), UploadError> {
    tracing::debug!(options = ?opts, "Uploading to blob storage");
    let types = MediaTypes::with_config(&opts.gcs.media_types);
    let (mut targets, mut extras) = assemble_targets(opts, spec, extra, &types)?;
    substitutes.apply(&mut targets);
    substitutes.apply(&mut extras);
    let sink = if opts.dry_run {
        None
    } else {
        Some(open_sink(opts))
    };
    let first = complete_upload(opts, sink.as_ref(), targets, &types, cfg).await;
    let second = complete_upload(opts, sink.as_ref(), extras, &types, cfg).await;
    match (first, second) {
        (Err(e), Err(extra_err)) => {
            tracing::info!(error = %extra_err, "Also failed to upload extra targets");
            Err(e)
        }
        (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
        (Ok(()), Ok(())) => Ok(()),
    }
}

fn open_sink(opts: &Options) -> Result<gcs::Destination, gcs::StoreError> {
    if opts.gcs.local_output_dir.is_empty() {
        gcs::Destination::remote(
            &opts.gcs.bucket,
            &opts.gcs_credentials_file,
            &opts.s3_credentials_file,
        )
    } else {
        gcs::Destination::local(&opts.gcs.local_output_dir)
    }
}

async fn complete_upload(
    opts: &Options,
    sink: Option<&Result<gcs::Destination, gcs::StoreError>>,
    targets: Targets,
    types: &MediaTypes,
    cfg: &UploadConfig,
) -> Result<(), UploadError> {
    let Some(sink) = sink else {
        for dest in targets.keys() {
            tracing::info!(dest = %dest, "Would upload");
        }
        return Ok(());
    };
    let local = &opts.gcs.local_output_dir;
    let result = match sink {
        Ok(d) => gcs::upload(d, targets, &opts.gcs.compress_file_types, types, cfg).await,
        Err(e) => Err(gcs::UploadError::Opener(e.clone())),
    };
    match result {
        Ok(()) if local.is_empty() => {
            tracing::info!("Finished upload to blob storage");
            Ok(())
        }
        Ok(()) => {
            tracing::info!("Finished copying files to {local:?}.");
            Ok(())
        }
        Err(source) if local.is_empty() => Err(UploadError::Remote(source)),
        Err(source) => Err(UploadError::Local {
            dir: local.clone(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prowapi::{GcsConfiguration, Pull, Refs};
    use std::collections::BTreeSet;

    fn spec(type_: &str) -> JobSpec {
        JobSpec {
            type_: type_.into(),
            job: "job".into(),
            build_id: "build".into(),
            refs: Some(Refs {
                org: "org".into(),
                repo: "repo".into(),
                pulls: Some(vec![Pull {
                    number: 1,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn opts(bucket: &str) -> Options {
        Options {
            gcs: GcsConfiguration {
                path_strategy: "explicit".into(),
                bucket: bucket.into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn keys(t: &Targets) -> BTreeSet<String> {
        t.keys().cloned().collect()
    }

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(std::string::ToString::to_string).collect()
    }

    /// Creates `paths` (a trailing `/` makes a directory) and returns the items under `tmp`.
    fn setup(tmp: &std::path::Path, paths: &[&str], items: &[&str]) -> Vec<String> {
        for p in paths {
            if let Some(d) = p.strip_suffix('/') {
                std::fs::create_dir(tmp.join(d)).unwrap();
            } else {
                std::fs::write(tmp.join(p), b"").unwrap();
            }
        }
        items
            .iter()
            .map(|i| tmp.join(i).to_string_lossy().into_owned())
            .collect()
    }

    // Upstream TestOptions_AssembleTargets.
    #[test]
    fn assemble_targets_cases() {
        let presubmit_infra = [
            "pr-logs/directory/job/build.txt",
            "pr-logs/directory/job/latest-build.txt",
            "pr-logs/pull/org_repo/1/job/latest-build.txt",
        ];
        let types = MediaTypes::default();
        struct Case {
            job_type: &'static str,
            items: &'static [&'static str],
            paths: &'static [&'static str],
            extra: &'static [&'static str],
            local: bool,
            want: Vec<&'static str>,
            want_extra: Vec<&'static str>,
        }
        let cases = [
            Case {
                job_type: "presubmit",
                items: &[],
                paths: &[],
                extra: &[],
                local: false,
                want: presubmit_infra.to_vec(),
                want_extra: vec![],
            },
            Case {
                job_type: "postsubmit",
                items: &[],
                paths: &[],
                extra: &[],
                local: false,
                want: vec!["logs/job/latest-build.txt"],
                want_extra: vec![],
            },
            Case {
                job_type: "periodic",
                items: &[],
                paths: &[],
                extra: &[],
                local: false,
                want: vec!["logs/job/latest-build.txt"],
                want_extra: vec![],
            },
            Case {
                job_type: "batch",
                items: &[],
                paths: &[],
                extra: &[],
                local: false,
                want: vec!["pr-logs/directory/job/latest-build.txt"],
                want_extra: vec![],
            },
            Case {
                job_type: "presubmit",
                items: &[],
                paths: &[],
                extra: &["something", "else"],
                local: false,
                want: presubmit_infra.to_vec(),
                want_extra: vec![
                    "pr-logs/pull/org_repo/1/job/build/something",
                    "pr-logs/pull/org_repo/1/job/build/else",
                ],
            },
            Case {
                job_type: "presubmit",
                items: &["something", "else", "escape#me"],
                paths: &[
                    "something",
                    "else",
                    "notforupload",
                    "escape#me/",
                    "escape#me/foo",
                ],
                extra: &[],
                local: false,
                want: [
                    "pr-logs/pull/org_repo/1/job/build/something",
                    "pr-logs/pull/org_repo/1/job/build/else",
                    "pr-logs/pull/org_repo/1/job/build/escape%23me/foo",
                ]
                .into_iter()
                .chain(presubmit_infra)
                .collect(),
                want_extra: vec![],
            },
            Case {
                job_type: "presubmit",
                items: &["something"],
                paths: &["something/", "something/else", "notforupload"],
                extra: &[],
                local: false,
                want: ["pr-logs/pull/org_repo/1/job/build/something/else"]
                    .into_iter()
                    .chain(presubmit_infra)
                    .collect(),
                want_extra: vec![],
            },
            Case {
                job_type: "presubmit",
                items: &["something", "more"],
                paths: &["something/", "something/else", "more", "notforupload"],
                extra: &["started.json"],
                local: true,
                want: vec!["something/else", "more"],
                want_extra: vec!["started.json"],
            },
        ];
        for c in cases {
            let tmp = tempfile::tempdir().unwrap();
            let mut o = opts("bucket");
            o.items = setup(tmp.path(), c.paths, c.items);
            if c.local {
                o.gcs.bucket.clear();
                o.gcs.local_output_dir = "/output".into();
            }
            let extra = c
                .extra
                .iter()
                .map(|e| (e.to_string(), UploadSource::Bytes(b"data".to_vec())))
                .collect();
            let (t, x) = assemble_targets(&o, &spec(c.job_type), extra, &types).unwrap();
            assert_eq!(keys(&t), set(&c.want), "{} {:?}", c.job_type, c.items);
            assert_eq!(keys(&x), set(&c.want_extra), "{} {:?}", c.job_type, c.extra);
        }
        // An unparseable bucket fails before anything is uploaded.
        let err =
            assemble_targets(&opts("://bucket"), &spec("presubmit"), vec![], &types).unwrap_err();
        assert!(
            err.to_string().starts_with("parse bucket \"://bucket\""),
            "{err}"
        );
    }

    #[test]
    fn alias_and_markers_carry_upstream_content() {
        let types = MediaTypes::default();
        let cases = [
            (
                "bucket",
                "",
                "gs://bucket/pr-logs/pull/org_repo/1/job/build",
            ),
            (
                "gs://bucket",
                "pfx",
                "gs://bucket/pfx/pr-logs/pull/org_repo/1/job/build",
            ),
            (
                "s3://b/sub",
                "",
                "s3://b/sub/pr-logs/pull/org_repo/1/job/build",
            ),
            (
                "bucket/dir",
                "",
                "gs://bucket/dir/pr-logs/pull/org_repo/1/job/build",
            ),
        ];
        for (bucket, prefix, want) in cases {
            let mut o = opts(bucket);
            o.gcs.path_prefix = prefix.into();
            o.sub_dir = "ignored-for-alias".into();
            let (t, _) = assemble_targets(&o, &spec("presubmit"), vec![], &types).unwrap();
            let alias = &t["pr-logs/directory/job/build.txt"];
            assert_eq!(
                alias.source,
                gcs::Source::Data(want.as_bytes().to_vec().into()),
                "{bucket}"
            );
            assert_eq!(alias.options.metadata["x-goog-meta-link"], want);
            assert_eq!(alias.options.content_type, None);
            let marker = &t["pr-logs/directory/job/latest-build.txt"];
            assert_eq!(marker.source, gcs::Source::Data(b"build".to_vec().into()));
            assert_eq!(
                marker.options.content_type.as_deref(),
                Some("text/plain; charset=utf-8")
            );
        }
    }

    #[test]
    fn paths_apply_prefix_and_sub_dir() {
        let mut o = opts("b");
        o.gcs.path_prefix = "pfx".into();
        o.sub_dir = "sub".into();
        let p = paths_for_job(&o, &spec("periodic")).unwrap();
        assert_eq!(p.job_base, "pfx/logs/job/build");
        assert_eq!(p.blob_path, "pfx/logs/job/build/sub");
        assert!(paths_for_job(&o, &spec("nightly")).is_err());
    }

    #[test]
    fn compressed_names_in_items_are_simplified() {
        let tmp = tempfile::tempdir().unwrap();
        let mut o = opts("b");
        o.items = setup(
            tmp.path(),
            &["dir/", "dir/a.txt.gz", "top.json.gz"],
            &["dir", "top.json.gz"],
        );
        let (t, _) =
            assemble_targets(&o, &spec("postsubmit"), vec![], &MediaTypes::default()).unwrap();
        let a = &t["logs/job/build/dir/a.txt"];
        assert_eq!(a.options.content_encoding.as_deref(), Some("gzip"));
        let top = &t["logs/job/build/top.json"];
        assert_eq!(
            top.options.content_type.as_deref(),
            Some("application/json")
        );
    }

    #[tokio::test]
    async fn substitutes_replace_or_withhold_files_in_items_and_extras() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let mut o = opts("");
        o.gcs.local_output_dir = out.path().to_string_lossy().into_owned();
        o.items = setup(
            tmp.path(),
            &["art/", "art/a.txt", "art/b.txt", "art/c.txt", "log.txt"],
            &["art"],
        );
        let copy = tmp.path().join("copy-of-a");
        std::fs::write(&copy, "censored").unwrap();
        let mut subs = Substitutes::default();
        subs.insert(tmp.path().join("art/a.txt"), Substitute::Copy(copy.clone()));
        subs.insert(tmp.path().join("art/b.txt"), Substitute::Withhold);
        subs.insert(tmp.path().join("log.txt"), Substitute::Copy(copy));
        let extra = vec![(
            "build-log.txt".to_string(),
            UploadSource::File(tmp.path().join("log.txt")),
        )];
        run_with(
            &o,
            &spec("periodic"),
            extra,
            &subs,
            &UploadConfig::default(),
        )
        .await
        .unwrap();
        let read = |p: &str| std::fs::read_to_string(out.path().join(p)).ok();
        assert_eq!(read("art/a.txt").as_deref(), Some("censored"));
        assert_eq!(read("art/b.txt"), None);
        assert_eq!(read("art/c.txt").as_deref(), Some(""));
        assert_eq!(read("build-log.txt").as_deref(), Some("censored"));
    }

    #[tokio::test]
    async fn dry_run_uploads_nothing_and_local_mode_writes_files() {
        let out = tempfile::tempdir().unwrap();
        let mut o = opts("");
        o.dry_run = true;
        o.gcs.local_output_dir = out.path().to_string_lossy().into_owned();
        let extra = vec![(
            "started.json".to_string(),
            UploadSource::Bytes(b"{}".to_vec()),
        )];
        run(&o, &spec("presubmit"), extra.clone()).await.unwrap();
        assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
        o.dry_run = false;
        run(&o, &spec("presubmit"), extra).await.unwrap();
        assert_eq!(
            std::fs::read(out.path().join("started.json")).unwrap(),
            b"{}"
        );
        assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 1);
    }

    #[tokio::test]
    async fn both_batches_run_and_the_first_error_wins() {
        let out = tempfile::tempdir().unwrap();
        std::fs::write(out.path().join("blocker"), b"").unwrap();
        let mut o = opts("");
        // Everything under a regular file fails; the extra target outside it still lands.
        o.gcs.local_output_dir = out.path().to_string_lossy().into_owned();
        o.items = vec![out.path().join("blocker").to_string_lossy().into_owned()];
        o.sub_dir = String::new();
        let fast = UploadConfig {
            retry_unit: std::time::Duration::from_millis(1),
            ..Default::default()
        };
        let extra = vec![
            ("blocker/x".to_string(), UploadSource::Bytes(b"1".to_vec())),
            ("ok.txt".to_string(), UploadSource::Bytes(b"2".to_vec())),
        ];
        let err = run_with(&o, &spec("periodic"), extra, &Substitutes::default(), &fast)
            .await
            .unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "failed to copy files to {:?}: encountered errors during upload: [",
                o.gcs.local_output_dir
            )),
            "{err}"
        );
        assert_eq!(std::fs::read(out.path().join("ok.txt")).unwrap(), b"2");
    }

    #[tokio::test]
    async fn unusable_destination_is_an_opener_error() {
        let mut o = opts("ftp://nope");
        o.gcs.path_strategy = "explicit".into();
        let err = run(&o, &spec("periodic"), vec![]).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed to upload to blob storage: new opener: unsupported storage provider \"ftp\""
        );
    }
}
