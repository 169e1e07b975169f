//! Two-stage literal search over whole buffers.
//!
//! Stage one searches for a few short *keys* with Aho-Corasick's SIMD (Teddy) searcher; stage
//! two compares the full anchors around each key hit. Keys are chosen ([`keys`]) so that every
//! anchor contains one, they are rare in real logs, and they fit one slim Teddy searcher
//! ([`MAX_PREFIXES`]): above 64 literals Teddy is skipped and throughput falls from ~3.7 GB/s to
//! ~0.4 GB/s (`sinks-and-perf.md` §B6), and each further group of keys is a further pass.
//!
//! No false negatives: let anchor `a` occur at `p` with its key at `p + k`, in automaton `A`.
//! `A`'s search restarts one byte after every candidate, so it reports some pattern `r` at
//! `p + k`. Both `r` and the key of `a` match at `p + k`, so one is a prefix of the other,
//! whichever pattern Teddy prefers there. Each group holds every anchor whose key is in either
//! relation to its pattern, so `a` is checked. Stage two compares full anchors, so there are no
//! false positives either. Pattern order is therefore free, and is chosen for speed
//! ([`keys::teddy_order`]: which keys share a Teddy bucket), first on built-in reference text,
//! then again on the logs being read ([`AnchorMatcher::tuned_to`], done by the catalog after a
//! few MiB): which layout is fastest depends on the words a server's log is made of.
//!
//! Matching is ASCII case-insensitive, as Select-String is (see `exchange-setup-log.md` §1).
//! The text is lower-cased block by block into a small scratch buffer that stays in cache and
//! searched case-sensitively: an ASCII-case-insensitive automaton multiplies the prefilter's
//! patterns by their case variants, which pushes Teddy past its limit. Lower-casing keeps byte
//! positions.

mod keys;

pub use keys::Reference;
mod verify;

use aho_corasick::{packed, AhoCorasick, AhoCorasickKind, Input, MatchKind};

/// Each stage-one automaton holds at most this many patterns, so Teddy stays on, in its
/// "slim" form (up to 32 patterns), which measured ~20 % faster here than "fat" Teddy at 64.
pub const MAX_PREFIXES: usize = 32;

/// How many keys [`keys::choose`] may pick. Fewer keys mean fewer false candidates inside
/// Teddy (it buckets patterns by fingerprint) but more true key hits to confirm. Since the
/// reference text has a generated upgrade run in it, 32 keys beat 24 by ~25 % fewer
/// instructions in anchor matching on the realistic Exchange corpus and tie on the dense one.
const KEY_BUDGET: usize = 32;

/// Text is lower-cased and searched in blocks of this many bytes, so that the scratch copy is
/// still in L1/L2 cache when the automata read it.
const BLOCK: usize = 32 << 10;

/// A compiled set of anchors.
#[derive(Debug, Clone)]
pub struct AnchorMatcher {
    /// Stage-one automata, each over at most [`MAX_PREFIXES`] keys.
    stages: Vec<Stage>,
    /// Anchors, lower-cased.
    anchors: Vec<Vec<u8>>,
    /// Offset and length of each anchor's key within the anchor.
    keys: Vec<(usize, usize)>,
    /// Longest key: blocks overlap by one byte less, so a key across a block edge is seen.
    longest_key: usize,
}

#[derive(Debug, Clone)]
struct Stage {
    /// Keys, in the order given to the automaton.
    patterns: Vec<Vec<u8>>,
    automaton: Automaton,
    /// For each pattern, the anchors whose key starts with it or that it starts with.
    groups: Vec<verify::Group>,
}

