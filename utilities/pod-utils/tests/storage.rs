//! The storage layer against real servers: fake-gcs-server (JSON API, multipart and resumable
//! uploads) and moto (S3, single and multipart). Servers come from `testsupport`.

use std::time::Duration;

use pod_utils::downwardapi::JobSpec;
use pod_utils::gcs::{self, Destination, MediaTypes, Targets, Upload, UploadConfig, WriterOptions};
use pod_utils::gcsupload::{self, Options, UploadSource};
use pod_utils::prowapi::GcsConfiguration;
use testsupport::{FakeGcs, Moto, gunzip};

const CHUNK: usize = 256 * 1024;

fn cfg() -> UploadConfig {
    UploadConfig {
        retry_unit: Duration::from_millis(1),
        chunk_size: CHUNK,
        ..Default::default()
    }
}

/// Bytes that do not compress and are not text.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

#[tokio::test]
#[cfg_attr(
    not(has_fake_gcs),
    ignore = "needs fake-gcs-server: run qemu/provision"
)]
async fn gcs_small_and_chunked_uploads_keep_bytes_and_headers() {
    let server = FakeGcs::require(&["bkt"]);
    let dir = tempfile::tempdir().unwrap();
    let sizes = [
        ("one-chunk.bin", CHUNK - 1),
        ("exact.bin", 2 * CHUNK),
        ("odd.bin", 3 * CHUNK + 17),
        ("empty.bin", 0),
    ];
    let mut t = Targets::new();
    for (name, len) in sizes {
        std::fs::write(dir.path().join(name), noise(len)).unwrap();
        t.insert(format!("files/{name}"), Upload::file(dir.path().join(name)));
    }
    let mut meta = WriterOptions::default();
    meta.metadata
        .insert("x-goog-meta-link".into(), "gs://bkt/pfx".into());
    t.insert(
        "alias.txt".into(),
        Upload::data("gs://bkt/pfx").with_options(meta),
    );
    let d = Destination::gcs_emulator(&server.emulator_host(), "gs://bkt/pfx").unwrap();
    gcs::upload(&d, t, &[], &MediaTypes::default(), &cfg())
        .await
        .unwrap();

    let objects = server.objects("bkt");
    let names: Vec<&str> = objects.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "pfx/alias.txt",
            "pfx/files/empty.bin",
            "pfx/files/exact.bin",
            "pfx/files/odd.bin",
            "pfx/files/one-chunk.bin"
        ]
    );
    for (name, len) in sizes {
        let o = objects
            .iter()
            .find(|o| o.name == format!("pfx/files/{name}"))
            .unwrap();
        assert_eq!(o.data, noise(len), "{name}");
        let want = if len == 0 {
            "text/plain; charset=utf-8"
        } else {
            "application/octet-stream"
        };
        assert_eq!(o.content_type.as_deref(), Some(want), "{name}");
    }
    let alias = &objects[0];
    assert_eq!(alias.metadata["x-goog-meta-link"], "gs://bkt/pfx");
    assert_eq!(
        alias.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
}

#[tokio::test]
#[cfg_attr(
    not(has_fake_gcs),
    ignore = "needs fake-gcs-server: run qemu/provision"
)]
async fn gcs_compression_follows_the_first_write() {
    let server = FakeGcs::require(&["bkt"]);
    let dir = tempfile::tempdir().unwrap();
    let log = "line of build output\n".repeat(40_000); // ~840 KiB: several chunks compressed
    std::fs::write(dir.path().join("build-log.txt"), &log).unwrap();
    let already = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(log.as_bytes()).unwrap();
        e.finish().unwrap()
    };
    std::fs::write(dir.path().join("events.json.gz"), &already).unwrap();
    let types = MediaTypes::default();
    let mut t = Targets::new();
    t.insert(
        "build-log.txt".into(),
        Upload::file(dir.path().join("build-log.txt")),
    );
    let (name, o) = gcs::writer_options_from_file_name("events.json.gz", &types);
    t.insert(
        name,
        Upload::file(dir.path().join("events.json.gz")).with_options(o),
    );
    t.insert("small.txt".into(), Upload::data("tiny"));
    let d = Destination::gcs_emulator(&server.emulator_host(), "bkt").unwrap();
    gcs::upload(&d, t, &["*".to_string()], &types, &cfg())
        .await
        .unwrap();

    let objects = server.objects("bkt");
    let build = objects.iter().find(|o| o.name == "build-log.txt").unwrap();
    assert_eq!(build.content_encoding.as_deref(), Some("gzip"));
    assert_eq!(
        build.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(gunzip(&build.data), log.as_bytes());
    // Already gzip (by name and content): stored as is, never twice.
    let events = objects.iter().find(|o| o.name == "events.json").unwrap();
    assert_eq!(events.data, already);
    assert_eq!(
        (
            events.content_type.as_deref(),
            events.content_encoding.as_deref()
        ),
        (Some("application/json"), Some("gzip"))
    );
    let small = objects.iter().find(|o| o.name == "small.txt").unwrap();
    assert_eq!(
        (small.data.as_slice(), small.content_encoding.as_deref()),
        (b"tiny".as_slice(), None)
    );
}

