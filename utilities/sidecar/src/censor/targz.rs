/*!
Censoring gzip'd artifacts as streams, without unpacking them to disk.

Upstream unpacks a `.tar.gz` into a temp dir, censors the files and repacks the tree; an odd
member name (`../x`, `/abs`), a link or a corrupt tail makes it give up and upload the archive
as it is, secrets and all. Here the archive is rewritten member by member:

- A gzip stream holding a tar becomes a new tar.gz with the same members in the same order:
  every header kept as it was (names byte for byte, however odd, links and special entries as
  entries: nothing is ever created, followed or resolved on disk), each member's data censored.
  Censoring keeps lengths, so sizes stay; a member that is itself gzip'd is censored the same
  way (nested up to [`MAX_DEPTH`]) and gets its new size. Names longer than a header holds are
  written as GNU long-name entries; other pax attributes are not carried over.
- A gzip stream that is not a tar (a `.log.gz`) is censored as one stream and recompressed.
- Anything that cannot be read to the end (a corrupt gzip or tar, a zip, nesting too deep) is
  an error: the caller then withholds the file rather than upload what it could not check.
*/

use std::io::{self, BufReader, Read, Write};

use flate2::Compression;
use flate2::write::GzEncoder;

use super::archive::{GzReader, ReadError};
use super::replacer::Censorer;
use super::stream::{StreamError, censor_stream, read_full};

/// How deep gzip'd members inside gzip'd tars are followed.
pub const MAX_DEPTH: usize = 4;

const BLOCK: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum TarGzError {
    #[error("could not read archive: {0}")]
    Read(ReadError),
    #[error("could not read archive: {0}")]
    Io(String),
    #[error("could not censor member {name}: {source}")]
    Member { name: String, source: StreamError },
    #[error("member {name} is {size} bytes but the archive ends after {got}")]
    Short { name: String, size: u64, got: u64 },
    #[error("member {0} is a zip archive, which cannot be censored")]
    Zip(String),
    #[error("archives nested more than {MAX_DEPTH} deep")]
    TooDeep,
    #[error("could not write censored archive: {0}")]
    Write(io::Error),
}

fn read_err(e: io::Error) -> TarGzError {
    match e.get_ref().and_then(|r| r.downcast_ref::<ReadError>()) {
        Some(r) => TarGzError::Read(r.clone()),
        None => TarGzError::Io(pod_utils::wrapper::go_errno_text(&e)),
    }
}

/// Censors the gzip stream `input` (named `name` in errors) into `output`, a new gzip stream.
pub fn censor_gzip(
    input: &mut dyn Read,
    output: &mut dyn Write,
    censorer: &Censorer,
    buf: &mut [u8],
    name: &str,
) -> Result<(), TarGzError> {
    censor_gzip_at(input, output, censorer, buf, name, 0)
}

fn censor_gzip_at(
    input: &mut dyn Read,
    output: &mut dyn Write,
    censorer: &Censorer,
    buf: &mut [u8],
    name: &str,
    depth: usize,
) -> Result<(), TarGzError> {
    if depth > MAX_DEPTH {
        return Err(TarGzError::TooDeep);
    }
    let gz = GzReader::new(BufReader::with_capacity(64 * 1024, input), name.to_string())
        .map_err(TarGzError::Read)?;
    let mut gz = gz;
    let mut head = vec![0u8; BLOCK];
    let got = read_full(&mut gz, &mut head).map_err(read_err)?;
    head.truncate(got);
    let tar = is_tar_header(&head);
    let mut plain = io::Cursor::new(head).chain(gz);
    let mut enc = GzEncoder::new(output, Compression::default());
    if tar {
        rewrite_tar(&mut plain, &mut enc, censorer, buf, depth)?;
    } else {
        censor_stream(&mut plain, &mut enc, censorer, buf, (name, name)).map_err(|source| {
            TarGzError::Member {
                name: name.to_string(),
                source,
            }
        })?;
    }
    enc.finish().map_err(TarGzError::Write)?;
    Ok(())
}

/// Whether `b` starts with a tar header whose checksum is right (what tar readers check).
fn is_tar_header(b: &[u8]) -> bool {
    if b.len() < BLOCK || b[..BLOCK].iter().all(|&x| x == 0) {
        return false;
    }
    let field = &b[148..156];
    let Some(want) = parse_octal(field) else {
        return false;
    };
    let sum: u64 = b[..BLOCK]
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(x)
            }
        })
        .sum();
    sum == want
}

fn parse_octal(f: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(f).ok()?;
    let s = s.trim_matches(|c: char| c == ' ' || c == '\0');
    u64::from_str_radix(s, 8).ok()
}

