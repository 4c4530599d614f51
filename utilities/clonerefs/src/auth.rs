/*!
Credentials and secrets for fetching: the remote URI with an OAuth token as userinfo (upstream
`clone.Run`), the censoring of that token in records, `http.cookiefile` cookies (which libgit2
does not read, so they are sent as a header), and known-hosts lines for SSH host keys.

Nothing here logs a secret; callers censor every recorded string with [`Censor`].
*/

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The URI a ref is fetched from (upstream: `repo_link.git`, else GitHub; `clone_uri` wins).
pub fn remote_uri(refs: &pod_utils::prowapi::Refs) -> String {
    if !refs.clone_uri.is_empty() {
        refs.clone_uri.clone()
    } else if !refs.repo_link.is_empty() {
        format!("{}.git", refs.repo_link)
    } else {
        format!("https://github.com/{}/{}.git", refs.org, refs.repo)
    }
}

/// Go `url.UserPassword` escaping: userinfo keeps unreserved characters and the sub-delimiters
/// RFC 3986 allows there, escaping `@ / ? :` and everything else.
fn escape_userinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'_' | b'.' | b'~' | b'$' | b'&' | b'+' | b',' | b';' | b'='
            );
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Puts `user:password` into a `scheme://` URI, replacing any userinfo already there. URIs
/// without a scheme (scp-like `git@host:o/r`, local paths) stay unchanged: upstream's URL parser
/// rejects the former, and a token means nothing to the latter.
pub fn with_userinfo(uri: &str, user: &str, password: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    format!(
        "{scheme}://{}:{}@{host}{tail}",
        escape_userinfo(user),
        escape_userinfo(password)
    )
}

/// git's `transport_anonymize_url`: the URI without its userinfo, as git writes it into
/// FETCH_HEAD and so into merge messages.
pub fn anonymize_url(url: &str) -> String {
    if let Some(pos) = url.find("://") {
        let rest = &url[pos + 3..];
        let authority_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            return format!("{}{}", &url[..pos + 3], &rest[at + 1..]);
        }
        return url.to_string();
    }
    // scp-like `user@host:path`: the user goes when it comes before the colon.
    if let (Some(at), Some(colon)) = (url.find('@'), url.find(':')) {
        let slash = url.find('/').unwrap_or(usize::MAX);
        if at < colon && colon < slash {
            return url[at + 1..].to_string();
        }
    }
    url.to_string()
}

/// Replaces secrets in record text: first every registered secret (and its base64 forms) by as
/// many `X`s, the earliest-registered pattern winning at each position (upstream's secret
/// agent), then the token itself by `CENSORED`.
#[derive(Debug, Default, Clone)]
pub struct Censor {
    patterns: Vec<Vec<u8>>,
    token: String,
}

impl Censor {
    /// Registers a secret as upstream's censorer does: the trimmed text, base64 of the raw text
    /// and base64 of the trimmed text; blank or boolean-looking secrets are not secrets.
    pub fn add_secret(&mut self, raw: &str) {
        let trimmed = raw.trim();
        if trimmed.is_empty()
            || trimmed.eq_ignore_ascii_case("true")
            || trimmed.eq_ignore_ascii_case("false")
        {
            return;
        }
        let mut add = |p: Vec<u8>| {
            if !p.is_empty() && !self.patterns.contains(&p) {
                self.patterns.push(p);
            }
        };
        add(trimmed.as_bytes().to_vec());
        add(STANDARD.encode(raw).into_bytes());
        if trimmed != raw {
            add(STANDARD.encode(trimmed).into_bytes());
        }
    }

    /// The token that is also replaced literally by `CENSORED`.
    pub fn set_token(&mut self, token: &str) {
        self.token = token.to_string();
    }

