/*!
The one storage layer behind every upload (upstream `pkg/io` opener): a [`Destination`] is a
bucket URL or a local directory, and writes one object at a time from a streaming reader.

- `gs://` → the GCS JSON API ([`super::gcs_json`]), credentials from object_store.
- `s3://` → object_store's S3 client (small objects in one PUT, large ones multipart).
- an absolute path or `file://` → plain files (parents 0755, files 0666 before umask).

Memory stays bounded by the chunk size per concurrent upload, whatever the file size.
*/

use std::fmt;
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::{Attribute, Attributes, ObjectStore};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::gcs_json::{self, Auth, GcsJson};
use super::metadata::WriterOptions;
use crate::env;
use crate::prowapi::parse_bucket;

/// Default bytes per request for large objects: a multiple of GCS's 256 KiB resumable unit and
/// above S3's 5 MiB minimum part.
pub const DEFAULT_CHUNK_SIZE: usize = 8 * 1024 * 1024;

/// Why a destination could not be set up (upstream: "new opener: ...").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported storage provider {0:?}")]
    Provider(String),
    #[error(transparent)]
    Bucket(#[from] crate::prowapi::GcsConfigError),
    #[error("could not load credentials: {0}")]
    Credentials(String),
    #[error("could not read S3 credentials file {path:?}: {msg}")]
    S3Credentials { path: String, msg: String },
    #[error("could not create storage client: {0}")]
    Client(String),
}

/// Why one object could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("reader new error: {0}")]
    Open(io::Error),
    #[error("copy error: {0}")]
    Read(io::Error),
    #[error("{0}")]
    Local(io::Error),
    #[error("invalid object name {0:?}")]
    Key(String),
    #[error("could not get credentials: {0}")]
    Credentials(String),
    #[error("request failed: {0}")]
    Http(String),
    #[error("unexpected status {status}: {body}")]
    Status { status: u16, body: String },
    #[error("{0}")]
    Protocol(String),
    #[error(transparent)]
    ObjectStore(#[from] object_store::Error),
}

/// A blocking reader pulled in fixed-size chunks off the async runtime's threads.
pub(crate) struct Chunks {
    reader: Option<Box<dyn Read + Send>>,
    chunk: usize,
}

impl Chunks {
    pub(crate) fn new(reader: Box<dyn Read + Send>, chunk: usize) -> Self {
        Chunks {
            reader: Some(reader),
            chunk: chunk.max(1),
        }
    }

    pub(crate) fn chunk_size(&self) -> usize {
        self.chunk
    }

    /// Up to one chunk of bytes; shorter only at the end, empty once exhausted.
    pub(crate) async fn next_chunk(&mut self) -> Result<Vec<u8>, WriteError> {
        let Some(reader) = self.reader.take() else {
            return Ok(Vec::new());
        };
        let chunk = self.chunk;
        let (reader, result) = tokio::task::spawn_blocking(move || {
            let mut reader = reader;
            let mut buf = Vec::with_capacity(chunk);
            let r = (&mut reader)
                .take(chunk as u64)
                .read_to_end(&mut buf)
                .map(|_| buf);
            (reader, r)
        })
        .await
        .map_err(|e| WriteError::Read(io::Error::other(e.to_string())))?;
        let buf = result.map_err(WriteError::Read)?;
        if buf.len() == chunk {
            self.reader = Some(reader);
        }
        Ok(buf)
    }
}

#[derive(Clone)]
enum Backend {
    Local,
    Gcs(GcsJson),
    S3(Arc<dyn ObjectStore>),
}

/// Where a batch of objects goes: the bucket (with any path inside it) or a local directory.
#[derive(Clone)]
pub struct Destination {
    backend: Backend,
    /// What upstream prints as the object's location: `gs://bucket/path` or the local dir.
    base: String,
    /// The path inside the bucket that object names start with ("" for none).
    key_prefix: String,
    chunk: usize,
}

