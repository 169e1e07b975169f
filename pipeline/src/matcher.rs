//! Two-stage literal search over whole buffers.
//!
//! Stage one is an Aho-Corasick automaton over *prefixes* of the anchors, cut to one length `L`
//! (anchors shorter than `L` stay whole) and deduplicated, so that it holds at most
//! [`MAX_PREFIXES`] patterns: above 64 literals the SIMD (Teddy) prefilter is skipped and
//! throughput falls from ~3.7 GB/s to ~0.4 GB/s (`sinks-and-perf.md` §B6). Stage two confirms
//! each candidate by comparing the few full anchors of its group.
//!
//! No false negatives: let anchor `a` occur at `p`, and `q` be its stage-one prefix. Stage one
//! restarts one byte after every candidate, so it reports some pattern `r` at `p`. Patterns are
//! ordered longest first and matched leftmost-first, so `r` is the longest pattern matching at
//! `p`: `q` is a prefix of `r`, hence `a` starts with `r` (when `a` was cut) or `r` starts with
//! `a` (when `a` is short). Each group holds every anchor in either relation to its pattern.
//! Stage two compares full anchors, so there are no false positives either.
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
    /// For each stage-one pattern, the anchors that start with it or that it starts with.
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
        let lower: Vec<Vec<u8>> = anchors.iter().map(|a| a.as_bytes().to_ascii_lowercase()).collect();
        assert!(lower.iter().all(|a| !a.is_empty()), "empty anchor");
        // The longest cut whose distinct prefixes fit stage one; if none fits, the shortest
        // (fewest distinct prefixes) is the best we can do.
        let mut chosen = 1;
        for len in (1..=MAX_PREFIX_LEN).rev() {
            if distinct_prefixes(&lower, len).len() <= MAX_PREFIXES {
                chosen = len;
                break;
            }
        }
        let mut prefixes = distinct_prefixes(&lower, chosen);
        // Longest first: leftmost-first then reports the longest pattern at a position.
        prefixes.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        let groups = prefixes
            .iter()
            .map(|p| {
                (0..lower.len() as u32)
                    .filter(|&i| {
                        let a = &lower[i as usize];
                        a.starts_with(p) || p.starts_with(a)
                    })
                    .collect()
            })
            .collect();
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

    /// Length the stage-one prefixes are cut to.
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
                if hay.len() - pos >= anchor.len() && hay[pos..pos + anchor.len()].eq_ignore_ascii_case(anchor) {
                    f(pos, a);
                }
            }
            start = pos + 1;
        }
    }
}

fn distinct_prefixes(anchors: &[Vec<u8>], len: usize) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = anchors.iter().map(|a| a[..len.min(a.len())].to_vec()).collect();
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
    fn a_short_anchor_does_not_shorten_the_others() {
        let mut anchors: Vec<String> = (0..80).map(|i| format!("Alpha{i:02} is a long anchor")).collect();
        anchors.push("UR32".into());
        anchors.push("alpha07 is".into());
        let m = AnchorMatcher::new(&anchors);
        assert!(m.prefix_len() >= 7, "{}", m.prefix_len());
        let hay = b"xx ALPHA07 is a long anchor and ur32, alpha07 is short; ALPHA7";
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
