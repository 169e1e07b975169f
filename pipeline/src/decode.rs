//! Encoding detection and streaming decoding.
//!
//! UTF-16 (LE or BE) is transcoded to UTF-8 in chunks before matching: that measured ~1.6 GB/s of
//! raw input here, against ~0.14 GB/s for matching UTF-16-encoded literals directly
//! (`sinks-and-perf.md` §B6). UTF-8 and single-byte code pages are matched as raw bytes, without
//! a copy: every anchor is ASCII, and ASCII is the same in UTF-8, windows-1252, Shift_JIS and GBK.
//! Lines that are not valid UTF-8 are decoded with the legacy code page only when they are
//! shown (evidence, captured values).
//!
//! Results never depend on where chunks end: `encoding_rs` keeps a split code unit or surrogate
//! pair across calls, and the framer never treats a trailing `\r` as a line end before it knows
//! whether `\n` follows.

use encoding_rs::{CoderResult, Decoder, Encoding, UTF_16BE, UTF_16LE};
use serde::{Deserialize, Serialize};

/// How a file's bytes are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceEncoding {
    /// UTF-8 with invalid lines read through the legacy code page.
    Utf8,
    /// UTF-16 little endian.
    Utf16Le,
    /// UTF-16 big endian.
    Utf16Be,
}

/// Result of sniffing the start of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detected {
    /// The encoding.
    pub encoding: SourceEncoding,
    /// Length of the byte order mark (0 if none).
    pub bom_len: usize,
}

/// Bytes to see before deciding on an encoding without a BOM.
pub const SNIFF_LEN: usize = 4096;

/// Detects the encoding from the first bytes of a file: BOM first, then a heuristic for BOM-less
/// UTF-16 (at least 30 % zero bytes at odd offsets, hardly any at even offsets, as ASCII text in
/// UTF-16LE has), else UTF-8.
pub fn sniff(prefix: &[u8]) -> Detected {
    let d = |encoding, bom_len| Detected { encoding, bom_len };
    if prefix.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return d(SourceEncoding::Utf8, 3);
    }
    if prefix.starts_with(&[0xFF, 0xFE]) {
        return d(SourceEncoding::Utf16Le, 2);
    }
    if prefix.starts_with(&[0xFE, 0xFF]) {
        return d(SourceEncoding::Utf16Be, 2);
    }
    let n = prefix.len().min(SNIFF_LEN) & !1;
    if n >= 4 {
        let pairs = n / 2;
        let odd_zero = prefix[..n]
            .iter()
            .skip(1)
            .step_by(2)
            .filter(|&&b| b == 0)
            .count();
        let even_zero = prefix[..n].iter().step_by(2).filter(|&&b| b == 0).count();
        if odd_zero * 10 >= pairs * 3 && even_zero * 20 < pairs {
            return d(SourceEncoding::Utf16Le, 0);
        }
        if even_zero * 10 >= pairs * 3 && odd_zero * 20 < pairs {
            return d(SourceEncoding::Utf16Be, 0);
        }
    }
    d(SourceEncoding::Utf8, 0)
}

/// Streaming decoder to UTF-8 (or pass-through for UTF-8 and code pages).
///
/// UTF-16 text in these logs is nearly all ASCII, so runs of ASCII code units are narrowed
/// directly (a loop the compiler vectorizes); only the other runs go through `encoding_rs`.
/// `encoding_rs` is always handed whole code units and, once it has seen a non-ASCII run, also
/// the next ASCII unit, so any state it holds (a high surrogate) is resolved in order.
pub(crate) struct TextDecoder {
    encoding: SourceEncoding,
    inner: Option<Decoder>,
    /// A byte of a code unit split across calls.
    odd: Option<u8>,
    /// `inner` may hold state: the next unit goes to it, not to the fast path.
    slow: bool,
    /// Number of U+FFFD substitutions made so far (invalid UTF-16).
    pub(crate) replacements: u64,
    /// Everything decoded so far was ASCII: raw lengths are then twice the text lengths.
    all_ascii: bool,
}

impl TextDecoder {
    pub(crate) fn new(encoding: SourceEncoding) -> TextDecoder {
        let inner = match encoding {
            SourceEncoding::Utf8 => None,
            SourceEncoding::Utf16Le => Some(UTF_16LE.new_decoder_without_bom_handling()),
            SourceEncoding::Utf16Be => Some(UTF_16BE.new_decoder_without_bom_handling()),
        };
        TextDecoder {
            encoding,
            inner,
            odd: None,
            slow: false,
            replacements: 0,
            all_ascii: true,
        }
    }