impl fmt::Debug for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Destination")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// `s3_credentials_file` contents (upstream `providers.s3Credentials`).
#[derive(Deserialize, Default, Debug)]
struct S3Credentials {
    #[serde(default)]
    region: String,
    #[serde(default)]
    endpoint: String,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    s3_force_path_style: bool,
    #[serde(default)]
    access_key: String,
    #[serde(default)]
    secret_key: String,
    #[serde(default)]
    session_token: String,
}

impl Destination {
    /// A local export directory (upstream `LocalExport`): must be absolute or `file://`.
    pub fn local(dir: &str) -> Result<Self, StoreError> {
        if !dir.starts_with('/') && !dir.starts_with("file://") {
            return Err(StoreError::Provider(format!(
                "{dir} (local output dir must be an absolute path)"
            )));
        }
        Ok(Destination {
            backend: Backend::Local,
            base: dir.to_string(),
            key_prefix: String::new(),
            chunk: DEFAULT_CHUNK_SIZE,
        })
    }

    /// A bucket as configured (`name`, `gs://name/path`, `s3://name/path`, `file:///dir`),
    /// with the job's credentials files (upstream `NewOpener`).
    pub fn remote(
        bucket: &str,
        gcs_credentials_file: &str,
        s3_credentials_file: &str,
    ) -> Result<Self, StoreError> {
        let p = parse_bucket(bucket)?;
        let mut base = format!("{}://{}", p.scheme, p.bucket);
        if !p.path.is_empty() {
            base.push('/');
            base.push_str(&p.path);
        }
        let backend = match p.scheme.as_str() {
            "gs" => Backend::Gcs(gcs_client(&p.bucket, gcs_credentials_file)?),
            "s3" => Backend::S3(s3_client(&p.bucket, s3_credentials_file)?),
            "file" => {
                return Destination::local(&base);
            }
            other => return Err(StoreError::Provider(other.to_string())),
        };
        Ok(Destination {
            backend,
            base,
            key_prefix: p.path,
            chunk: DEFAULT_CHUNK_SIZE,
        })
    }

    /// A bucket URL (`gs://name[/path]`) served by an unauthenticated GCS JSON API at
    /// `endpoint` (an emulator), without reading the environment.
    pub fn gcs_emulator(endpoint: &str, bucket: &str) -> Result<Self, StoreError> {
        let p = parse_bucket(bucket)?;
        if p.scheme != "gs" {
            return Err(StoreError::Provider(p.scheme));
        }
        let mut base = format!("gs://{}", p.bucket);
        if !p.path.is_empty() {
            base.push('/');
            base.push_str(&p.path);
        }
        Ok(Destination {
            backend: Backend::Gcs(GcsJson::new(
                Some(gcs_json::emulator_base(endpoint)),
                &p.bucket,
                Auth::Anonymous,
            )?),
            base,
            key_prefix: p.path,
            chunk: DEFAULT_CHUNK_SIZE,
        })
    }

    /// Bytes per request for large objects (tests use small ones).
    pub fn with_chunk_size(mut self, chunk: usize) -> Self {
        self.chunk = chunk;
        self
    }

    /// Whether objects land in local files (compression and object headers do not apply).
    pub fn is_local(&self) -> bool {
        matches!(self.backend, Backend::Local)
    }

    /// The location upstream logs for `dest`: base and dest joined by one `/`.
    pub fn full_path(&self, dest: &str) -> String {
        format!("{}/{dest}", self.base)
    }

    /// Writes `reader`'s bytes to `dest` with `attrs` (ignored for local files).
    pub(crate) async fn write(
        &self,
        dest: &str,
        attrs: &WriterOptions,
        reader: Box<dyn Read + Send>,
    ) -> Result<(), WriteError> {
        match &self.backend {
            Backend::Local => {
                let full = self.full_path(dest);
                let path = full.strip_prefix("file://").unwrap_or(&full).to_string();
                tokio::task::spawn_blocking(move || write_local(Path::new(&path), reader))
                    .await
                    .map_err(|e| WriteError::Local(io::Error::other(e.to_string())))?
            }
            Backend::Gcs(c) => {
                let key = object_name(&self.key_prefix, dest)?;
                c.write(&key, attrs, Chunks::new(reader, self.chunk)).await
            }
            Backend::S3(store) => {
                let key = object_name(&self.key_prefix, dest)?;
                let path = object_store::path::Path::parse(&key)
                    .map_err(|_| WriteError::Key(key.clone()))?;
                write_s3(store, path, attrs, Chunks::new(reader, self.chunk)).await
            }
        }
    }
}

