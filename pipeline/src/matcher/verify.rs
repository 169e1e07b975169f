//! Stage two: which anchors really occur around a key hit.
//!
//! A key can stand for many anchors (`evaluate` for every `Evaluated [Rule:X]` anchor), and
//! its hits are frequent, so comparing each anchor in turn would cost more than finding the
//! key. Anchors sharing a key at the same offset go into a byte trie instead, walked once
//! per hit for as long as some anchor still agrees.

/// The anchors of one stage-one pattern, by the offset of their key.
#[derive(Debug, Clone, Default)]
pub(super) struct Group {
    by_offset: Vec<(usize, Check)>,
}

#[derive(Debug, Clone)]
enum Check {
    /// One anchor: a plain comparison.
    One(u32),
    /// Several anchors: a trie over them.
    Trie(Trie),
}

#[derive(Debug, Clone, Default)]
struct Trie {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// Children by (lower-cased) byte; a handful per node, so a linear scan is fastest.
    edges: Vec<(u8, u32)>,
    /// Anchors that end here.
    ends: Vec<u32>,
}

impl Group {
    /// A group of `members`: (anchor id, offset of the key within it); `anchors` lower-cased.
    pub(super) fn new(members: &[(u32, usize)], anchors: &[Vec<u8>]) -> Group {
        let mut offsets: Vec<usize> = members.iter().map(|m| m.1).collect();
        offsets.sort_unstable();
        offsets.dedup();
        let by_offset = offsets
            .into_iter()
            .map(|k| {
                let ids: Vec<u32> = members.iter().filter(|m| m.1 == k).map(|m| m.0).collect();
                let check = match ids[..] {
                    [one] => Check::One(one),
                    _ => Check::Trie(Trie::new(&ids, anchors)),
                };
                (k, check)
            })
            .collect();
        Group { by_offset }
    }

    /// Pushes `(start, anchor)` for every member anchor that occurs in `hay` with its key at
    /// `at`.
    pub(super) fn check(
        &self,
        hay: &[u8],
        at: usize,
        anchors: &[Vec<u8>],
        hits: &mut Vec<(usize, u32)>,
    ) {
        for (k, check) in &self.by_offset {
            let Some(start) = at.checked_sub(*k) else {
                continue;
            };
            match check {
                Check::One(a) => {
                    let anchor = &anchors[*a as usize];
                    if hay.len() - start >= anchor.len()
                        && hay[start..start + anchor.len()].eq_ignore_ascii_case(anchor)
                    {
                        hits.push((start, *a));
                    }
                }
                Check::Trie(t) => t.walk(&hay[start..], |a| hits.push((start, a))),
            }
        }
    }
}

impl Trie {
    fn new(ids: &[u32], anchors: &[Vec<u8>]) -> Trie {
        let mut t = Trie {
            nodes: vec![Node::default()],
        };
        for &id in ids {
            let mut n = 0;
            for &b in &anchors[id as usize] {
                n = match t.nodes[n].edges.iter().find(|e| e.0 == b) {
                    Some(&(_, next)) => next as usize,
                    None => {
                        t.nodes.push(Node::default());
                        let next = t.nodes.len() - 1;
                        t.nodes[n].edges.push((b, next as u32));
                        next
                    }
                };
            }
            t.nodes[n].ends.push(id);
        }
        t
    }

    fn walk(&self, text: &[u8], mut found: impl FnMut(u32)) {
        let mut n = 0;
        for &b in text {
            let b = b.to_ascii_lowercase();
            match self.nodes[n].edges.iter().find(|e| e.0 == b) {
                Some(&(_, next)) => n = next as usize,
                None => return,
            }
            for &a in &self.nodes[n].ends {
                found(a);
            }
        }
    }
}