    pub fn censor(&self, s: &str) -> String {
        let mut bytes = s.as_bytes().to_vec();
        if !self.patterns.is_empty() {
            let mut i = 0;
            while i < bytes.len() {
                let hit = self
                    .patterns
                    .iter()
                    .find(|p| bytes[i..].starts_with(p))
                    .map(Vec::len);
                match hit {
                    Some(n) => {
                        bytes[i..i + n].fill(b'X');
                        i += n;
                    }
                    None => i += 1,
                }
            }
        }
        // Whole patterns are replaced, so UTF-8 stays valid; lossy decoding is only a guard.
        let out = String::from_utf8_lossy(&bytes).into_owned();
        if self.token.is_empty() {
            out
        } else {
            out.replace(&self.token, "CENSORED")
        }
    }
}

/// Go's `%q` for the paths upstream quotes in setup commands.
pub use pod_utils::gofmt::quote as go_quote;

/// One line of a Netscape cookie file (what git's `http.cookiefile` reads through curl).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cookie {
    domain: String,
    include_subdomains: bool,
    path: String,
    secure: bool,
    expires: i64,
    name: String,
    value: String,
}

/// Cookies from a Netscape-format file, matched against each URL as curl would.
#[derive(Debug, Default, Clone)]
pub struct CookieJar {
    cookies: Vec<Cookie>,
}

impl CookieJar {
    pub fn parse(text: &str) -> Self {
        let mut cookies = Vec::new();
        for line in text.lines() {
            // curl marks HttpOnly cookies with this prefix; every other `#` line is a comment.
            let line = line.strip_prefix("#HttpOnly_").unwrap_or(line);
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() < 7 {
                continue;
            }
            cookies.push(Cookie {
                domain: f[0].trim_start_matches('.').to_ascii_lowercase(),
                include_subdomains: f[1].eq_ignore_ascii_case("TRUE"),
                path: f[2].to_string(),
                secure: f[3].eq_ignore_ascii_case("TRUE"),
                expires: f[4].parse().unwrap_or(0),
                name: f[5].to_string(),
                value: f[6].to_string(),
            });
        }
        CookieJar { cookies }
    }

    /// The `Cookie:` header value for `url`, if any cookie applies.
    pub fn header_for(&self, url: &str) -> Option<String> {
        let (scheme, rest) = url.split_once("://")?;
        let authority_end = rest.find('/').unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        let path = if authority_end < rest.len() {
            &rest[authority_end..]
        } else {
            "/"
        };
        let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host = hostport
            .rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(hostport, |(h, _)| h)
            .to_ascii_lowercase();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let pairs: Vec<String> = self
            .cookies
            .iter()
            .filter(|c| {
                let domain_ok = host == c.domain
                    || (c.include_subdomains && host.ends_with(&format!(".{}", c.domain)));
                let path_ok = path.starts_with(&c.path);
                let secure_ok = !c.secure || scheme.eq_ignore_ascii_case("https");
                let fresh = c.expires == 0 || c.expires > now;
                domain_ok && path_ok && secure_ok && fresh
            })
            .map(|c| format!("{}={}", c.name, c.value))
            .collect();
        if pairs.is_empty() {
            None
        } else {
            Some(pairs.join("; "))
        }
    }
}

/// GitHub's published SSH host keys, which upstream's clonerefs image carries as
/// `/github_known_hosts` with an ssh_config checking github.com strictly against them. Upstream
/// lists the RSA key only; OpenSSH then asks for that type, but libssh2 offers ed25519 first, so
/// the ed25519 and ECDSA keys GitHub publishes are listed too.
pub const GITHUB_KNOWN_HOSTS: &str = include_str!("github_known_hosts");

/// Whether a known_hosts line vouches for `raw_key` on `host` (port 22, or `[host]:port`).
/// Hashed host patterns (`|1|...`) are not understood and never match.
pub fn known_host_matches(line: &str, host: &str, raw_key: &[u8]) -> bool {
    let mut fields = line.split_whitespace();
    let (Some(_), Some(_key_type), Some(key)) = (fields.next(), fields.next(), fields.next())
    else {
        return false;
    };
    lists_host(line, host) && STANDARD.decode(key).is_ok_and(|k| k == raw_key)
}

/// Whether a known_hosts line's host patterns name `host` (with or without a port).
fn lists_host(line: &str, host: &str) -> bool {
    let hosts = line.split_whitespace().next().unwrap_or("");
    hosts.split(',').any(|pattern| {
        pattern.eq_ignore_ascii_case(host)
            || pattern
                .strip_prefix('[')
                .and_then(|p| p.split_once("]:"))
                .is_some_and(|(h, _)| h.eq_ignore_ascii_case(host))
    })
}

