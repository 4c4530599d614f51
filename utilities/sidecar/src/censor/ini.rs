/*!
The values of an INI file as `gopkg.in/ini.v1` v1.67 reads them with `ini.Load` (its default
options plus `AllowShadows`), which is what upstream uses for `ini_filenames`. Only values are
needed, but which bytes form a value decides what gets censored, so the parser follows ini.v1
rather than a general INI crate: `#` and `;` start a comment anywhere in an unquoted value,
backtick and triple-quote values may span lines, a trailing backslash continues a value, a value
wrapped in one pair of `'` or `"` loses them, a repeated key keeps its first value, and a line
without `=` or `:` is an error.
*/

use super::replacer::trim_space;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IniError {
    #[error("unclosed section: {0}")]
    UnclosedSection(String),
    #[error("empty section name")]
    EmptySectionName,
    #[error("key-value delimiter not found: {0}")]
    DelimiterNotFound(String),
    #[error("empty key name: {0}")]
    EmptyKeyName(String),
    #[error("missing closing key quote: {0}")]
    MissingKeyQuote(String),
    #[error("error creating new key: empty key name")]
    EmptyKey,
    #[error("missing closing key quote from {0:?} to {1:?}")]
    MissingValueQuote(String, String),
}

struct Section {
    name: Vec<u8>,
    keys: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Every value, in the order upstream collects them: for each section in order of first
/// appearance (DEFAULT first), the values of its child sections (`name.`-prefixed, recursively)
/// and then its own.
pub(crate) fn values(content: &[u8]) -> Result<Vec<Vec<u8>>, IniError> {
    let sections = parse(content)?;
    let mut out = Vec::new();
    for s in &sections {
        collect(&sections, s, &mut out);
    }
    Ok(out)
}

fn collect(all: &[Section], s: &Section, out: &mut Vec<Vec<u8>>) {
    let mut prefix = s.name.clone();
    prefix.push(b'.');
    for child in all.iter().filter(|c| c.name.starts_with(&prefix)) {
        collect(all, child, out);
    }
    out.extend(s.keys.iter().map(|(_, v)| v.clone()));
}

struct Lines<'a> {
    rest: &'a [u8],
    eof: bool,
}

