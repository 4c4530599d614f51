/*!
GitHub App authentication (upstream's GitHub App token generator): a JWT signed with the app's
RSA key (RS256; issued now, expiring in 9 minutes, issuer the app id) buys one installation
access token per organisation. Installations are listed once (all pages of
`GET /app/installations`); tokens are cached until a minute before they expire.

Building the client calls no API, as upstream's does not: it fails only on a key that is not
an RSA private key or an endpoint Go's `url.Parse` refuses. The API is first asked (`GET /app`,
then the installations) when a clone needs a token, so an unreachable API fails each ref's
token instead of the setup.

The HTTP client speaks TLS through OpenSSL, the one TLS stack libgit2 already links.
*/

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;
use serde::Deserialize;

/// The user git authenticates as with an installation token.
pub const APP_USER: &str = "x-access-token";

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("failed to parse GitHub App private key: {0}")]
    Key(openssl::error::ErrorStack),
    #[error(
        "failed to construct apps auth roundtripper: failed to parse github-endpoint {endpoint} as URL: {why}"
    )]
    Endpoint { endpoint: String, why: String },
    #[error("failed to sign GitHub App JWT: {0}")]
    Sign(openssl::error::ErrorStack),
    #[error("failed to set up TLS: {0}")]
    Tls(#[from] native_tls::Error),
    #[error("{method} {url}: {source}")]
    Http {
        method: &'static str,
        url: String,
        source: Box<ureq::Error>,
    },
    #[error("{method} {url}: expected status {want}, got {got}")]
    Status {
        method: &'static str,
        url: String,
        want: u16,
        got: u16,
    },
    #[error("{url}: invalid response: {source}")]
    Decode { url: String, source: std::io::Error },
    #[error("the GitHub App has no installation for organisation {0}")]
    NoInstallation(String),
    #[error("invalid expiry {0:?} on installation token")]
    Expiry(String),
}

#[derive(Deserialize)]
struct App {
    #[serde(default)]
    slug: String,
}

#[derive(Deserialize)]
struct Installation {
    id: i64,
    account: Account,
}

#[derive(Deserialize)]
struct Account {
    login: String,
}

#[derive(Deserialize)]
struct AccessToken {
    token: String,
    expires_at: String,
}