/// The object name for `dest` under `prefix`. Upstream builds a URL and reads its path back,
/// so `%XX` escapes (notably `%23` for `#`, see gcsupload) are decoded; unlike upstream, a raw
/// `?` or `#` stays part of the name instead of cutting it short.
pub(crate) fn object_name(prefix: &str, dest: &str) -> Result<String, WriteError> {
    let raw = if prefix.is_empty() {
        dest.to_string()
    } else {
        format!("{prefix}/{dest}")
    };
    let decoded = percent_decode_valid(&raw);
    String::from_utf8(decoded).map_err(|_| WriteError::Key(raw))
}

/// Decodes `%XX` where XX is hex and keeps any other `%` literally.
fn percent_decode_valid(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn write_local(path: &Path, mut reader: Box<dyn Read + Send>) -> Result<(), WriteError> {
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| {
                WriteError::Local(io::Error::new(
                    e.kind(),
                    format!("create directory {dir:?}: {e}"),
                ))
            })?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o666)
        .open(path)
        .map_err(|e| WriteError::Local(io::Error::new(e.kind(), format!("open {path:?}: {e}"))))?;
    io::copy(&mut reader, &mut f).map_err(WriteError::Read)?;
    Ok(())
}

async fn write_s3(
    store: &Arc<dyn ObjectStore>,
    path: object_store::path::Path,
    attrs: &WriterOptions,
    mut body: Chunks,
) -> Result<(), WriteError> {
    let mut a = Attributes::new();
    if let Some(ct) = &attrs.content_type {
        a.insert(Attribute::ContentType, ct.clone().into());
    }
    if let Some(ce) = &attrs.content_encoding {
        a.insert(Attribute::ContentEncoding, ce.clone().into());
    }
    for (k, v) in &attrs.metadata {
        a.insert(Attribute::Metadata(k.clone().into()), v.clone().into());
    }
    let mut w =
        BufWriter::with_capacity(Arc::clone(store), path, body.chunk_size()).with_attributes(a);
    let written: Result<(), WriteError> = async {
        loop {
            let chunk = body.next_chunk().await?;
            if chunk.is_empty() {
                return Ok(());
            }
            w.put(Bytes::from(chunk)).await?;
        }
    }
    .await;
    if let Err(e) = written {
        // Drop any multipart state on the server; the outer retry starts over.
        let _ = w.abort().await;
        return Err(e);
    }
    // Not aborted when this fails: a BufWriter that has begun shutting down panics in abort
    // (a failed single PUT crashed the upload). A multipart upload left by a failed completion
    // is the bucket's lifecycle rules' to expire, as with any interrupted client.
    w.shutdown()
        .await
        .map_err(|e| WriteError::Http(e.to_string()))
}

fn gcs_client(bucket: &str, credentials_file: &str) -> Result<GcsJson, StoreError> {
    // Google's clients talk to an emulator without auth when this is set.
    if let Some(host) = env::lookup("STORAGE_EMULATOR_HOST").filter(|h| !h.is_empty()) {
        return GcsJson::new(
            Some(gcs_json::emulator_base(&host)),
            bucket,
            Auth::Anonymous,
        );
    }
    let builder = GoogleCloudStorageBuilder::new().with_bucket_name(bucket);
    let adc_path = env::lookup("GOOGLE_APPLICATION_CREDENTIALS").filter(|p| !p.is_empty());
    let builder = if !credentials_file.is_empty() {
        builder.with_application_credentials(credentials_file)
    } else if gcs_json::adc_available(adc_path.as_deref(), env::lookup("HOME").as_deref()) {
        match adc_path {
            Some(p) => builder.with_application_credentials(p),
            None => builder,
        }
    } else {
        tracing::debug!(
            "Cannot load application default gcp credentials, falling back to anonymous client"
        );
        return GcsJson::new(None, bucket, Auth::Anonymous);
    };
    // Token requests go where Go's oauth2 client sends them; its metadata client never uses a
    // proxy.
    let options = proxied(
        object_store::ClientOptions::new(),
        "https://oauth2.googleapis.com/token",
        &["169.254.169.254", "metadata.google.internal"],
    )?;
    let gcs = builder
        .with_client_options(options)
        .build()
        .map_err(|e| StoreError::Credentials(e.to_string()))?;
    GcsJson::new(None, bucket, gcs_json::token_auth(gcs.credentials()))
}