    /// Appends the decoded form of `src` to `out`. With `last`, a dangling partial code unit
    /// becomes U+FFFD.
    pub(crate) fn decode(&mut self, src: &[u8], out: &mut Vec<u8>, last: bool) {
        if self.inner.is_none() {
            out.extend_from_slice(src);
            return;
        }
        let joined;
        let mut src = src;
        if let Some(b) = self.odd.take() {
            let mut v = Vec::with_capacity(src.len() + 1);
            v.push(b);
            v.extend_from_slice(src);
            joined = v;
            src = &joined[..];
        }
        let even = src.len() & !1;
        let (units, rest) = src.split_at(even);
        let le = self.encoding == SourceEncoding::Utf16Le;
        let is_ascii = |u: &[u8]| {
            if le {
                u[1] == 0 && u[0] < 0x80
            } else {
                u[0] == 0 && u[1] < 0x80
            }
        };
        let mut i = 0;
        while i < units.len() {
            if self.slow {
                // Through the next ASCII unit inclusive, so the decoder ends with no state.
                let mut j = i;
                while j < units.len() && !is_ascii(&units[j..j + 2]) {
                    j += 2;
                }
                let end = (j + 2).min(units.len());
                self.slow_decode(&units[i..end], out, false);
                self.slow = j >= units.len();
                i = end;
                continue;
            }
            i += narrow_ascii(&units[i..], le, out);
            if i < units.len() {
                self.slow = true;
            }
        }
        if !rest.is_empty() {
            self.odd = Some(rest[0]);
        }
        if last {
            let tail: Vec<u8> = self.odd.take().into_iter().collect();
            self.slow_decode(&tail, out, true);
            self.slow = false;
        }
    }

    fn slow_decode(&mut self, src: &[u8], out: &mut Vec<u8>, last: bool) {
        self.all_ascii = false;
        let Some(dec) = self.inner.as_mut() else {
            out.extend_from_slice(src);
            return;
        };
        let mut src = src;
        loop {
            let need = dec
                .max_utf8_buffer_length(src.len())
                .unwrap_or(src.len() * 3 + 16);
            let start = out.len();
            out.resize(start + need, 0);
            let (result, read, written, replaced) =
                dec.decode_to_utf8(src, &mut out[start..], last);
            out.truncate(start + written);
            if replaced {
                self.replacements += 1;
            }
            src = &src[read..];
            match result {
                CoderResult::InputEmpty => break,
                CoderResult::OutputFull => continue,
            }
        }
    }

    /// Raw byte length of decoded `text` (which the decoder produced).
    ///
    /// For UTF-16 the mapping is exact: each UTF-16 code unit is two bytes, each UTF-8 sequence
    /// stands for one unit, except 4-byte sequences which stand for a surrogate pair, and a
    /// replacement character stands for the one unpaired unit it replaced.
    pub(crate) fn raw_len(&self, text: &[u8]) -> u64 {
        match self.encoding {
            SourceEncoding::Utf8 => text.len() as u64,
            SourceEncoding::Utf16Le | SourceEncoding::Utf16Be if self.all_ascii => {
                text.len() as u64 * 2
            }
            SourceEncoding::Utf16Le | SourceEncoding::Utf16Be => utf16_units(text) * 2,
        }
    }
}

/// UTF-16 code units of UTF-8 `text`: one per scalar value, two for those outside the BMP
/// (4-byte sequences).
///
/// Summed in 16-bit lanes over 16 KiB chunks (at most 2 per byte, so no lane overflows): a
/// 64-bit sum per byte vectorized four bytes at a time and was a third of a scan of UTF-16
/// Windows Installer logs once they held a non-ASCII character.
fn utf16_units(text: &[u8]) -> u64 {
    text.chunks(16 << 10)
        .map(|c| {
            let n = c.iter().fold(0u16, |n, &b| {
                n + u16::from((b & 0xC0) != 0x80) + u16::from(b >= 0xF0)
            });
            u64::from(n)
        })
        .sum()
}

