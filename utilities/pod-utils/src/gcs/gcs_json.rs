/*!
Writes to Google Cloud Storage through its JSON API, the way Google's Go client does: one
multipart request when the object fits in a chunk, a resumable session otherwise.

object_store's GCS client writes with the XML API, which fake-gcs-server (the emulator upstream
Prow tests against) refuses, so writes go through here while credentials stay with
object_store's maintained provider (service-account keys, application default credentials,
the metadata server). `STORAGE_EMULATOR_HOST` switches to an unauthenticated emulator, as it
does for Google's clients.
*/

use std::sync::Arc;

use object_store::gcp::GcpCredentialProvider;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::metadata::WriterOptions;
use super::store::{Chunks, StoreError, WriteError};

/// What a URL path segment must escape (RFC 3986 unreserved characters stay).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Where the JSON API lives on real GCS.
const GCS_BASE: &str = "https://storage.googleapis.com";

#[derive(Clone)]
pub(crate) enum Auth {
    /// Emulator, or no credentials to be found (upstream falls back to an anonymous client).
    Anonymous,
    Token(GcpCredentialProvider),
}

#[derive(Clone)]
pub(crate) struct GcsJson {
    http: reqwest::Client,
    /// Scheme, host and port, no trailing slash.
    base: String,
    bucket: String,
    auth: Auth,
}

/// The base URL for `STORAGE_EMULATOR_HOST` (`host:port` or `http://host:port`).
pub(crate) fn emulator_base(host: &str) -> String {
    let host = host.trim_end_matches('/');
    if host.contains("://") {
        host.to_string()
    } else {
        format!("http://{host}")
    }
}

impl GcsJson {
    pub(crate) fn new(base: Option<String>, bucket: &str, auth: Auth) -> Result<Self, StoreError> {
        let base = base.unwrap_or_else(|| GCS_BASE.to_string());
        let client = |e: String| StoreError::Client(e);
        // Go's rules, not reqwest's (which read ALL_PROXY and proxy loopback too).
        let mut http = reqwest::Client::builder().no_proxy();
        if let Some(p) = crate::proxy::process()
            .proxy_for(&base)
            .map_err(|e| client(e.to_string()))?
        {
            http = http.proxy(reqwest::Proxy::all(p).map_err(|e| client(e.to_string()))?);
        }
        let http = http.build().map_err(|e| client(e.to_string()))?;
        Ok(GcsJson {
            http,
            base,
            bucket: bucket.to_string(),
            auth,
        })
    }

