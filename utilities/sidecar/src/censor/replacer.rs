/*!
The censorer: which byte strings are secret and how they are masked (upstream
`secretutil.ReloadingCensorer` over `go4.org/bytereplacer`).

Each loaded secret contributes its whitespace-trimmed form and standard base64 of both the raw and
trimmed forms; each occurrence is overwritten in place by as many `X` bytes, so sizes never
change. Matching follows Go's generic replacer: scan left to right, at each position the pattern
added first among those matching there wins (not the longest), resume after it. Aho-Corasick's
leftmost-first mode reports exactly that match (earliest start, then earliest pattern); when every
pattern is at least 4 bytes long a skipping search (`skip`) reports the same match several times
faster. Property tests check both against a direct transcription of Go's algorithm.
*/

use aho_corasick::{AhoCorasick, AhoCorasickKind, Input, MatchKind};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::skip::Skip;

/// Masks secrets in buffers; cheap to share between threads.
#[derive(Debug, Clone)]
pub struct Censorer {
    matcher: Option<Matcher>,
    largest: usize,
}

/// Two searches with the same answers: skipping is much faster when every pattern is at least
/// 4 bytes long; the automaton handles any set.
#[derive(Debug, Clone)]
enum Matcher {
    Skip(Skip),
    Automaton(AhoCorasick),
}

impl Matcher {
    fn find(&self, hay: &[u8], at: usize, stop: usize) -> Option<(usize, usize)> {
        match self {
            Matcher::Skip(s) => s.find(hay, at, stop),
            Matcher::Automaton(ac) => ac
                .find(Input::new(hay).span(at..stop))
                .map(|m| (m.start(), m.end())),
        }
    }
}

/// The automaton could not be built (it would exceed aho-corasick's size limits).
#[derive(Debug, Clone, thiserror::Error)]
#[error("could not build the secret matcher: {0}")]
pub struct BuildError(#[from] aho_corasick::BuildError);

impl Censorer {
    /// Builds the patterns from secrets in load order. Secrets that are empty or only whitespace,
    /// `true`/`false` in any case, or whose trimmed form is shorter than `min_len` bytes are
    /// skipped; the base64 forms of an accepted secret are always added.
    pub fn new<S: AsRef<[u8]>>(secrets: &[S], min_len: usize) -> Result<Censorer, BuildError> {
        let patterns = patterns(secrets, min_len);
        let largest = patterns.iter().map(Vec::len).max().unwrap_or(0);
        if patterns.is_empty() {
            return Ok(Censorer {
                matcher: None,
                largest,
            });
        }
        if let Some(skip) = Skip::new(&patterns) {
            return Ok(Censorer {
                matcher: Some(Matcher::Skip(skip)),
                largest,
            });
        }
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostFirst)
            // A full DFA is the fastest search; it falls back to an NFA by itself when the
            // patterns would make it too large.
            .kind(Some(AhoCorasickKind::DFA))
            .build(&patterns)
            .or_else(|_| {
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostFirst)
                    .build(&patterns)
            })?;
        Ok(Censorer {
            matcher: Some(Matcher::Automaton(matcher)),
            largest,
        })
    }

    /// Length of the longest pattern (base64 forms included); the stream buffer must hold two.
    pub fn largest_secret(&self) -> usize {
        self.largest
    }

    /// Whether there is anything to censor at all.
    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    /// Overwrites every match in `buf` with `X`, in place.
    pub fn censor(&self, buf: &mut [u8]) {
        let len = buf.len();
        self.censor_ranges(buf, &[(0, len)], |_, _| {});
    }

    /// Censors `buf` as [`Censorer::censor`] would, given that a match can only start inside
    /// `ranges` (sorted, disjoint). Matches may run past the end of their range. `on_match` sees
    /// each replaced span.
    pub(crate) fn censor_ranges(
        &self,
        buf: &mut [u8],
        ranges: &[(usize, usize)],
        mut on_match: impl FnMut(usize, usize),
    ) {
        let Some(matcher) = &self.matcher else {
            return;
        };
        let len = buf.len();
        let mut at = 0;
        for &(start, end) in ranges {
            at = at.max(start);
            // A match starting before `end` ends before `end + largest`.
            let stop = end.saturating_add(self.largest).min(len);
            while at < end.min(len) {
                let Some((s, e)) = matcher.find(buf, at, stop) else {
                    break;
                };
                // Past `end` the span may cut a longer, higher-priority pattern short; a match
                // there belongs to a later range, which searches with its own full lookahead.
                if s >= end {
                    break;
                }
                buf[s..e].fill(b'X');
                on_match(s, e);
                at = e;
            }
        }
    }
}

