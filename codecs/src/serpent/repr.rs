//! Python `repr` for `str`, `bytes` and `float`, byte for byte as CPython 3.11 writes them.

use super::unicode_table::NON_PRINTABLE;

/// An output buffer the repr writers append to: a `Vec<u8>` (the encoder) or a `String`.
pub(crate) trait Sink {
    /// Appends a string.
    fn put(&mut self, s: &str);
    /// Appends ASCII bytes (callers only pass ASCII).
    fn put_ascii(&mut self, b: &[u8]);
    /// Appends one ASCII byte.
    fn put_byte(&mut self, b: u8);
}

impl Sink for Vec<u8> {
    #[inline]
    fn put(&mut self, s: &str) {
        self.extend_from_slice(s.as_bytes());
    }
    #[inline]
    fn put_ascii(&mut self, b: &[u8]) {
        self.extend_from_slice(b);
    }
    #[inline]
    fn put_byte(&mut self, b: u8) {
        self.push(b);
    }
}

impl Sink for String {
    #[inline]
    fn put(&mut self, s: &str) {
        self.push_str(s);
    }
    #[inline]
    fn put_ascii(&mut self, b: &[u8]) {
        self.extend(b.iter().map(|&c| char::from(c)));
    }
    #[inline]
    fn put_byte(&mut self, b: u8) {
        self.push(char::from(b));
    }
}

/// Whether CPython 3.11's `str.isprintable()` is true for `c` (Unicode 14.0.0 tables).
pub fn is_printable(c: char) -> bool {
    let cp = u32::from(c);
    if cp < 0x80 {
        return (0x20..0x7F).contains(&cp);
    }
    // Binary search the sorted, disjoint ranges of non-printable code points.
    let idx = NON_PRINTABLE.partition_point(|&(_, end)| end < cp);
    match NON_PRINTABLE.get(idx) {
        Some(&(start, _)) => cp < start,
        None => true,
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The quote character Python's `repr` picks: `"` if the text has `'` and no `"`, else `'`.
#[inline]
fn choose_quote(bytes: &[u8]) -> u8 {
    let mut single = false;
    for &b in bytes {
        if b == b'"' {
            return b'\'';
        }
        if b == b'\'' {
            single = true;
        }
    }
    if single {
        b'"'
    } else {
        b'\''
    }
}

#[inline]
fn put_hex_escape<S: Sink>(out: &mut S, prefix: u8, cp: u32, digits: u32) {
    let mut buf = [0u8; 10];
    buf[0] = b'\\';
    buf[1] = prefix;
    let n = digits as usize;
    for i in 0..n {
        let shift = 4 * (digits - 1 - i as u32);
        buf[2 + i] = HEX[((cp >> shift) & 0xF) as usize];
    }
    out.put_ascii(&buf[..2 + n]);
}

/// For each byte: 0 = ASCII written as-is, 1 = ASCII needing attention (control characters,
/// DEL, backslash, either quote), 2 = start or continuation of a non-ASCII character.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if i >= 0x80 {
            2
        } else if i < 0x20
            || i == 0x7F
            || i == b'\\' as usize
            || i == b'\'' as usize
            || i == b'"' as usize
        {
            1
        } else {
            0
        };
        i += 1;
    }
    t
};