/// What to make of an SSH server's host key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyVerdict {
    /// A line that counts for this host vouches for the key.
    Known,
    /// The host is checked strictly and no line vouches for the key.
    Refused,
    /// Neither list names the host: libgit2 checks `~/.ssh/known_hosts` itself, as ssh's default
    /// `UserKnownHostsFile` (and, with no terminal to ask, refuses an unknown host).
    Default,
}

/// Upstream's checking policy. With `ssh_host_fingerprints`, ssh runs with
/// `-o UserKnownHostsFile=<them>`, so they alone count, for every host. Without them, hosts the
/// image pins (github.com) are checked strictly against the pinned lines (`pinned`).
pub fn host_key_verdict(
    fingerprints: &[String],
    pinned: &str,
    host: &str,
    raw_key: &[u8],
) -> HostKeyVerdict {
    let strict = |mut lines: Box<dyn Iterator<Item = &str> + '_>| {
        if lines.any(|l| known_host_matches(l, host, raw_key)) {
            HostKeyVerdict::Known
        } else {
            HostKeyVerdict::Refused
        }
    };
    if !fingerprints.is_empty() {
        return strict(Box::new(fingerprints.iter().flat_map(|f| f.lines())));
    }
    if pinned.lines().any(|l| lists_host(l, host)) {
        return strict(Box::new(pinned.lines()));
    }
    HostKeyVerdict::Default
}

#[cfg(test)]
mod tests {
    use super::*;
    use pod_utils::prowapi::Refs;

    #[test]
    fn remote_uri_like_upstream() {
        let mut r = Refs {
            org: "org".into(),
            repo: "repo".into(),
            ..Default::default()
        };
        assert_eq!(remote_uri(&r), "https://github.com/org/repo.git");
        r.repo_link = "https://gitlab.example/org/repo".into();
        assert_eq!(remote_uri(&r), "https://gitlab.example/org/repo.git");
        r.clone_uri = "https://internet.com".into();
        assert_eq!(remote_uri(&r), "https://internet.com");
    }

    #[test]
    fn userinfo_like_go() {
        assert_eq!(
            with_userinfo(
                "https://github.com/org/repo.git",
                "12345678",
                "x-oauth-basic"
            ),
            "https://12345678:x-oauth-basic@github.com/org/repo.git"
        );
        assert_eq!(
            with_userinfo("https://internet.com", "12345678", "x-oauth-basic"),
            "https://12345678:x-oauth-basic@internet.com"
        );
        assert_eq!(
            with_userinfo("https://old:pw@h/p", "x-access-token", "a/b:c@d"),
            "https://x-access-token:a%2Fb%3Ac%40d@h/p"
        );
        assert_eq!(
            with_userinfo("git@github.com:o/r.git", "t", "x"),
            "git@github.com:o/r.git"
        );
    }

    #[test]
    fn anonymize_like_git() {
        assert_eq!(
            anonymize_url("https://t:x@github.com/o/r"),
            "https://github.com/o/r"
        );
        assert_eq!(
            anonymize_url("https://github.com/o/r"),
            "https://github.com/o/r"
        );
        assert_eq!(anonymize_url("git@github.com:o/r"), "github.com:o/r");
        assert_eq!(anonymize_url("/tmp/a@b/r"), "/tmp/a@b/r");
    }

    #[test]
    fn censor_x_first_then_censored() {
        let mut c = Censor::default();
        c.add_secret("secret-token\n");
        c.set_token("secret-token");
        assert_eq!(
            c.censor("https://secret-token:x@h c2VjcmV0LXRva2VuCg== c2VjcmV0LXRva2Vu"),
            "https://XXXXXXXXXXXX:x@h XXXXXXXXXXXXXXXXXXXX XXXXXXXXXXXXXXXX"
        );
        let mut only_token = Censor::default();
        only_token.set_token("abc");
        assert_eq!(only_token.censor("xabcx"), "xCENSOREDx");
        let mut c = Censor::default();
        c.add_secret("true");
        c.add_secret("  ");
        assert_eq!(c.censor("true"), "true");
    }