/// The replacement patterns in priority order (upstream's `Refresh`).
pub(crate) fn patterns<S: AsRef<[u8]>>(secrets: &[S], min_len: usize) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for s in secrets {
        let raw = s.as_ref();
        let trimmed = trim_space(raw);
        if trimmed.is_empty() || go_equal_fold(trimmed, "true") || go_equal_fold(trimmed, "false") {
            continue;
        }
        if trimmed.len() < min_len {
            continue;
        }
        out.push(trimmed.to_vec());
        out.push(STANDARD.encode(raw).into_bytes());
        if trimmed.len() != raw.len() {
            out.push(STANDARD.encode(trimmed).into_bytes());
        }
    }
    out
}

/// Go's `strings.TrimSpace` on bytes: Unicode white space at both ends; invalid UTF-8 is not
/// space.
pub(crate) fn trim_space(b: &[u8]) -> &[u8] {
    let mut start = 0;
    while let Some((c, len)) = decode_first(&b[start..]) {
        if !c.is_whitespace() {
            break;
        }
        start += len;
    }
    let mut end = b.len();
    while end > start {
        match decode_last(&b[start..end]) {
            Some((c, len)) if c.is_whitespace() => end -= len,
            _ => break,
        }
    }
    &b[start..end]
}

fn decode_first(b: &[u8]) -> Option<(char, usize)> {
    let head = &b[..b.len().min(4)];
    let valid = match std::str::from_utf8(head) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&head[..e.valid_up_to()]).ok()?,
    };
    valid.chars().next().map(|c| (c, c.len_utf8()))
}

fn decode_last(b: &[u8]) -> Option<(char, usize)> {
    // A UTF-8 sequence is at most 4 bytes; try the shortest valid suffix.
    (1..=b.len().min(4)).find_map(|n| {
        let tail = &b[b.len() - n..];
        let s = std::str::from_utf8(tail).ok()?;
        let mut chars = s.chars();
        let c = chars.next()?;
        chars.next().is_none().then_some((c, n))
    })
}

