/*!
The `--gcs-path` flag's value: upstream's flag type (testgrid's `gcs.Path`) parses it with Go's
`net/url` and accepts only `gs://`, `file://` or a scheme-less path, refusing ports, user info,
opaque forms (`gs:bucket`), queries and fragments. The URL is read by
[`crate::gourl`], as Go's `url.Parse` reads it, so the same values pass and fail.
*/

use std::fmt;

use crate::gofmt::quote as go_quote;
use crate::gourl;

/// A parsed `--gcs-path`: the bucket is the URL's host, the prefix its path without the leading
/// slash (upstream's `Bucket()` and `Object()`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcsPath {
    pub bucket: String,
    pub object: String,
    /// The flag's text; empty means the flag was not given (upstream tests `String() != ""`).
    raw: String,
}

impl GcsPath {
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
}

/// Why a `--gcs-path` value was refused, in upstream's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// Go's `url.Parse` failed: `url` is the text it names (without the fragment, as Go does
    /// unless the fragment itself is bad).
    Url {
        input: String,
        url: String,
        reason: String,
    },
    Scheme(String),
    Port(String),
    Opaque(String),
    User(String),
    Query(String),
    Fragment(String),
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url { input, url, reason } => write!(
                f,
                "invalid gs:// url {input}: parse {}: {reason}",
                go_quote(url)
            ),
            Self::Scheme(u) => write!(f, "must use a gs://, file://, or local filesystem url: {u}"),
            Self::Port(u) => write!(f, "gs://bucket may not contain a port: {u}"),
            Self::Opaque(u) => write!(f, "url must start with gs://: {u}"),
            Self::User(u) => write!(f, "gs://bucket may not contain an user@ prefix: {u}"),
            Self::Query(u) => write!(f, "gs:// url may not contain a ?query suffix: {u}"),
            Self::Fragment(u) => write!(f, "gs:// url may not contain a #fragment suffix: {u}"),
        }
    }
}

impl std::error::Error for PathError {}

/// Parses a `--gcs-path` value as upstream's flag does (clap value parser).
pub fn parse(v: &str) -> Result<GcsPath, PathError> {
    let u = gourl::parse(v).map_err(|gourl::UrlError { url, reason }| PathError::Url {
        input: v.to_string(),
        url: url.clone(),
        reason,
    })?;
    // Upstream prints the re-serialised URL; the input is what the user typed, and close enough.
    let shown = v.to_string();
    if !matches!(u.scheme.as_str(), "gs" | "file" | "") {
        return Err(PathError::Scheme(shown));
    }
    if u.host.contains(':') {
        return Err(PathError::Port(shown));
    }
    if !u.opaque.is_empty() {
        return Err(PathError::Opaque(shown));
    }
    if u.user {
        return Err(PathError::User(shown));
    }
    if !u.query.is_empty() {
        return Err(PathError::Query(shown));
    }
    if !u.fragment.is_empty() {
        return Err(PathError::Fragment(shown));
    }
    // Upstream's Object() drops the first byte unconditionally; a scheme-less relative path has
    // no bucket, so that only matters in dry-run, where we keep the path whole.
    let object = u.path.strip_prefix('/').unwrap_or(&u.path).to_string();
    Ok(GcsPath {
        bucket: u.host,
        object,
        raw: v.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(v: &str) -> (String, String) {
        let p = parse(v).unwrap_or_else(|e| panic!("{v}: {e}"));
        (p.bucket, p.object)
    }

    fn err(v: &str) -> String {
        parse(v).unwrap_err().to_string()
    }

    #[test]
    fn gs_and_file_urls_give_bucket_and_object() {
        let s = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(ok("gs://bucket/some/prefix"), s("bucket", "some/prefix"));
        assert_eq!(ok("gs://bucket"), s("bucket", ""));
        assert_eq!(ok("gs://bucket/"), s("bucket", ""));
        assert_eq!(ok("GS://bucket/p"), s("bucket", "p"));
        assert_eq!(ok("file:///tmp/out"), s("", "tmp/out"));
        assert_eq!(ok("gs://bucket/a%20b"), s("bucket", "a b"));
        assert_eq!(ok("gs://bucket/p?"), s("bucket", "p"));
        assert_eq!(ok("/abs/dir"), s("", "abs/dir"));
        // No scheme and no "//": all path, no bucket (Go reads "a/b:c" as a relative path).
        assert_eq!(ok("a/b:c"), s("", "a/b:c"));
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn what_upstream_refuses_is_refused_in_its_words() {
        let cases = [
            (
                "s3://bucket/p",
                "must use a gs://, file://, or local filesystem url: s3://bucket/p",
            ),
            (
                "https://storage.googleapis.com/b",
                "must use a gs://, file://, or local filesystem url: https://storage.googleapis.com/b",
            ),
            (
                "gs://bucket:443/p",
                "gs://bucket may not contain a port: gs://bucket:443/p",
            ),
            ("gs:bucket/p", "url must start with gs://: gs:bucket/p"),
            (
                "gs://me@bucket/p",
                "gs://bucket may not contain an user@ prefix: gs://me@bucket/p",
            ),
            (
                "gs://bucket/p?x=1",
                "gs:// url may not contain a ?query suffix: gs://bucket/p?x=1",
            ),
            (
                "gs://bucket/p#frag",
                "gs:// url may not contain a #fragment suffix: gs://bucket/p#frag",
            ),
            (
                "gs://bucket:x/p",
                r#"invalid gs:// url gs://bucket:x/p: parse "gs://bucket:x/p": invalid port ":x" after host"#,
            ),
            (
                "gs://bu cket/p",
                r#"invalid gs:// url gs://bu cket/p: parse "gs://bu cket/p": invalid character " " in host name"#,
            ),
            (
                "gs://bucket/%zz",
                r#"invalid gs:// url gs://bucket/%zz: parse "gs://bucket/%zz": invalid URL escape "%zz""#,
            ),
            (
                "gs://b/p#%g",
                r#"invalid gs:// url gs://b/p#%g: parse "gs://b/p#%g": invalid URL escape "%g""#,
            ),
            // Go refuses escapes of ASCII in a host (only %25 may stand for itself).
            (
                "gs://a%41b/x",
                r#"invalid gs:// url gs://a%41b/x: parse "gs://a%41b/x": invalid URL escape "%41""#,
            ),
            (
                "gs://me me@bucket/p",
                r#"invalid gs:// url gs://me me@bucket/p: parse "gs://me me@bucket/p": net/url: invalid userinfo"#,
            ),
            (
                "://bucket",
                r#"invalid gs:// url ://bucket: parse "://bucket": missing protocol scheme"#,
            ),
            (
                "1a:b",
                r#"invalid gs:// url 1a:b: parse "1a:b": first path segment in URL cannot contain colon"#,
            ),
            (
                "x:y",
                "must use a gs://, file://, or local filesystem url: x:y",
            ),
            (
                "gs://b/\u{1}",
                "invalid gs:// url gs://b/\u{1}: parse \"gs://b/\\x01\": net/url: invalid control character in URL",
            ),
        ];
        for (v, want) in cases {
            assert_eq!(err(v), want, "{v}");
        }
    }

    proptest::proptest! {
        /// Any text either parses or is refused with one line; never a panic.
        #[test]
        fn any_text_parses_or_is_refused_without_panicking(v in "\\PC{0,40}") {
            match parse(&v) {
                Ok(p) => proptest::prop_assert!(!p.bucket.contains(':')),
                Err(e) => proptest::prop_assert!(!e.to_string().contains('\n') || v.contains('\n')),
            }
        }
    }
}