impl<'a> Lines<'a> {
    /// The next line with its `\n`; at the end, whatever is left (maybe nothing) and `eof` set.
    fn next(&mut self) -> &'a [u8] {
        match self.rest.iter().position(|b| *b == b'\n') {
            Some(i) => {
                let (line, rest) = self.rest.split_at(i + 1);
                self.rest = rest;
                line
            }
            None => {
                self.eof = true;
                std::mem::take(&mut self.rest)
            }
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn trim_left(b: &[u8]) -> &[u8] {
    let t = trim_space(b);
    if t.is_empty() {
        return t;
    }
    // trim_space trims both ends; keep the right end as it was.
    let start = t.as_ptr() as usize - b.as_ptr() as usize;
    &b[start..]
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

fn find_any(hay: &[u8], set: &[u8]) -> Option<usize> {
    hay.iter().position(|b| set.contains(b))
}

fn parse(content: &[u8]) -> Result<Vec<Section>, IniError> {
    let content = if content.starts_with(&[0xFE, 0xFF]) || content.starts_with(&[0xFF, 0xFE]) {
        &content[2..]
    } else if content.starts_with(&[0xEF, 0xBB, 0xBF]) {
        &content[3..]
    } else {
        content
    };
    let mut sections = vec![Section {
        name: b"DEFAULT".to_vec(),
        keys: Vec::new(),
    }];
    let mut current = 0;
    let mut auto = 1;
    let mut lines = Lines {
        rest: content,
        eof: false,
    };
    while !lines.eof {
        let line = trim_left(lines.next());
        if line.is_empty() || line[0] == b'#' || line[0] == b';' {
            continue;
        }
        if line[0] == b'[' {
            let close = line
                .iter()
                .rposition(|b| *b == b']')
                .ok_or_else(|| IniError::UnclosedSection(text(line)))?;
            let name = &line[1..close];
            if name.is_empty() {
                return Err(IniError::EmptySectionName);
            }
            current = match sections.iter().position(|s| s.name == name) {
                Some(i) => i,
                None => {
                    sections.push(Section {
                        name: name.to_vec(),
                        keys: Vec::new(),
                    });
                    sections.len() - 1
                }
            };
            auto = 1;
            continue;
        }
        let (mut key, offset) = key_name(line)?;
        if key == b"-" {
            key = format!("#{auto}").into_bytes();
            auto += 1;
        }
        let value = read_value(&line[offset..], &mut lines)?;
        if key.is_empty() {
            return Err(IniError::EmptyKey);
        }
        let keys = &mut sections[current].keys;
        // With shadows allowed a repeated key keeps its first value as its value.
        if !keys.iter().any(|(k, _)| *k == key) {
            keys.push((key, value));
        }
    }
    Ok(sections)
}

fn key_name(line: &[u8]) -> Result<(Vec<u8>, usize), IniError> {
    const DELIMS: &[u8] = b"=:";
    let quote: &[u8] = if line[0] == b'"' {
        if line.len() > 6 && line.starts_with(b"\"\"\"") {
            b"\"\"\""
        } else {
            b"\""
        }
    } else if line[0] == b'`' {
        b"`"
    } else {
        b""
    };
    if !quote.is_empty() {
        let start = quote.len();
        let pos = find(&line[start..], quote)
            .ok_or_else(|| IniError::MissingKeyQuote(text(line)))?
            + start;
        let i = line
            .get(pos + start..)
            .and_then(|rest| find_any(rest, DELIMS))
            .ok_or_else(|| IniError::DelimiterNotFound(text(line)))?;
        let end = pos + i;
        return Ok((trim_space(&line[start..pos]).to_vec(), end + start + 1));
    }
    match find_any(line, DELIMS) {
        None => Err(IniError::DelimiterNotFound(text(line))),
        Some(0) => Err(IniError::EmptyKeyName(text(line))),
        Some(end) => Ok((trim_space(&line[..end]).to_vec(), end + 1)),
    }
}

fn read_value(input: &[u8], lines: &mut Lines<'_>) -> Result<Vec<u8>, IniError> {
    let line = trim_left(input);
    if line.is_empty() {
        return Ok(Vec::new());
    }
    let quote: &[u8] = if line.len() > 3 && line.starts_with(b"\"\"\"") {
        b"\"\"\""
    } else if line[0] == b'`' {
        b"`"
    } else {
        b""
    };
    if !quote.is_empty() {
        let start = quote.len();
        return match rfind(&line[start..], quote) {
            Some(pos) => Ok(line[start..start + pos].to_vec()),
            None => read_multilines(line, &line[start..], quote, lines),
        };
    }
    let mut line = trim_space(line);
    if line.last() == Some(&b'\\') {
        return Ok(read_continuation(&line[..line.len() - 1], lines));
    }
    if let Some(i) = find_any(line, b"#;") {
        line = trim_space(&line[..i]);
    }
    if surrounded(line, b'\'') || surrounded(line, b'"') {
        line = &line[1..line.len() - 1];
    }
    Ok(line.to_vec())
}

fn surrounded(v: &[u8], q: u8) -> bool {
    v.len() >= 2
        && v[0] == q
        && v[v.len() - 1] == q
        && v[1..].iter().position(|b| *b == q) == Some(v.len() - 2)
}

fn read_multilines(
    first: &[u8],
    start: &[u8],
    quote: &[u8],
    lines: &mut Lines<'_>,
) -> Result<Vec<u8>, IniError> {
    let mut val = start.to_vec();
    loop {
        let next = lines.next();
        if let Some(pos) = rfind(next, quote) {
            val.extend_from_slice(&next[..pos]);
            return Ok(val);
        }
        val.extend_from_slice(next);
        if lines.eof {
            return Err(IniError::MissingValueQuote(text(first), text(next)));
        }
    }
}

fn read_continuation(start: &[u8], lines: &mut Lines<'_>) -> Vec<u8> {
    let mut val = start.to_vec();
    loop {
        let next = trim_space(lines.next());
        if next.is_empty() {
            return val;
        }
        val.extend_from_slice(next);
        if val.last() != Some(&b'\\') {
            return val;
        }
        val.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(s: &str) -> Vec<String> {
        values(s.as_bytes())
            .unwrap()
            .into_iter()
            .map(|v| String::from_utf8(v).unwrap())
            .collect()
    }

    #[test]
    fn aws_credentials() {
        let got = vals(
            "[default]\naws_access_key_id = aws_access_key_id_value\naws_secret_access_key=aws_secret_access_key_value\n",
        );
        assert_eq!(
            got,
            ["aws_access_key_id_value", "aws_secret_access_key_value"]
        );
    }

    #[test]
    fn default_section_children_and_order() {
        let got = vals("top = 0\n[a]\nk = 1\n[b]\nk = 2\n[a.c]\nk = 3\n[a]\nj = 4\n");
        // DEFAULT, then a (child a.c first, then its own k and j), b, then a.c again.
        assert_eq!(got, ["0", "3", "1", "4", "2", "3"]);
    }

    #[test]
    fn values_like_ini_v1() {
        let got = vals(concat!(
            "; comment\n",
            "# comment\n",
            "a = x # trailing\n",
            "b = 'quoted'\n",
            "c = \"dq\"\n",
            "d = `raw # kept`\n",
            "e = \"\"\"multi\nline\"\"\"\n",
            "f = one \\\n  two\n",
            "g: colon\n",
            "a = shadowed\n",
            "h =\n",
            "\"quoted key\" = qk\n",
            "i = p;w\n",
            "j = \"in\"side\"\n",
        ));
        assert_eq!(
            got,
            [
                "x",
                "quoted",
                "dq",
                "raw # kept",
                "multi\nline",
                "one two",
                "colon",
                "",
                "qk",
                "p",
                "\"in\"side\""
            ]
        );
    }

    #[test]
    fn errors_like_ini_v1() {
        assert_eq!(
            values(b"novalue\n").unwrap_err().to_string(),
            "key-value delimiter not found: novalue\n"
        );
        assert_eq!(
            values(b"[open\n").unwrap_err().to_string(),
            "unclosed section: [open\n"
        );
        assert_eq!(values(b"[]\n").unwrap_err(), IniError::EmptySectionName);
        assert!(matches!(values(b"= x"), Err(IniError::EmptyKeyName(_))));
        assert!(matches!(
            values(b"k = `never closed\nmore"),
            Err(IniError::MissingValueQuote(..))
        ));
    }

    #[test]
    fn bom_and_crlf() {
        assert_eq!(vals("\u{feff}[s]\r\nk = v\r\n"), ["v"]);
    }
}
