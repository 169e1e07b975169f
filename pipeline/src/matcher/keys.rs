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

/// Per-key penalties tried in turn, in units of "occurrences in the reference text".
const PENALTIES: &[u32] = &[2, 8, 32, 128, 512, 2048, 8192, 1 << 20];

/// Reference log text, lower-cased: the committed ExchangeSetup.log samples, a generated
/// successful upgrade run, a generated Windows Installer session and a ServiceControl.log run.
/// Built once per process.
fn reference_text() -> &'static [u8] {
    static TEXT: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
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
    })
}

/// For each (lower-cased, non-empty) anchor, the offset and length of its key.
pub(super) fn choose(anchors: &[Vec<u8>], max_keys: usize) -> Vec<(usize, usize)> {
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
    let freq = frequencies(&cands);
    let mut of_anchor: Vec<Vec<u32>> = vec![Vec::new(); anchors.len()];
    for (ci, cov) in covers.iter().enumerate() {
        for &a in cov {
            of_anchor[a as usize].push(ci as u32);
        }
    }
    let run = |penalty| greedy(&cands, &covers, &of_anchor, &freq, penalty);
    // The smallest penalty whose cover fits `max_keys` (key count falls as the penalty rises);
    // the largest penalty's cover when none fits.
    let (mut lo, mut hi) = (0, PENALTIES.len() - 1);
    let mut best = run(PENALTIES[hi]);
    while lo < hi {
        let mid = (lo + hi) / 2;
        let chosen = run(PENALTIES[mid]);
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

/// Estimated cost of each candidate in [`reference_text`]: how often Teddy would stop at it
/// (the count of its first 4 bytes, which are its fingerprint) plus how often it really
/// occurs (the smallest count of its 4-byte windows, an upper bound) and stage two runs.
/// A key like `ntrol.` is rare, but Teddy stops at every `ntro` of "Controller".
/// Counting every candidate exactly would need an automaton of thousands of patterns at every
/// catalog build.
fn frequencies(cands: &[&[u8]]) -> Vec<u32> {
    let grams = four_grams();
    let count = |w: &[u8]| grams.get(&gram(w)).copied().unwrap_or(0);
    cands
        .iter()
        .map(|c| match c.windows(4).map(count).min() {
            Some(occurs) => count(&c[..4]).saturating_add(occurs),
            None => short_count(c),
        })
        .collect()
}

/// Counts of the 4-byte windows of [`reference_text`], built once per process.
fn four_grams() -> &'static HashMap<u32, u32> {
    static GRAMS: std::sync::OnceLock<HashMap<u32, u32>> = std::sync::OnceLock::new();
    GRAMS.get_or_init(|| {
        let mut m = HashMap::with_capacity_and_hasher(1 << 16, Default::default());
        for w in reference_text().windows(4) {
            *m.entry(gram(w)).or_insert(0) += 1;
        }
        m
    })
}

fn gram(w: &[u8]) -> u32 {
    u32::from_le_bytes([w[0], w[1], w[2], w[3]])
}

/// Exact count of a candidate shorter than 4 bytes (only anchors that short have one).
fn short_count(c: &[u8]) -> u32 {
    memchr::memmem::find_iter(reference_text(), c).count() as u32
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
        let keys = choose(&anchors, 32);
        for (a, &(off, len)) in anchors.iter().zip(&keys) {
            assert!(off + len <= a.len(), "{a:?}");
            assert!(len >= MIN_KEY.min(a.len()));
        }
    }

    #[test]
    fn shared_parts_become_one_key_when_keys_must_be_few() {
        // 40 anchors that only share "zqxj": with at most 8 keys, that part must be the key.
        let owned: Vec<String> = (0..40)
            .map(|i| format!("item {i:03} zqxj failed"))
            .collect();
        let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
        let anchors = lower(&refs);
        let keys = choose(&anchors, 8);
        let distinct: std::collections::HashSet<&[u8]> = anchors
            .iter()
            .zip(&keys)
            .map(|(a, &(o, l))| &a[o..o + l])
            .collect();
        assert!(distinct.len() <= 8, "{} keys", distinct.len());
    }
}