/// Copies a tar stream from `input` to `out` with every member's data censored.
fn rewrite_tar(
    input: &mut dyn Read,
    out: &mut dyn Write,
    censorer: &Censorer,
    buf: &mut [u8],
    depth: usize,
) -> Result<(), TarGzError> {
    let mut archive = tar::Archive::new(input);
    let entries = archive.entries().map_err(read_err)?;
    for entry in entries {
        let mut entry = entry.map_err(read_err)?;
        let mut header = entry.header().clone();
        let name = entry.path_bytes().into_owned();
        let link = entry.link_name_bytes().map(std::borrow::Cow::into_owned);
        let shown = String::from_utf8_lossy(&name).into_owned();
        let size = entry.size();
        let kind = header.entry_type();
        if kind.is_gnu_sparse() {
            // The reader hands out the expanded data: store it as a plain file.
            header.set_entry_type(tar::EntryType::Regular);
        }
        if size == 0 || kind.is_dir() || kind.is_symlink() || kind.is_hard_link() {
            header.set_size(0);
            write_header(out, &mut header, &name, link.as_deref())?;
            continue;
        }
        let first = peek_entry(&mut entry, buf)?;
        if first.starts_with(b"PK\x03\x04") {
            return Err(TarGzError::Zip(shown));
        }
        if first.starts_with(&[0x1f, 0x8b, 0x08]) {
            // Nested gzip: its censored size is only known afterwards.
            let mut spool = tempfile::tempfile().map_err(TarGzError::Write)?;
            let mut nested = io::Cursor::new(first).chain(&mut entry);
            let mut counted = CountingWriter {
                inner: &mut spool,
                n: 0,
            };
            censor_gzip_at(&mut nested, &mut counted, censorer, buf, &shown, depth + 1)?;
            let n = counted.n;
            header.set_size(n);
            write_header(out, &mut header, &name, link.as_deref())?;
            io::Seek::rewind(&mut spool).map_err(TarGzError::Write)?;
            io::copy(&mut spool, out).map_err(TarGzError::Write)?;
            pad(out, n)?;
            continue;
        }
        header.set_size(size);
        write_header(out, &mut header, &name, link.as_deref())?;
        let mut data = io::Cursor::new(first).chain(&mut entry);
        let mut counted = CountingWriter { inner: out, n: 0 };
        censor_stream(&mut data, &mut counted, censorer, buf, (&shown, &shown)).map_err(
            |source| TarGzError::Member {
                name: shown.clone(),
                source,
            },
        )?;
        let got = counted.n;
        if got != size {
            return Err(TarGzError::Short {
                name: shown,
                size,
                got,
            });
        }
        pad(out, size)?;
    }
    // End of archive: two zero blocks.
    out.write_all(&[0u8; 2 * BLOCK])
        .map_err(TarGzError::Write)?;
    Ok(())
}

/// The first bytes of a member (up to 512), to tell gzip and zip members from the rest.
fn peek_entry(entry: &mut dyn Read, buf: &mut [u8]) -> Result<Vec<u8>, TarGzError> {
    let n = BLOCK.min(buf.len());
    let got = read_full(entry, &mut buf[..n]).map_err(read_err)?;
    Ok(buf[..got].to_vec())
}

/// Writes `header` for `name` (and `link`), with GNU long-name entries first when they do not
/// fit; names are copied as bytes, never interpreted.
fn write_header(
    out: &mut dyn Write,
    header: &mut tar::Header,
    name: &[u8],
    link: Option<&[u8]>,
) -> Result<(), TarGzError> {
    let old_len = header.as_old().name.len();
    if name.len() > old_len {
        long_entry(out, tar::EntryType::GNULongName, name)?;
    }
    if let Some(l) = link {
        if l.len() > header.as_old().linkname.len() {
            long_entry(out, tar::EntryType::GNULongLink, l)?;
        }
    }
    {
        let old = header.as_old_mut();
        old.name = [0; 100];
        let n = name.len().min(old.name.len());
        old.name[..n].copy_from_slice(&name[..n]);
        if let Some(l) = link {
            old.linkname = [0; 100];
            let n = l.len().min(old.linkname.len());
            old.linkname[..n].copy_from_slice(&l[..n]);
        }
    }
    // The whole name is in `name` (or the long entry) now, not split with the ustar prefix.
    if let Some(u) = header.as_ustar_mut() {
        u.prefix = [0; 155];
    }
    header.set_cksum();
    out.write_all(header.as_bytes()).map_err(TarGzError::Write)
}

fn long_entry(out: &mut dyn Write, kind: tar::EntryType, value: &[u8]) -> Result<(), TarGzError> {
    let mut h = tar::Header::new_gnu();
    {
        let old = h.as_old_mut();
        let magic = b"././@LongLink";
        old.name[..magic.len()].copy_from_slice(magic);
    }
    h.set_mode(0o644);
    h.set_entry_type(kind);
    let size = value.len() as u64 + 1;
    h.set_size(size);
    h.set_cksum();
    out.write_all(h.as_bytes()).map_err(TarGzError::Write)?;
    out.write_all(value).map_err(TarGzError::Write)?;
    out.write_all(&[0]).map_err(TarGzError::Write)?;
    pad(out, size)
}

fn pad(out: &mut dyn Write, size: u64) -> Result<(), TarGzError> {
    let rem = (size % BLOCK as u64) as usize;
    if rem != 0 {
        out.write_all(&[0u8; BLOCK][..BLOCK - rem])
            .map_err(TarGzError::Write)?;
    }
    Ok(())
}

struct CountingWriter<'a> {
    inner: &'a mut dyn Write,
    n: u64,
}