/// Go's `strings.EqualFold` against an ASCII lower-case word. Besides ASCII case, Unicode simple
/// folding maps U+017F (long s) to `s` and U+212A (Kelvin) to `k`.
fn go_equal_fold(b: &[u8], word: &str) -> bool {
    let Ok(s) = std::str::from_utf8(b) else {
        return false;
    };
    let mut want = word.chars();
    for c in s.chars() {
        let Some(w) = want.next() else {
            return false;
        };
        let folded = match c {
            '\u{17F}' => 's',
            '\u{212A}' => 'k',
            c => c.to_ascii_lowercase(),
        };
        if folded != w {
            return false;
        }
    }
    want.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn censored(secrets: &[&str], min: usize, text: &str) -> String {
        let c = Censorer::new(secrets, min).unwrap();
        let mut buf = text.as_bytes().to_vec();
        c.censor(&mut buf);
        String::from_utf8(buf).unwrap()
    }

    const TEXT: &str = "secret SECRET c2VjcmV0 sEcReT";

    #[test]
    fn reloading_censorer_cases() {
        assert_eq!(censored(&[], 0, TEXT), TEXT);
        assert_eq!(
            censored(&["secret"], 0, TEXT),
            "XXXXXX SECRET XXXXXXXX sEcReT"
        );
        assert_eq!(
            censored(&["\t\tsecret      "], 0, TEXT),
            "XXXXXX SECRET XXXXXXXX sEcReT"
        );
        assert_eq!(censored(&["\t\t      "], 0, TEXT), TEXT);
        assert_eq!(
            censored(&["secret", "SECRET", "sEcReT"], 0, TEXT),
            "XXXXXX XXXXXX XXXXXXXX XXXXXX"
        );
    }

    #[test]
    fn booleans_are_not_hidden() {
        let t = "true True TRUE tRUE false False FALSE fALse should stay";
        assert_eq!(
            censored(
                &[
                    "true",
                    "True",
                    "TRUE",
                    " TRUE",
                    "tRue",
                    "false",
                    "fAlse",
                    "fal\u{17F}e"
                ],
                0,
                t
            ),
            t
        );
    }

    #[test]
    fn minimum_secret_length() {
        assert_eq!(
            censored(&["a", "bb", "ccc", "dddd"], 0, "data: a bb ccc dddd"),
            "dXtX: X XX XXX XXXX"
        );
        assert_eq!(
            censored(&["a", "bb", "ccc", "dddd"], 3, "data: a bb ccc dddd"),
            "data: a bb XXX XXXX"
        );
        assert_eq!(
            censored(&["short", "medium"], 10, "data: short medium"),
            "data: short medium"
        );
        // The base64 form of a rejected secret is not added either.
        assert_eq!(censored(&["abc"], 5, "data: abc YWJj"), "data: abc YWJj");
        assert_eq!(
            censored(&["secret"], 5, "data: secret c2VjcmV0"),
            "data: XXXXXX XXXXXXXX"
        );
        assert_eq!(
            censored(
                &["x", "password123", "key"],
                4,
                "config: x=1 password123=secret key=value"
            ),
            "config: x=1 XXXXXXXXXXX=secret key=value"
        );
    }

    #[test]
    fn base64_of_raw_and_trimmed_forms() {
        // "friend\n": trimmed "friend" (ZnJpZW5k), raw base64 "ZnJpZW5kCg==".
        assert_eq!(
            censored(&["friend\n"], 0, "a ZnJpZW5k b ZnJpZW5kCg== c"),
            "a XXXXXXXX b XXXXXXXXXXXX c"
        );
        let c = Censorer::new(&["friend\n"], 0).unwrap();
        assert_eq!(c.largest_secret(), "ZnJpZW5kCg==".len());
    }

    #[test]
    fn first_added_wins_not_longest() {
        // "ab" was added before "abcd": at position 0 it wins, then scanning resumes after it.
        assert_eq!(censored(&["ab", "abcd"], 0, "abcd"), "XXcd");
        assert_eq!(censored(&["abcd", "ab"], 0, "abcd"), "XXXX");
        // An earlier start wins over priority.
        assert_eq!(censored(&["bcd", "ab"], 0, "abcd"), "XXcd");
    }

    #[test]
    fn trim_space_is_unicode_aware() {
        assert_eq!(trim_space(b" \t\na b\r\n"), b"a b");
        assert_eq!(trim_space("\u{a0}x\u{3000}".as_bytes()), b"x");
        assert_eq!(trim_space(b"\xffx\xff"), b"\xffx\xff");
        assert_eq!(trim_space(b"   "), b"");
    }

    /// Go's generic replacer, written out: at each position the lowest-index pattern that matches
    /// there is replaced and the scan resumes after it.
    fn reference(patterns: &[Vec<u8>], text: &[u8]) -> Vec<u8> {
        let mut out = text.to_vec();
        let mut i = 0;
        while i < text.len() {
            match patterns.iter().find(|p| text[i..].starts_with(p)) {
                Some(p) => {
                    out[i..i + p.len()].fill(b'X');
                    i += p.len();
                }
                None => i += 1,
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn leftmost_first_equals_go_replacer(
            secrets in proptest::collection::vec("[abc \n]{1,6}", 0..8),
            text in "[abcXYZ= \n]{0,80}",
        ) {
            let pats = patterns(&secrets, 0);
            let c = Censorer::new(&secrets, 0).unwrap();
            let mut got = text.as_bytes().to_vec();
            c.censor(&mut got);
            prop_assert_eq!(got, reference(&pats, text.as_bytes()));
        }

        #[test]
        fn skipping_search_equals_go_replacer(
            secrets in proptest::collection::vec("[abX]{4,9}", 1..12),
            text in "[abcX ]{0,200}",
        ) {
            let c = Censorer::new(&secrets, 0).unwrap();
            prop_assert!(matches!(c.matcher, Some(Matcher::Skip(_))));
            let mut got = text.as_bytes().to_vec();
            c.censor(&mut got);
            prop_assert_eq!(got, reference(&patterns(&secrets, 0), text.as_bytes()));
        }

        #[test]
        fn ranges_covering_everything_equal_one_scan(
            secrets in proptest::collection::vec("[abX]{1,7}", 1..6),
            text in "[abX ]{0,100}",
            cuts in proptest::collection::vec(0usize..100, 0..8),
        ) {
            let c = Censorer::new(&secrets, 0).unwrap();
            let mut whole = text.as_bytes().to_vec();
            c.censor(&mut whole);
            let len = text.len();
            let mut points: Vec<usize> = cuts.into_iter().filter(|p| *p < len).collect();
            points.push(0);
            points.push(len);
            points.sort_unstable();
            points.dedup();
            let ranges: Vec<(usize, usize)> = points.windows(2).map(|w| (w[0], w[1])).collect();
            let mut pieces = text.as_bytes().to_vec();
            c.censor_ranges(&mut pieces, &ranges, |_, _| {});
            prop_assert_eq!(pieces, whole);
        }

        #[test]
        fn censoring_preserves_length_and_masks_with_x(
            secrets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..5), 0..6),
            text in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let c = Censorer::new(&secrets, 0).unwrap();
            let mut got = text.clone();
            c.censor(&mut got);
            prop_assert_eq!(got.len(), text.len());
            for (g, t) in got.iter().zip(&text) {
                prop_assert!(g == t || *g == b'X');
            }
            let pats = patterns(&secrets, 0);
            prop_assert_eq!(got, reference(&pats, &text));
        }
    }
}