    async fn authorize(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, WriteError> {
        match &self.auth {
            Auth::Anonymous => Ok(req),
            Auth::Token(p) => {
                let cred = p
                    .get_credential()
                    .await
                    .map_err(|e| WriteError::Credentials(e.to_string()))?;
                // An emulator configured through object_store's `disable_oauth` yields "".
                if cred.bearer.is_empty() {
                    Ok(req)
                } else {
                    Ok(req.bearer_auth(&cred.bearer))
                }
            }
        }
    }

    fn upload_url(&self, upload_type: &str) -> String {
        format!(
            "{}/upload/storage/v1/b/{}/o?uploadType={upload_type}",
            self.base,
            utf8_percent_encode(&self.bucket, SEGMENT)
        )
    }

    /// The object resource sent along with the data.
    fn resource(name: &str, attrs: &WriterOptions) -> Vec<u8> {
        let mut m = serde_json::Map::new();
        m.insert("name".into(), name.into());
        if let Some(ct) = &attrs.content_type {
            m.insert("contentType".into(), ct.clone().into());
        }
        if let Some(ce) = &attrs.content_encoding {
            m.insert("contentEncoding".into(), ce.clone().into());
        }
        if !attrs.metadata.is_empty() {
            let md: serde_json::Map<String, serde_json::Value> = attrs
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into()))
                .collect();
            m.insert("metadata".into(), md.into());
        }
        serde_json::to_vec(&serde_json::Value::Object(m)).unwrap_or_default()
    }

    /// Uploads everything `body` yields as object `name`, holding at most two chunks in memory.
    pub(crate) async fn write(
        &self,
        name: &str,
        attrs: &WriterOptions,
        mut body: Chunks,
    ) -> Result<(), WriteError> {
        let first = body.next_chunk().await?;
        let second = if first.len() < body.chunk_size() {
            Vec::new()
        } else {
            body.next_chunk().await?
        };
        if second.is_empty() {
            return self.multipart(name, attrs, first).await;
        }
        let session = self.start_resumable(name, attrs).await?;
        let (mut current, mut next) = (first, second);
        let mut offset: u64 = 0;
        loop {
            let len = current.len() as u64;
            if next.is_empty() {
                let range = if current.is_empty() {
                    format!("bytes */{offset}")
                } else {
                    format!("bytes {offset}-{}/{}", offset + len - 1, offset + len)
                };
                return self.put_chunk(&session, range, current, true).await;
            }
            let range = format!("bytes {offset}-{}/*", offset + len - 1);
            self.put_chunk(&session, range, current, false).await?;
            offset += len;
            current = next;
            next = if current.len() < body.chunk_size() {
                Vec::new()
            } else {
                body.next_chunk().await?
            };
        }
    }

    async fn multipart(
        &self,
        name: &str,
        attrs: &WriterOptions,
        data: Vec<u8>,
    ) -> Result<(), WriteError> {
        // A boundary that cannot occur in the JSON part; the data part is length-delimited by
        // the closing boundary, so pick one unlikely in data and check anyway.
        let mut boundary = String::from("tetrapod-boundary-7f3a9c1e");
        while contains(&data, boundary.as_bytes()) {
            boundary.push('x');
        }
        let media_type = attrs
            .content_type
            .as_deref()
            .unwrap_or("application/octet-stream");
        let mut payload = Vec::with_capacity(data.len() + 512);
        payload.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n")
                .as_bytes(),
        );
        payload.extend_from_slice(&Self::resource(name, attrs));
        payload.extend_from_slice(
            format!("\r\n--{boundary}\r\nContent-Type: {media_type}\r\n\r\n").as_bytes(),
        );
        payload.extend_from_slice(&data);
        payload.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let req = self
            .http
            .post(self.upload_url("multipart"))
            .header(
                reqwest::header::CONTENT_TYPE,
                format!("multipart/related; boundary={boundary}"),
            )
            .body(payload);
        let resp = self.authorize(req).await?.send().await.map_err(http_err)?;
        check(resp).await.map(|_| ())
    }

    async fn start_resumable(
        &self,
        name: &str,
        attrs: &WriterOptions,
    ) -> Result<String, WriteError> {
        let mut req = self
            .http
            .post(self.upload_url("resumable"))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/json; charset=UTF-8",
            )
            .body(Self::resource(name, attrs));
        if let Some(ct) = &attrs.content_type {
            req = req.header("X-Upload-Content-Type", ct);
        }
        let resp = check(self.authorize(req).await?.send().await.map_err(http_err)?).await?;
        resp.headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| {
                WriteError::Protocol("resumable upload started without a Location".into())
            })
    }

    async fn put_chunk(
        &self,
        session: &str,
        range: String,
        data: Vec<u8>,
        last: bool,
    ) -> Result<(), WriteError> {
        let sent = data.len() as u64;
        let req = self
            .http
            .put(session)
            .header(reqwest::header::CONTENT_RANGE, &range)
            .body(data);
        let resp = self.authorize(req).await?.send().await.map_err(http_err)?;
        let status = resp.status();
        if last {
            return check(resp).await.map(|_| ());
        }
        // 308 "Resume Incomplete": the server says how much it holds, which must be all we sent.
        if status.as_u16() != 308 {
            return Err(WriteError::Status {
                status: status.as_u16(),
                body: body_text(resp).await,
            });
        }
        let want_end = range
            .strip_prefix("bytes ")
            .and_then(|r| r.split_once('-'))
            .and_then(|(_, rest)| rest.split_once('/'))
            .map(|(end, _)| end.to_string());
        let got = resp
            .headers()
            .get(reqwest::header::RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|r| r.rsplit_once('-'))
            .map(|(_, end)| end.to_string());
        if got != want_end {
            return Err(WriteError::Protocol(format!(
                "server kept {got:?} of a {sent}-byte chunk sent as {range:?}"
            )));
        }
        Ok(())
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn http_err(e: reqwest::Error) -> WriteError {
    WriteError::Http(e.to_string())
}

async fn body_text(resp: reqwest::Response) -> String {
    let mut text = resp.text().await.unwrap_or_default();
    text.truncate(512);
    text
}

async fn check(resp: reqwest::Response) -> Result<reqwest::Response, WriteError> {
    if resp.status().is_success() {
        Ok(resp)
    } else {
        Err(WriteError::Status {
            status: resp.status().as_u16(),
            body: body_text(resp).await,
        })
    }
}

/// Whether credentials can be found the way Google's application default credentials look:
/// `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's well-known file, or a GCE metadata server.
pub(crate) fn adc_available(
    google_application_credentials: Option<&str>,
    home: Option<&str>,
) -> bool {
    if google_application_credentials.is_some_and(|p| !p.is_empty()) {
        return true;
    }
    if home.is_some_and(|h| {
        std::path::Path::new(h)
            .join(".config/gcloud/application_default_credentials.json")
            .exists()
    }) {
        return true;
    }
    on_gce()
}

/// Google's `metadata.OnGCE` in cheap form: the override variable, the DMI product name, or a
/// short TCP probe of the metadata address.
fn on_gce() -> bool {
    if crate::env::lookup("GCE_METADATA_HOST").is_some_and(|h| !h.is_empty()) {
        return true;
    }
    if let Ok(name) = std::fs::read_to_string("/sys/class/dmi/id/product_name") {
        if name.trim().starts_with("Google") {
            return true;
        }
    }
    let addr = std::net::SocketAddr::from(([169, 254, 169, 254], 80));
    std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(500)).is_ok()
}