impl Stage {
    /// A stage searching for `patterns` (keys, in Teddy layout order) among `anchors`, whose
    /// keys are at `key_pos`.
    fn new(patterns: Vec<Vec<u8>>, anchors: &[Vec<u8>], key_pos: &[(usize, usize)]) -> Stage {
        let keys: Vec<&[u8]> = anchors
            .iter()
            .zip(key_pos)
            .map(|(a, &(o, l))| &a[o..o + l])
            .collect();
        let groups = patterns
            .iter()
            .map(|p| {
                let members: Vec<(u32, usize)> = (0..keys.len() as u32)
                    .filter(|&i| {
                        let key = keys[i as usize];
                        key.starts_with(p) || p.starts_with(key)
                    })
                    .map(|i| (i, key_pos[i as usize].0))
                    .collect();
                verify::Group::new(&members, anchors)
            })
            .collect();
        Stage {
            automaton: Automaton::new(&as_slices(&patterns)),
            patterns,
            groups,
        }
    }
}

fn as_slices(v: &[Vec<u8>]) -> Vec<&[u8]> {
    v.iter().map(Vec::as_slice).collect()
}

/// Per-thread buffers of [`AnchorMatcher::for_each`]: the lower-cased block and the hits.
type Scratch = (Vec<u8>, Vec<(usize, u32)>);

/// `dst = src.to_ascii_lowercase()`, written so that the compiler vectorizes it.
fn lower_ascii(src: &[u8], dst: &mut [u8]) {
    for (d, &c) in dst.iter_mut().zip(src) {
        *d = c | (u8::from(c.wrapping_sub(b'A') < 26) << 5);
    }
}

/// A stage-one searcher: Teddy used directly when the CPU has it (no automaton around it:
/// the matches it reports are exact), else a full Aho-Corasick DFA.
#[derive(Debug, Clone)]
enum Automaton {
    Teddy(packed::Searcher),
    Dfa(AhoCorasick),
}

impl Automaton {
    /// `patterns` in priority order (leftmost-first).
    fn new(patterns: &[&[u8]]) -> Automaton {
        let mut config = packed::Config::new();
        config
            .match_kind(packed::MatchKind::LeftmostFirst)
            .only_teddy(true)
            .heuristic_pattern_limits(false);
        let mut builder = config.builder();
        builder.extend(patterns);
        if let Some(s) = builder.build() {
            return Automaton::Teddy(s);
        }
        let dfa = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostFirst)
            .kind(Some(AhoCorasickKind::DFA))
            .build(patterns)
            .expect("anchor keys compile");
        Automaton::Dfa(dfa)
    }

    /// The leftmost match at or after `from`: (position, pattern index).
    fn find(&self, hay: &[u8], from: usize) -> Option<(usize, usize)> {
        match self {
            Automaton::Teddy(s) => s
                .find_in(hay, aho_corasick::Span::from(from..hay.len()))
                .map(|m| (m.start(), m.pattern().as_usize())),
            Automaton::Dfa(a) => a
                .find(Input::new(hay).range(from..))
                .map(|m| (m.start(), m.pattern().as_usize())),
        }
    }
}

impl AnchorMatcher {
    /// Builds a matcher. Duplicates are allowed (they get distinct ids).
    ///
    /// # Panics
    /// If `anchors` is empty or contains an empty string: callers validate rules first.
    pub fn new(anchors: &[String]) -> AnchorMatcher {
        AnchorMatcher::with_reference(anchors, &Reference::builtin())
    }