/// Installation tokens for one GitHub App, shared by every clone worker.
pub struct AppTokens {
    app_id: String,
    key: PKey<Private>,
    endpoint: String,
    agent: ureq::Agent,
    /// From `GET /app`, asked once before the first installation listing (upstream's order).
    slug: Mutex<Option<String>>,
    installations: Mutex<Option<HashMap<String, i64>>>,
    tokens: Mutex<HashMap<String, (String, i64)>>,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl AppTokens {
    /// Builds the client without calling the API.
    pub fn new(app_id: &str, key_pem: &[u8], endpoints: &[String]) -> Result<Self, AppError> {
        let key = PKey::private_key_from_pem(key_pem).map_err(AppError::Key)?;
        // Upstream's key parser takes RSA keys only (RS256).
        key.rsa().map_err(AppError::Key)?;
        for e in endpoints {
            if let Some(why) = go_url_error(e) {
                return Err(AppError::Endpoint {
                    endpoint: e.clone(),
                    why,
                });
            }
        }
        let tls = native_tls::TlsConnector::new()?;
        let endpoint = endpoints
            .first()
            .map(|e| e.trim_end_matches('/').to_string())
            .unwrap_or_default();
        let mut agent = ureq::AgentBuilder::new()
            .tls_connector(Arc::new(tls))
            .timeout(Duration::from_secs(60));
        // The API goes through the environment's proxy as Go's default transport sends it.
        let bad_proxy = |why: String| AppError::Endpoint {
            endpoint: endpoint.clone(),
            why,
        };
        if let Some(p) = crate::proxy::for_api(&endpoint).map_err(|e| bad_proxy(e.to_string()))? {
            agent = agent.proxy(ureq::Proxy::new(&p).map_err(|e| bad_proxy(e.to_string()))?);
        }
        let agent = agent.build();
        Ok(AppTokens {
            app_id: app_id.to_string(),
            key,
            endpoint,
            agent,
            slug: Mutex::new(None),
            installations: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// The app's JWT: RS256 over `{"iat","exp","iss"}`.
    fn jwt(&self) -> Result<String, AppError> {
        let iat = now();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = serde_json::json!({"iat": iat, "exp": iat + 9 * 60, "iss": self.app_id});
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = format!("{header}.{payload}");
        let mut signer = Signer::new(MessageDigest::sha256(), &self.key).map_err(AppError::Sign)?;
        signer
            .update(signing_input.as_bytes())
            .map_err(AppError::Sign)?;
        let sig = signer.sign_to_vec().map_err(AppError::Sign)?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }

    /// One API call authenticated as the app; returns the decoded body and the `next` page.
    fn call<T: for<'de> Deserialize<'de>>(
        &self,
        method: &'static str,
        path_or_url: &str,
        want: u16,
    ) -> Result<(T, Option<String>), AppError> {
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_string()
        } else {
            format!("{}{path_or_url}", self.endpoint)
        };
        let resp = self
            .agent
            .request(method, &url)
            .set("Accept", "application/vnd.github.v3+json")
            .set("Authorization", &format!("Bearer {}", self.jwt()?))
            .call();
        let resp = match resp {
            Ok(r) => r,
            Err(ureq::Error::Status(got, _)) => {
                return Err(AppError::Status {
                    method,
                    url,
                    want,
                    got,
                });
            }
            Err(e) => {
                return Err(AppError::Http {
                    method,
                    url,
                    source: Box::new(e),
                });
            }
        };
        if resp.status() != want {
            return Err(AppError::Status {
                method,
                url,
                want,
                got: resp.status(),
            });
        }
        let next = resp.header("Link").and_then(next_link);
        let body = resp
            .into_json::<T>()
            .map_err(|source| AppError::Decode { url, source })?;
        Ok((body, next))
    }

    fn installation_id(&self, org: &str) -> Result<i64, AppError> {
        let mut guard = self
            .installations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.is_none() {
            let mut slug = self
                .slug
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if slug.is_none() {
                let info: App = self.call("GET", "/app", 200)?.0;
                *slug = Some(info.slug);
            }
            drop(slug);
            let mut all = HashMap::new();
            let mut page = Some("/app/installations?per_page=100".to_string());
            while let Some(p) = page {
                let (list, next): (Vec<Installation>, _) = self.call("GET", &p, 200)?;
                for i in list {
                    all.insert(i.account.login.to_ascii_lowercase(), i.id);
                }
                page = next;
            }
            *guard = Some(all);
        }
        guard
            .as_ref()
            .and_then(|m| m.get(&org.to_ascii_lowercase()).copied())
            .ok_or_else(|| AppError::NoInstallation(org.to_string()))
    }

    /// An installation token for `org`, from the cache while it has over a minute left.
    pub fn token(&self, org: &str) -> Result<String, AppError> {
        let key = org.to_ascii_lowercase();
        if let Some((t, exp)) = self
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
        {
            if *exp - 60 > now() {
                return Ok(t.clone());
            }
        }
        let id = self.installation_id(org)?;
        let (tok, _): (AccessToken, _) = self.call(
            "POST",
            &format!("/app/installations/{id}/access_tokens"),
            201,
        )?;
        let exp = parse_rfc3339_utc(&tok.expires_at).ok_or(AppError::Expiry(tok.expires_at))?;
        self.tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, (tok.token.clone(), exp));
        Ok(tok.token)
    }
}

/// Why Go's `url.Parse` refuses `raw`, in `url.Error`'s words (`parse "<raw>": ...`); `None`
/// when it parses.
fn go_url_error(raw: &str) -> Option<String> {
    pod_utils::gourl::parse(raw).err().map(|e| e.to_string())
}

/// The `rel="next"` target of a Link header.
fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim() == r#"rel="next""#)
            .then(|| {
                url.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
    })
}

/// `YYYY-MM-DDTHH:MM:SSZ` (what GitHub returns) to unix seconds.
fn parse_rfc3339_utc(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let d: Vec<i64> = date
        .split('-')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let t: Vec<i64> = time
        .split(':')
        .map(|x| x.split('.').next().and_then(|v| v.parse().ok()))
        .collect::<Option<_>>()?;
    let ([y, m, day], [hh, mm, ss]) = (d.as_slice(), t.as_slice()) else {
        return None;
    };
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m) = if *m <= 2 { (y - 1, m + 9) } else { (*y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header_next() {
        assert_eq!(
            next_link(r#"<https://api.github.com/app/installations?page=2>; rel="next", <https://api.github.com/app/installations?page=5>; rel="last""#).as_deref(),
            Some("https://api.github.com/app/installations?page=2")
        );
        assert_eq!(next_link(r#"<https://x?page=1>; rel="prev""#), None);
    }

    #[test]
    fn expiry_timestamps() {
        assert_eq!(parse_rfc3339_utc("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_utc("2016-07-11T22:14:10Z"),
            Some(1_468_275_250)
        );
        assert_eq!(
            parse_rfc3339_utc("2024-02-29T12:00:00Z"),
            Some(1_709_208_000)
        );
        assert_eq!(parse_rfc3339_utc("garbage"), None);
    }

    #[test]
    fn endpoints_fail_as_go_url_parse_fails() {
        for ok in [
            "https://api.github.com",
            "http://127.0.0.1:8080/api/v3/",
            "http://[::1]:80",
            "api.github.com",
            "",
            "https://h/p?q=%zz",
            "mailto:a%zz",
        ] {
            assert_eq!(go_url_error(ok), None, "{ok}");
        }
        let cases = [
            ("://h", r#"parse "://h": missing protocol scheme"#),
            (
                "1a:b",
                r#"parse "1a:b": first path segment in URL cannot contain colon"#,
            ),
            (
                "http://h:x",
                r#"parse "http://h:x": invalid port ":x" after host"#,
            ),
            ("http://[::1", r#"parse "http://[::1": missing ']' in host"#),
            (
                "http://h/%zz",
                r#"parse "http://h/%zz": invalid URL escape "%zz""#,
            ),
            (
                "http://h%41",
                r#"parse "http://h%41": invalid URL escape "%41""#,
            ),
            (
                "http://a b",
                r#"parse "http://a b": invalid character " " in host name"#,
            ),
            (
                "http://a^b@h",
                r#"parse "http://a^b@h": net/url: invalid userinfo"#,
            ),
            (
                "http://h/#%g",
                r#"parse "http://h/#%g": invalid URL escape "%g""#,
            ),
            (
                "http://h/\u{1}",
                r#"parse "http://h/\x01": net/url: invalid control character in URL"#,
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(go_url_error(raw).as_deref(), Some(want), "{raw}");
        }
    }

    #[test]
    fn building_the_client_calls_no_api() {
        let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
        let pem = rsa.private_key_to_pem().unwrap();
        // Port 9 on loopback: nothing is asked, so nothing needs to answer.
        let app = AppTokens::new("42", &pem, &["http://127.0.0.1:9".into()]).unwrap();
        assert_eq!(app.endpoint, "http://127.0.0.1:9");
        let err = AppTokens::new("42", &pem, &["ok.example".into(), "http://[x".into()]);
        assert!(matches!(err, Err(AppError::Endpoint { .. })));
        let ec = openssl::ec::EcKey::generate(
            &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap(),
        )
        .unwrap();
        let ec_pem = ec.private_key_to_pem().unwrap();
        let err = AppTokens::new("42", &ec_pem, &[]);
        assert!(matches!(err, Err(AppError::Key(_))));
        let err = AppTokens::new("42", b"not a key", &[]);
        assert!(matches!(err, Err(AppError::Key(_))));
    }

    #[test]
    fn jwt_is_rs256_and_verifies() {
        let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
        let pem = rsa.private_key_to_pem().unwrap();
        let key = PKey::private_key_from_pem(&pem).unwrap();
        let app = AppTokens {
            app_id: "42".into(),
            key: key.clone(),
            endpoint: String::new(),
            agent: ureq::AgentBuilder::new().build(),
            slug: Mutex::new(None),
            installations: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
        };
        let jwt = app.jwt().unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["iss"], "42");
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            540
        );
        let mut v = openssl::sign::Verifier::new(MessageDigest::sha256(), &key).unwrap();
        v.update(format!("{}.{}", parts[0], parts[1]).as_bytes())
            .unwrap();
        assert!(
            v.verify(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
                .unwrap()
        );
    }
}