/// Narrows the leading ASCII code units of `units` (whole UTF-16 units) onto `out`; returns
/// the number of bytes of `units` consumed. Eight units at a time, as two 64-bit words, then
/// one by one up to the first non-ASCII unit.
fn narrow_ascii(units: &[u8], le: bool, out: &mut Vec<u8>) -> usize {
    // A unit read little-endian is ASCII when these bits are clear (high byte 0, low < 0x80).
    let (mask, shift) = if le {
        (0xFF80_FF80_FF80_FF80u64, 0)
    } else {
        (0x80FF_80FF_80FF_80FFu64, 8)
    };
    out.reserve(units.len() / 2);
    #[cfg(target_arch = "x86_64")]
    let mut i = narrow_ascii_sse2(units, le, out);
    #[cfg(not(target_arch = "x86_64"))]
    let mut i = 0;
    for chunk in units[i..].chunks_exact(16) {
        let a = u64::from_le_bytes(chunk[..8].try_into().expect("8 bytes"));
        let b = u64::from_le_bytes(chunk[8..].try_into().expect("8 bytes"));
        if (a | b) & mask != 0 {
            break;
        }
        let narrow = |w: u64| {
            [
                (w >> shift) as u8,
                (w >> (16 + shift)) as u8,
                (w >> (32 + shift)) as u8,
                (w >> (48 + shift)) as u8,
            ]
        };
        out.extend_from_slice(&narrow(a));
        out.extend_from_slice(&narrow(b));
        i += 16;
    }
    let lo = usize::from(!le);
    while i + 2 <= units.len() {
        let (l, h) = (units[i + lo], units[i + 1 - lo]);
        if h != 0 || l >= 0x80 {
            break;
        }
        out.push(l);
        i += 2;
    }
    i
}

/// The SSE2 part of [`narrow_ascii`] (SSE2 is part of x86-64): 16 code units per step,
/// checked and packed to bytes in two vector operations. Stops before the first 32-byte block
/// holding a non-ASCII unit; returns the bytes of `units` consumed. `out` must have room for
/// `units.len() / 2` more bytes.
#[cfg(target_arch = "x86_64")]
fn narrow_ascii_sse2(units: &[u8], le: bool, out: &mut Vec<u8>) -> usize {
    use std::arch::x86_64::{
        __m128i, _mm_and_si128, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
        _mm_packus_epi16, _mm_set1_epi16, _mm_setzero_si128, _mm_srli_epi16, _mm_storeu_si128,
    };
    assert!(out.capacity() - out.len() >= units.len() / 2);
    let (mut i, mut o) = (0, out.len());
    // SAFETY: SSE2 is always available on x86-64. Loads read `units[i..i + 32]`, in bounds by
    // the loop condition; each store writes 16 bytes at `out[o..]`, and `o - out.len()` is
    // `i / 2`, so it stays within the capacity asserted above. `set_len` covers only bytes
    // written.
    unsafe {
        // A unit loaded as a little-endian u16 is ASCII when these bits are clear.
        let mask = _mm_set1_epi16(if le { 0xFF80u16 } else { 0x80FFu16 } as i16);
        let dst = out.as_mut_ptr();
        while i + 32 <= units.len() {
            let a = _mm_loadu_si128(units.as_ptr().add(i).cast::<__m128i>());
            let b = _mm_loadu_si128(units.as_ptr().add(i + 16).cast::<__m128i>());
            let bad = _mm_and_si128(_mm_or_si128(a, b), mask);
            if _mm_movemask_epi8(_mm_cmpeq_epi8(bad, _mm_setzero_si128())) != 0xFFFF {
                break;
            }
            let (a, b) = if le {
                (a, b)
            } else {
                (_mm_srli_epi16::<8>(a), _mm_srli_epi16::<8>(b))
            };
            _mm_storeu_si128(dst.add(o).cast::<__m128i>(), _mm_packus_epi16(a, b));
            i += 32;
            o += 16;
        }
        out.set_len(o);
    }
    i
}

/// Decodes one line for display: UTF-8 when valid, else the legacy code page.
pub fn display_line(bytes: &[u8], fallback: &'static Encoding) -> (String, bool) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_string(), false),
        Err(_) => {
            let (s, _, _) = fallback.decode(bytes);
            (s.into_owned(), true)
        }
    }
}

