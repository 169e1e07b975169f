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

/// `\r` bytes not followed by `\n` (a `\r` at the end counts). A branch-free loop the
/// compiler vectorizes: CRLF logs have a `\r` on every line, too many to visit one by one.
fn lone_cr(span: &[u8]) -> u64 {
    let Some((&last, _)) = span.split_last() else {
        return 0;
    };
    let (this, next) = (&span[..span.len() - 1], &span[1..]);
    let mut n = u64::from(last == b'\r');
    // Byte-wide counters (vector lanes) cannot overflow within 255 bytes.
    for (x, y) in this.chunks(255).zip(next.chunks(255)) {
        let mut c: u8 = 0;
        for (p, q) in x.iter().zip(y) {
            c += u8::from(*p == b'\r') & u8::from(*q != b'\n');
        }
        n += u64::from(c);
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