    /// [`AnchorMatcher::new`] with keys and Teddy layout chosen on `reference`, which callers
    /// building several matchers build once ([`Reference::builtin`] takes a few ms).
    ///
    /// # Panics
    /// As [`AnchorMatcher::new`].
    pub fn with_reference(anchors: &[String], reference: &Reference) -> AnchorMatcher {
        assert!(!anchors.is_empty(), "no anchors");
        let lower: Vec<Vec<u8>> = anchors
            .iter()
            .map(|a| a.as_bytes().to_ascii_lowercase())
            .collect();
        assert!(lower.iter().all(|a| !a.is_empty()), "empty anchor");
        let key_pos = keys::choose(&lower, KEY_BUDGET, reference);
        let mut patterns: Vec<Vec<u8>> = lower
            .iter()
            .zip(&key_pos)
            .map(|(a, &(o, l))| a[o..o + l].to_vec())
            .collect();
        patterns.sort();
        patterns.dedup();
        let sample = reference.sample();
        let stages = patterns
            .chunks(MAX_PREFIXES)
            .map(|chunk| {
                let given: Vec<usize> = (0..chunk.len()).collect();
                let order = keys::teddy_order(&as_slices(chunk), sample, &given);
                Stage::new(
                    order.iter().map(|&i| chunk[i].clone()).collect(),
                    &lower,
                    &key_pos,
                )
            })
            .collect();
        let longest_key = key_pos.iter().map(|k| k.1).max().unwrap_or(1);
        AnchorMatcher {
            stages,
            anchors: lower,
            keys: key_pos,
            longest_key,
        }
    }

    /// The same matcher with its Teddy buckets laid out for `log`, a large piece (say 512 KiB)
    /// of the logs being scanned: same keys and anchor ids, hence the same matches, only
    /// faster. The built-in layout is tried on reference text that can only stand for what a
    /// server writes; on text with other words in it (a reference without the generated
    /// upgrade run), stage one spent ~1.5 times the work (BENCHMARKS.md). A layout is kept
    /// only if it is better on `log` than the built-in one.
    pub fn tuned_to(&self, log: &[u8]) -> AnchorMatcher {
        let sample = keys::spread_sample(&log.to_ascii_lowercase());
        let stages = self
            .stages
            .iter()
            .map(|stage| {
                let given: Vec<usize> = (0..stage.patterns.len()).collect();
                let order = keys::teddy_order(&as_slices(&stage.patterns), &sample, &given);
                if order == given {
                    return stage.clone();
                }
                let pats = order.iter().map(|&i| stage.patterns[i].clone()).collect();
                Stage::new(pats, &self.anchors, &self.keys)
            })
            .collect();
        AnchorMatcher {
            stages,
            ..self.clone()
        }
    }

    /// Number of stage-one automata (each with at most [`MAX_PREFIXES`] patterns).
    pub fn stage_count(&self) -> usize {
        self.stages.len()
    }

    /// Each anchor (lower-cased) with the key stage one searches for: for diagnostics and
    /// benchmarks of the prefilter.
    pub fn keys(&self) -> Vec<(String, String)> {
        self.anchors
            .iter()
            .zip(&self.keys)
            .map(|(a, &(o, l))| {
                (
                    String::from_utf8_lossy(a).into_owned(),
                    String::from_utf8_lossy(&a[o..o + l]).into_owned(),
                )
            })
            .collect()
    }

    /// Number of anchors.
    pub fn anchor_count(&self) -> usize {
        self.anchors.len()
    }

    /// Calls `f(position, anchor_id)` for every occurrence of every anchor in `hay`, in order of
    /// position (and anchor id at equal positions). Overlapping occurrences are all reported.
    pub fn for_each(&self, hay: &[u8], mut f: impl FnMut(usize, u32)) {
        thread_local! {
            static SCRATCH: std::cell::RefCell<Scratch> =
                const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
        }
        SCRATCH.with(|cell| {
            let (lower, hits) = &mut *cell.borrow_mut();
            hits.clear();
            let overlap = self.longest_key - 1;
            let mut start = 0;
            while start < hay.len() {
                let end = (start + BLOCK).min(hay.len());
                let ext = (end + overlap).min(hay.len());
                lower.resize(ext - start, 0);
                lower_ascii(&hay[start..ext], lower);
                for stage in &self.stages {
                    self.search(stage, hay, start, lower, end - start, hits);
                }
                start = end;
            }
            // Keys sit at different offsets and in different automata: restore position order.
            hits.sort_unstable();
            hits.dedup();
            for &(p, a) in hits.iter() {
                f(p, a);
            }
        });
    }