/// Looks up a legacy code page by WHATWG label (`windows-1252`, `shift_jis`, `gbk`, ...).
pub fn code_page(label: &str) -> Option<&'static Encoding> {
    Encoding::for_label(label.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16le(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
    }

    #[test]
    fn utf16_units_count_scalars_and_surrogate_pairs() {
        for t in [
            "",
            "abc",
            "caf\u{e9}",
            "\u{5b89}\u{88c5}",
            "a\u{1F600}b",
            &"\u{e9}x".repeat(20_000),
        ] {
            let want: u64 = t.chars().map(|c| c.len_utf16() as u64).sum();
            assert_eq!(utf16_units(t.as_bytes()), want, "{t:.20}");
        }
    }

    #[test]
    fn sniffs_boms_and_bomless_utf16() {
        assert_eq!(sniff(b"\xFF\xFEa\0").encoding, SourceEncoding::Utf16Le);
        assert_eq!(sniff(b"\xFE\xFF\0a").encoding, SourceEncoding::Utf16Be);
        assert_eq!(sniff(b"\xEF\xBB\xBFabc").bom_len, 3);
        assert_eq!(
            sniff(&utf16le("MSI (s) (D0:A0) [21:24:36:744]: x")).encoding,
            SourceEncoding::Utf16Le
        );
        assert_eq!(
            sniff(b"[03/13/2021 05:01:28.0382] [0] ****").encoding,
            SourceEncoding::Utf8
        );
        assert_eq!(sniff(b"caf\xe9 au lait").encoding, SourceEncoding::Utf8);
    }

    #[test]
    fn utf16_split_anywhere_decodes_the_same_and_maps_lengths() {
        let text = "Error 1310. C:\\avcodec-57.dll é 日本 😀\r\n";
        let raw = utf16le(text);
        for split in 0..raw.len() {
            let mut d = TextDecoder::new(SourceEncoding::Utf16Le);
            let mut out = Vec::new();
            d.decode(&raw[..split], &mut out, false);
            d.decode(&raw[split..], &mut out, true);
            assert_eq!(std::str::from_utf8(&out).unwrap(), text, "split {split}");
            assert_eq!(d.raw_len(&out), raw.len() as u64);
        }
    }

    #[test]
    fn fast_path_agrees_with_encoding_rs_on_any_split() {
        // Lone surrogates, pairs, non-ASCII BMP, ASCII: decoded exactly as encoding_rs does.
        // ASCII runs longer than the 16-unit vector steps, broken by each kind of non-ASCII
        // unit (and 0x80, the first non-ASCII value, and 0x7F, the last ASCII one).
        let ascii = |n: u16| (0..n).map(|k| 0x20 + (k * 7) % 0x60);
        let units: Vec<u16> = ascii(37)
            .chain([0x41, 0xD83D, 0xDE00, 0x42, 0xD800, 0x43, 0xDC00, 0xE9, 0x44])
            .chain(ascii(33))
            .chain([0x80, 0x7F])
            .chain(ascii(17))
            .chain([0xD83D, 0x0A, 0x45, 0xD83D])
            .collect();
        for (enc, to_bytes) in [
            (
                SourceEncoding::Utf16Le,
                u16::to_le_bytes as fn(u16) -> [u8; 2],
            ),
            (
                SourceEncoding::Utf16Be,
                u16::to_be_bytes as fn(u16) -> [u8; 2],
            ),
        ] {
            let raw: Vec<u8> = units.iter().flat_map(|&u| to_bytes(u)).collect();
            let reference = match enc {
                SourceEncoding::Utf16Le => {
                    UTF_16LE.decode_without_bom_handling(&raw).0.into_owned()
                }
                _ => UTF_16BE.decode_without_bom_handling(&raw).0.into_owned(),
            };
            for a in 0..=raw.len() {
                for b in a..=raw.len() {
                    let mut d = TextDecoder::new(enc);
                    let mut out = Vec::new();
                    d.decode(&raw[..a], &mut out, false);
                    d.decode(&raw[a..b], &mut out, false);
                    d.decode(&raw[b..], &mut out, true);
                    assert_eq!(
                        String::from_utf8(out).unwrap(),
                        reference,
                        "{enc:?} split {a} {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn invalid_utf8_line_is_shown_through_the_code_page() {
        let (s, fell_back) = display_line(b"Caf\xe9", code_page("windows-1252").unwrap());
        assert_eq!(s, "Café");
        assert!(fell_back);
    }
}