    #[test]
    fn go_quoting() {
        assert_eq!(go_quote("/a b/\"c\"\\"), r#""/a b/\"c\"\\""#);
        assert_eq!(go_quote("a\nb"), r#""a\nb""#);
    }

    #[test]
    fn cookies_match_domain_path_and_scheme() {
        let jar = CookieJar::parse(
            "# Netscape HTTP Cookie File\n\
             .example.com\tTRUE\t/\tTRUE\t0\to\tone\n\
             #HttpOnly_git.example.com\tFALSE\t/repo\tFALSE\t0\tt\ttwo\n\
             other.com\tFALSE\t/\tFALSE\t0\tx\ty\n\
             old.example.com\tFALSE\t/\tFALSE\t1\tgone\tz\n",
        );
        assert_eq!(
            jar.header_for("https://git.example.com/repo/x.git")
                .as_deref(),
            Some("o=one; t=two")
        );
        assert_eq!(
            jar.header_for("http://git.example.com:8080/repo")
                .as_deref(),
            Some("t=two")
        );
        assert_eq!(
            jar.header_for("https://old.example.com/").as_deref(),
            Some("o=one")
        );
        assert_eq!(jar.header_for("https://nope.org/"), None);
        assert_eq!(jar.header_for("/local/path"), None);
    }

    #[test]
    fn host_key_policy_is_upstreams() {
        let key = b"server-key";
        let line = |h: &str, k: &[u8]| format!("{h} ssh-ed25519 {}", STANDARD.encode(k));
        let pinned = line("github.com", key);
        let fp = vec![line("gh.local", key)];
        use HostKeyVerdict::*;
        // Fingerprints alone count, for every host, the pinned one included.
        assert_eq!(host_key_verdict(&fp, &pinned, "gh.local", key), Known);
        assert_eq!(host_key_verdict(&fp, &pinned, "github.com", key), Refused);
        assert_eq!(
            host_key_verdict(&fp, &pinned, "gh.local", b"other"),
            Refused
        );
        // Without them: pinned hosts strictly, others left to ~/.ssh/known_hosts.
        assert_eq!(host_key_verdict(&[], &pinned, "GitHub.com", key), Known);
        assert_eq!(
            host_key_verdict(&[], &pinned, "github.com", b"other"),
            Refused
        );
        assert_eq!(host_key_verdict(&[], &pinned, "gh.local", key), Default);
    }

    #[test]
    fn github_known_hosts_holds_upstreams_key_and_githubs_others() {
        let lines: Vec<&str> = GITHUB_KNOWN_HOSTS.lines().collect();
        let types: Vec<&str> = lines
            .iter()
            .map(|l| l.split_whitespace().nth(1).unwrap())
            .collect();
        assert_eq!(types, ["ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa"]);
        for l in &lines {
            let mut f = l.split_whitespace();
            assert_eq!(f.next(), Some("github.com"));
            let ty = f.next().unwrap();
            let key = STANDARD.decode(f.next().unwrap()).unwrap();
            // An SSH public key blob starts with its own type name.
            assert_eq!(&key[4..4 + ty.len()], ty.as_bytes(), "{l}");
            assert!(known_host_matches(l, "github.com", &key));
        }
        // Upstream's RSA key, as its image's github_known_hosts has it.
        assert!(lines[2].ends_with("+p1vN1/wsjk="));
    }

    #[test]
    fn known_hosts_lines() {
        let key = b"\x00\x00\x00\x07ssh-rsa-key";
        let line = format!(
            "github.com,[gh.local]:2222 ssh-rsa {}",
            STANDARD.encode(key)
        );
        assert!(known_host_matches(&line, "github.com", key));
        assert!(known_host_matches(&line, "gh.local", key));
        assert!(!known_host_matches(&line, "gitlab.com", key));
        assert!(!known_host_matches(&line, "github.com", b"other"));
        assert!(!known_host_matches("garbage", "github.com", key));
    }
}
