/*!
Golden texts: stable, readable, diff-friendly. A probe's normalised [`Observation`] as its exit
and streams; everything a pod left behind ([`PodRun`]) as each container's exit and output, each
object (gunzipped, tar archives entry by entry), the proxy's requests, the logs volume and the
checkouts, every piece normalised by [`normalise::Pod`] (its rules are per piece: a text made
only of log lines is sorted, a racy line dropped, before pieces are joined).
*/

use crate::backend::PodRun;
use crate::fixture::Fixture;
use crate::normalise;
use crate::observe::Observation;

/// The golden text of a (normalised) probe observation.
pub fn probe(o: &Observation) -> String {
    format!(
        "exit: {}\n--- stdout\n{}\n--- stderr\n{}",
        o.exit, o.stdout, o.stderr
    )
}

/// Objects bigger than this, or not UTF-8, are shown by size and digest.
const INLINE_LIMIT: usize = 16 * 1024;

/// Renders everything a pod left behind as one normalised text, the pod's golden.
pub fn pod(run: &PodRun, fixture: &Fixture) -> String {
    use std::fmt::Write as _;
    let n = normalise::Pod::new(&run.path_map, &fixture.name, &fixture.racy_lines);
    let mut s = String::new();
    for (kind, list) in [("init", &run.init), ("container", &run.containers)] {
        for c in list {
            let _ = writeln!(s, "== {kind} {}: exit {}", c.name, c.exit);
            for (stream, bytes) in [("stdout", &c.stdout), ("stderr", &c.stderr)] {
                if !bytes.is_empty() {
                    let _ = writeln!(s, "-- {stream}");
                    s.push_str(&content(&n, bytes));
                }
            }
        }
    }
    for o in &run.objects {
        let _ = writeln!(s, "== object {}", o.name);
        let _ = writeln!(
            s,
            "content-type: {}; content-encoding: {}; metadata: {:?}",
            o.content_type.as_deref().unwrap_or("-"),
            o.content_encoding.as_deref().unwrap_or("-"),
            o.metadata
                .iter()
                .map(|(k, v)| (k.clone(), n.text(v)))
                .collect::<Vec<_>>()
        );
        let data = if o.content_encoding.as_deref() == Some("gzip") {
            match gunzip(&o.data) {
                Some(d) => {
                    s.push_str("(gunzipped)\n");
                    d
                }
                None => o.data.clone(),
            }
        } else {
            o.data.clone()
        };
        s.push_str(&body(&n, &data));
    }
    if let Some(requests) = &run.proxied {
        // By method: which objects came through is already in the bucket's listing.
        let mut by_method: std::collections::BTreeMap<&str, usize> = Default::default();
        for r in requests {
            *by_method
                .entry(r.split(' ').next().unwrap_or(""))
                .or_default() += 1;
        }
        let _ = writeln!(s, "== proxy requests");
        for (method, count) in by_method {
            let _ = writeln!(s, "{method} {count}");
        }
    }
    for (name, data) in &run.logs {
        let _ = writeln!(s, "== logs {}", n.log_file_name(name));
        s.push_str(&body(&n, data));
    }
    for c in &run.checkouts {
        let _ = writeln!(s, "== checkout {}", c.path);
        match &c.state {
            Ok((head, files)) => {
                let _ = writeln!(s, "HEAD {head}");
                for f in files {
                    let _ = writeln!(s, "  {f}");
                }
            }
            Err(e) => {
                let _ = writeln!(s, "unreadable: {}", n.text(e));
            }
        }
    }
    s
}

fn content(n: &normalise::Pod, bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(t) if t.len() <= INLINE_LIMIT => {
            let mut t = n.text(t);
            if !t.ends_with('\n') {
                t.push_str("\n[no newline at end]\n");
            }
            t
        }
        _ => format!("[{} bytes, sha256 {}]\n", bytes.len(), sha256_hex(bytes)),
    }
}

/// A file's or object's bytes: a tar archive, also gzipped (a `.tar.gz` is stored as
/// `application/gzip` without content encoding), entry by entry; anything else as [`content`].
fn body(n: &normalise::Pod, data: &[u8]) -> String {
    let without;
    let data = match n.without_racy_lines(data) {
        Some(d) => {
            without = d;
            &without[..]
        }
        None => data,
    };
    if let Some(listing) = tar_listing(n, data) {
        return listing;
    }
    if data.starts_with(&[0x1f, 0x8b]) {
        if let Some(listing) = gunzip(data).and_then(|tar| tar_listing(n, &tar)) {
            return format!("(gzip)\n{listing}");
        }
    }
    content(n, data)
}

/// A tar archive (a censored tar.gz artifact, once gunzipped) shown entry by entry, every header
/// field compared: sidecar rewrites censored archives member by member, keeping their headers.
fn tar_listing(n: &normalise::Pod, data: &[u8]) -> Option<String> {
    use std::fmt::Write as _;
    use std::io::Read as _;
    if data.get(257..262) != Some(b"ustar".as_slice()) {
        return None;
    }
    let mut s = String::from("(tar)\n");
    let mut archive = tar::Archive::new(data);
    for entry in archive.entries().ok()? {
        let mut entry = entry.ok()?;
        let h = entry.header().clone();
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let _ = writeln!(
            s,
            "-- {:?} {path} mode {:o} mtime {} uid {} gid {} user {} group {} size {}",
            h.entry_type(),
            h.mode().ok()?,
            h.mtime().ok()?,
            h.uid().ok()?,
            h.gid().ok()?,
            h.username().ok().flatten().unwrap_or("-"),
            h.groupname().ok().flatten().unwrap_or("-"),
            h.size().ok()?,
        );
        if let Ok(Some(target)) = entry.link_name() {
            let _ = writeln!(s, "link {}", target.display());
        }
        let mut body = Vec::new();
        entry.read_to_end(&mut body).ok()?;
        if !body.is_empty() {
            s.push_str(&content(n, &body));
        }
    }
    Some(s)
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn gunzip(b: &[u8]) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b).read_to_end(&mut out).ok()?;
    Some(out)
}
