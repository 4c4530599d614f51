/*!
The tar.gz layer: Go-worded gzip reading (`GzReader`, used by [`super::targz`], which censors
archives as streams), and upstream's unpack and repack (`unarchive`, `archive`), kept as the
reference the tests build and read archives with; sidecar itself never unpacks an archive.

The gzip layer is read here rather than through flate2's gzip readers so that errors carry Go's
wording (`unexpected EOF`, `gzip: invalid header`, ...), which goes into the withheld reasons.
`unarchive` extracts only regular files and directories (links, devices and FIFOs dropped, unsafe
names refused) and skips a pax global header, as upstream's reader would see it.
*/

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use flate2::{Crc, Decompress, FlushDecompress, Status};

use pod_utils::wrapper::go_errno_text;

use super::walk::{Visit, lossy, parent_dir, walk};
use crate::goerr::{PathError, RenameError};

/// Errors from reading an archive, worded as Go's readers word them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("EOF")]
    Eof,
    #[error("unexpected EOF")]
    UnexpectedEof,
    #[error("gzip: invalid header")]
    GzipHeader,
    #[error("gzip: invalid checksum")]
    GzipChecksum,
    #[error("flate: corrupt input before offset {0}")]
    Flate(u64),
    #[error("archive/tar: invalid tar header")]
    TarHeader,
    #[error("read {path}: {text}")]
    Io { path: String, text: String },
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("could not open archive for unpacking: {0}")]
    Open(PathError),
    #[error("could not read archive: {0}")]
    Read(ReadError),
    #[error("tar contained invalid name error {}", go_quote(.0))]
    InvalidName(Vec<u8>),
    #[error("could not create directory while unpacking archive: {0}")]
    Mkdir(PathError),
    /// Creating an extracted file failed; upstream returns this error unwrapped.
    #[error("{0}")]
    Create(PathError),
    #[error("error writing to {path}: {source}")]
    Write { path: String, source: WriteError },
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{0}")]
    Read(ReadError),
    #[error("{0}")]
    Write(PathError),
}

#[derive(Debug, thiserror::Error)]
pub enum RepackError {
    #[error("failed to create temporary file for archive: {0}")]
    TempFile(PathError),
    #[error("could not walk source files to archive them: {0}")]
    Walk(WalkError),
    #[error("could not finish archive: {0}")]
    Finish(PathError),
    #[error("could not overwrite archive: {0}")]
    Rename(RenameError),
}

#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("{0}")]
    Io(PathError),
    #[error("could not write tar header: {0}")]
    Header(PathError),
    #[error("could not open source file: {0}")]
    Open(PathError),
    #[error("could not tar file: {0}")]
    Copy(PathError),
    #[error("only wrote {wrote} bytes from {path}; expected {want}")]
    Short { wrote: u64, path: String, want: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("could not create temporary dir for unpacking: {0}")]
    TempDir(PathError),
    #[error("could not unpack archive: {0}")]
    Unpack(UnpackError),
    #[error("could not walk unpacked archive to censor them: {0}")]
    Walk(PathError),
    #[error("could not re-pack archive: {0}")]
    Repack(RepackError),
    #[error(transparent)]
    Stream(#[from] super::targz::TarGzError),
    #[error("zip archives cannot be censored")]
    Zip,
}

/// Where a censored file ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placed {
    /// It replaced the original.
    InPlace,
    /// The original's directory was not writable: a copy from the [`Aside`](super::Aside) is to be uploaded
    /// in its place.
    Aside(PathBuf),
}

/// Whether upstream would accept an entry name.
fn valid_rel_path(name: &[u8]) -> bool {
    !(name.is_empty()
        || name.contains(&b'\\')
        || name.starts_with(b"/")
        || name.windows(3).any(|w| w == b"../"))
}

enum EntryKind {
    Dir,
    File,
    Skip,
}

fn entry_kind(typeflag: u8, mode: u32, name: &[u8]) -> EntryKind {
    const TYPE_BITS: u32 = 0o170000;
    match (typeflag, mode & TYPE_BITS) {
        (b'5', _) | (_, 0o040000) => EntryKind::Dir,
        (b'\0', _) if name.ends_with(b"/") => EntryKind::Dir,
        // Links, devices, FIFOs, sockets (by type or by mode bits) and global pax headers.
        (b'1' | b'2' | b'3' | b'4' | b'6' | b'g', _) => EntryKind::Skip,
        (_, 0o120000 | 0o060000 | 0o020000 | 0o010000 | 0o140000) => EntryKind::Skip,
        _ => EntryKind::File,
    }
}