#[tokio::test]
#[cfg_attr(
    not(has_fake_gcs),
    ignore = "needs fake-gcs-server: run qemu/provision"
)]
async fn gcs_artifact_names_keep_hash_and_missing_bucket_fails() {
    let server = FakeGcs::require(&["bkt"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("artifacts/escape#me")).unwrap();
    std::fs::write(dir.path().join("artifacts/escape#me/foo"), "x").unwrap();
    let opts = Options {
        items: vec![dir.path().join("artifacts").to_string_lossy().into_owned()],
        gcs: GcsConfiguration {
            bucket: "bkt".into(),
            path_strategy: "explicit".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    let spec = JobSpec {
        type_: "periodic".into(),
        job: "j".into(),
        build_id: "1".into(),
        ..Default::default()
    };
    let types = MediaTypes::default();
    let (targets, extras) = gcsupload::assemble_targets(
        &opts,
        &spec,
        vec![("started.json".into(), UploadSource::Bytes(b"{}".to_vec()))],
        &types,
    )
    .unwrap();
    assert!(targets.contains_key("logs/j/1/artifacts/escape%23me/foo"));
    let d = Destination::gcs_emulator(&server.emulator_host(), "bkt").unwrap();
    gcs::upload(&d, targets, &[], &types, &cfg()).await.unwrap();
    gcs::upload(&d, extras, &[], &types, &cfg()).await.unwrap();
    let names: Vec<String> = server.objects("bkt").into_iter().map(|o| o.name).collect();
    assert_eq!(
        names,
        [
            "logs/j/1/artifacts/escape#me/foo",
            "logs/j/1/started.json",
            "logs/j/latest-build.txt"
        ]
    );

    let missing = Destination::gcs_emulator(&server.emulator_host(), "nope").unwrap();
    let mut t = Targets::new();
    t.insert("x".into(), Upload::data("x"));
    let err = gcs::upload(&missing, t, &[], &types, &cfg())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("encountered errors during upload: [unexpected status 404"),
        "{err}"
    );
}

#[tokio::test]
#[cfg_attr(not(has_moto), ignore = "needs moto_server: run qemu/provision")]
async fn s3_single_and_multipart_uploads() {
    let moto = Moto::require(&["bkt"]);
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("s3.json");
    std::fs::write(&creds, moto.credentials_json()).unwrap();
    // S3 parts must be at least 5 MiB, so the multipart case needs a larger chunk.
    let big = noise(11 * 1024 * 1024 + 3);
    std::fs::write(dir.path().join("big.bin"), &big).unwrap();
    let mut t = Targets::new();
    t.insert("big.bin".into(), Upload::file(dir.path().join("big.bin")));
    let mut meta = WriterOptions::default();
    meta.metadata
        .insert("x-goog-meta-link".into(), "s3://bkt/x".into());
    t.insert(
        "alias.txt".into(),
        Upload::data("s3://bkt/x").with_options(meta),
    );
    t.insert("log.txt".into(), Upload::data("a".repeat(5000)));
    let d = Destination::remote("s3://bkt/pfx", "", creds.to_str().unwrap()).unwrap();
    let cfg = UploadConfig {
        chunk_size: 5 * 1024 * 1024,
        ..cfg()
    };
    gcs::upload(&d, t, &["txt".to_string()], &MediaTypes::default(), &cfg)
        .await
        .unwrap();
    let objects = moto.objects("bkt");
    let names: Vec<&str> = objects.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["pfx/alias.txt", "pfx/big.bin", "pfx/log.txt"]);
    assert_eq!(objects[1].data, big);
    assert_eq!(
        objects[1].content_type.as_deref(),
        Some("application/octet-stream")
    );
    assert_eq!(objects[0].metadata["x-goog-meta-link"], "s3://bkt/x");
    assert_eq!(objects[2].content_encoding.as_deref(), Some("gzip"));
    assert_eq!(gunzip(&objects[2].data), "a".repeat(5000).as_bytes());
}

/// `insecure` in an S3 credentials file means what it means upstream: skip TLS verification.
/// moto behind HTTPS with a self-signed certificate takes uploads only with it; a plain-HTTP
/// endpoint needs no flag (its scheme says so).
#[tokio::test]
#[cfg_attr(not(has_moto), ignore = "needs moto_server: run qemu/provision")]
async fn s3_insecure_skips_tls_verification() {
    let tls = Moto::start_tls(&["bkt"]).unwrap_or_else(|e| panic!("moto_server --ssl: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let upload = |credentials: String, name: &'static str| {
        let creds = dir.path().join(format!("{name}.json"));
        std::fs::write(&creds, credentials).unwrap();
        async move {
            let mut t = Targets::new();
            t.insert(name.into(), Upload::data(name));
            let d = Destination::remote("s3://bkt", "", creds.to_str().unwrap()).unwrap();
            gcs::upload(&d, t, &[], &MediaTypes::default(), &cfg()).await
        }
    };
    upload(tls.credentials_json(), "unverified.txt")
        .await
        .unwrap();
    let err = upload(tls.credentials_json_with(false), "refused.txt")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("encountered errors during upload: ["),
        "{err}"
    );
    let names: Vec<String> = tls.objects("bkt").into_iter().map(|o| o.name).collect();
    assert_eq!(names, ["unverified.txt"]);

    let plain = Moto::require(&["bkt"]);
    upload(plain.credentials_json(), "plain.txt").await.unwrap();
    let names: Vec<String> = plain.objects("bkt").into_iter().map(|o| o.name).collect();
    assert_eq!(names, ["plain.txt"]);
}
