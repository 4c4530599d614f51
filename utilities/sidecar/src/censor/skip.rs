/*!
A skipping multi-pattern search (Wu-Manber) for when every pattern is at least 4 bytes long,
which real secrets and all base64 forms are. Where an automaton looks at every byte, this looks at
one 3-byte block per window of `m` bytes (the shortest pattern) and jumps ahead by up to `m - 2`
bytes when the block cannot end any pattern's first `m` bytes; log text rarely shares blocks with
random-looking secrets, so most of the input is skipped.

It reports the same match as Aho-Corasick's leftmost-first search: the earliest start, and there
the pattern added first. Windows are visited in order and no window that could begin a match is
skipped, and at a candidate start every pattern with that 4-byte prefix is tried in priority
order.
*/

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Only the first `MAX_WINDOW` bytes of each pattern drive the skips (the table holds `u8`).
const MAX_WINDOW: usize = 64;
const BLOCK: usize = 3;
const TABLE_BITS: u32 = 16;

#[derive(Debug, Clone)]
pub(crate) struct Skip {
    patterns: Vec<Vec<u8>>,
    /// The window: the shortest pattern's length, capped.
    m: usize,
    /// How far the window may move given the hash of its last block.
    shift: Vec<u8>,
    /// Pattern indices by their first 4 bytes, in priority order.
    by_prefix: HashMap<u32, Vec<u32>, BuildHasherDefault<MulHasher>>,
}

impl Skip {
    /// `None` when some pattern is shorter than 4 bytes.
    pub fn new(patterns: &[Vec<u8>]) -> Option<Skip> {
        let shortest = patterns.iter().map(Vec::len).min()?;
        if shortest < 4 {
            return None;
        }
        let m = shortest.min(MAX_WINDOW);
        let mut shift = vec![(m - BLOCK + 1) as u8; 1 << TABLE_BITS];
        let mut by_prefix: HashMap<u32, Vec<u32>, BuildHasherDefault<MulHasher>> =
            HashMap::default();
        for (i, p) in patterns.iter().enumerate() {
            for end in BLOCK..=m {
                let h = block_hash(&p[end - BLOCK..end]);
                shift[h] = shift[h].min((m - end) as u8);
            }
            by_prefix.entry(prefix(p)).or_default().push(i as u32);
        }
        Some(Skip {
            patterns: patterns.to_vec(),
            m,
            shift,
            by_prefix,
        })
    }

    /// The leftmost-first match starting at or after `at` and ending by `stop`.
    pub fn find(&self, hay: &[u8], at: usize, stop: usize) -> Option<(usize, usize)> {
        let stop = stop.min(hay.len());
        let m = self.m;
        let mut p = at;
        while p + m <= stop {
            let s = self.shift[block_hash(&hay[p + m - BLOCK..p + m])];
            if s != 0 {
                p += usize::from(s);
                continue;
            }
            if let Some(ids) = self.by_prefix.get(&prefix(&hay[p..])) {
                for &id in ids {
                    let pat = &self.patterns[id as usize];
                    if p + pat.len() <= stop && hay[p..].starts_with(pat) {
                        return Some((p, p + pat.len()));
                    }
                }
            }
            p += 1;
        }
        None
    }
}

fn block_hash(b: &[u8]) -> usize {
    let v = u32::from(b[0]) | u32::from(b[1]) << 8 | u32::from(b[2]) << 16;
    (v.wrapping_mul(0x9E37_79B1) >> (32 - TABLE_BITS)) as usize
}

fn prefix(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// A multiplicative hasher for the `u32` prefix keys; the default SipHash would dominate the
/// cost of checking a candidate.
#[derive(Default)]
pub(crate) struct MulHasher(u64);

impl Hasher for MulHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn write_u32(&mut self, v: u32) {
        self.0 = u64::from(v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_patterns_are_left_to_the_automaton() {
        assert!(Skip::new(&[b"abcd".to_vec(), b"abc".to_vec()]).is_none());
        assert!(Skip::new(&[]).is_none());
    }

    #[test]
    fn finds_leftmost_then_first_added() {
        let s = Skip::new(&[b"bcdefg".to_vec(), b"abcd".to_vec(), b"bcde".to_vec()]).unwrap();
        let hay = b"xxabcdefgh";
        assert_eq!(s.find(hay, 0, hay.len()), Some((2, 6)));
        assert_eq!(s.find(hay, 3, hay.len()), Some((3, 9)));
        // The first-added pattern does not fit before `stop`: the next one in priority does.
        assert_eq!(s.find(hay, 3, 8), Some((3, 7)));
        assert_eq!(s.find(hay, 4, hay.len()), None);
    }
}