/// Writes Python's `repr(s)` for a str.
pub(crate) fn write_str_repr<S: Sink>(s: &str, out: &mut S) {
    let bytes = s.as_bytes();
    // Fast path: printable ASCII without quotes or backslashes is written as it is.
    if bytes.iter().all(|&b| CLASS[usize::from(b)] == 0) {
        out.put_byte(b'\'');
        out.put(s);
        out.put_byte(b'\'');
        return;
    }
    let quote = choose_quote(bytes);
    out.put_byte(quote);
    let mut run = 0usize; // start of the pending run of bytes written as-is
    let mut i = 0usize;
    while let Some(&b) = bytes.get(i) {
        match CLASS[usize::from(b)] {
            0 => i += 1,
            1 => {
                if (b == b'\'' || b == b'"') && b != quote {
                    i += 1;
                    continue;
                }
                out.put(s.get(run..i).unwrap_or(""));
                match b {
                    b'\\' => out.put_ascii(b"\\\\"),
                    b'\t' => out.put_ascii(b"\\t"),
                    b'\n' => out.put_ascii(b"\\n"),
                    b'\r' => out.put_ascii(b"\\r"),
                    _ if b == quote => {
                        out.put_byte(b'\\');
                        out.put_byte(quote);
                    }
                    _ => put_hex_escape(out, b'x', u32::from(b), 2),
                }
                i += 1;
                run = i;
            }
            _ => {
                let Some(c) = s.get(i..).and_then(|rest| rest.chars().next()) else {
                    break;
                };
                let len = c.len_utf8();
                if !is_printable(c) {
                    out.put(s.get(run..i).unwrap_or(""));
                    let cp = u32::from(c);
                    if cp <= 0xFF {
                        put_hex_escape(out, b'x', cp, 2);
                    } else if cp <= 0xFFFF {
                        put_hex_escape(out, b'u', cp, 4);
                    } else {
                        put_hex_escape(out, b'U', cp, 8);
                    }
                    run = i + len;
                }
                i += len;
            }
        }
    }
    out.put(s.get(run..).unwrap_or(""));
    out.put_byte(quote);
}

/// Writes Python's `repr(b)` for bytes (`b'...'`), as serpent's `bytes_repr=True` does.
pub(crate) fn write_bytes_repr<S: Sink>(data: &[u8], out: &mut S) {
    let quote = choose_quote(data);
    out.put_byte(b'b');
    out.put_byte(quote);
    let mut run = 0usize;
    for (i, &b) in data.iter().enumerate() {
        if (0x20..0x7F).contains(&b) && b != b'\\' && b != quote {
            continue;
        }
        out.put_ascii(data.get(run..i).unwrap_or(&[]));
        match b {
            b'\\' => out.put_ascii(b"\\\\"),
            b'\t' => out.put_ascii(b"\\t"),
            b'\n' => out.put_ascii(b"\\n"),
            b'\r' => out.put_ascii(b"\\r"),
            _ if b == quote => {
                out.put_byte(b'\\');
                out.put_byte(quote);
            }
            _ => put_hex_escape(out, b'x', u32::from(b), 2),
        }
        run = i + 1;
    }
    out.put_ascii(data.get(run..).unwrap_or(&[]));
    out.put_byte(quote);
}

/// Writes Python's `repr(s)`, e.g. `'a\nb'`, `"it's"`, `'\xa0'`, `'日本'`, to `out`.
///
/// Quote choice, escapes and the set of characters written raw match CPython 3.11 (Unicode
/// 14.0.0 `isprintable` tables) byte for byte.
pub fn repr_str(s: &str, out: &mut String) {
    write_str_repr(s, out);
}

/// Splits ryu's shortest representation into significant digits and the decimal exponent
/// `e` such that the value is `d1.d2d3... x 10^e`. Returns the digit count.
fn shortest_digits(text: &str, digits: &mut [u8; 32]) -> (usize, i32) {
    let mut n = 0usize;
    let mut point: Option<usize> = None;
    let mut exp: i32 = 0;
    let mut chars = text.bytes();
    let mut leading_zeros_after_point = 0i32;
    while let Some(b) = chars.next() {
        match b {
            b'0'..=b'9' => {
                if n == 0 && b == b'0' {
                    // Leading zero: only matters after the point.
                    if point.is_some() {
                        leading_zeros_after_point += 1;
                    }
                    continue;
                }
                if let Some(slot) = digits.get_mut(n) {
                    *slot = b;
                    n += 1;
                }
            }
            b'.' => point = Some(n),
            b'e' | b'E' => {
                let rest: String = chars.by_ref().map(char::from).collect();
                exp = rest.parse().unwrap_or(0);
                break;
            }
            _ => {}
        }
    }
    // Number of significant digits before the point.
    let int_digits = match point {
        Some(p) => p as i32 - leading_zeros_after_point,
        None => n as i32,
    };
    // Drop trailing zeros.
    while n > 1 && digits.get(n - 1) == Some(&b'0') {
        n -= 1;
    }
    (n, int_digits - 1 + exp)
}

