//! Physical lines, as `StreamReader.ReadLine` sees them: `\n`, `\r\n` and a lone `\r` all end a
//! line (`exchange-setup-log.md` §1). Lines are found only around matches (`line_bounds`) and
//! counted in bulk (`count_lines`), never by a loop that visits every line.

use memchr::{memchr2, memchr_iter, memrchr2};

/// Start of the line containing `pos`: one past the previous `\n` or `\r`, not before `floor`.
pub(crate) fn line_start(buf: &[u8], floor: usize, pos: usize) -> usize {
    memrchr2(b'\n', b'\r', &buf[floor..pos]).map_or(floor, |i| floor + i + 1)
}

/// End of the line containing `pos` (index of its terminator, or `limit`).
pub(crate) fn line_end(buf: &[u8], pos: usize, limit: usize) -> usize {
    memchr2(b'\n', b'\r', &buf[pos..limit]).map_or(limit, |i| pos + i)
}

/// Index just past the terminator that starts at `end` (`\r\n` counts as one).
pub(crate) fn skip_terminator(buf: &[u8], end: usize) -> usize {
    match buf.get(end) {
        Some(b'\r') if buf.get(end + 1) == Some(&b'\n') => end + 2,
        Some(b'\r') | Some(b'\n') => end + 1,
        _ => end,
    }
}

/// Number of line terminators in `span`, where `\r\n` counts once. A `\r` at the very end of
/// `span` counts as a terminator: callers only pass spans that end on a complete line.
pub(crate) fn count_lines(span: &[u8]) -> u64 {
    let lf = memchr_iter(b'\n', span).count() as u64;
    if memchr::memchr(b'\r', span).is_none() {
        return lf;
    }
    lf + lone_cr(span)
}

/// `\r` bytes not followed by `\n` (a `\r` at the end counts). CRLF logs have a `\r` on every
/// line, too many to visit one by one, so this is a branch-free loop over 32-byte blocks that
/// the compiler vectorizes, built for AVX2 when the CPU has it (x86-64's baseline is SSE2).
fn lone_cr(span: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { lone_cr_avx2(span) };
    }
    lone_cr_blocks(span)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn lone_cr_avx2(span: &[u8]) -> u64 {
    lone_cr_blocks(span)
}

#[inline(always)]
fn lone_cr_blocks(span: &[u8]) -> u64 {
    let Some((&last, _)) = span.split_last() else {
        return 0;
    };
    let (this, next) = (&span[..span.len() - 1], &span[1..]);
    let mut n = u64::from(last == b'\r');
    let lone = |p: u8, q: u8| u8::from(p == b'\r') & u8::from(q != b'\n');
    let mut lanes = [0u8; 32];
    let (mut xs, mut ys) = (this.chunks_exact(32), next.chunks_exact(32));
    let mut blocks = 0u32;
    for (x, y) in (&mut xs).zip(&mut ys) {
        for k in 0..32 {
            lanes[k] += lone(x[k], y[k]);
        }
        blocks += 1;
        // A lane gains at most 1 per block: flush before it can wrap.
        if blocks == 255 {
            n += lanes.iter().map(|&c| u64::from(c)).sum::<u64>();
            lanes = [0; 32];
            blocks = 0;
        }
    }
    n += lanes.iter().map(|&c| u64::from(c)).sum::<u64>();
    for (p, q) in xs.remainder().iter().zip(ys.remainder()) {
        n += u64::from(lone(*p, *q));
    }
    n
}

/// End of the last complete line in `buf[from..]`: the index just past its terminator. A
/// trailing `\r` is not complete (a `\n` may follow in the next chunk) unless `eof`.
pub(crate) fn complete_end(buf: &[u8], from: usize, eof: bool) -> Option<usize> {
    let i = from + memrchr2(b'\n', b'\r', &buf[from..])?;
    if buf[i] == b'\r' && i + 1 == buf.len() && !eof {
        // Is there an earlier terminator? Everything before this `\r` is then complete.
        return memrchr2(b'\n', b'\r', &buf[from..i]).map(|j| skip_terminator(buf, from + j));
    }
    Some(skip_terminator(buf, i))
}

/// Iterates over the lines of `buf[from..to]` (which ends on a line boundary), yielding
/// `(start, end_without_terminator)`.
pub(crate) fn lines(
    buf: &[u8],
    from: usize,
    to: usize,
) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut pos = from;
    std::iter::from_fn(move || {
        if pos >= to {
            return None;
        }
        let end = line_end(buf, pos, to);
        let start = pos;
        pos = skip_terminator(buf, end).max(end + 1).min(to.max(end + 1));
        Some((start, end))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_lf_crlf_and_lone_cr() {
        assert_eq!(count_lines(b"a\nb\r\nc\rd\n"), 4);
        assert_eq!(count_lines(b"a\n\r\n"), 2);
        assert_eq!(count_lines(b"no terminator"), 0);
        assert_eq!(count_lines(b"\r"), 1);
        assert_eq!(count_lines(b"\r\r\n\r"), 3);
        let long: Vec<u8> = b"ab\rcd\r\n".repeat(1000);
        assert_eq!(count_lines(&long), 2000);
    }

    #[test]
    fn lone_cr_agrees_with_a_naive_count_past_the_lane_flush() {
        // 255 blocks of 32 bytes is where the lanes flush: cover several flushes and tails.
        let mut seed = 0x2545_f491_u32;
        let mut span = Vec::new();
        for len in [0, 1, 31, 32, 33, 8_159, 8_160, 8_161, 40_000] {
            span.clear();
            for _ in 0..len {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                span.push([b'\r', b'\n', b'a', b'\r'][(seed >> 16) as usize % 4]);
            }
            let naive = (0..span.len())
                .filter(|&i| span[i] == b'\r' && span.get(i + 1) != Some(&b'\n'))
                .count() as u64;
            assert_eq!(lone_cr(&span), naive, "len {len}");
            assert_eq!(lone_cr_blocks(&span), naive, "len {len}");
        }
    }

    #[test]
    fn trailing_cr_waits_for_a_possible_lf() {
        assert_eq!(complete_end(b"a\nb\r", 0, false), Some(2));
        assert_eq!(complete_end(b"a\nb\r", 0, true), Some(4));
        assert_eq!(complete_end(b"abc\r", 0, false), None);
        assert_eq!(complete_end(b"a\r\nb", 0, false), Some(3));
    }

    #[test]
    fn lines_iterates_all_terminators() {
        let buf = b"a\r\nb\rc\n\r\nd\n";
        let v: Vec<_> = lines(buf, 0, buf.len()).map(|(s, e)| &buf[s..e]).collect();
        assert_eq!(v, vec![&b"a"[..], b"b", b"c", b"", b"d"]);
    }
}
