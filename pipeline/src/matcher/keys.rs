//! Choosing the literals stage one searches for.
//!
//! Every anchor must contain at least one key, and the keys together should occur as rarely
//! as possible in real logs while staying few: one slim Teddy searcher holds 32 patterns, and
//! each further group of 32 costs a whole extra pass over the text. Many anchors share a part
//! (`[error] ...`, `evaluated [rule:...]`, `... with code`), so one key often covers several.
//! This is weighted set cover, solved greedily: take the key that covers the most uncovered
//! anchors per expected hit, where a key "costs" its count in reference log text plus a
//! per-key penalty; raise the penalty until the keys fit one searcher.

use rustc_hash::FxHashMap as HashMap;

/// Shortest key when the anchor allows it: Teddy fingerprints the first `min(4, shortest key)`
/// bytes of its patterns, and 4-byte fingerprints give far fewer false candidates than 3.
const MIN_KEY: usize = 4;

/// Longest key considered. Longer keys are no rarer in practice and cost more to confirm.
const MAX_KEY: usize = 6;

/// Per-key penalties tried, in units of "occurrences in the reference text": `2^(i/2)` for
/// `i` below this. Steps of 4 (as first written) jumped from over 32 keys to 18 frequent
/// ones on some texts; steps of √2 land near the budget.
const PENALTY_STEPS: usize = 41;

fn penalty(step: usize) -> u32 {
    2f64.powf(step as f64 / 2.0).round() as u32
}

/// Log text that keys and Teddy buckets are costed on, with its 4-byte window counts and a
/// small spread-out sample for bucket trials. A few MiB: built for a catalog and dropped
/// once its matchers are (an agent keeps running for months).
pub struct Reference {
    text: Vec<u8>,
    grams: HashMap<u32, u32>,
    sample: Vec<u8>,
}

impl Reference {
    /// The built-in reference ([`builtin_text`]).
    pub fn builtin() -> Reference {
        let text = builtin_text();
        let sample = spread_sample(&text);
        Reference::new(text, sample)
    }

    /// The sample Teddy bucket layouts are tried on.
    pub(super) fn sample(&self) -> &[u8] {
        &self.sample
    }

    fn new(text: Vec<u8>, sample: Vec<u8>) -> Reference {
        let mut grams = HashMap::with_capacity_and_hasher(1 << 16, Default::default());
        for w in text.windows(4) {
            *grams.entry(gram(w)).or_insert(0) += 1;
        }
        Reference {
            text,
            grams,
            sample,
        }
    }

    fn count(&self, w: &[u8]) -> u32 {
        self.grams.get(&gram(w)).copied().unwrap_or(0)
    }
}

/// Built-in reference log text, lower-cased: the committed ExchangeSetup.log samples, a
/// generated successful upgrade run (cmdlet executions are most of a real ExchangeSetup.log,
/// and the samples are cut down to their failures), a generated Windows Installer session and
/// a ServiceControl.log run.
fn builtin_text() -> Vec<u8> {
    use crate::sample::{msi_verbose_log, service_control_log, MsiLog, MsiScenario};
    let msi = msi_verbose_log(&MsiLog {
        product: "Microsoft Exchange Server",
        version: "15.2.1544.4",
        scenario: MsiScenario::Success,
        date: "11/21/2026",
        start_seconds: 3600,
        filler_blocks: 4,
    });
    let sc = service_control_log("21/11/2026", 3600, true);
    // A successful upgrade run: cmdlet executions are most of a real ExchangeSetup.log.
    let upgrade = crate::sample::exchange::upgrade_run(
        0,
        300,
        &crate::sample::exchange::rule_names(&[include_str!(
            "../../tests/data/exchange/ExchangeSetup_Reboot_Pending.log"
        )]),
    );
    let texts: [&str; 7] = [
        &upgrade,
        include_str!("../../tests/data/exchange/ExchangeSetup_Reboot_Pending.log"),
        include_str!("../../tests/data/exchange/ExchangeSetup_Service_Disabled.log"),
        include_str!("../../tests/data/exchange/ExchangeSetup_SchemaAdmin_PrepareSchema.log"),
        include_str!("../../tests/data/exchange/ExchangeSetup_Vdir_1.log"),
        &msi,
        &sc,
    ];
    let mut out = Vec::new();
    for t in texts {
        out.extend_from_slice(t.as_bytes());
        out.push(b'\n');
    }
    out.make_ascii_lowercase();
    out
}

