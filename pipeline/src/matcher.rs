//! Two-stage literal search over whole buffers.
//!
//! Each anchor is keyed on its *rarest* part: the suffix starting at its least common 3-byte
//! window in reference log text. The SIMD (Teddy) prefilter fingerprints the first bytes of each
//! pattern, so an anchor starting with "of the" or "Setup" (which also hits every `Setting:`)
//! would make nearly every line a candidate. Keys are cut to [`MAX_KEY_LEN`] and split across as
//! many stage-one Aho-Corasick automata as needed, each with at most [`MAX_PREFIXES`] patterns:
//! above 64 literals Teddy is skipped and throughput falls from ~3.7 GB/s to ~0.4 GB/s
//! (`sinks-and-perf.md` §B6). Stage two compares the full anchor at the key's offset.
//!
//! No false negatives: let anchor `a` occur at `p` with its key at `p + k`, in automaton `A`.
//! `A`'s search restarts one byte after every candidate, so it reports some pattern `r` at
//! `p + k`. Patterns are ordered longest first and matched leftmost-first, so `r` is the longest
//! pattern matching there, and the (cut) key of `a` is a prefix of `r`, or `r` of it. Each
//! group holds every anchor whose key is in either relation to its pattern, so `a` is checked.
//! Stage two compares full anchors, so there are no false positives either.
//!
//! Matching is ASCII case-insensitive, as Select-String is (see `exchange-setup-log.md` §1).
//! The buffer is lower-cased into a scratch copy and searched case-sensitively: an
//! ASCII-case-insensitive automaton multiplies the prefilter's patterns by their case variants,
//! which also pushes Teddy past its limit. Lower-casing keeps byte positions.

use aho_corasick::{AhoCorasick, AhoCorasickKind, Input, MatchKind};

/// Each stage-one automaton holds at most this many patterns, so Teddy stays on, in its
/// "slim" form (up to 32 patterns), which measured ~20 % faster here than "fat" Teddy at 64.
pub const MAX_PREFIXES: usize = 32;

/// Keys are cut to this length: the prefilter looks at their first bytes, the automaton
/// confirms the rest, and stage two compares the full anchor.
const MAX_KEY_LEN: usize = 16;

/// A compiled set of anchors.
#[derive(Debug, Clone)]
pub struct AnchorMatcher {
    /// Stage-one automata, each over at most [`MAX_PREFIXES`] keys.
    stages: Vec<Stage>,
    /// Anchors, lower-cased.
    anchors: Vec<Vec<u8>>,
    /// Offset of each anchor's key within the anchor.
    offsets: Vec<usize>,
}

#[derive(Debug, Clone)]
struct Stage {
    automaton: AhoCorasick,
    /// For each pattern, the anchors whose key starts with it or that it starts with.
    groups: Vec<Vec<u32>>,
}

/// How often each lower-cased 3-byte window occurs in reference log text: two committed
/// ExchangeSetup.log samples, a generated Windows Installer session and a ServiceControl.log
/// run. Computed once (a few milliseconds).
fn trigram_counts() -> &'static std::collections::HashMap<[u8; 3], u32> {
    static COUNTS: std::sync::OnceLock<std::collections::HashMap<[u8; 3], u32>> =
        std::sync::OnceLock::new();
    COUNTS.get_or_init(|| {
        use crate::sample::{msi_verbose_log, service_control_log, MsiLog, MsiScenario};
        let msi = msi_verbose_log(&MsiLog {
            product: "Microsoft Exchange Server",
            version: "15.2.1544.4",
            scenario: MsiScenario::Success,
            date: "11/21/2026",
            start_seconds: 3600,
            filler_blocks: 0,
        });
        let sc = service_control_log("21/11/2026", 3600, true);
        let texts: [&str; 4] = [
            include_str!("../tests/data/exchange/ExchangeSetup_Reboot_Pending.log"),
            include_str!("../tests/data/exchange/ExchangeSetup_Service_Disabled.log"),
            &msi,
            &sc,
        ];
        let mut counts = std::collections::HashMap::new();
        for t in texts {
            let low = t.as_bytes().to_ascii_lowercase();
            for w in low.windows(3) {
                *counts.entry([w[0], w[1], w[2]]).or_insert(0) += 1;
            }
        }
        counts
    })
}

