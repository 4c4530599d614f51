/*!
Object headers derived from names and content (upstream `pkg/pod-utils/gcs/metadata.go`, Go's
`mime.TypeByExtension` and `net/http.DetectContentType`).

Upstream registers `mediaTypes` in Go's process-wide MIME table; here the table is a value,
[`MediaTypes`], built once per upload run and passed down.
*/

use std::collections::{BTreeMap, HashMap};

/// Headers set on an uploaded object. `None` means "not set by name": the store sniffs a type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriterOptions {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    /// Custom metadata, e.g. the alias file's `x-goog-meta-link`.
    pub metadata: BTreeMap<String, String>,
}

/// Go's builtin extension table (`mime/type.go`), plus `.txt`, which Go only finds in the
/// system's mime.types but upstream's tests (and every Prow image in practice) rely on.
const BUILTIN: &[(&str, &str)] = &[
    (".avif", "image/avif"),
    (".css", "text/css; charset=utf-8"),
    (".gif", "image/gif"),
    (".htm", "text/html; charset=utf-8"),
    (".html", "text/html; charset=utf-8"),
    (".jpeg", "image/jpeg"),
    (".jpg", "image/jpeg"),
    (".js", "text/javascript; charset=utf-8"),
    (".json", "application/json"),
    (".mjs", "text/javascript; charset=utf-8"),
    (".pdf", "application/pdf"),
    (".png", "image/png"),
    (".svg", "image/svg+xml"),
    (".txt", "text/plain; charset=utf-8"),
    (".wasm", "application/wasm"),
    (".webp", "image/webp"),
    (".xml", "text/xml; charset=utf-8"),
];

/// Extension → media type, looked up like Go's `mime.TypeByExtension`: exact case first,
/// then the lower-cased extension.
#[derive(Debug, Clone)]
pub struct MediaTypes {
    exact: HashMap<String, String>,
    lower: HashMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaTypeError {
    #[error("mime: extension {0:?} missing leading dot")]
    NoDot(String),
    #[error("mime: invalid media type {0:?}")]
    Invalid(String),
}

impl Default for MediaTypes {
    fn default() -> Self {
        let exact: HashMap<String, String> = BUILTIN
            .iter()
            .map(|(e, t)| (e.to_string(), t.to_string()))
            .collect();
        MediaTypes {
            lower: exact.clone(),
            exact,
        }
    }
}

impl MediaTypes {
    /// The builtin table with a job's `mediaTypes` (extension without dot → type) added.
    /// Entries Go would refuse are skipped, as upstream ignores `AddExtensionType` errors.
    pub fn with_config(media_types: &BTreeMap<String, String>) -> Self {
        let mut t = MediaTypes::default();
        for (ext, ty) in media_types {
            if let Err(e) = t.add_extension_type(&format!(".{ext}"), ty) {
                tracing::debug!(error = %e, "Ignoring media type");
            }
        }
        t
    }

    /// Go's `mime.AddExtensionType`: a `text/*` type without a charset gets `charset=utf-8`.
    pub fn add_extension_type(
        &mut self,
        ext: &str,
        media_type: &str,
    ) -> Result<(), MediaTypeError> {
        if !ext.starts_with('.') {
            return Err(MediaTypeError::NoDot(ext.to_string()));
        }
        let (base, params) = parse_media_type(media_type)
            .ok_or_else(|| MediaTypeError::Invalid(media_type.to_string()))?;
        let stored = if media_type.starts_with("text/") && !params.contains_key("charset") {
            let mut params = params;
            params.insert("charset".into(), "utf-8".into());
            format_media_type(&base, &params)
        } else {
            media_type.to_string()
        };
        self.exact.insert(ext.to_string(), stored.clone());
        self.lower.insert(ext.to_lowercase(), stored);
        Ok(())
    }