/// Shares a provider between clones without re-reading credentials.
pub(crate) fn token_auth(provider: &GcpCredentialProvider) -> Auth {
    Auth::Token(Arc::clone(provider))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulator_host_forms() {
        assert_eq!(emulator_base("localhost:4443"), "http://localhost:4443");
        assert_eq!(emulator_base("http://127.0.0.1:9/"), "http://127.0.0.1:9");
        assert_eq!(emulator_base("https://emu:1"), "https://emu:1");
    }

    #[test]
    fn resource_json_carries_headers_and_metadata() {
        let mut attrs = WriterOptions {
            content_type: Some("text/plain; charset=utf-8".into()),
            content_encoding: Some("gzip".into()),
            ..Default::default()
        };
        attrs
            .metadata
            .insert("x-goog-meta-link".into(), "gs://b/p".into());
        let v: serde_json::Value =
            serde_json::from_slice(&GcsJson::resource("a/b#c", &attrs)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"name":"a/b#c","contentType":"text/plain; charset=utf-8","contentEncoding":"gzip","metadata":{"x-goog-meta-link":"gs://b/p"}})
        );
        let bare: serde_json::Value =
            serde_json::from_slice(&GcsJson::resource("n", &WriterOptions::default())).unwrap();
        assert_eq!(bare, serde_json::json!({"name":"n"}));
    }

    #[test]
    fn upload_url_escapes_the_bucket() {
        let c = GcsJson::new(Some("http://h:1".into()), "my_bucket.x y", Auth::Anonymous).unwrap();
        assert_eq!(
            c.upload_url("media"),
            "http://h:1/upload/storage/v1/b/my_bucket.x%20y/o?uploadType=media"
        );
    }
}
