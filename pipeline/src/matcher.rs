//! Two-stage literal search over whole buffers.
//!
//! Stage one is an Aho-Corasick automaton over *prefixes* of the anchors, all of one length `L`
//! and deduplicated, so that it holds at most [`MAX_PREFIXES`] patterns: above 64 literals the
//! SIMD (Teddy) prefilter is skipped and throughput falls from ~3.7 GB/s to ~0.4 GB/s
//! (`sinks-and-perf.md` §B6). Stage two confirms each candidate by comparing the few full anchors
//! that share the prefix. Because every prefix has the same length, at most one can match at a
//! position, and restarting the search one byte after each candidate means no occurrence is
//! missed: the matcher never reports a false negative, and stage two removes false positives.
//!
//! Matching is ASCII case-insensitive, as Select-String is (see `exchange-setup-log.md` §1).

use aho_corasick::{AhoCorasick, AhoCorasickKind, Input, MatchKind};

/// Stage one holds at most this many prefixes, so the packed (Teddy) prefilter stays on.
pub const MAX_PREFIXES: usize = 64;

/// Longest prefix tried; longer prefixes rarely make stage one more selective.
const MAX_PREFIX_LEN: usize = 12;

/// A compiled set of anchors.
#[derive(Debug, Clone)]
pub struct AnchorMatcher {
    stage1: AhoCorasick,
    /// For each stage-one pattern, the anchors that start with it.
    groups: Vec<Vec<u32>>,
    /// Anchors, lower-cased.
    anchors: Vec<Vec<u8>>,
    prefix_len: usize,
}

impl AnchorMatcher {
    /// Builds a matcher. Anchors must be non-empty; duplicates are allowed (they get distinct ids).
    ///
    /// # Panics
    /// If `anchors` is empty or contains an empty string: callers validate rules first.
    pub fn new(anchors: &[String]) -> AnchorMatcher {
        assert!(!anchors.is_empty(), "no anchors");
        let lower: Vec<Vec<u8>> = anchors
            .iter()
            .map(|a| a.as_bytes().to_ascii_lowercase())
            .collect();
        let min_len = lower.iter().map(Vec::len).min().unwrap_or(1);
        assert!(min_len > 0, "empty anchor");
        // The longest common length whose distinct prefixes fit stage one; if none fits, the
        // shortest length (fewest distinct prefixes) is the best we can do.
        let mut chosen = 1;
        for len in (1..=min_len.min(MAX_PREFIX_LEN)).rev() {
            if distinct_prefixes(&lower, len).len() <= MAX_PREFIXES {
                chosen = len;
                break;
            }
        }
        let prefixes = distinct_prefixes(&lower, chosen);
        let mut groups = vec![Vec::new(); prefixes.len()];
        for (i, a) in lower.iter().enumerate() {
            let p = prefixes
                .iter()
                .position(|p| p[..] == a[..chosen])
                .expect("prefix present");
            groups[p].push(i as u32);
        }
        let stage1 = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostFirst)
            .kind(Some(AhoCorasickKind::DFA))
            .build(&prefixes)
            .expect("anchor prefixes compile");
        AnchorMatcher {
            stage1,
            groups,
            anchors: lower,
            prefix_len: chosen,
        }
    }

    /// Number of stage-one patterns (at most [`MAX_PREFIXES`] unless the anchors are very short
    /// and varied).
    pub fn prefix_count(&self) -> usize {
        self.groups.len()
    }

    /// Length of the stage-one prefixes.
    pub fn prefix_len(&self) -> usize {
        self.prefix_len
    }

    /// Calls `f(position, anchor_id)` for every occurrence of every anchor in `hay`, in order of
    /// position (and anchor id at equal positions). Overlapping occurrences are all reported.
    pub fn for_each(&self, hay: &[u8], mut f: impl FnMut(usize, u32)) {
        let mut start = 0;
        while start < hay.len() {
            let Some(m) = self.stage1.find(Input::new(hay).range(start..)) else {
                break;
            };
            let pos = m.start();
            for &a in &self.groups[m.pattern().as_usize()] {
                let anchor = &self.anchors[a as usize];
                if hay.len() - pos >= anchor.len()
                    && hay[pos..pos + anchor.len()].eq_ignore_ascii_case(anchor)
                {
                    f(pos, a);
                }
            }
            start = pos + 1;
        }
    }
}

fn distinct_prefixes(anchors: &[Vec<u8>], len: usize) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = anchors.iter().map(|a| a[..len].to_vec()).collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(anchors: &[String], hay: &[u8]) -> Vec<(usize, u32)> {
        let low = hay.to_ascii_lowercase();
        let mut out = Vec::new();
        for pos in 0..hay.len() {
            for (i, a) in anchors.iter().enumerate() {
                let a = a.to_ascii_lowercase();
                if low[pos..].starts_with(a.as_bytes()) {
                    out.push((pos, i as u32));
                }
            }
        }
        out
    }

    #[test]
    fn agrees_with_naive_search_on_overlaps_and_case() {
        let anchors: Vec<String> = [
            "[ERROR]",
            "[ERROR-REFERENCE]",
            "Error 1603",
            "error 16",
            "rror",
            "Return value 3",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let hay = b"x [error-reference] Id=1 [ERROR] Error 1603 and ERROR 1620; Return Value 3.";
        let m = AnchorMatcher::new(&anchors);
        let mut got = Vec::new();
        m.for_each(hay, |p, a| got.push((p, a)));
        assert_eq!(got, naive(&anchors, hay));
    }

    #[test]
    fn many_anchors_are_folded_to_at_most_64_prefixes() {
        let anchors: Vec<String> = (0..500)
            .map(|i| format!("Error {}: failure {i}", 1000 + i))
            .collect();
        let m = AnchorMatcher::new(&anchors);
        assert!(m.prefix_count() <= MAX_PREFIXES, "{}", m.prefix_count());
        let hay = b"....Error 1250: failure 250\nError 1499: failure 499 and error 1000: FAILURE 0";
        let mut got = Vec::new();
        m.for_each(hay, |p, a| got.push((p, a)));
        assert_eq!(got, naive(&anchors, hay));
    }
}
