/*!
Which proxy a request goes through, decided from the environment exactly as Go's
`golang.org/x/net/http/httpproxy` (what upstream's HTTP clients use through
`http.ProxyFromEnvironment`) decides it:

- `HTTP_PROXY`/`http_proxy` for `http://` URLs, `HTTPS_PROXY`/`https_proxy` for `https://` URLs
  (the upper-case name first; an empty value counts as unset). No fallback from one to the other
  and no `ALL_PROXY`.
- A value without a scheme means `http://`.
- `localhost` and loopback addresses never go through a proxy.
- `NO_PROXY`/`no_proxy`: comma-separated; `*` exempts everything; an IP or CIDR exempts those
  addresses; `foo.com` exempts `foo.com` and its subdomains, `.foo.com` and `*.foo.com` only the
  subdomains; any entry may carry a `:port`, and then only that port is exempt.
- With `REQUEST_METHOD` set (a CGI environment), an `http://` request refuses `HTTP_PROXY`.

Every client of the utilities (git fetches, the GitHub App API, GCS and S3) asks this module, so
one job sees one set of rules.
*/

use std::net::IpAddr;

/// Why no proxy decision could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("invalid proxy address {0:?}")]
    Invalid(String),
    #[error("refusing to use HTTP_PROXY value in CGI environment")]
    Cgi,
}

/// The proxy settings of one process, read once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyEnv {
    http: Option<String>,
    https: Option<String>,
    no_proxy: Vec<Exempt>,
    cgi: bool,
}

/// One parsed `NO_PROXY` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Exempt {
    All,
    Cidr {
        net: IpAddr,
        bits: u8,
    },
    Ip {
        ip: IpAddr,
        port: Option<String>,
    },
    /// `suffix` starts with a dot; `exact` when the bare name itself is exempt too.
    Domain {
        suffix: String,
        exact: bool,
        port: Option<String>,
    },
}

/// This process's settings, read on first use (Go's `ProxyFromEnvironment` also reads them once).
pub fn process() -> &'static ProxyEnv {
    static SETTINGS: std::sync::OnceLock<ProxyEnv> = std::sync::OnceLock::new();
    SETTINGS.get_or_init(ProxyEnv::from_env)
}

fn first_set(names: &[&str]) -> Option<String> {
    names
        .iter()
        .filter_map(|n| crate::env::lookup(n))
        .find(|v| !v.is_empty())
}

impl ProxyEnv {
    /// The settings in this process's environment.
    pub fn from_env() -> ProxyEnv {
        ProxyEnv::new(
            first_set(&["HTTP_PROXY", "http_proxy"]).as_deref(),
            first_set(&["HTTPS_PROXY", "https_proxy"]).as_deref(),
            first_set(&["NO_PROXY", "no_proxy"])
                .as_deref()
                .unwrap_or(""),
            crate::env::lookup("REQUEST_METHOD").is_some_and(|v| !v.is_empty()),
        )
    }

    /// Settings from explicit values, as the variables would hold them.
    pub fn new(http: Option<&str>, https: Option<&str>, no_proxy: &str, cgi: bool) -> ProxyEnv {
        let set = |v: Option<&str>| v.filter(|v| !v.is_empty()).map(str::to_string);
        ProxyEnv {
            http: set(http),
            https: set(https),
            no_proxy: parse_no_proxy(no_proxy),
            cgi,
        }
    }

    /// The same rules with one proxy for both schemes (git's `http.proxy` setting).
    pub fn with_proxy(&self, proxy: &str) -> ProxyEnv {
        ProxyEnv {
            http: Some(proxy.to_string()),
            https: Some(proxy.to_string()),
            ..self.clone()
        }
    }

    /// Whether any proxy is configured at all.
    pub fn is_empty(&self) -> bool {
        self.http.is_none() && self.https.is_none()
    }