/// Unpacks the tar.gz at `archive_path` into `dest` (upstream `unarchive`).
pub fn unarchive(archive_path: &Path, dest: &Path) -> Result<(), UnpackError> {
    let name = lossy(archive_path);
    let file = File::open(archive_path)
        .map_err(|e| UnpackError::Open(PathError::new("open", &name, e)))?;
    let gz = GzReader::new(BufReader::with_capacity(64 * 1024, file), name)
        .map_err(UnpackError::Read)?;
    let mut tar = tar::Archive::new(gz);
    let entries = tar
        .entries()
        .map_err(|e| UnpackError::Read(read_error(e)))?;
    let mut chunk = vec![0u8; 64 * 1024];
    for entry in entries {
        let mut entry = entry.map_err(|e| UnpackError::Read(read_error(e)))?;
        let name = entry.path_bytes().into_owned();
        if !valid_rel_path(&name) {
            return Err(UnpackError::InvalidName(name));
        }
        let header = entry.header();
        let mode = header
            .mode()
            .map_err(|_| UnpackError::Read(ReadError::TarHeader))?;
        let typeflag = header.entry_type().as_byte();
        let abs = join_clean(dest, &name);
        match entry_kind(typeflag, mode, &name) {
            EntryKind::Skip => {}
            EntryKind::Dir => DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&abs)
                .map_err(|e| UnpackError::Mkdir(PathError::new("mkdir", lossy(&abs), e)))?,
            EntryKind::File => {
                let size = entry.size();
                let abs_name = lossy(&abs);
                let mut out = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(mode & 0o777)
                    .open(&abs)
                    .map_err(|e| UnpackError::Create(PathError::new("open", &abs_name, e)))?;
                let write_err = |source| UnpackError::Write {
                    path: abs_name.clone(),
                    source,
                };
                let mut wrote = 0u64;
                loop {
                    let n = match entry.read(&mut chunk) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(write_err(WriteError::Read(read_error(e)))),
                    };
                    out.write_all(&chunk[..n]).map_err(|e| {
                        write_err(WriteError::Write(PathError::new("write", &abs_name, e)))
                    })?;
                    wrote += n as u64;
                }
                // The tar reader stops short only when the stream ends early.
                if wrote < size {
                    return Err(write_err(WriteError::Read(ReadError::UnexpectedEof)));
                }
            }
        }
    }
    Ok(())
}

/// `filepath.Join(dest, name)`: `.` and empty segments dropped and `..` applied lexically.
fn join_clean(dest: &Path, name: &[u8]) -> PathBuf {
    let mut parts: Vec<&[u8]> = Vec::new();
    for seg in name.split(|b| *b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." if parts.last().is_some_and(|p| *p != b"..") => {
                parts.pop();
            }
            seg => parts.push(seg),
        }
    }
    let mut out = dest.to_path_buf();
    for p in parts {
        out.push(OsStr::from_bytes(p));
    }
    out
}

/// Maps an error out of the tar reader to Go's wording.
fn read_error(e: io::Error) -> ReadError {
    if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<ReadError>()) {
        return inner.clone();
    }
    if e.kind() == io::ErrorKind::UnexpectedEof || e.to_string() == "failed to read entire block" {
        return ReadError::UnexpectedEof;
    }
    ReadError::TarHeader
}

/// Packs `src_dir` into a tar.gz at `dest` through a temp file beside it (upstream `archive`).
pub fn archive(src_dir: &Path, dest: &Path) -> Result<(), RepackError> {
    let dir = parent_dir(dest);
    let temp = super::aside::temp_file_in(&dir, "tmp-archive").map_err(|e| {
        RepackError::TempFile(PathError::new("open", lossy(&dir.join("tmp-archive*")), e))
    })?;
    let temp_name = lossy(temp.path());
    pack(src_dir, temp.as_file(), &temp_name)?;
    temp.persist(dest).map_err(|e| {
        RepackError::Rename(RenameError {
            from: temp_name.clone(),
            to: lossy(dest),
            source: e.error,
        })
    })?;
    Ok(())
}