fn s3_client(bucket: &str, credentials_file: &str) -> Result<Arc<dyn ObjectStore>, StoreError> {
    let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
    if !credentials_file.is_empty() {
        let bad = |msg: String| StoreError::S3Credentials {
            path: credentials_file.to_string(),
            msg,
        };
        let raw = std::fs::read(credentials_file).map_err(|e| bad(e.to_string()))?;
        let c: S3Credentials = serde_json::from_slice(&raw).map_err(|e| bad(e.to_string()))?;
        if !c.region.is_empty() {
            b = b.with_region(&c.region);
        }
        if !c.access_key.is_empty() && !c.secret_key.is_empty() {
            b = b
                .with_access_key_id(&c.access_key)
                .with_secret_access_key(&c.secret_key);
            if !c.session_token.is_empty() {
                b = b.with_token(&c.session_token);
            }
        }
        // Upstream's `insecure` skips TLS verification (Go's InsecureSkipVerify), for any
        // endpoint; plain HTTP needs no flag there, the endpoint's scheme says so. The client
        // options go first: they hold allow_http too, which the endpoint then sets.
        let endpoint = match (c.endpoint.as_str(), c.s3_force_path_style) {
            ("", _) => "https://s3.amazonaws.com".to_string(),
            (e, true) => e.to_string(),
            (e, false) => virtual_hosted(e, bucket),
        };
        let options =
            object_store::ClientOptions::new().with_allow_invalid_certificates(c.insecure);
        b = b.with_client_options(proxied(options, &endpoint, &[])?);
        if !c.endpoint.is_empty() {
            b = b.with_allow_http(c.endpoint.starts_with("http://"));
            if c.s3_force_path_style {
                b = b.with_endpoint(&c.endpoint);
            } else {
                // object_store wants the bucket in a virtual-hosted endpoint; the AWS SDK adds it.
                b = b
                    .with_virtual_hosted_style_request(true)
                    .with_endpoint(virtual_hosted(&c.endpoint, bucket));
            }
        }
    }
    b.build()
        .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        .map_err(|e| StoreError::Client(e.to_string()))
}

/// `options` sending requests for `url` as Go's default transport would: through the proxy
/// [`crate::proxy`] picks, or directly. reqwest's own environment proxy (which also reads
/// `ALL_PROXY` and proxies loopback) must not apply, and object_store has no switch for it: a
/// proxy that exempts every host turns it off (`*` covers names only, the CIDRs addresses).
fn proxied(
    options: object_store::ClientOptions,
    url: &str,
    direct: &[&str],
) -> Result<object_store::ClientOptions, StoreError> {
    let proxy = crate::proxy::process()
        .proxy_for(url)
        .map_err(|e| StoreError::Client(e.to_string()))?;
    Ok(match proxy {
        Some(p) if direct.is_empty() => options.with_proxy_url(p),
        Some(p) => options
            .with_proxy_url(p)
            .with_proxy_excludes(direct.join(",")),
        None => options
            .with_proxy_url("http://127.0.0.1:9")
            .with_proxy_excludes("*,0.0.0.0/0,::/0"),
    })
}