    /// The proxy URL for a request to `url`, or `None` to connect directly.
    pub fn proxy_for(&self, url: &str) -> Result<Option<String>, ProxyError> {
        let Some(target) = Target::parse(url) else {
            return Ok(None);
        };
        let proxy = match target.scheme.as_str() {
            "https" => self.https.as_deref(),
            "http" => match self.http.as_deref() {
                Some(_) if self.cgi => return Err(ProxyError::Cgi),
                p => p,
            },
            _ => None,
        };
        let Some(proxy) = proxy else { return Ok(None) };
        let proxy = normalise_proxy(proxy)?;
        Ok(self.use_proxy(&target).then_some(proxy))
    }

    fn use_proxy(&self, t: &Target) -> bool {
        if t.host == "localhost" {
            return false;
        }
        let ip = t.host.parse::<IpAddr>().ok();
        if ip.is_some_and(|ip| ip.is_loopback()) {
            return false;
        }
        let port_ok = |p: &Option<String>| p.as_deref().is_none_or(|p| p == t.port);
        !self.no_proxy.iter().any(|e| match e {
            Exempt::All => true,
            Exempt::Cidr { net, bits } => ip.is_some_and(|ip| in_cidr(ip, *net, *bits)),
            Exempt::Ip { ip: want, port } => ip.is_some_and(|ip| ip == *want) && port_ok(port),
            Exempt::Domain {
                suffix,
                exact,
                port,
            } => {
                (t.host.ends_with(suffix.as_str()) || (*exact && t.host == suffix[1..]))
                    && port_ok(port)
            }
        })
    }
}

/// A request URL's scheme, lower-case host and port (the scheme's default when absent).
#[derive(Debug)]
struct Target {
    scheme: String,
    host: String,
    port: String,
}

impl Target {
    fn parse(url: &str) -> Option<Target> {
        let (scheme, rest) = url.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let (host, port) = split_host_port(hostport);
        let port = match port {
            Some(p) if !p.is_empty() => p.to_string(),
            _ => match scheme.as_str() {
                "http" => "80".into(),
                "https" => "443".into(),
                "socks5" => "1080".into(),
                _ => String::new(),
            },
        };
        Some(Target {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

/// `host[:port]` or `[v6][:port]`, brackets removed from the host.
fn split_host_port(s: &str) -> (&str, Option<&str>) {
    if let Some(rest) = s.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':')),
            None => (s, None),
        };
    }
    match s.rsplit_once(':') {
        // More than one colon without brackets is a bare IPv6 address, not host:port.
        Some((host, port)) if !host.contains(':') => (host, Some(port)),
        _ => (s, None),
    }
}

/// A proxy value as Go's `parseProxy` reads it: without a scheme (or a host) it is `http://`.
fn normalise_proxy(v: &str) -> Result<String, ProxyError> {
    let with_scheme = match v.split_once("://") {
        Some((scheme, rest))
            if !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && !rest.is_empty() =>
        {
            v.to_string()
        }
        _ => format!("http://{v}"),
    };
    let target = Target::parse(&with_scheme).ok_or_else(|| ProxyError::Invalid(v.into()))?;
    if target.host.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ProxyError::Invalid(v.into()));
    }
    Ok(with_scheme)
}

fn parse_no_proxy(v: &str) -> Vec<Exempt> {
    let mut out = Vec::new();
    for p in v.split(',') {
        let p = p.trim().to_ascii_lowercase();
        if p.is_empty() {
            continue;
        }
        if p == "*" {
            return vec![Exempt::All];
        }
        if let Some(cidr) = parse_cidr(&p) {
            out.push(cidr);
            continue;
        }
        let (host, port) = match go_split_host_port(&p) {
            Some(("", _)) => continue,
            Some((h, port)) => (h, Some(port)),
            None => (p.as_str(), None),
        };
        let port = port.map(str::to_string);
        if let Ok(ip) = host.parse::<IpAddr>() {
            out.push(Exempt::Ip { ip, port });
            continue;
        }
        if host.is_empty() {
            continue;
        }
        let host = host
            .strip_prefix('*')
            .filter(|h| h.starts_with('.'))
            .unwrap_or(host);
        let (suffix, exact) = match host.strip_prefix('.') {
            Some(_) => (host.to_string(), false),
            None => (format!(".{host}"), true),
        };
        out.push(Exempt::Domain {
            suffix,
            exact,
            port,
        });
    }
    out
}

