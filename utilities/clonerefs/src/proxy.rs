/*!
Fetching through an HTTP proxy, as upstream's `git` CLI does.

Which proxy applies is decided once per process: git's `http.proxy` setting when the user's or
system git config has one (it overrides the environment, as in git), else the environment, with
`NO_PROXY` and the loopback rule as [`pod_utils::proxy`] reads them.

libgit2 1.9 tunnels `https://` remotes through a proxy with CONNECT, but for an `http://` remote
it writes the proxy-style request line (`GET http://host/path`) and then opens the TCP
connection to the server itself, never to the proxy. A host that only the proxy can resolve or
reach then fails. So whenever a proxy is configured, clonerefs registers its own socket stream
with libgit2 ([`Socket`]) before the first fetch: it connects to the proxy instead of the server
for exactly the `http://` host:port pairs that need one, and like libgit2's own socket stream
for everything else. The stream keeps
the layout of libgit2's `git_socket_stream` (libssh2 reads the descriptor from it), so SSH and
`https://` remotes work unchanged over it.
*/

use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, RawFd};
use std::sync::{Mutex, Once, OnceLock};
use std::time::Duration;

use pod_utils::proxy::{ProxyEnv, ProxyError};

/// The proxy settings of this process: the environment, overridden by git's `http.proxy`.
fn settings() -> &'static ProxyEnv {
    static SETTINGS: OnceLock<ProxyEnv> = OnceLock::new();
    SETTINGS.get_or_init(|| {
        let env = ProxyEnv::from_env();
        let configured = git2::Config::open_default()
            .and_then(|c| c.get_string("http.proxy"))
            .ok()
            .filter(|p| !p.is_empty());
        let settings = match configured {
            Some(p) => env.with_proxy(&p),
            None => env,
        };
        // Before any fetch connects, so every connection of the run uses the same stream.
        if !settings.is_empty() {
            register();
        }
        settings
    })
}

/// The proxy to fetch `url` through, if any; `http://` remotes that need one get routed to it.
pub(crate) fn for_remote(url: &str) -> Result<Option<String>, ProxyError> {
    let Some(proxy) = settings().proxy_for(url)? else {
        return Ok(None);
    };
    if let (Some(target), Some(via)) = (http_host_port(url), http_host_port(&proxy)) {
        route(target, via);
    }
    Ok(Some(proxy))
}

/// The proxy for an HTTP API request to `url` (the GitHub App client).
pub(crate) fn for_api(url: &str) -> Result<Option<String>, ProxyError> {
    settings().proxy_for(url)
}

/// `(host, port)` of a plain `http://` URL, the port defaulted as libgit2 does.
fn http_host_port(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("http://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match hostport.strip_prefix('[') {
        Some(v6) => {
            let (h, tail) = v6.split_once(']')?;
            (h, tail.strip_prefix(':').unwrap_or(""))
        }
        None => hostport.rsplit_once(':').unwrap_or((hostport, "")),
    };
    let port = if port.is_empty() { "80" } else { port };
    Some((host.to_string(), port.to_string()))
}

type Endpoint = (String, String);

/// Server endpoints whose connections go to a proxy instead.
fn routes() -> &'static Mutex<HashMap<Endpoint, Endpoint>> {
    static ROUTES: OnceLock<Mutex<HashMap<Endpoint, Endpoint>>> = OnceLock::new();
    ROUTES.get_or_init(Default::default)
}

fn route(target: Endpoint, via: Endpoint) {
    routes()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(target, via);
}

// --- the socket stream ------------------------------------------------------------------------

const GIT_STREAM_VERSION: c_int = 1;
const GIT_STREAM_STANDARD: c_int = 1;
const GIT_ERROR_NET: c_int = 12;
const GIT_TIMEOUT: isize = -37;

/// libgit2's `git_stream`.
#[repr(C)]
struct GitStream {
    version: c_int,
    /// The `encrypted` and `proxy_support` bit fields, both 0 for a plain socket.
    flags: c_uint,
    timeout: c_int,
    connect_timeout: c_int,
    connect: Option<unsafe extern "C" fn(*mut GitStream) -> c_int>,
    certificate: Option<unsafe extern "C" fn(*mut *mut c_void, *mut GitStream) -> c_int>,
    set_proxy: Option<unsafe extern "C" fn(*mut GitStream, *const c_void) -> c_int>,
    read: Option<unsafe extern "C" fn(*mut GitStream, *mut c_void, usize) -> isize>,
    write: Option<unsafe extern "C" fn(*mut GitStream, *const c_char, usize, c_int) -> isize>,
    close: Option<unsafe extern "C" fn(*mut GitStream) -> c_int>,
    free: Option<unsafe extern "C" fn(*mut GitStream)>,
}