/// Writes the tar.gz of `src_dir` into `out` (named `temp_name` in errors).
fn pack(src_dir: &Path, out: &File, temp_name: &str) -> Result<(), RepackError> {
    let temp_name = temp_name.to_string();
    let gz = flate2::write::GzEncoder::new(
        io::BufWriter::with_capacity(64 * 1024, out),
        flate2::Compression::default(),
    );
    let mut builder = tar::Builder::new(gz);
    builder.mode(tar::HeaderMode::Complete);
    let mut names = Names::default();
    walk(src_dir, &mut |node| {
        let meta = node.meta.map_err(WalkError::Io)?;
        let rel = Path::new(OsStr::from_bytes(node.rel));
        let header_err = |e| WalkError::Header(PathError::new("write", &temp_name, e));
        let mut header = tar::Header::new_gnu();
        header.set_mode(meta.mode() & 0o7777);
        header.set_uid(u64::from(meta.uid()));
        header.set_gid(u64::from(meta.gid()));
        // Go rounds modification times to the second.
        let secs = meta.mtime() + i64::from(meta.mtime_nsec() >= 500_000_000);
        header.set_mtime(u64::try_from(secs).unwrap_or(0));
        // Names longer than the field are left out, as Go's user lookup would not fit them.
        let _ = header.set_username(names.user(meta.uid()));
        let _ = header.set_groupname(names.group(meta.gid()));
        let ft = meta.file_type();
        if ft.is_symlink() {
            let target = fs::read_link(node.path)
                .map_err(|e| WalkError::Io(PathError::new("readlink", lossy(node.path), e)))?;
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            builder
                .append_link(&mut header, rel, &target)
                .map_err(header_err)?;
        } else if ft.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            builder
                .append_data(&mut header, rel, io::empty())
                .map_err(header_err)?;
        } else if ft.is_file() {
            let want = meta.len();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(want);
            let file = File::open(node.path)
                .map_err(|e| WalkError::Open(PathError::new("open", lossy(node.path), e)))?;
            let mut counted = Counted {
                inner: file.take(want),
                n: 0,
            };
            builder
                .append_data(&mut header, rel, &mut counted)
                .map_err(|e| WalkError::Copy(PathError::new("write", &temp_name, e)))?;
            if counted.n != want {
                return Err(WalkError::Short {
                    wrote: counted.n,
                    path: lossy(node.path),
                    want,
                });
            }
        }
        Ok(Visit::Continue)
    })
    .map_err(RepackError::Walk)?;
    let finish = |e| RepackError::Finish(PathError::new("write", &temp_name, e));
    let gz = builder.into_inner().map_err(finish)?;
    let mut out = gz.finish().map_err(finish)?;
    out.flush().map_err(finish)?;
    Ok(())
}

/// Counts what a reader hands out, to check a file did not shrink while being archived.
struct Counted<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(b)?;
        self.n += n as u64;
        Ok(n)
    }
}

/// User and group names for tar headers, from /etc/passwd and /etc/group as Go's pure user
/// lookup reads them; unknown ids get no name.
#[derive(Default)]
struct Names {
    users: Option<HashMap<u32, String>>,
    groups: Option<HashMap<u32, String>>,
}

impl Names {
    fn user(&mut self, uid: u32) -> &str {
        self.users
            .get_or_insert_with(|| id_names("/etc/passwd"))
            .get(&uid)
            .map_or("", String::as_str)
    }

    fn group(&mut self, gid: u32) -> &str {
        self.groups
            .get_or_insert_with(|| id_names("/etc/group"))
            .get(&gid)
            .map_or("", String::as_str)
    }
}