/// `https://host:port/x` → `https://bucket.host:port/x`.
fn virtual_hosted(endpoint: &str, bucket: &str) -> String {
    match endpoint.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{bucket}.{rest}"),
        None => format!("https://{bucket}.{endpoint}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_decode_escapes_like_upstream_urls() {
        assert_eq!(
            object_name("", "a/escape%23me/foo").unwrap(),
            "a/escape#me/foo"
        );
        assert_eq!(
            object_name("pfx", "logs/j/1/started.json").unwrap(),
            "pfx/logs/j/1/started.json"
        );
        // Deviation: upstream's URL parse truncates at a raw `?`/`#` and fails on a bad escape.
        assert_eq!(object_name("", "what?.txt").unwrap(), "what?.txt");
        assert_eq!(object_name("", "a#b").unwrap(), "a#b");
        assert_eq!(object_name("", "100%").unwrap(), "100%");
        assert_eq!(object_name("", "x%zz%4").unwrap(), "x%zz%4");
        assert!(object_name("", "bad%FF").is_err());
    }

    #[test]
    fn destinations_from_bucket_strings() {
        let d = Destination::remote("s3://b/pfx", "", "").unwrap();
        assert_eq!(d.full_path("x/y"), "s3://b/pfx/x/y");
        assert_eq!(d.key_prefix, "pfx");
        let d = Destination::remote("file:///tmp/out", "", "").unwrap();
        assert!(d.is_local());
        assert_eq!(d.full_path("a"), "file:///tmp/out/a");
        assert!(matches!(
            Destination::remote("ftp://x", "", ""),
            Err(StoreError::Provider(_))
        ));
        assert!(matches!(
            Destination::remote("://x", "", ""),
            Err(StoreError::Bucket(_))
        ));
        assert!(matches!(
            Destination::local("relative/dir"),
            Err(StoreError::Provider(_))
        ));
        if crate::env::lookup("STORAGE_EMULATOR_HOST").is_none() {
            let e = Destination::remote("gs://b", "/nonexistent/sa.json", "").unwrap_err();
            assert!(matches!(e, StoreError::Credentials(_)), "{e}");
        }
        let missing = Destination::remote("s3://b", "", "/nonexistent/creds.json").unwrap_err();
        assert!(
            missing.to_string().contains("/nonexistent/creds.json"),
            "{missing}"
        );
    }

    #[test]
    fn virtual_hosted_endpoint() {
        assert_eq!(
            virtual_hosted("https://minio:9000", "b"),
            "https://b.minio:9000"
        );
        assert_eq!(virtual_hosted("minio", "b"), "https://b.minio");
    }

    #[tokio::test]
    async fn chunks_split_a_reader() {
        let mut c = Chunks::new(Box::new(io::Cursor::new(vec![7u8; 10])), 4);
        let sizes = [
            c.next_chunk().await.unwrap().len(),
            c.next_chunk().await.unwrap().len(),
            c.next_chunk().await.unwrap().len(),
            c.next_chunk().await.unwrap().len(),
        ];
        assert_eq!(sizes, [4, 4, 2, 0]);
        let mut exact = Chunks::new(Box::new(io::Cursor::new(vec![1u8; 8])), 4);
        let sizes = [
            exact.next_chunk().await.unwrap().len(),
            exact.next_chunk().await.unwrap().len(),
            exact.next_chunk().await.unwrap().len(),
        ];
        assert_eq!(sizes, [4, 4, 0]);
    }

    #[tokio::test]
    async fn local_writes_create_parents_and_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let d = Destination::local(dir.path().to_str().unwrap()).unwrap();
        d.write(
            "a/b/c.txt",
            &WriterOptions::default(),
            Box::new(io::Cursor::new(b"long content".to_vec())),
        )
        .await
        .unwrap();
        d.write(
            "a/b/c.txt",
            &WriterOptions::default(),
            Box::new(io::Cursor::new(b"short".to_vec())),
        )
        .await
        .unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("a/b/c.txt")).unwrap(),
            b"short"
        );
        // A file where a directory must go fails cleanly.
        let err = d
            .write(
                "a/b/c.txt/d",
                &WriterOptions::default(),
                Box::new(io::empty()),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, WriteError::Local(_)), "{err}");
    }
}
