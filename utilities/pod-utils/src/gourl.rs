/*!
Go's `net/url` as upstream's URL handling reads it: [`parse`] (`url.Parse`, as far as accepting
and refusing go) and [`unescape`]. The one copy both the `--gcs-path` parser and clonerefs'
GitHub endpoint check use, so they accept and refuse the same inputs with the same words.
*/

use std::fmt;

use crate::gofmt::quote;

/// The pieces of a URL that callers look at.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Url {
    pub scheme: String,
    pub opaque: String,
    /// Whether a `user@` came before the host.
    pub user: bool,
    pub host: String,
    pub path: String,
    pub query: String,
    pub fragment: String,
}

/// Go's `*url.Error` for `Parse`: `parse "<url>": <reason>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlError {
    pub url: String,
    pub reason: String,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "parse {}: {}", quote(&self.url), self.reason)
    }
}

impl std::error::Error for UrlError {}

/// Go's `url.Parse` (not `ParseRequestURI`): the same inputs fail, with `url.Error`'s reason and
/// the text it quotes (without the fragment, as Go does unless the fragment itself is bad).
pub fn parse(raw: &str) -> Result<Url, UrlError> {
    let err = |url: &str, reason: String| UrlError {
        url: url.to_string(),
        reason,
    };
    let (rest, frag) = match raw.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (raw, None),
    };
    let mut u = parse_without_fragment(rest).map_err(|e| err(rest, e))?;
    if let Some(f) = frag {
        u.fragment = unescape(f, Part::Path).map_err(|e| err(raw, e))?;
    }
    Ok(u)
}

fn parse_without_fragment(rest: &str) -> Result<Url, String> {
    if rest.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err("net/url: invalid control character in URL".into());
    }
    let mut u = Url::default();
    if rest.is_empty() {
        return Ok(u);
    }
    let (scheme, rest) = split_scheme(rest)?;
    u.scheme = scheme.to_ascii_lowercase();
    let rest = if rest.ends_with('?') && rest.matches('?').count() == 1 {
        // ForceQuery: an empty query is no query.
        &rest[..rest.len() - 1]
    } else if let Some((r, q)) = rest.split_once('?') {
        u.query = q.to_string();
        r
    } else {
        rest
    };
    if !rest.starts_with('/') {
        if !u.scheme.is_empty() {
            u.opaque = rest.to_string();
            return Ok(u);
        }
        let first = rest.split('/').next().unwrap_or("");
        if first.contains(':') {
            return Err("first path segment in URL cannot contain colon".into());
        }
    }
    let mut rest = rest;
    if (!u.scheme.is_empty() || !rest.starts_with("///")) && rest.starts_with("//") {
        let after = &rest[2..];
        let end = after.find('/').unwrap_or(after.len());
        let authority = &after[..end];
        rest = &after[end..];
        let host = match authority.rfind('@') {
            Some(i) => {
                let userinfo = &authority[..i];
                if !userinfo
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"-._:~!$&'()*+,;=%@".contains(&c))
                {
                    return Err("net/url: invalid userinfo".into());
                }
                u.user = true;
                unescape(userinfo, Part::Path)?;
                &authority[i + 1..]
            }
            None => authority,
        };
        u.host = parse_host(host)?;
    }
    u.path = unescape(rest, Part::Path)?;
    Ok(u)
}

/// Go's `getScheme`: a letter, then letters, digits, `+-.`, then `:`.
fn split_scheme(raw: &str) -> Result<(&str, &str), String> {
    for (i, c) in raw.bytes().enumerate() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
            b':' if i == 0 => return Err("missing protocol scheme".into()),
            b':' => return Ok((&raw[..i], &raw[i + 1..])),
            _ => return Ok(("", raw)),
        }
    }
    Ok(("", raw))
}

/// Go's `parseHost` for a host that is not an IP literal: an optional numeric port, and only
/// characters a host may carry.
fn parse_host(host: &str) -> Result<String, String> {
    if host.starts_with('[') {
        let Some(end) = host.rfind(']') else {
            return Err("missing ']' in host".into());
        };
        let port = &host[end + 1..];
        if !port.is_empty() && !valid_port(port) {
            return Err(format!("invalid port {} after host", quote(port)));
        }
        return unescape(host, Part::Host);
    }
    if let Some(i) = host.rfind(':') {
        let port = &host[i..];
        if !valid_port(port) {
            return Err(format!("invalid port {} after host", quote(port)));
        }
    }
    unescape(host, Part::Host)
}

fn valid_port(p: &str) -> bool {
    p.strip_prefix(':')
        .is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit()))
}

/// Where the text sits in the URL: a host is stricter than a path or fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Path,
    Host,
}

/// Go's `unescape`: every `%XY` must be whole; in a host, escapes below `%80` other than `%25`
/// are refused, and unescaped ASCII is limited to what Go's `shouldEscape` lets through. The
/// error text is Go's (`invalid URL escape "%4"`, `invalid character " " in host name`).
pub fn unescape(s: &str, part: Part) -> Result<String, String> {
    let host = part == Part::Host;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let escape = || {
                    let bad = String::from_utf8_lossy(&b[i..(i + 3).min(b.len())]);
                    format!("invalid URL escape {}", quote(&bad))
                };
                let hex = b
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .ok_or_else(escape)?;
                if host && hex[0] < b'8' && hex != b"25" {
                    return Err(escape());
                }
                out.push((hex_value(hex[0]) << 4) | hex_value(hex[1]));
                i += 3;
            }
            c if host && c < 0x80 && !host_char(c) => {
                return Err(format!(
                    "invalid character {} in host name",
                    quote(&(c as char).to_string())
                ));
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn hex_value(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}

/// The bytes Go's `shouldEscape` lets through unescaped in a host.
fn host_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-_.~!$&'()*+,;=:[]<>\"".contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_decode_any_whole_escape() {
        assert_eq!(unescape("a%41b%2fc", Part::Path).unwrap(), "aAb/c");
        assert_eq!(unescape("%e2%82%ac", Part::Path).unwrap(), "€");
        assert_eq!(
            unescape("50%", Part::Path).unwrap_err(),
            r#"invalid URL escape "%""#
        );
        assert_eq!(
            unescape("%4g", Part::Path).unwrap_err(),
            r#"invalid URL escape "%4g""#
        );
    }

    #[test]
    fn hosts_refuse_ascii_escapes_but_percent_and_bad_characters() {
        assert_eq!(
            unescape("a%41b", Part::Host).unwrap_err(),
            r#"invalid URL escape "%41""#
        );
        assert_eq!(unescape("a%25b", Part::Host).unwrap(), "a%b");
        assert_eq!(unescape("%c3%a9t%c3%a9", Part::Host).unwrap(), "été");
        assert_eq!(
            unescape("a b", Part::Host).unwrap_err(),
            r#"invalid character " " in host name"#
        );
    }
}