fn id_names(file: &str) -> HashMap<u32, String> {
    let mut map = HashMap::new();
    let Ok(text) = fs::read_to_string(file) else {
        return map;
    };
    for line in text.lines() {
        let mut fields = line.split(':');
        let (Some(name), Some(_), Some(id)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        if let Ok(id) = id.parse::<u32>() {
            map.entry(id).or_insert_with(|| name.to_string());
        }
    }
    map
}

/// Go's `strconv.Quote` for the names in error texts.
fn go_quote(b: &[u8]) -> String {
    let mut out = String::from("\"");
    let mut rest = b;
    while !rest.is_empty() {
        let (valid, bad) = match std::str::from_utf8(rest) {
            Ok(s) => (s, None),
            Err(e) => (
                std::str::from_utf8(&rest[..e.valid_up_to()]).unwrap_or_default(),
                Some(rest[e.valid_up_to()]),
            ),
        };
        for c in valid.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\x07' => out.push_str("\\a"),
                '\x08' => out.push_str("\\b"),
                '\x0c' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\x0b' => out.push_str("\\v"),
                c if (c as u32) < 0x20 || c == '\x7f' => {
                    out.push_str(&format!("\\x{:02x}", c as u32));
                }
                c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        rest = &rest[valid.len()..];
        if let Some(byte) = bad {
            out.push_str(&format!("\\x{byte:02x}"));
            rest = &rest[1..];
        }
    }
    out.push('"');
    out
}

const GZIP_ID1: u8 = 0x1f;
const GZIP_ID2: u8 = 0x8b;
const GZIP_DEFLATE: u8 = 8;
const FLAG_HDR_CRC: u8 = 1 << 1;
const FLAG_EXTRA: u8 = 1 << 2;
const FLAG_NAME: u8 = 1 << 3;
const FLAG_COMMENT: u8 = 1 << 4;

/// A multi-member gzip reader that checks what Go's `compress/gzip` checks and fails with its
/// errors.
pub(super) struct GzReader<R> {
    inner: R,
    name: String,
    inflate: Decompress,
    crc: Crc,
    done: bool,
    err: Option<ReadError>,
}

impl<R: BufRead> GzReader<R> {
    pub(super) fn new(inner: R, name: String) -> Result<Self, ReadError> {
        let mut r = GzReader {
            inner,
            name,
            inflate: Decompress::new(false),
            crc: Crc::new(),
            done: false,
            err: None,
        };
        if !r.read_header()? {
            return Err(ReadError::Eof);
        }
        Ok(r)
    }

    fn io_err(&self, e: io::Error) -> ReadError {
        ReadError::Io {
            path: self.name.clone(),
            text: go_errno_text(&e),
        }
    }

    /// Fills `buf` completely: Ok(false) if the input ended before the first byte, an
    /// unexpected EOF if it ended later.
    fn read_full(&mut self, buf: &mut [u8]) -> Result<bool, ReadError> {
        let mut done = 0;
        while done < buf.len() {
            let avail = match self.inner.fill_buf() {
                Ok(a) => a,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.io_err(e)),
            };
            if avail.is_empty() {
                return if done == 0 {
                    Ok(false)
                } else {
                    Err(ReadError::UnexpectedEof)
                };
            }
            let n = avail.len().min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&avail[..n]);
            self.inner.consume(n);
            done += n;
        }
        Ok(true)
    }

    /// Header fields after the fixed part must be there: their end is an unexpected EOF.
    fn read_more(&mut self, buf: &mut [u8]) -> Result<(), ReadError> {
        if self.read_full(buf)? {
            Ok(())
        } else {
            Err(ReadError::UnexpectedEof)
        }
    }

    /// Reads one member header; Ok(false) at a clean end of input.
    fn read_header(&mut self) -> Result<bool, ReadError> {
        let mut fixed = [0u8; 10];
        if !self.read_full(&mut fixed)? {
            return Ok(false);
        }
        if fixed[0] != GZIP_ID1 || fixed[1] != GZIP_ID2 || fixed[2] != GZIP_DEFLATE {
            return Err(ReadError::GzipHeader);
        }
        let flags = fixed[3];
        let mut digest = Crc::new();
        digest.update(&fixed);
        if flags & FLAG_EXTRA != 0 {
            let mut len = [0u8; 2];
            self.read_more(&mut len)?;
            digest.update(&len);
            let mut extra = vec![0u8; usize::from(u16::from_le_bytes(len))];
            self.read_more(&mut extra)?;
            digest.update(&extra);
        }
        for flag in [FLAG_NAME, FLAG_COMMENT] {
            if flags & flag != 0 {
                // Zero-terminated, at most 512 bytes with the terminator.
                let mut s = Vec::new();
                loop {
                    if s.len() >= 512 {
                        return Err(ReadError::GzipHeader);
                    }
                    let mut b = [0u8; 1];
                    self.read_more(&mut b)?;
                    s.push(b[0]);
                    if b[0] == 0 {
                        break;
                    }
                }
                digest.update(&s);
            }
        }
        if flags & FLAG_HDR_CRC != 0 {
            let mut sum = [0u8; 2];
            self.read_more(&mut sum)?;
            if u16::from_le_bytes(sum) != (digest.sum() & 0xffff) as u16 {
                return Err(ReadError::GzipHeader);
            }
        }
        self.inflate.reset(false);
        self.crc.reset();
        Ok(true)
    }

    fn read_member(&mut self, out: &mut [u8]) -> Result<usize, ReadError> {
        loop {
            let (status, consumed, produced) = {
                let input = match self.inner.fill_buf() {
                    Ok(i) => i,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(self.io_err(e)),
                };
                let eof = input.is_empty();
                let (in0, out0) = (self.inflate.total_in(), self.inflate.total_out());
                let status = self
                    .inflate
                    .decompress(input, out, FlushDecompress::None)
                    .map_err(|_| ReadError::Flate(self.inflate.total_in()))?;
                let consumed = (self.inflate.total_in() - in0) as usize;
                let produced = (self.inflate.total_out() - out0) as usize;
                if eof && produced == 0 && status != Status::StreamEnd {
                    return Err(ReadError::UnexpectedEof);
                }
                (status, consumed, produced)
            };
            self.inner.consume(consumed);
            self.crc.update(&out[..produced]);
            if status == Status::StreamEnd {
                let mut trailer = [0u8; 8];
                if !self.read_full(&mut trailer)? {
                    return Err(ReadError::UnexpectedEof);
                }
                let crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
                let size = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
                if crc != self.crc.sum() || size != self.crc.amount() {
                    return Err(ReadError::GzipChecksum);
                }
                if !self.read_header()? {
                    self.done = true;
                }
            }
            if produced > 0 || self.done {
                return Ok(produced);
            }
        }
    }
}