/// For each (lower-cased, non-empty) anchor, the offset and length of its key.
pub(super) fn choose(
    anchors: &[Vec<u8>],
    max_keys: usize,
    reference: &Reference,
) -> Vec<(usize, usize)> {
    // Candidates: every substring of MIN_KEY..=MAX_KEY bytes of every anchor (the whole
    // anchor when shorter). A candidate is contained in exactly the anchors that produced it.
    let mut index: HashMap<&[u8], usize> = HashMap::default();
    let mut cands: Vec<&[u8]> = Vec::new();
    let mut covers: Vec<Vec<u32>> = Vec::new();
    for (ai, a) in anchors.iter().enumerate() {
        let lens = if a.len() <= MIN_KEY {
            a.len()..=a.len()
        } else {
            MIN_KEY..=MAX_KEY.min(a.len())
        };
        for len in lens {
            for s in a.windows(len) {
                let ci = *index.entry(s).or_insert_with(|| {
                    cands.push(s);
                    covers.push(Vec::new());
                    cands.len() - 1
                });
                if covers[ci].last() != Some(&(ai as u32)) {
                    covers[ci].push(ai as u32);
                }
            }
        }
    }
    let freq = frequencies(&cands, reference);
    let mut of_anchor: Vec<Vec<u32>> = vec![Vec::new(); anchors.len()];
    for (ci, cov) in covers.iter().enumerate() {
        for &a in cov {
            of_anchor[a as usize].push(ci as u32);
        }
    }
    let run = |step| greedy(&cands, &covers, &of_anchor, &freq, penalty(step));
    // The smallest penalty whose cover fits `max_keys` (key count falls as the penalty rises);
    // the largest penalty's cover when none fits.
    let (mut lo, mut hi) = (0, PENALTY_STEPS - 1);
    let mut best = run(hi);
    while lo < hi {
        let mid = (lo + hi) / 2;
        let chosen = run(mid);
        if chosen.len() <= max_keys {
            best = chosen;
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let chosen = best;
    // Each anchor takes the rarest chosen key it contains (the greedy order need not).
    anchors
        .iter()
        .map(|a| {
            let (&ci, off) = chosen
                .iter()
                .filter_map(|ci| memchr::memmem::find(a, cands[*ci]).map(|off| (ci, off)))
                .min_by_key(|&(ci, _)| (freq[*ci], std::cmp::Reverse(cands[*ci].len())))
                .expect("every anchor is covered");
            (off, cands[ci].len())
        })
        .collect()
}

/// Teddy's buckets in its slim form: patterns are spread over this many.
const BUCKETS: usize = 8;

/// The order in which to give a stage's `patterns` (at most 32, non-empty) to Teddy.
///
/// Teddy files each pattern in one of 8 buckets and stops wherever the text's nibbles match the
/// *union* of a bucket's fingerprints (first `min(4, shortest)` bytes), so which keys share a
/// bucket decides how many false candidates it verifies: on real logs a poor mix (`ate ` with
/// ` comp`) stops ten times more often than the keys occur. `aho_corasick` files pattern `i`
/// in bucket `7 - i % 8`, unless an earlier pattern has the same low nibbles in its
/// fingerprint, which it joins. This picks buckets greedily by the false candidates they
/// would have on `sample` (log text, lower-cased), then lays the patterns out so that rule
/// files them there; `incumbent` (an order) is kept if that is no worse on `sample`. Only
/// speed depends on it: the matcher is correct in any order.
pub(super) fn teddy_order(patterns: &[&[u8]], sample: &[u8], incumbent: &[usize]) -> Vec<usize> {
    let n = patterns.len();
    let mask = patterns.iter().map(|p| p.len()).min().unwrap_or(1).min(4);
    if n <= 1 {
        return incumbent.to_vec();
    }
    let index = NibbleIndex::new(sample, mask);
    let candidates = |members: &[usize]| index.candidates(patterns, members);
    let cost = |order: &[usize]| -> u64 {
        teddy_buckets(patterns, order, mask)
            .iter()
            .map(|b| candidates(b))
            .sum()
    };
    // Patterns Teddy would put together anyway (same low nibbles) move as one unit.
    let mut units: Vec<Vec<usize>> = Vec::new();
    for i in 0..n {
        let lo = low_nibbles(patterns[i], mask);
        match units
            .iter_mut()
            .find(|u| low_nibbles(patterns[u[0]], mask) == lo)
        {
            Some(u) => u.push(i),
            None => units.push(vec![i]),
        }
    }
    // Unit `k` (in layout order) lands in bucket `7 - k % 8`: that fixes each bucket's room.
    let mut room = [0usize; BUCKETS];
    for k in 0..units.len() {
        room[BUCKETS - 1 - k % BUCKETS] += 1;
    }
    // Costliest units first, each into the bucket where it adds the fewest candidates.
    let mut by_cost: Vec<(u64, usize)> = units
        .iter()
        .enumerate()
        .map(|(ui, u)| (candidates(u), ui))
        .collect();
    by_cost.sort_by(|a, b| b.cmp(a));
    let mut buckets: Vec<Vec<usize>> = vec![Vec::new(); BUCKETS];
    let mut bucket_cost = [0u64; BUCKETS];
    let mut placed: Vec<Vec<usize>> = vec![Vec::new(); BUCKETS];
    for &(_, ui) in &by_cost {
        let (_, _, best, with_cost) = (0..BUCKETS)
            .filter(|&b| placed[b].len() < room[b])
            .map(|b| {
                let mut with = buckets[b].clone();
                with.extend(&units[ui]);
                let c = candidates(&with);
                (c - bucket_cost[b], buckets[b].len(), b, c)
            })
            .min()
            .expect("room for every unit");
        buckets[best].extend(&units[ui]);
        bucket_cost[best] = with_cost;
        placed[best].push(ui);
    }
    // Layout: unit slots in order (slot k takes a unit placed in bucket 7 - k % 8), then the
    // other members of each unit, which follow their first member whatever their position.
    let mut order = Vec::with_capacity(n);
    let mut rest: Vec<usize> = Vec::new();
    for k in 0..units.len() {
        let ui = placed[BUCKETS - 1 - k % BUCKETS].remove(0);
        order.push(units[ui][0]);
        rest.extend(&units[ui][1..]);
    }
    order.extend(rest);
    if cost(&order) < cost(incumbent) {
        order
    } else {
        incumbent.to_vec()
    }
}

/// The buckets `aho_corasick`'s Teddy builds for `patterns` given in `order` (see
/// [`teddy_order`]), as indices into `patterns`.
fn teddy_buckets(patterns: &[&[u8]], order: &[usize], mask: usize) -> Vec<Vec<usize>> {
    let mut buckets = vec![Vec::new(); BUCKETS];
    let mut seen: Vec<(Vec<u8>, usize)> = Vec::new();
    for (id, &p) in order.iter().enumerate() {
        let lo = low_nibbles(patterns[p], mask);
        let b = match seen.iter().find(|s| s.0 == lo) {
            Some(s) => s.1,
            None => {
                let b = BUCKETS - 1 - id % BUCKETS;
                seen.push((lo, b));
                b
            }
        };
        buckets[b].push(p);
    }
    buckets
}

/// The low nibbles of a pattern's fingerprint: Teddy puts patterns that share them in one
/// bucket.
fn low_nibbles(pattern: &[u8], mask: usize) -> Vec<u8> {
    pattern[..mask].iter().map(|b| b & 15).collect()
}

/// Where in a text each nibble value occurs at each fingerprint offset, as bitsets over
/// positions, so that a bucket's false candidates are counted with a few hundred word
/// operations instead of a pass over the text per trial.
struct NibbleIndex {
    words: usize,
    /// `lo[j][v]`: positions `i` where `text[i + j] & 15 == v`; `hi` likewise for `>> 4`.
    lo: Vec<Vec<Vec<u64>>>,
    hi: Vec<Vec<Vec<u64>>>,
}

impl NibbleIndex {
    fn new(text: &[u8], mask: usize) -> NibbleIndex {
        let n = text.len().saturating_sub(mask - 1);
        let words = n.div_ceil(64);
        let mut lo = vec![vec![vec![0u64; words]; 16]; mask];
        let mut hi = vec![vec![vec![0u64; words]; 16]; mask];
        for i in 0..n {
            for j in 0..mask {
                let b = text[i + j];
                lo[j][usize::from(b & 15)][i / 64] |= 1 << (i % 64);
                hi[j][usize::from(b >> 4)][i / 64] |= 1 << (i % 64);
            }
        }
        NibbleIndex { words, lo, hi }
    }

    /// Positions where a Teddy bucket holding `members` would stop: at every fingerprint
    /// offset the byte's low nibble and its high nibble are each some member's there.
    fn candidates(&self, patterns: &[&[u8]], members: &[usize]) -> u64 {
        if members.is_empty() {
            return 0;
        }
        let mut acc = vec![u64::MAX; self.words];
        let mut any = vec![0u64; self.words];
        for (j, (lo, hi)) in self.lo.iter().zip(&self.hi).enumerate() {
            for (table, nibble) in [(lo, 0u8), (hi, 4u8)] {
                let mut set = 0u16;
                for &m in members {
                    set |= 1 << ((patterns[m][j] >> nibble) & 15);
                }
                any.iter_mut().for_each(|w| *w = 0);
                for (v, bits) in table.iter().enumerate() {
                    if set & (1 << v) != 0 {
                        any.iter_mut().zip(bits).for_each(|(w, b)| *w |= b);
                    }
                }
                acc.iter_mut().zip(&any).for_each(|(w, b)| *w &= b);
            }
        }
        acc.iter().map(|w| u64::from(w.count_ones())).sum()
    }
}

/// About 48 KiB of `text`, taken in 256-byte pieces spread over all of it, so that every
/// kind of log in it is represented and bucket choice stays cheap.
pub(super) fn spread_sample(text: &[u8]) -> Vec<u8> {
    let step = (text.len() / 192).max(256);
    text.chunks(step)
        .flat_map(|c| &c[..c.len().min(256)])
        .copied()
        .collect()
}

/// Greedy weighted set cover; returns the chosen candidate indices.
fn greedy(
    cands: &[&[u8]],
    covers: &[Vec<u32>],
    of_anchor: &[Vec<u32>],
    freq: &[u32],
    penalty: u32,
) -> Vec<usize> {
    // gain[c]: anchors containing c that no chosen key covers yet.
    let mut gain: Vec<u64> = covers.iter().map(|c| c.len() as u64).collect();
    let mut covered = vec![false; of_anchor.len()];
    let mut chosen = Vec::new();
    loop {
        let mut best: Option<(usize, u64)> = None; // (candidate, cost)
        for (ci, &g) in gain.iter().enumerate() {
            if g == 0 {
                continue;
            }
            let cost = u64::from(freq[ci]) + u64::from(penalty);
            // gain/cost > best gain/best cost; longer keys first on ties.
            let better = match best {
                None => true,
                Some((bi, bc)) => {
                    let (l, r) = (g * bc, gain[bi] * cost);
                    l > r || (l == r && cands[ci].len() > cands[bi].len())
                }
            };
            if better {
                best = Some((ci, cost));
            }
        }
        let Some((ci, _)) = best else {
            return chosen;
        };
        for &a in &covers[ci] {
            if !std::mem::replace(&mut covered[a as usize], true) {
                for &c in &of_anchor[a as usize] {
                    gain[c as usize] -= 1;
                }
            }
        }
        chosen.push(ci);
    }
}

/// Estimated cost of each candidate in the reference text: how often Teddy would stop at it
/// (the count of its first 4 bytes, which are its fingerprint) plus how often it really
/// occurs (the smallest count of its 4-byte windows, an upper bound) and stage two runs.
/// A key like `ntrol.` is rare, but Teddy stops at every `ntro` of "Controller".
/// Counting every candidate exactly would need an automaton of thousands of patterns at every
/// catalog build.
fn frequencies(cands: &[&[u8]], reference: &Reference) -> Vec<u32> {
    cands
        .iter()
        .map(|c| match c.windows(4).map(|w| reference.count(w)).min() {
            Some(occurs) => reference.count(&c[..4]).saturating_add(occurs),
            // Exact count of a candidate shorter than 4 bytes (only anchors that short have one).
            None => memchr::memmem::find_iter(&reference.text, c).count() as u32,
        })
        .collect()
}

fn gram(w: &[u8]) -> u32 {
    u32::from_le_bytes([w[0], w[1], w[2], w[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lower(v: &[&str]) -> Vec<Vec<u8>> {
        v.iter()
            .map(|s| s.to_ascii_lowercase().into_bytes())
            .collect()
    }

    #[test]
    fn every_anchor_contains_its_key() {
        let anchors = lower(&[
            "[ERROR] Database is mandatory",
            "abc",
            "Return value 3",
            "x",
        ]);
        let keys = choose(&anchors, 32, &Reference::builtin());
        for (a, &(off, len)) in anchors.iter().zip(&keys) {
            assert!(off + len <= a.len(), "{a:?}");
            assert!(len >= MIN_KEY.min(a.len()));
        }
    }

    #[test]
    fn teddy_order_is_a_permutation_that_never_costs_more_than_the_given_order() {
        let owned = [
            "ate ", " comp", "evalua", "the ", "[error", "name='", "(insuf", "fail", "setup",
            "ready ", "\\inets", "lation", "not ", "ntrol.", "ogged ", "d of s", "ter ",
        ];
        let pats: Vec<&[u8]> = owned.iter().map(|s| s.as_bytes()).collect();
        let given: Vec<usize> = (0..pats.len()).collect();
        let order = teddy_order(&pats, Reference::builtin().sample(), &given);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..pats.len()).collect::<Vec<_>>());
        let index = NibbleIndex::new(Reference::builtin().sample(), 4);
        let cost = |o: &[usize]| -> u64 {
            teddy_buckets(&pats, o, 4)
                .iter()
                .map(|b| index.candidates(&pats, b))
                .sum()
        };
        let given: Vec<usize> = (0..pats.len()).collect();
        // These common-letter keys collide in the given order; grouping must help.
        assert!(
            cost(&order) < cost(&given),
            "{} vs {}",
            cost(&order),
            cost(&given)
        );
    }

    #[test]
    fn nibble_index_counts_what_a_pass_over_the_text_counts() {
        let text = b"the comp ate the setup; THE evaluated [error] (insuff name='x' the ";
        let pats: Vec<&[u8]> = vec![b"the ", b"comp", b"ate ", b"[err"];
        let index = NibbleIndex::new(text, 4);
        for members in [vec![0], vec![0, 1], vec![1, 2, 3], vec![0, 1, 2, 3]] {
            let naive = text
                .windows(4)
                .filter(|w| {
                    (0..4).all(|j| {
                        members.iter().any(|&m| pats[m][j] & 15 == w[j] & 15)
                            && members.iter().any(|&m| pats[m][j] >> 4 == w[j] >> 4)
                    })
                })
                .count() as u64;
            assert_eq!(index.candidates(&pats, &members), naive, "{members:?}");
        }
    }

    #[test]
    fn teddy_buckets_follow_aho_corasicks_rule() {
        // Pattern i goes to bucket 7 - i % 8 unless its low nibbles repeat an earlier one's:
        // "abcd" and "qrst" share low nibbles (a=0x61, q=0x71, ...), so they share a bucket.
        let pats: Vec<&[u8]> = vec![b"abcd", b"wxyz", b"qrst", b"efgh"];
        let b = teddy_buckets(&pats, &[0, 1, 2, 3], 4);
        assert_eq!(b[7], vec![0, 2]);
        assert_eq!(b[6], vec![1]);
        assert_eq!(b[4], vec![3]);
    }

    #[test]
    fn shared_parts_become_one_key_when_keys_must_be_few() {
        // 40 anchors that only share "zqxj": with at most 8 keys, that part must be the key.
        let owned: Vec<String> = (0..40)
            .map(|i| format!("item {i:03} zqxj failed"))
            .collect();
        let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
        let anchors = lower(&refs);
        let keys = choose(&anchors, 8, &Reference::builtin());
        let distinct: std::collections::HashSet<&[u8]> = anchors
            .iter()
            .zip(&keys)
            .map(|(a, &(o, l))| &a[o..o + l])
            .collect();
        assert!(distinct.len() <= 8, "{} keys", distinct.len());
    }
}