/// libgit2's `git_stream_registration`.
#[repr(C)]
struct Registration {
    version: c_int,
    init: Option<unsafe extern "C" fn(*mut *mut GitStream, *const c_char, *const c_char) -> c_int>,
    wrap: Option<unsafe extern "C" fn(*mut *mut GitStream, *mut GitStream, *const c_char) -> c_int>,
}

unsafe extern "C" {
    fn git_stream_register(kind: c_int, registration: *mut Registration) -> c_int;
    fn git_error_set_str(class: c_int, message: *const c_char) -> c_int;
}

/// A socket stream laid out as libgit2's `git_socket_stream` (`parent`, `host`, `port`, `s`),
/// followed by what only this side reads.
#[repr(C)]
struct Socket {
    parent: GitStream,
    host: *mut c_char,
    port: *mut c_char,
    s: c_int,
    connect_to: Endpoint,
}

fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // libgit2 copies the registration; it must be initialised (git2 does that lazily).
        let _ = git2::Config::new();
        let mut reg = Registration {
            version: 1,
            init: Some(socket_init),
            wrap: None,
        };
        // SAFETY: the registration is a valid, fully initialised struct that libgit2 copies.
        let rc = unsafe { git_stream_register(GIT_STREAM_STANDARD, &mut reg) };
        if rc != 0 {
            tracing::warn!("could not route http:// fetches through the proxy (libgit2 {rc})");
        }
    });
}

fn set_error(msg: &str) {
    let msg = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    // SAFETY: a valid NUL-terminated string; libgit2 copies it.
    unsafe { git_error_set_str(GIT_ERROR_NET, msg.as_ptr()) };
}

fn timeout(ms: c_int) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms as u64))
}

/// Borrows the connected socket without taking ownership of the descriptor.
fn with_tcp<T>(fd: RawFd, f: impl FnOnce(&mut TcpStream) -> T) -> T {
    // SAFETY: `fd` is an open socket owned by the stream; into_raw_fd gives it back unclosed.
    let mut tcp = unsafe { TcpStream::from_raw_fd(fd) };
    let out = f(&mut tcp);
    let _ = tcp.into_raw_fd();
    out
}

unsafe extern "C" fn socket_init(
    out: *mut *mut GitStream,
    host: *const c_char,
    port: *const c_char,
) -> c_int {
    if out.is_null() || host.is_null() || port.is_null() {
        return -1;
    }
    // SAFETY: libgit2 passes NUL-terminated strings.
    let (h, p) = unsafe {
        (
            CStr::from_ptr(host).to_string_lossy().into_owned(),
            CStr::from_ptr(port).to_string_lossy().into_owned(),
        )
    };
    let target = (h.clone(), p.clone());
    let connect_to = routes()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&target)
        .cloned()
        .unwrap_or(target);
    // SAFETY: plain getters of libgit2's global options.
    let (read_ms, connect_ms) = unsafe {
        (
            git2::opts::get_server_timeout_in_milliseconds().unwrap_or(0),
            git2::opts::get_server_connect_timeout_in_milliseconds().unwrap_or(0),
        )
    };
    let socket = Box::new(Socket {
        parent: GitStream {
            version: GIT_STREAM_VERSION,
            flags: 0,
            timeout: read_ms,
            connect_timeout: connect_ms,
            connect: Some(socket_connect),
            certificate: None,
            set_proxy: None,
            read: Some(socket_read),
            write: Some(socket_write),
            close: Some(socket_close),
            free: Some(socket_free),
        },
        host: CString::new(h).unwrap_or_default().into_raw(),
        port: CString::new(p).unwrap_or_default().into_raw(),
        s: -1,
        connect_to,
    });
    // SAFETY: `out` is a valid pointer to write the new stream to.
    unsafe { *out = Box::into_raw(socket).cast() };
    0
}

/// SAFETY (all callbacks): libgit2 passes back a stream made by `socket_init`.
unsafe fn socket<'a>(stream: *mut GitStream) -> &'a mut Socket {
    // SAFETY: see above; `parent` is the first field of the repr(C) struct.
    unsafe { &mut *stream.cast::<Socket>() }
}