/// Formats finite `text` (ryu's shortest output) the way Python's `repr` does.
fn write_python_float_text<S: Sink>(negative: bool, text: &str, out: &mut S) {
    let mut digits = [0u8; 32];
    let (n, e) = shortest_digits(text, &mut digits);
    let mut buf = [0u8; 40];
    let mut len = 0usize;
    let mut push = |b: u8| {
        if let Some(slot) = buf.get_mut(len) {
            *slot = b;
            len += 1;
        }
    };
    if negative {
        push(b'-');
    }
    let ds = digits.get(..n).unwrap_or(&[]);
    if n == 0 {
        // Zero.
        for &b in b"0.0" {
            push(b);
        }
    } else if (-4..16).contains(&e) {
        if e >= 0 {
            let int_len = e as usize + 1;
            for k in 0..int_len {
                push(ds.get(k).copied().unwrap_or(b'0'));
            }
            push(b'.');
            if n > int_len {
                for &d in ds.get(int_len..).unwrap_or(&[]) {
                    push(d);
                }
            } else {
                push(b'0');
            }
        } else {
            push(b'0');
            push(b'.');
            for _ in 0..(-e - 1) {
                push(b'0');
            }
            for &d in ds {
                push(d);
            }
        }
    } else {
        push(ds.first().copied().unwrap_or(b'0'));
        if n > 1 {
            push(b'.');
            for &d in ds.get(1..).unwrap_or(&[]) {
                push(d);
            }
        }
        push(b'e');
        push(if e < 0 { b'-' } else { b'+' });
        let a = e.unsigned_abs();
        if a >= 100 {
            push(b'0' + (a / 100) as u8);
        }
        push(b'0' + ((a / 10) % 10) as u8);
        push(b'0' + (a % 10) as u8);
    }
    out.put_ascii(buf.get(..len).unwrap_or(&[]));
}

/// Writes a finite `v` with zero or a magnitude in [1e-4, 1e16): the shortest round-trip
/// digits in positional notation, which is Python's layout for decimal exponents -4..=15
/// (`0.0001`, `123.45`, `1000000000000000.0`, `-0.0`). 1e16 is exact and the double nearest
/// 1e-4 is written `0.0001`, so no value in the range has an exponent outside -4..=15.
///
/// The digits come from zmij (the float writer serde_json uses: about three times faster
/// than ryu on typical values, with the same digits and layout in this range; a test below
/// compares the two).
#[inline]
fn write_positional<S: Sink>(v: f64, out: &mut S) {
    let mut buf = zmij::Buffer::new();
    out.put_ascii(buf.format_finite(v).as_bytes());
}

/// Writes a finite or non-finite f64 the way Python's `repr(float)` does: `1.0`, `-0.0`,
/// `1e+16`, `1e-05`, `0.0001`, `inf`, `-inf`, `nan`.
pub(crate) fn write_float_repr<S: Sink>(v: f64, out: &mut S) {
    if v.is_nan() {
        out.put_ascii(b"nan");
    } else if v.is_infinite() {
        out.put_ascii(if v > 0.0 { b"inf" } else { b"-inf" });
    } else {
        let a = v.abs();
        if a == 0.0 || (1e-4..1e16).contains(&a) {
            write_positional(v, out);
            return;
        }
        let mut buf = ryu::Buffer::new();
        let text = buf.format_finite(v);
        // ryu writes positional notation for decimal exponents -5..=15 and Python for
        // -4..=15, identically (`0.0001`, `123.45`, `1000000000000000.0`); only its
        // scientific forms and the exponent -5 (`0.0000ddd`) need rewriting.
        let unsigned = text.strip_prefix('-').unwrap_or(text);
        if !unsigned.contains('e') && !unsigned.starts_with("0.0000") {
            out.put_ascii(text.as_bytes());
        } else {
            write_python_float_text(v.is_sign_negative(), unsigned, out);
        }
    }
}