    /// Searches `lower` (the lower-cased `hay[base..]`) for keys starting before `limit`.
    fn search(
        &self,
        stage: &Stage,
        hay: &[u8],
        base: usize,
        lower: &[u8],
        limit: usize,
        hits: &mut Vec<(usize, u32)>,
    ) {
        let mut start = 0;
        while start < limit {
            let Some((pos, pattern)) = stage.automaton.find(lower, start) else {
                break;
            };
            if pos >= limit {
                break;
            }
            stage.groups[pattern].check(hay, base + pos, &self.anchors, hits);
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
    fn many_anchors_are_all_found() {
        let anchors: Vec<String> = (0..500)
            .map(|i| format!("Error {}: failure {i}", 1000 + i))
            .collect();
        let m = AnchorMatcher::new(&anchors);
        // They share "error 1" and "failure": a few keys cover all, in one searcher.
        assert_eq!(m.stage_count(), 1);
        let hay = b"....Error 1250: failure 250\nError 1499: failure 499 and error 1000: FAILURE 0";
        let mut got = Vec::new();
        m.for_each(hay, |p, a| got.push((p, a)));
        assert_eq!(got, naive(&anchors, hay));
    }

    #[test]
    fn anchors_across_block_edges_are_found() {
        let anchors: Vec<String> = ["Return value 3", "[ERROR] Database is mandatory", "q"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let m = AnchorMatcher::new(&anchors);
        for shift in 0..40 {
            let mut hay = vec![b'.'; 2 * BLOCK + 100];
            let at = BLOCK - 20 + shift;
            hay[at..at + 29].copy_from_slice(b"[error] DATABASE is mandatory");
            let at2 = 2 * BLOCK - 7 + shift / 3;
            hay[at2..at2 + 14].copy_from_slice(b"RETURN VALUE 3");
            let mut got = Vec::new();
            m.for_each(&hay, |p, a| got.push((p, a)));
            assert_eq!(got, vec![(at, 1), (at2, 0)], "shift {shift}");
        }
    }

    #[test]
    fn a_matcher_tuned_to_other_text_finds_the_same_matches() {
        // The Exchange matcher tuned to ServiceControl.log text: other words than the
        // built-in reference's, so the layout changes, and matches on Exchange text must not.
        let catalog = crate::rules::Catalog::builtin();
        let m = catalog.matcher(crate::LogKind::ExchangeSetup);
        let other = crate::sample::service_control_log("21/11/2026", 3600, true).repeat(20);
        let tuned = m.tuned_to(other.as_bytes());
        let layout = |m: &AnchorMatcher| -> Vec<Vec<Vec<u8>>> {
            m.stages.iter().map(|s| s.patterns.clone()).collect()
        };
        assert_ne!(layout(&tuned), layout(m), "the layout did not change");
        let mut hay = crate::sample::exchange::upgrade_run(1, 200, &["Rule:RebootPending".into()]);
        hay.push_str(include_str!(
            "../../tests/data/exchange/ExchangeSetup_Service_Disabled.log"
        ));
        hay.push_str(&other);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        m.for_each(hay.as_bytes(), |p, i| a.push((p, i)));
        tuned.for_each(hay.as_bytes(), |p, i| b.push((p, i)));
        assert!(a.len() > 100, "{} matches", a.len());
        assert_eq!(a, b);
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_naive_search_on_random_text(
            anchors in proptest::collection::vec("[abAB\\[\\] ]{1,12}", 1..60),
            hay in "[abAB\\[\\] x]{0,600}",
        ) {
            let m = AnchorMatcher::new(&anchors);
            let mut got = Vec::new();
            m.for_each(hay.as_bytes(), |p, a| got.push((p, a)));
            proptest::prop_assert_eq!(got, naive(&anchors, hay.as_bytes()));
        }
    }
}