    /// Go's `mime.TypeByExtension`; `ext` includes the dot.
    pub fn type_by_extension(&self, ext: &str) -> Option<&str> {
        self.exact
            .get(ext)
            .or_else(|| self.lower.get(&ext.to_lowercase()))
            .map(String::as_str)
    }
}

/// `mime.ParseMediaType`, reduced to what registration needs: the lower-cased `type/subtype`
/// and the parameters (lower-cased names). `None` when Go would return an error.
fn parse_media_type(v: &str) -> Option<(String, BTreeMap<String, String>)> {
    let mut parts = v.split(';');
    let base = parts.next()?.trim().to_ascii_lowercase();
    let (t, s) = base.split_once('/')?;
    if !is_token(t) || !is_token(s) {
        return None;
    }
    let mut params = BTreeMap::new();
    for p in parts {
        let p = p.trim();
        if p.is_empty() {
            continue;
        }
        let (k, val) = p.split_once('=')?;
        let k = k.trim().to_ascii_lowercase();
        let val = val.trim();
        if !is_token(&k) {
            return None;
        }
        let val = match val.strip_prefix('"').and_then(|x| x.strip_suffix('"')) {
            Some(q) => q.replace("\\\"", "\"").replace("\\\\", "\\"),
            None if is_token(val) => val.to_string(),
            None => return None,
        };
        if params.insert(k, val).is_some() {
            return None; // Go: duplicate parameter name
        }
    }
    Some((base, params))
}

/// `mime.FormatMediaType`: parameters sorted by name, quoted when not a token.
fn format_media_type(base: &str, params: &BTreeMap<String, String>) -> String {
    let mut out = base.to_string();
    for (k, v) in params {
        out.push_str("; ");
        out.push_str(k);
        out.push('=');
        if is_token(v) {
            out.push_str(v);
        } else {
            out.push('"');
            out.push_str(&v.replace('\\', "\\\\").replace('"', "\\\""));
            out.push('"');
        }
    }
    out
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b))
}

/// Headers and simplified object name for a file (upstream `WriterOptionsFromFileName`):
/// a `.gz`/`.gzip` suffix becomes `Content-Encoding: gzip` and leaves the name; the type comes
/// from the (remaining) last dot-separated segment, even when the name has no dot at all.
pub fn writer_options_from_file_name(
    filename: &str,
    types: &MediaTypes,
) -> (String, WriterOptions) {
    let mut opts = WriterOptions::default();
    let segments: Vec<&str> = filename.split('.').collect();
    let mut index = segments.len() - 1;
    let mut segment = segments[index];
    let mut name = filename.to_string();
    if segment == "gz" || segment == "gzip" {
        opts.content_encoding = Some("gzip".into());
        if index == 0 {
            segment = "";
        } else {
            name.truncate(filename.len() - segment.len() - 1);
            index -= 1;
            segment = segments[index];
        }
    }
    if !segment.is_empty() {
        opts.content_type = types
            .type_by_extension(&format!(".{segment}"))
            .map(str::to_string);
    }
    if opts.content_type.is_none() && opts.content_encoding.is_some() {
        opts.content_type = Some("application/gzip".into());
        opts.content_encoding = None;
    }
    (name, opts)
}

/// Go's `filepath.Ext`: from the last dot of the last path element, or "".
pub fn ext(path: &str) -> &str {
    let base_start = path.rfind('/').map_or(0, |i| i + 1);
    match path[base_start..].rfind('.') {
        Some(i) => &path[base_start + i..],
        None => "",
    }
}

/// Whether `compress_file_types` asks to gzip `dest` (upstream `shouldCompressFileType`);
/// already-gzipped names never are.
pub fn should_compress_file_type(dest: &str, compress_file_types: &[String]) -> bool {
    let e = ext(dest).strip_prefix('.').unwrap_or("");
    if e == "gz" || e == "gzip" {
        return false;
    }
    compress_file_types.iter().any(|t| t == "*" || t == e)
}

/// The type Go's `http.DetectContentType` gives `data` (only the first 512 bytes count). Used
/// for objects written without an explicit type, as Google's and gocloud's clients sniff then.
pub fn detect_content_type(data: &[u8]) -> &'static str {
    let data = &data[..data.len().min(512)];
    let first_non_ws = data
        .iter()
        .position(|b| !matches!(b, b'\t' | b'\n' | 0x0c | b'\r' | b' '))
        .unwrap_or(data.len());
    let trimmed = &data[first_non_ws..];

    for tag in HTML_TAGS {
        if html_match(trimmed, tag.as_bytes()) {
            return "text/html; charset=utf-8";
        }
    }
    if trimmed.starts_with(b"<?xml") {
        return "text/xml; charset=utf-8";
    }
    for sig in SIGNATURES {
        let hit = match sig {
            Sig::Exact(prefix, ct) => trimmed.starts_with(prefix).then_some(*ct),
            Sig::Masked(mask, pat, ct) => masked_match(data, mask, pat).then_some(*ct),
            Sig::Mp4 => mp4_match(data).then_some("video/mp4"),
        };
        if let Some(ct) = hit {
            return ct;
        }
    }
    let binary = trimmed.iter().any(|&b| {
        b <= 0x08 || b == 0x0b || (0x0e..=0x1a).contains(&b) || (0x1c..=0x1f).contains(&b)
    });
    if binary {
        "application/octet-stream"
    } else {
        "text/plain; charset=utf-8"
    }
}