impl<R: BufRead> Read for GzReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = &self.err {
            return Err(io::Error::other(e.clone()));
        }
        if self.done || out.is_empty() {
            return Ok(0);
        }
        self.read_member(out).map_err(|e| {
            self.err = Some(e.clone());
            io::Error::other(e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, ReadError> {
        let mut r = GzReader::new(bytes, "x".into())?;
        let mut out = Vec::new();
        r.read_to_end(&mut out).map_err(read_error)?;
        Ok(out)
    }

    #[test]
    fn gzip_round_trip_and_multistream() {
        assert_eq!(gunzip(&gz(b"hello")).unwrap(), b"hello");
        let mut two = gz(b"one ");
        two.extend(gz(b"two"));
        assert_eq!(gunzip(&two).unwrap(), b"one two");
    }

    #[test]
    fn gzip_errors_use_go_wording() {
        let good = gz(&[7u8; 4096]);
        assert_eq!(gunzip(b""), Err(ReadError::Eof));
        assert_eq!(gunzip(&good[..5]), Err(ReadError::UnexpectedEof));
        assert_eq!(
            gunzip(b"PK\x03\x04aaaaaaaaaaaa"),
            Err(ReadError::GzipHeader)
        );
        assert_eq!(
            gunzip(&good[..good.len() - 4]),
            Err(ReadError::UnexpectedEof)
        );
        let mut bad_crc = good.clone();
        let n = bad_crc.len();
        bad_crc[n - 8] ^= 1;
        assert_eq!(gunzip(&bad_crc), Err(ReadError::GzipChecksum));
        // Header CRC flag set on a header without one: the "CRC" read is wrong.
        let mut hcrc = good.clone();
        hcrc[3] = FLAG_HDR_CRC;
        assert_eq!(gunzip(&hcrc), Err(ReadError::GzipHeader));
        let mut trailing = good.clone();
        trailing.extend_from_slice(b"garbage!!!!!");
        assert_eq!(gunzip(&trailing), Err(ReadError::GzipHeader));
    }

    #[test]
    fn entry_names_are_validated_like_upstream() {
        for bad in [&b""[..], b"/abs", b"a\\b", b"../up", b"a/../../b"] {
            assert!(!valid_rel_path(bad), "{bad:?}");
        }
        for ok in [&b"a"[..], b"a/b/", b"..", b"a/..", b"...x"] {
            assert!(valid_rel_path(ok), "{ok:?}");
        }
        assert_eq!(go_quote(b"a\"b\\c\n\xff"), r#""a\"b\\c\n\xff""#);
    }

    #[test]
    fn entry_kinds() {
        assert!(matches!(entry_kind(b'0', 0o644, b"f"), EntryKind::File));
        assert!(matches!(entry_kind(b'\0', 0o644, b"f"), EntryKind::File));
        assert!(matches!(entry_kind(b'\0', 0o755, b"d/"), EntryKind::Dir));
        assert!(matches!(entry_kind(b'5', 0o755, b"d"), EntryKind::Dir));
        assert!(matches!(entry_kind(b'0', 0o040755, b"d"), EntryKind::Dir));
        for t in [b'1', b'2', b'3', b'4', b'6', b'g'] {
            assert!(matches!(entry_kind(t, 0o644, b"x"), EntryKind::Skip));
        }
    }
}