/// Go's `net.SplitHostPort`: `None` unless the entry is `host:port` or `[v6]:port`.
fn go_split_host_port(p: &str) -> Option<(&str, &str)> {
    if let Some(rest) = p.strip_prefix('[') {
        let (host, tail) = rest.split_once(']')?;
        return Some((host, tail.strip_prefix(':')?));
    }
    let (host, port) = p.rsplit_once(':')?;
    (!host.contains(':')).then_some((host, port))
}

fn parse_cidr(p: &str) -> Option<Exempt> {
    let (addr, bits) = p.split_once('/')?;
    let net: IpAddr = addr.parse().ok()?;
    let bits: u8 = bits.parse().ok()?;
    let max = if net.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some(Exempt::Cidr { net, bits })
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    let (a, b, width) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            (u128::from(u32::from(a)), u128::from(u32::from(b)), 32u32)
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128u32),
        // Go compares a v4 address with a v6 network in its v4-mapped form.
        (IpAddr::V4(a), IpAddr::V6(b)) => (u128::from(a.to_ipv6_mapped()), u128::from(b), 128),
        (IpAddr::V6(a), IpAddr::V4(b)) => match a.to_ipv4_mapped() {
            Some(a) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
            None => return false,
        },
    };
    let shift = width - u32::from(bits.min(width as u8));
    shift >= width || (a >> shift) == (b >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(no_proxy: &str) -> ProxyEnv {
        ProxyEnv::new(Some("http://hp:3128"), Some("sp:8443"), no_proxy, false)
    }

    fn via(e: &ProxyEnv, url: &str) -> Option<String> {
        e.proxy_for(url).unwrap()
    }

    #[test]
    fn scheme_picks_the_variable_and_bare_values_are_http() {
        let e = env("");
        assert_eq!(
            via(&e, "http://a.example/x").as_deref(),
            Some("http://hp:3128")
        );
        assert_eq!(
            via(&e, "https://a.example/x").as_deref(),
            Some("http://sp:8443")
        );
        assert_eq!(via(&e, "ssh://a.example/x"), None);
        let only_http = ProxyEnv::new(Some("hp:1"), None, "", false);
        assert_eq!(
            via(&only_http, "https://a.example/"),
            None,
            "no fallback to HTTP_PROXY"
        );
    }

    #[test]
    fn loopback_and_localhost_are_never_proxied() {
        let e = env("");
        for u in [
            "http://localhost:8080/x",
            "http://127.0.0.1/x",
            "http://127.9.9.9:1/",
            "http://[::1]:80/",
            "http://LOCALHOST/",
        ] {
            assert_eq!(via(&e, u), None, "{u}");
        }
        assert!(via(&e, "http://localhost.example/").is_some());
    }

    // Go's own table (x/net/http/httpproxy proxy_test.go) for NO_PROXY, as facts.
    #[test]
    fn no_proxy_entries_as_go_reads_them() {
        let e = env(
            "foobar.com, .barbaz.net, *.qux.org, 192.168.1.1, 192.168.1.2:81, 192.168.1.3:80, 10.0.0.0/30, 2001:db8::52:0:1, [2001:db8::52:0:2]:443, [2001:db8::52:0:3]:80, 2002:db8:a::45/64, bar.com:8080, *",
        );
        assert_eq!(via(&e, "http://anything.example/"), None, "* wins");
        let e = env(
            "foobar.com, .barbaz.net, *.qux.org, 192.168.1.1, 192.168.1.2:81, 192.168.1.3:80, 10.0.0.0/30, 2001:db8::52:0:1, [2001:db8::52:0:2]:443, [2001:db8::52:0:3]:80, 2002:db8:a::45/64, bar.com:8080",
        );
        let direct = [
            "http://foobar.com/",
            "http://www.foobar.com/",
            "http://www.barbaz.net/",
            "http://www.qux.org/",
            "http://192.168.1.1/",
            "http://192.168.1.2:81/",
            "http://192.168.1.3/",
            "http://10.0.0.2/",
            "http://[2001:db8::52:0:1]/",
            "https://[2001:db8::52:0:2]/",
            "http://[2001:db8::52:0:3]/",
            "http://[2002:db8:a::123]/",
            "http://bar.com:8080/",
            "http://www.bar.com:8080/",
            "http://FOOBAR.com/",
        ];
        for u in direct {
            assert_eq!(via(&e, u), None, "{u} should be direct");
        }
        let proxied = [
            "http://barbaz.net/",
            "http://qux.org/",
            "http://xfoobar.com/",
            "http://192.168.1.2/",
            "http://192.168.1.3:81/",
            "http://10.0.0.4/",
            "http://[2001:db8::52:0:2]/",
            "http://[fe80::424b:c8be:1643:a1b6]/",
            "http://bar.com/",
            "http://www.bar.com:8081/",
        ];
        for u in proxied {
            assert!(via(&e, u).is_some(), "{u} should be proxied");
        }
    }

    #[test]
    fn cgi_refuses_http_proxy_only() {
        let e = ProxyEnv::new(Some("hp:1"), Some("sp:2"), "", true);
        assert_eq!(e.proxy_for("http://a.example/"), Err(ProxyError::Cgi));
        assert_eq!(
            via(&e, "https://a.example/").as_deref(),
            Some("http://sp:2")
        );
    }

    #[test]
    fn userinfo_in_the_target_is_not_the_host() {
        let e = env("example.com");
        assert_eq!(
            via(&e, "https://tok:x-oauth-basic@github.example.com/o/r"),
            None
        );
        assert!(via(&env(""), "https://user@other.example/").is_some());
    }

    #[test]
    fn malformed_entries_and_proxies() {
        let e = env(":80, ,[]:1");
        assert!(via(&e, "http://a.example/").is_some());
        let bad = ProxyEnv::new(Some("proxy host:1"), None, "", false);
        assert!(matches!(
            bad.proxy_for("http://a.example/"),
            Err(ProxyError::Invalid(_))
        ));
        assert!(ProxyEnv::new(None, None, "x", false).is_empty());
    }

    proptest::proptest! {
        /// Any variables and any URL give a decision or one error; never a panic, and a chosen
        /// proxy always carries a scheme.
        #[test]
        fn any_settings_and_url_decide_without_panicking(
            http in "\\PC{0,30}",
            no_proxy in "[a-z0-9.,:/*\\[\\] -]{0,40}",
            url in "(https?://)?\\PC{0,40}",
        ) {
            let e = ProxyEnv::new(Some(&http), Some(&http), &no_proxy, false);
            if let Ok(Some(p)) = e.proxy_for(&url) {
                proptest::prop_assert!(p.contains("://"), "{}", p);
            }
        }

        /// A domain in NO_PROXY exempts itself and its subdomains, and nothing that merely ends
        /// with the same letters.
        #[test]
        fn a_no_proxy_domain_exempts_itself_and_subdomains_only(
            domain in "[a-z][a-z0-9]{0,8}(\\.[a-z][a-z0-9]{0,8}){0,2}",
            sub in "[a-z][a-z0-9]{0,8}",
        ) {
            let e = env(&domain);
            proptest::prop_assert_eq!(via(&e, &format!("http://{domain}/")), None);
            proptest::prop_assert_eq!(via(&e, &format!("https://{sub}.{domain}:8443/")), None);
            let lookalike = format!("http://{sub}{domain}/");
            proptest::prop_assert!(via(&e, &lookalike).is_some(), "{}", lookalike);
        }
    }
}