impl Write for CountingWriter<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(b)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    /// A tar of (name, data) regular members, names written raw.
    fn tar_of(members: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, data) in members {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(0);
            write_header(&mut out, &mut h, name, None).unwrap();
            // write_header wrote size 0; rewrite with the real size.
            let at = out.len() - BLOCK;
            h.set_size(data.len() as u64);
            h.set_cksum();
            out[at..].copy_from_slice(h.as_bytes());
            out.extend_from_slice(data);
            pad(&mut out, data.len() as u64).unwrap();
        }
        out.extend_from_slice(&[0; 2 * BLOCK]);
        out
    }

    fn run(secrets: &[&str], input: &[u8]) -> Result<Vec<u8>, TarGzError> {
        let c = Censorer::new(secrets, 0).unwrap();
        let mut buf = vec![0; 64];
        let mut out = Vec::new();
        censor_gzip(&mut &input[..], &mut out, &c, &mut buf, "in")?;
        Ok(out)
    }

    fn untar(data: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut a = tar::Archive::new(data);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = e.path_bytes().into_owned();
                let mut d = Vec::new();
                e.read_to_end(&mut d).unwrap();
                (name, d)
            })
            .collect()
    }

    #[test]
    fn long_names_survive_as_gnu_long_names() {
        let long = vec![b'n'; 300];
        let input = gz(&tar_of(&[(&long, b"a secret here"), (b"../x", b"secret")]));
        let out = untar(&gunzip(&run(&["secret"], &input).unwrap()));
        assert_eq!(
            out,
            [
                (long, b"a XXXXXX here".to_vec()),
                (b"../x".to_vec(), b"XXXXXX".to_vec())
            ]
        );
    }

    #[test]
    fn nested_gzip_members_are_censored_and_resized() {
        let inner = gz(&tar_of(&[(b"deep.txt", b"deep secret")]));
        let input = gz(&tar_of(&[
            (b"inner.tar.gz", &inner),
            (b"log.gz", &gz(b"secret log")),
        ]));
        let out = untar(&gunzip(&run(&["secret"], &input).unwrap()));
        assert_eq!(out[0].0, b"inner.tar.gz");
        assert_eq!(
            untar(&gunzip(&out[0].1)),
            [(b"deep.txt".to_vec(), b"deep XXXXXX".to_vec())]
        );
        assert_eq!(gunzip(&out[1].1), b"XXXXXX log");
    }

    #[test]
    fn unreadable_content_is_an_error() {
        let zip = gz(&tar_of(&[(b"a.zip", b"PK\x03\x04secret")]));
        assert_eq!(
            run(&["secret"], &zip).unwrap_err().to_string(),
            "member a.zip is a zip archive, which cannot be censored"
        );
        let whole = gz(&tar_of(&[(b"a.txt", &[b'a'; 2000])]));
        let cut = &whole[..whole.len() / 2];
        assert!(run(&["secret"], cut).is_err());
        let mut deep = tar_of(&[(b"x", b"secret")]);
        for _ in 0..=MAX_DEPTH + 1 {
            deep = tar_of(&[(b"n.gz", &gz(&deep))]);
        }
        assert_eq!(
            run(&["secret"], &gz(&deep)).unwrap_err().to_string(),
            format!("archives nested more than {MAX_DEPTH} deep")
        );
    }

    #[test]
    fn plain_gzip_is_censored_as_one_stream() {
        let out = run(&["secret"], &gz(b"a secret, and another secret")).unwrap();
        assert_eq!(gunzip(&out), b"a XXXXXX, and another XXXXXX");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Whatever the members, names and offsets, no secret survives in any member, and
        /// every member survives with its name and length.
        #[test]
        fn no_secret_survives_in_any_member(
            secret in "[a-z0-9]{6,20}",
            members in prop::collection::vec(
                (prop::collection::vec(any::<u8>().prop_filter("no NUL", |b| *b != 0), 1..220),
                 prop::collection::vec(any::<u8>(), 0..3000),
                 any::<prop::sample::Index>(),
                 any::<bool>()),
                1..6),
        ) {
            let built: Vec<(Vec<u8>, Vec<u8>)> = members
                .into_iter()
                .map(|(name, mut data, at, gzipped)| {
                    let at = at.index(data.len() + 1);
                    data.splice(at..at, secret.bytes());
                    if gzipped { (name, gz(&data)) } else { (name, data) }
                })
                .collect();
            let refs: Vec<(&[u8], &[u8])> =
                built.iter().map(|(n, d)| (n.as_slice(), d.as_slice())).collect();
            let out = untar(&gunzip(&run(&[secret.as_str()], &gz(&tar_of(&refs))).unwrap()));
            prop_assert_eq!(out.len(), built.len());
            for ((name, data), (want_name, orig)) in out.iter().zip(&built) {
                prop_assert_eq!(name, want_name);
                let plain = if orig.starts_with(&[0x1f, 0x8b, 0x08]) { gunzip(data) } else { data.clone() };
                prop_assert!(!plain.windows(secret.len()).any(|w| w == secret.as_bytes()));
            }
        }
    }
}