/// Offset of the least common 3-byte window of `a` (the first such on ties).
fn key_offset(a: &[u8]) -> usize {
    if a.len() <= 3 {
        return 0;
    }
    let counts = trigram_counts();
    (0..=a.len() - 3)
        .min_by_key(|&k| {
            counts
                .get(&[a[k], a[k + 1], a[k + 2]])
                .copied()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

impl AnchorMatcher {
    /// Builds a matcher. Duplicates are allowed (they get distinct ids).
    ///
    /// # Panics
    /// If `anchors` is empty or contains an empty string: callers validate rules first.
    pub fn new(anchors: &[String]) -> AnchorMatcher {
        assert!(!anchors.is_empty(), "no anchors");
        let lower: Vec<Vec<u8>> = anchors
            .iter()
            .map(|a| a.as_bytes().to_ascii_lowercase())
            .collect();
        assert!(lower.iter().all(|a| !a.is_empty()), "empty anchor");
        let offsets: Vec<usize> = lower.iter().map(|a| key_offset(a)).collect();
        let keys: Vec<Vec<u8>> = lower
            .iter()
            .zip(&offsets)
            .map(|(a, &k)| a[k..(k + MAX_KEY_LEN).min(a.len())].to_vec())
            .collect();
        let mut patterns = keys.clone();
        patterns.sort();
        patterns.dedup();
        let stages = patterns
            .chunks(MAX_PREFIXES)
            .map(|chunk| {
                let mut pats = chunk.to_vec();
                // Longest first: leftmost-first then reports the longest pattern at a position.
                pats.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
                let groups = pats
                    .iter()
                    .map(|p| {
                        (0..keys.len() as u32)
                            .filter(|&i| {
                                let key = &keys[i as usize];
                                key.starts_with(p) || p.starts_with(key)
                            })
                            .collect()
                    })
                    .collect();
                let automaton = AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostFirst)
                    .kind(Some(AhoCorasickKind::DFA))
                    .build(&pats)
                    .expect("anchor keys compile");
                Stage { automaton, groups }
            })
            .collect();
        AnchorMatcher {
            stages,
            anchors: lower,
            offsets,
        }
    }

    /// Number of stage-one automata (each with at most [`MAX_PREFIXES`] patterns).
    pub fn stage_count(&self) -> usize {
        self.stages.len()
    }

    /// Number of anchors.
    pub fn anchor_count(&self) -> usize {
        self.anchors.len()
    }

    /// Calls `f(position, anchor_id)` for every occurrence of every anchor in `hay`, in order of
    /// position (and anchor id at equal positions). Overlapping occurrences are all reported.
    pub fn for_each(&self, hay: &[u8], mut f: impl FnMut(usize, u32)) {
        thread_local! {
            static LOWER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        LOWER.with(|cell| {
            let mut lower = cell.borrow_mut();
            lower.clear();
            lower.extend_from_slice(hay);
            lower.make_ascii_lowercase();
            let mut hits = Vec::new();
            for stage in &self.stages {
                self.search(stage, &lower, &mut hits);
            }
            // Keys sit at different offsets and in different automata: restore position order.
            hits.sort_unstable();
            hits.dedup();
            for (p, a) in hits {
                f(p, a);
            }
        });
    }

    fn search(&self, stage: &Stage, hay: &[u8], hits: &mut Vec<(usize, u32)>) {
        let mut start = 0;
        while start < hay.len() {
            let Some(m) = stage.automaton.find(Input::new(hay).range(start..)) else {
                break;
            };
            let pos = m.start();
            for &a in &stage.groups[m.pattern().as_usize()] {
                let (anchor, k) = (&self.anchors[a as usize], self.offsets[a as usize]);
                if pos >= k && hay[pos - k..].starts_with(anchor) {
                    hits.push((pos - k, a));
                }
            }
            start = pos + 1;
        }
    }
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
    fn short_and_overlapping_anchors_are_all_found() {
        let mut anchors: Vec<String> = (0..40)
            .map(|i| format!("Alpha{i:02} is a long anchor"))
            .collect();
        anchors.push("UR32".into());
        anchors.push("alpha07 is".into());
        let m = AnchorMatcher::new(&anchors);
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
        assert!(m.stage_count() >= 500 / MAX_PREFIXES, "{}", m.stage_count());
        let hay = b"....Error 1250: failure 250\nError 1499: failure 499 and error 1000: FAILURE 0";
        let mut got = Vec::new();
        m.for_each(hay, |p, a| got.push((p, a)));
        assert_eq!(got, naive(&anchors, hay));
    }
}
