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

/// A byte trie, flat and path-compressed: a walk is a few edge lookups and slice comparisons
/// in three contiguous arrays, not a pointer chase per byte (the walk was 14 % of a
/// failure-dense scan when each node owned its edge and end vectors).
#[derive(Debug, Clone, Default)]
struct Trie {
    nodes: Vec<Node>,
    edges: Vec<Edge>,
    /// Edge labels after their first byte, lower-cased, concatenated.
    labels: Vec<u8>,
    /// Anchors that end at a node, concatenated.
    ends: Vec<u32>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Node {
    /// Children: `edges[first_edge..first_edge + edge_count]`, a handful, scanned linearly.
    first_edge: u32,
    edge_count: u32,
    /// Anchors ending here: `ends[first_end..first_end + end_count]`.
    first_end: u32,
    end_count: u32,
}

#[derive(Debug, Clone, Copy)]
struct Edge {
    /// First byte of the label (lower-cased).
    byte: u8,
    /// The rest of the label: `labels[rest_start..rest_start + rest_len]`.
    rest_start: u32,
    rest_len: u32,
    to: u32,
}

/// The plain trie the compressed one is built from.
#[derive(Default)]
struct PlainNode {
    edges: Vec<(u8, usize)>,
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
        let mut plain = vec![PlainNode::default()];
        for &id in ids {
            let mut n = 0;
            for &b in &anchors[id as usize] {
                n = match plain[n].edges.iter().find(|e| e.0 == b) {
                    Some(&(_, next)) => next,
                    None => {
                        plain.push(PlainNode::default());
                        let next = plain.len() - 1;
                        plain[n].edges.push((b, next));
                        next
                    }
                };
            }
            plain[n].ends.push(id);
        }
        let mut t = Trie::default();
        t.nodes.push(Node::default());
        t.fill(&plain, 0, 0);
        t
    }

    /// Lays out the plain node `p` as node `n`, its single-child chains folded into labels.
    fn fill(&mut self, plain: &[PlainNode], p: usize, n: usize) {
        self.nodes[n].first_end = self.ends.len() as u32;
        self.nodes[n].end_count = plain[p].ends.len() as u32;
        self.ends.extend_from_slice(&plain[p].ends);
        self.nodes[n].first_edge = self.edges.len() as u32;
        self.nodes[n].edge_count = plain[p].edges.len() as u32;
        let mut targets = Vec::with_capacity(plain[p].edges.len());
        for &(byte, mut child) in &plain[p].edges {
            let rest_start = self.labels.len();
            while plain[child].ends.is_empty() && plain[child].edges.len() == 1 {
                let (b, next) = plain[child].edges[0];
                self.labels.push(b);
                child = next;
            }
            self.nodes.push(Node::default());
            let to = self.nodes.len() - 1;
            self.edges.push(Edge {
                byte,
                rest_start: rest_start as u32,
                rest_len: (self.labels.len() - rest_start) as u32,
                to: to as u32,
            });
            targets.push((child, to));
        }
        for (child, to) in targets {
            self.fill(plain, child, to);
        }
    }

    fn walk(&self, text: &[u8], mut found: impl FnMut(u32)) {
        let (mut n, mut pos) = (0usize, 0usize);
        loop {
            let node = self.nodes[n];
            let first = node.first_end as usize;
            for &a in &self.ends[first..first + node.end_count as usize] {
                found(a);
            }
            let Some(&b) = text.get(pos) else {
                return;
            };
            let b = b.to_ascii_lowercase();
            let first = node.first_edge as usize;
            let edges = &self.edges[first..first + node.edge_count as usize];
            let Some(e) = edges.iter().find(|e| e.byte == b) else {
                return;
            };
            let (rs, rl) = (e.rest_start as usize, e.rest_len as usize);
            let Some(rest) = text.get(pos + 1..pos + 1 + rl) else {
                return;
            };
            if !rest.eq_ignore_ascii_case(&self.labels[rs..rs + rl]) {
                return;
            }
            pos += 1 + rl;
            n = e.to as usize;
        }
    }
}