unsafe extern "C" fn socket_connect(stream: *mut GitStream) -> c_int {
    // SAFETY: a stream made by socket_init.
    let st = unsafe { socket(stream) };
    let (host, port) = &st.connect_to;
    let Ok(port_num) = port.parse::<u16>() else {
        set_error(&format!(
            "failed to resolve address for {host}: invalid port {port}"
        ));
        return -1;
    };
    let addrs = match (host.as_str(), port_num).to_socket_addrs() {
        Ok(a) => a,
        Err(e) => {
            set_error(&format!("failed to resolve address for {host}: {e}"));
            return -1;
        }
    };
    let mut last = None;
    for addr in addrs {
        let tcp = match timeout(st.parent.connect_timeout) {
            Some(t) => TcpStream::connect_timeout(&addr, t),
            None => TcpStream::connect(addr),
        };
        match tcp {
            Ok(tcp) => {
                keepalive(&tcp);
                let io = timeout(st.parent.timeout);
                let _ = tcp.set_read_timeout(io);
                let _ = tcp.set_write_timeout(io);
                st.s = tcp.into_raw_fd();
                return 0;
            }
            Err(e) if e.kind() == ErrorKind::TimedOut => {
                set_error(&format!("failed to connect to {host}: Operation timed out"));
                return -1;
            }
            Err(e) => last = Some(e),
        }
    }
    let why = last.map_or_else(|| "no address".to_string(), |e| e.to_string());
    set_error(&format!("failed to connect to {host}: {why}"));
    -1
}

/// TCP keepalive as libgit2's own socket sets it, so a dead peer is noticed.
fn keepalive(tcp: &TcpStream) {
    let fd = tcp.as_raw_fd();
    let set = |level, name, value: c_int| {
        // SAFETY: setsockopt on an open socket with a c_int value of the right size.
        unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&value as *const c_int).cast(),
                std::mem::size_of::<c_int>() as libc::socklen_t,
            )
        }
    };
    if set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1) == 0 {
        set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, 60);
        set(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, 10);
        set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 3);
    }
}

fn io_result(r: std::io::Result<usize>, what: &str) -> isize {
    match r {
        Ok(n) => n as isize,
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            set_error(&format!("could not {what} socket: timed out"));
            GIT_TIMEOUT
        }
        Err(e) => {
            set_error(&format!("error {what} socket: {e}"));
            -1
        }
    }
}

unsafe extern "C" fn socket_read(stream: *mut GitStream, data: *mut c_void, len: usize) -> isize {
    // SAFETY: a stream made by socket_init; `data` holds `len` writable bytes.
    let (st, buf) = unsafe {
        (
            socket(stream),
            std::slice::from_raw_parts_mut(data.cast(), len),
        )
    };
    if st.s < 0 {
        set_error("could not read from socket: not connected");
        return -1;
    }
    io_result(with_tcp(st.s, |t| t.read(buf)), "read from")
}

unsafe extern "C" fn socket_write(
    stream: *mut GitStream,
    data: *const c_char,
    len: usize,
    _flags: c_int,
) -> isize {
    // SAFETY: a stream made by socket_init; `data` holds `len` readable bytes.
    let (st, buf) = unsafe { (socket(stream), std::slice::from_raw_parts(data.cast(), len)) };
    if st.s < 0 {
        set_error("could not write to socket: not connected");
        return -1;
    }
    io_result(with_tcp(st.s, |t| t.write(buf)), "write to")
}

unsafe extern "C" fn socket_close(stream: *mut GitStream) -> c_int {
    // SAFETY: a stream made by socket_init.
    let st = unsafe { socket(stream) };
    if st.s >= 0 {
        // SAFETY: the descriptor is ours; dropping the TcpStream closes it.
        let tcp = unsafe { TcpStream::from_raw_fd(st.s) };
        let _ = tcp.shutdown(Shutdown::Both);
        st.s = -1;
    }
    0
}

unsafe extern "C" fn socket_free(stream: *mut GitStream) {
    if stream.is_null() {
        return;
    }
    // SAFETY: made by Box::into_raw in socket_init and freed only here.
    let mut st = unsafe { Box::from_raw(stream.cast::<Socket>()) };
    // SAFETY: same stream; closing twice is a no-op.
    unsafe { socket_close(&mut st.parent) };
    // SAFETY: both strings came from CString::into_raw.
    unsafe {
        drop(CString::from_raw(st.host));
        drop(CString::from_raw(st.port));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_endpoints_default_the_port_like_libgit2() {
        let hp = |u| http_host_port(u).map(|(h, p)| format!("{h} {p}"));
        assert_eq!(hp("http://a.example/o/r").as_deref(), Some("a.example 80"));
        assert_eq!(
            hp("http://t:x@a.example:8080/o").as_deref(),
            Some("a.example 8080")
        );
        assert_eq!(hp("http://[::1]:81/x").as_deref(), Some("::1 81"));
        assert_eq!(hp("https://a.example/"), None);
    }
}