/// Writes an f32 with the shortest digits that round-trip *as an f32*, in Python's float
/// repr layout (so `0.1f32` is written `0.1`, which Python reads as the float nearest 0.1).
pub(crate) fn write_f32_repr<S: Sink>(v: f32, out: &mut S) {
    if !v.is_finite() {
        write_float_repr(f64::from(v), out);
    } else {
        let mut buf = ryu::Buffer::new();
        let a = v.abs();
        // ryu writes f32 positionally for decimal exponents -6..=12, in Python's layout;
        // zero and magnitudes in [1e-4, 1e12) have shortest digits with an exponent in
        // -4..=12 (the f32 nearest 1e-4 is written `0.0001`, and nothing below the f32
        // nearest 1e12 rounds up to 1e13).
        if a == 0.0 || (1e-4..1e12).contains(&a) {
            out.put_ascii(buf.format_finite(v).as_bytes());
            return;
        }
        let text = buf.format_finite(a);
        write_python_float_text(v.is_sign_negative(), text, out);
    }
}

/// Writes a float as serpent does: Python `repr` for finite values, `1e30000` / `-1e30000`
/// for the infinities and `{'__class__':'float','value':'nan'}` for NaN.
pub(crate) fn write_serpent_float<S: Sink>(v: f64, out: &mut S) {
    if v.is_nan() {
        out.put_ascii(NAN_DICT.as_bytes());
    } else if v.is_infinite() {
        out.put_ascii(if v > 0.0 { b"1e30000" } else { b"-1e30000" });
    } else {
        write_float_repr(v, out);
    }
}

/// What serpent writes for a NaN float.
pub(crate) const NAN_DICT: &str = "{'__class__':'float','value':'nan'}";