const HTML_TAGS: &[&str] = &[
    "<!DOCTYPE HTML",
    "<HTML",
    "<HEAD",
    "<SCRIPT",
    "<IFRAME",
    "<H1",
    "<DIV",
    "<FONT",
    "<TABLE",
    "<A",
    "<STYLE",
    "<TITLE",
    "<B",
    "<BODY",
    "<BR",
    "<P",
    "<!--",
];

fn html_match(data: &[u8], tag: &[u8]) -> bool {
    if data.len() < tag.len() + 1 {
        return false;
    }
    let same = tag.iter().zip(data).all(|(&t, &d)| {
        let d = if t.is_ascii_uppercase() { d & 0xdf } else { d };
        t == d
    });
    same && matches!(data[tag.len()], b' ' | b'>')
}

/// One row of Go's signature table, in Go's order. Exact signatures are compared after leading
/// whitespace (as Go does), masked ones from the first byte.
enum Sig {
    Exact(&'static [u8], &'static str),
    Masked(&'static [u8], &'static [u8], &'static str),
    Mp4,
}

const RIFF_MASK: &[u8] = b"\xFF\xFF\xFF\xFF\x00\x00\x00\x00\xFF\xFF\xFF\xFF";

/// Embedded OpenType: "LP" at offset 34, anything before it.
const EOT_MASK: [u8; 36] = eot(0xFF, 0xFF);
const EOT_PAT: [u8; 36] = eot(b'L', b'P');

const fn eot(a: u8, b: u8) -> [u8; 36] {
    let mut v = [0u8; 36];
    v[34] = a;
    v[35] = b;
    v
}

const SIGNATURES: &[Sig] = &[
    Sig::Exact(b"%PDF-", "application/pdf"),
    Sig::Exact(b"%!PS-Adobe-", "application/postscript"),
    Sig::Masked(
        b"\xFF\xFF\x00\x00",
        b"\xFE\xFF\x00\x00",
        "text/plain; charset=utf-16be",
    ),
    Sig::Masked(
        b"\xFF\xFF\x00\x00",
        b"\xFF\xFE\x00\x00",
        "text/plain; charset=utf-16le",
    ),
    Sig::Masked(
        b"\xFF\xFF\xFF\x00",
        b"\xEF\xBB\xBF\x00",
        "text/plain; charset=utf-8",
    ),
    Sig::Exact(b"\x00\x00\x01\x00", "image/x-icon"),
    Sig::Exact(b"\x00\x00\x02\x00", "image/x-icon"),
    Sig::Exact(b"BM", "image/bmp"),
    Sig::Exact(b"GIF87a", "image/gif"),
    Sig::Exact(b"GIF89a", "image/gif"),
    Sig::Masked(
        b"\xFF\xFF\xFF\xFF\x00\x00\x00\x00\xFF\xFF\xFF\xFF\xFF\xFF",
        b"RIFF\x00\x00\x00\x00WEBPVP",
        "image/webp",
    ),
    Sig::Exact(b"\x89PNG\x0D\x0A\x1A\x0A", "image/png"),
    Sig::Exact(b"\xFF\xD8\xFF", "image/jpeg"),
    Sig::Masked(b"\xFF\xFF\xFF\xFF", b".snd", "audio/basic"),
    Sig::Masked(RIFF_MASK, b"FORM\x00\x00\x00\x00AIFF", "audio/aiff"),
    Sig::Masked(b"\xFF\xFF\xFF", b"ID3", "audio/mpeg"),
    Sig::Masked(b"\xFF\xFF\xFF\xFF\xFF", b"OggS\x00", "application/ogg"),
    Sig::Masked(
        b"\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF",
        b"MThd\x00\x00\x00\x06",
        "audio/midi",
    ),
    Sig::Masked(RIFF_MASK, b"RIFF\x00\x00\x00\x00AVI ", "video/avi"),
    Sig::Masked(RIFF_MASK, b"RIFF\x00\x00\x00\x00WAVE", "audio/wave"),
    Sig::Mp4,
    Sig::Exact(b"\x1A\x45\xDF\xA3", "video/webm"),
    Sig::Masked(&EOT_MASK, &EOT_PAT, "application/vnd.ms-fontobject"),
    Sig::Exact(b"\x00\x01\x00\x00", "font/ttf"),
    Sig::Exact(b"OTTO", "font/otf"),
    Sig::Exact(b"ttcf", "font/collection"),
    Sig::Exact(b"wOFF", "font/woff"),
    Sig::Exact(b"wOF2", "font/woff2"),
    Sig::Exact(b"\x1F\x8B\x08", "application/x-gzip"),
    Sig::Exact(b"PK\x03\x04", "application/zip"),
    Sig::Exact(b"Rar!\x1A\x07\x00", "application/x-rar-compressed"),
    Sig::Exact(b"Rar!\x1A\x07\x01\x00", "application/x-rar-compressed"),
    Sig::Exact(b"\x00\x61\x73\x6D", "application/wasm"),
];

fn masked_match(data: &[u8], mask: &[u8], pat: &[u8]) -> bool {
    data.len() >= pat.len()
        && mask
            .iter()
            .zip(pat)
            .zip(data)
            .all(|((m, p), d)| d & m == *p)
}

fn mp4_match(data: &[u8]) -> bool {
    if data.len() < 12 {
        return false;
    }
    let box_size = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
    if data.len() < box_size || box_size % 4 != 0 || &data[4..8] != b"ftyp" {
        return false;
    }
    (8..box_size)
        .step_by(4)
        .filter(|&st| st != 12)
        .any(|st| data.get(st..st + 3) == Some(b"mp4".as_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(ct: Option<&str>, enc: Option<&str>) -> WriterOptions {
        WriterOptions {
            content_type: ct.map(str::to_string),
            content_encoding: enc.map(str::to_string),
            ..Default::default()
        }
    }

    // Upstream TestWriterOptionsFromFileName.
    #[test]
    fn writer_options_from_file_name_cases() {
        let mut types = MediaTypes::default();
        types.add_extension_type(".log", "text/plain").unwrap();
        let txt = Some("text/plain; charset=utf-8");
        let cases = [
            ("build-log.txt", "build-log.txt", opts(txt, None)),
            ("build-log.txt.gz", "build-log.txt", opts(txt, Some("gzip"))),
            (
                "build-log.txt.gzip",
                "build-log.txt",
                opts(txt, Some("gzip")),
            ),
            ("gz", "gz", opts(Some("application/gzip"), None)),
            (
                "build-log.gz",
                "build-log",
                opts(Some("application/gzip"), None),
            ),
            (
                "build-log.gzip",
                "build-log",
                opts(Some("application/gzip"), None),
            ),
            (
                "events.json",
                "events.json",
                opts(Some("application/json"), None),
            ),
            (
                "events.json.gz",
                "events.json",
                opts(Some("application/json"), Some("gzip")),
            ),
            ("journal.log", "journal.log", opts(txt, None)),
            ("", "", opts(None, None)),
            (".", ".", opts(None, None)),
            // Quirks kept: the last segment counts even without a dot, and `.gz` alone.
            ("json", "json", opts(Some("application/json"), None)),
            (".gz", "", opts(Some("application/gzip"), None)),
            ("noext", "noext", opts(None, None)),
        ];
        for (input, name, want) in cases {
            assert_eq!(
                writer_options_from_file_name(input, &types),
                (name.to_string(), want),
                "{input:?}"
            );
        }
    }

    #[test]
    fn registration_follows_go_mime() {
        let mut t = MediaTypes::default();
        assert_eq!(t.type_by_extension(".log"), None);
        assert_eq!(t.type_by_extension(".JSON"), Some("application/json"));
        t.add_extension_type(".md", "text/markdown; variant=GFM")
            .unwrap();
        assert_eq!(
            t.type_by_extension(".md"),
            Some("text/markdown; charset=utf-8; variant=GFM")
        );
        t.add_extension_type(".Bin", "application/x-thing").unwrap();
        assert_eq!(t.type_by_extension(".Bin"), Some("application/x-thing"));
        assert_eq!(t.type_by_extension(".BIN"), Some("application/x-thing"));
        t.add_extension_type(".csv", "text/csv; charset=latin1")
            .unwrap();
        assert_eq!(
            t.type_by_extension(".csv"),
            Some("text/csv; charset=latin1")
        );
        assert!(matches!(
            t.add_extension_type("x", "text/plain"),
            Err(MediaTypeError::NoDot(_))
        ));
        assert!(matches!(
            t.add_extension_type(".x", "nope"),
            Err(MediaTypeError::Invalid(_))
        ));
        assert!(matches!(
            t.add_extension_type(".x", "a/b; c"),
            Err(MediaTypeError::Invalid(_))
        ));

        let cfg: BTreeMap<String, String> = [
            ("log".to_string(), "text/plain".to_string()),
            ("bad".to_string(), "x".to_string()),
        ]
        .into_iter()
        .collect();
        let t = MediaTypes::with_config(&cfg);
        assert_eq!(
            t.type_by_extension(".log"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(t.type_by_extension(".bad"), None);
    }

    // Upstream TestShouldCompressFileType.
    #[test]
    fn should_compress_cases() {
        let list = |v: &[&str]| {
            v.iter()
                .map(std::string::ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert!(should_compress_file_type(
            "a/b/build-log.txt",
            &list(&["txt"])
        ));
        assert!(!should_compress_file_type(
            "a/b/build-log.txt",
            &list(&["log"])
        ));
        assert!(should_compress_file_type("a/b/anything.bin", &list(&["*"])));
        assert!(should_compress_file_type("a/b/noext", &list(&["*"])));
        assert!(!should_compress_file_type("a/b/x.gz", &list(&["*", "gz"])));
        assert!(!should_compress_file_type("a/b/x.gzip", &list(&["*"])));
        assert!(!should_compress_file_type("a/b/x.txt", &[]));
        assert!(!should_compress_file_type("a.d/noext", &list(&["d/noext"])));
    }

    #[test]
    fn ext_like_go_filepath() {
        assert_eq!(ext("a/b.c/d"), "");
        assert_eq!(ext("a/b.c/d.e"), ".e");
        assert_eq!(ext("x.tar.gz"), ".gz");
        assert_eq!(ext(".hidden"), ".hidden");
        assert_eq!(ext(""), "");
    }

    #[test]
    fn sniffing_like_go() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "text/plain; charset=utf-8"),
            (b"{\"timestamp\":1}", "text/plain; charset=utf-8"),
            (b"  <!doctype html><p>", "text/html; charset=utf-8"),
            (b"<HtMl><b>", "text/html; charset=utf-8"),
            (b"<htmlx", "text/plain; charset=utf-8"),
            (b"\n<?xml version", "text/xml; charset=utf-8"),
            (b"%PDF-1.4", "application/pdf"),
            (b"\xFE\xFF\x00\x41", "text/plain; charset=utf-16be"),
            (b"\xEF\xBB\xBFhi", "text/plain; charset=utf-8"),
            (b"GIF89a...", "image/gif"),
            (b"\x89PNG\x0D\x0A\x1A\x0A", "image/png"),
            (b"\xFF\xD8\xFF\xE0", "image/jpeg"),
            (b"\x1F\x8B\x08\x00", "application/x-gzip"),
            (b"PK\x03\x04", "application/zip"),
            (b"\x00asm\x01", "application/wasm"),
            (
                b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom",
                "video/mp4",
            ),
            (b"ab\x00cd", "application/octet-stream"),
            (b"tabs\tand\nnewlines\x1b[0m", "text/plain; charset=utf-8"),
        ];
        for (data, want) in cases {
            assert_eq!(detect_content_type(data), *want, "{data:?}");
        }
        // Only the first 512 bytes count.
        let mut long = vec![b'a'; 512];
        long.push(0);
        assert_eq!(detect_content_type(&long), "text/plain; charset=utf-8");
    }
}