/// Writes Python's `repr(v)` for a float to `out`: shortest round-trip digits, positional
/// notation for exponents -4..=15 and `d.ddde±XX` otherwise (`1e+16`, `1e-05`, `2.5e-300`),
/// always with a `.` or an exponent (`1.0`), `-0.0`, and `inf` / `-inf` / `nan` for the
/// non-finite values (serpent itself writes those as `1e30000`, `-1e30000` and a dict).
pub fn repr_float(v: f64, out: &mut String) {
    write_float_repr(v, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: f64) -> String {
        let mut s = String::new();
        repr_float(v, &mut s);
        s
    }

    #[test]
    fn float_table() {
        let table: &[(f64, &str)] = &[
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (-1.5, "-1.5"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (1e-4, "0.0001"),
            (1e-5, "1e-05"),
            (1.5e-5, "1.5e-05"),
            (1e-7, "1e-07"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (1.2345678901234568e20, "1.2345678901234568e+20"),
            (9999999999999998.0, "9999999999999998.0"),
            (123456789012345.0, "123456789012345.0"),
            (2.5e-300, "2.5e-300"),
            (1e300, "1e+300"),
            (1e22, "1e+22"),
            (0.3333333333333333, "0.3333333333333333"),
            (98765432123456.12, "98765432123456.12"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
        ];
        for &(v, want) in table {
            assert_eq!(f(v), want, "repr of {v:?}");
        }
    }

    /// The positional fast paths give what the general layout gives, around every
    /// boundary and on pseudo-random bit patterns.
    #[test]
    fn float_fast_paths_match_the_general_layout() {
        fn slow64(v: f64) -> String {
            let mut s = String::new();
            let mut buf = ryu::Buffer::new();
            write_python_float_text(v.is_sign_negative(), buf.format_finite(v.abs()), &mut s);
            s
        }
        fn slow32(v: f32) -> String {
            let mut s = String::new();
            let mut buf = ryu::Buffer::new();
            write_python_float_text(v.is_sign_negative(), buf.format_finite(v.abs()), &mut s);
            s
        }
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut f64s = vec![0.0, -0.0, 1e-4, 1e16, 1e-5, 1e15, 0.1, 1.0];
        let mut f32s = vec![0.0f32, -0.0, 1e-4, 1e12, 1e13, 1e-5, 1e-6, 0.1, 0.75];
        for &b in &[1e-4f64, 1e16, 1e-5, 1e15] {
            let bits = b.to_bits();
            for d in 0..64u64 {
                f64s.push(f64::from_bits(bits + d));
                f64s.push(f64::from_bits(bits - d));
            }
        }
        for &b in &[1e-4f32, 1e12, 1e13, 1e-5, 1e-6] {
            let bits = b.to_bits();
            for d in 0..64u32 {
                f32s.push(f32::from_bits(bits + d));
                f32s.push(f32::from_bits(bits - d));
            }
        }
        for _ in 0..100_000 {
            let r = next();
            // Exponents around the interesting range, any significand and sign.
            let exp = 1023 - 20 + (r >> 52) % 80;
            f64s.push(f64::from_bits(
                (r & (1 << 63)) | (exp << 52) | (r & ((1 << 52) - 1)),
            ));
            let r = next();
            let exp = 127 - 20 + (r as u32 >> 23) % 70;
            f32s.push(f32::from_bits(
                ((r >> 32) as u32 & (1 << 31)) | (exp << 23) | (r as u32 & ((1 << 23) - 1)),
            ));
        }
        for v in f64s {
            assert_eq!(f(v), slow64(v), "f64 {v:e}");
        }
        for v in f32s {
            let mut s = String::new();
            write_f32_repr(v, &mut s);
            assert_eq!(s, slow32(v), "f32 {v:e}");
        }
    }

    #[test]
    fn f32_shortest() {
        let mut s = String::new();
        write_f32_repr(0.1f32, &mut s);
        assert_eq!(s, "0.1");
        s.clear();
        write_f32_repr(1e20f32, &mut s);
        assert_eq!(s, "1e+20");
    }

    #[test]
    fn str_quotes_and_escapes() {
        let cases: &[(&str, &str)] = &[
            ("it's", "\"it's\""),
            ("say \"hi\"", "'say \"hi\"'"),
            ("it's \"q\"", "'it\\'s \"q\"'"),
            ("a\nb\tc\rd\0e\x07f\x7f", "'a\\nb\\tc\\rd\\x00e\\x07f\\x7f'"),
            ("a\\b", "'a\\\\b'"),
            ("\u{a0}\u{ad}\u{85}", "'\\xa0\\xad\\x85'"),
            ("\u{2028}\u{200b}\u{feff}", "'\\u2028\\u200b\\ufeff'"),
            ("\u{e0001}", "'\\U000e0001'"),
            ("héllo €uro 日本 😀", "'héllo €uro 日本 😀'"),
        ];
        for &(s, want) in cases {
            let mut out = String::new();
            repr_str(s, &mut out);
            assert_eq!(out, want);
            let mut v = Vec::new();
            write_str_repr(s, &mut v);
            assert_eq!(v, want.as_bytes());
        }
    }

    #[test]
    fn printable_lookup_matches_the_table_at_every_boundary() {
        let mut prev_end = 0x7Fu32;
        for &(start, end) in NON_PRINTABLE {
            assert!(
                start > prev_end + 1 || prev_end == 0x7F,
                "ranges must be maximal"
            );
            assert!(start <= end);
            for cp in [start, end, (start + end) / 2] {
                if let Some(c) = char::from_u32(cp) {
                    assert!(!is_printable(c), "U+{cp:04X} should be non-printable");
                }
            }
            for cp in [start - 1, end + 1] {
                if let Some(c) = char::from_u32(cp) {
                    if cp >= 0x80 {
                        assert!(is_printable(c), "U+{cp:04X} should be printable");
                    }
                }
            }
            prev_end = end;
        }
        assert!(is_printable('a') && is_printable(' ') && !is_printable('\x7f'));
        assert!(is_printable('😀') && !is_printable('\u{e0001}') && !is_printable('\u{10ffff}'));
    }

    #[test]
    fn bytes_repr() {
        let mut out = String::new();
        write_bytes_repr(b"abc'\"\\\x7f\xff", &mut out);
        assert_eq!(out, "b'abc\\'\"\\\\\\x7f\\xff'");
        out.clear();
        write_bytes_repr(b"it's", &mut out);
        assert_eq!(out, "b\"it's\"");
    }
}
