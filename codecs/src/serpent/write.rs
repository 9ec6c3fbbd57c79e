//! Writes a [`Value`] as serpent text, compact or indented, exactly as Python's serpent 1.43
//! writes the corresponding Python object.

use std::cmp::Ordering;

use num_bigint::BigInt;

use super::error::{SerpentError, SerpentErrorKind};
use super::repr::{write_serpent_float, write_str_repr};
use super::ser::{too_deep, write_bytes};
use super::SerpentOptions;
use crate::Value;

/// Python refuses to convert ints with more decimal digits than this (CPython >= 3.11).
pub(crate) const PY_INT_MAX_DIGITS: usize = 4300;

pub(crate) struct Writer<'a> {
    pub(crate) out: &'a mut Vec<u8>,
    pub(crate) opts: &'a SerpentOptions,
    /// Write the `{'__class__':'complex','real':R,'imag':I}` map as a complex literal.
    pub(crate) complex_maps: bool,
}

/// If `entries` is the map [`super::parse_value`] uses for a complex number, its parts.
pub(crate) fn complex_parts(entries: &[(Value, Value)]) -> Option<(f64, f64)> {
    match entries {
        [(Value::Str(k1), Value::Str(c)), (Value::Str(k2), Value::Float(re)), (Value::Str(k3), Value::Float(im))]
            if k1 == "__class__" && c == "complex" && k2 == "real" && k3 == "imag" =>
        {
            Some((*re, *im))
        }
        _ => None,
    }
}

/// Writes a complex number as serpent 1.43 does.
pub(crate) fn write_complex(re: f64, im: f64, out: &mut Vec<u8>) {
    if re.is_nan() || im.is_nan() {
        out.extend_from_slice(b"{'__class__':'complex','real':");
        write_serpent_float(re, out);
        out.extend_from_slice(b",'imag':");
        write_serpent_float(im, out);
        out.push(b'}');
        return;
    }
    out.push(b'(');
    write_serpent_float(re, out);
    if im >= 0.0 && im.is_sign_positive() {
        out.push(b'+');
    }
    write_serpent_float(im, out);
    out.extend_from_slice(b"j)");
}

#[cold]
fn int_too_long(digits: Option<usize>) -> SerpentError {
    let what = match digits {
        Some(d) => format!("integer with {d} digits"),
        None => "integer with far more digits".to_owned(),
    };
    SerpentError::new(
        SerpentErrorKind::Unsupported,
        format!(
            "{what}: Python refuses to parse more than {PY_INT_MAX_DIGITS} digits; send it as \
             bytes or a string"
        ),
    )
}

/// `['name']` / `[3]` for the value under a str or int key, `[#i]` (entry index) otherwise.
#[cold]
fn key_segment(k: &Value, i: usize) -> String {
    match k {
        Value::Str(s) => {
            let mut seg = String::from("[");
            super::repr::repr_str(s, &mut seg);
            seg.push(']');
            seg
        }
        Value::Int(n) => format!("[{n}]"),
        _ => format!("[#{i}]"),
    }
}

fn value_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "None",
        Value::Bool(_) => "bool",
        Value::Int(_) | Value::BigInt(_) => "int",
        Value::Float(_) => "float",
        Value::Str(_) => "str",
        Value::Bytes(_) => "bytes",
        Value::List(_) => "list",
        Value::Tuple(_) => "tuple",
        Value::Set(_) => "set",
        Value::Map(_) => "dict",
        Value::Ext { .. } => "ext",
    }
}

impl Writer<'_> {
    fn indent(&mut self, level: usize) {
        for _ in 0..level {
            self.out.extend_from_slice(b"  ");
        }
    }

    /// Python's `_check_hashable_type` for dict keys and set members.
    fn check_key(&self, key: &Value) -> Result<(), SerpentError> {
        match key {
            Value::Bool(_)
            | Value::Int(_)
            | Value::BigInt(_)
            | Value::Float(_)
            | Value::Str(_)
            | Value::Bytes(_)
            | Value::Tuple(_) => Ok(()),
            Value::Map(e) if self.complex_maps && complex_parts(e).is_some() => Ok(()),
            other => Err(SerpentError::new(
                SerpentErrorKind::Unsupported,
                format!(
                    "a {} cannot be a dict key or set member: Python's serpent only allows bool, \
                     int, float, complex, str, bytes and tuple there",
                    value_kind(other)
                ),
            )),
        }
    }

    pub(crate) fn write(&mut self, v: &Value, level: usize) -> Result<(), SerpentError> {
        if level > self.opts.max_depth {
            return Err(too_deep(self.opts.max_depth));
        }
        match v {
            Value::Null => self.out.extend_from_slice(b"None"),
            Value::Bool(b) => self
                .out
                .extend_from_slice(if *b { b"True" } else { b"False" }),
            Value::Int(i) => {
                let mut buf = itoa::Buffer::new();
                self.out.extend_from_slice(buf.format(*i).as_bytes());
            }
            Value::BigInt(b) => {
                // 4300 decimal digits need at most 14285 bits: refuse clearly larger values
                // before the (quadratic) decimal conversion.
                if b.bits() > 14_300 {
                    return Err(int_too_long(None));
                }
                let text = b.to_str_radix(10);
                let digits = text.trim_start_matches('-').len();
                if digits > PY_INT_MAX_DIGITS {
                    return Err(int_too_long(Some(digits)));
                }
                self.out.extend_from_slice(text.as_bytes());
            }
            Value::Float(f) => write_serpent_float(*f, self.out),
            Value::Str(s) => write_str_repr(s, self.out),
            Value::Bytes(b) => write_bytes(b, self.opts.bytes_repr, self.out),
            Value::List(items) => self.write_list(items, level)?,
            Value::Tuple(items) => self.write_tuple(items, level)?,
            Value::Set(items) => self.write_set(items, level)?,
            Value::Map(entries) => {
                if self.complex_maps {
                    if let Some((re, im)) = complex_parts(entries) {
                        write_complex(re, im, self.out);
                        return Ok(());
                    }
                }
                self.write_map(entries, level)?;
            }
            Value::Ext { tag, data } => {
                return Err(SerpentError::new(
                    SerpentErrorKind::Unsupported,
                    format!(
                        "an ext value (msgpack ext type {tag}, {} bytes) has no serpent form: \
                         only msgpack carries ext values; send it with msgpack, or convert it \
                         to bytes or another plain value first",
                        data.len()
                    ),
                ))
            }
        }
        Ok(())
    }

    fn write_item(&mut self, item: &Value, level: usize, i: usize) -> Result<(), SerpentError> {
        self.write(item, level)
            .map_err(|e| e.in_path(format!("[{i}]")))
    }

    fn write_list(&mut self, items: &[Value], level: usize) -> Result<(), SerpentError> {
        if self.opts.indent && !items.is_empty() {
            self.out.extend_from_slice(b"[\n");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    self.out.extend_from_slice(b",\n");
                }
                self.indent(level + 1);
                self.write_item(item, level + 1, i)?;
            }
            self.out.push(b'\n');
            self.indent(level);
            self.out.push(b']');
        } else {
            self.out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    self.out.push(b',');
                }
                self.write_item(item, level + 1, i)?;
            }
            self.out.push(b']');
        }
        Ok(())
    }

    fn write_tuple(&mut self, items: &[Value], level: usize) -> Result<(), SerpentError> {
        if self.opts.indent && !items.is_empty() {
            self.out.extend_from_slice(b"(\n");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    self.out.extend_from_slice(b",\n");
                }
                self.indent(level + 1);
                self.write_item(item, level + 1, i)?;
            }
            if items.len() == 1 {
                self.out.push(b',');
            }
            self.out.push(b'\n');
            self.indent(level);
            self.out.push(b')');
        } else {
            self.out.push(b'(');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    self.out.push(b',');
                }
                self.write_item(item, level + 1, i)?;
            }
            if items.len() == 1 {
                self.out.push(b',');
            }
            self.out.push(b')');
        }
        Ok(())
    }

    fn write_set(&mut self, items: &[Value], level: usize) -> Result<(), SerpentError> {
        if items.is_empty() {
            // No empty-set literal in Python: serpent writes an empty tuple.
            self.out.extend_from_slice(b"()");
            return Ok(());
        }
        if self.opts.indent {
            let order = try_sort(items.len(), |a, b| {
                py_lt(items.get(a)?, items.get(b)?, self.complex_maps).ok()
            });
            self.out.extend_from_slice(b"{\n");
            for (n, i) in order_iter(order.as_deref(), items.len()).enumerate() {
                let Some(item) = items.get(i) else { continue };
                if n > 0 {
                    self.out.extend_from_slice(b",\n");
                }
                self.indent(level + 1);
                self.check_key(item)
                    .and_then(|()| self.write(item, level + 1))
                    .map_err(|e| e.in_path(format!("{{member {i}}}")))?;
            }
            self.out.push(b'\n');
            self.indent(level);
            self.out.push(b'}');
        } else {
            self.out.push(b'{');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    self.out.push(b',');
                }
                self.check_key(item)
                    .and_then(|()| self.write(item, level + 1))
                    .map_err(|e| e.in_path(format!("{{member {i}}}")))?;
            }
            self.out.push(b'}');
        }
        Ok(())
    }

    fn write_map(&mut self, entries: &[(Value, Value)], level: usize) -> Result<(), SerpentError> {
        if self.opts.indent && !entries.is_empty() {
            // Python: sorted(dict.items()), falling back to insertion order on TypeError.
            let cm = self.complex_maps;
            let order = try_sort(entries.len(), |a, b| {
                let (ka, va) = entries.get(a)?;
                let (kb, vb) = entries.get(b)?;
                if !py_eq(ka, kb) {
                    py_lt(ka, kb, cm).ok()
                } else if !py_eq(va, vb) {
                    py_lt(va, vb, cm).ok()
                } else {
                    Some(false)
                }
            });
            self.out.extend_from_slice(b"{\n");
            for (n, i) in order_iter(order.as_deref(), entries.len()).enumerate() {
                let Some((k, v)) = entries.get(i) else {
                    continue;
                };
                if n > 0 {
                    self.out.extend_from_slice(b",\n");
                }
                self.indent(level + 1);
                self.check_key(k)
                    .and_then(|()| self.write(k, level + 1))
                    .map_err(|e| e.in_path(format!("{{key {i}}}")))?;
                self.out.extend_from_slice(b": ");
                self.write(v, level + 1)
                    .map_err(|e| e.in_path(key_segment(k, i)))?;
            }
            self.out.push(b'\n');
            self.indent(level);
            self.out.push(b'}');
        } else {
            self.out.push(b'{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    self.out.push(b',');
                }
                self.check_key(k)
                    .and_then(|()| self.write(k, level + 1))
                    .map_err(|e| e.in_path(format!("{{key {i}}}")))?;
                self.out.push(b':');
                self.write(v, level + 1)
                    .map_err(|e| e.in_path(key_segment(k, i)))?;
            }
            self.out.push(b'}');
        }
        Ok(())
    }
}

fn order_iter(order: Option<&[usize]>, len: usize) -> Box<dyn Iterator<Item = usize> + '_> {
    match order {
        Some(o) => Box::new(o.iter().copied()),
        None => Box::new(0..len),
    }
}

/// A stable merge sort of `0..len` with a fallible "less than", like Python's `sorted()`
/// (which only uses `<`). Returns `None` if any comparison fails (Python's TypeError).
fn try_sort(len: usize, lt: impl Fn(usize, usize) -> Option<bool>) -> Option<Vec<usize>> {
    let mut a: Vec<usize> = (0..len).collect();
    let mut b: Vec<usize> = vec![0; len];
    let mut width = 1usize;
    while width < len {
        let mut start = 0usize;
        while start < len {
            let mid = (start + width).min(len);
            let end = (start + 2 * width).min(len);
            let (mut i, mut j, mut k) = (start, mid, start);
            while i < mid && j < end {
                let (&ai, &aj) = (a.get(i)?, a.get(j)?);
                // Take from the right only if strictly less: keeps the sort stable.
                if lt(aj, ai)? {
                    *b.get_mut(k)? = aj;
                    j += 1;
                } else {
                    *b.get_mut(k)? = ai;
                    i += 1;
                }
                k += 1;
            }
            while i < mid {
                *b.get_mut(k)? = *a.get(i)?;
                i += 1;
                k += 1;
            }
            while j < end {
                *b.get_mut(k)? = *a.get(j)?;
                j += 1;
                k += 1;
            }
            start = end;
        }
        std::mem::swap(&mut a, &mut b);
        width *= 2;
    }
    Some(a)
}

enum Num<'a> {
    I(i128),
    B(&'a BigInt),
    F(f64),
}

fn as_num(v: &Value) -> Option<Num<'_>> {
    match v {
        Value::Bool(b) => Some(Num::I(i128::from(*b))),
        Value::Int(i) => Some(Num::I(*i)),
        Value::BigInt(b) => Some(Num::B(b)),
        Value::Float(f) => Some(Num::F(*f)),
        _ => None,
    }
}

/// Exact comparison of an integer with a float, as Python does it (`None` for NaN).
fn cmp_int_float(i: &BigInt, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    if f.is_infinite() {
        return Some(if f > 0.0 {
            Ordering::Less
        } else {
            Ordering::Greater
        });
    }
    let t = f.trunc();
    let ti = bigint_from_integral_f64(t);
    match i.cmp(&ti) {
        Ordering::Equal => {
            let frac = f - t;
            Some(if frac > 0.0 {
                Ordering::Less
            } else if frac < 0.0 {
                Ordering::Greater
            } else {
                Ordering::Equal
            })
        }
        o => Some(o),
    }
}

/// Converts an integral finite f64 to a BigInt exactly.
fn bigint_from_integral_f64(t: f64) -> BigInt {
    let bits = t.to_bits();
    let negative = (bits >> 63) != 0;
    let exp = ((bits >> 52) & 0x7FF) as i64;
    let frac = bits & ((1u64 << 52) - 1);
    if exp == 0 {
        return BigInt::from(0);
    }
    let mantissa = BigInt::from(frac | (1u64 << 52));
    let shift = exp - 1075;
    let mag = if shift >= 0 {
        mantissa << (shift as usize)
    } else {
        mantissa >> ((-shift) as usize)
    };
    if negative {
        -mag
    } else {
        mag
    }
}

fn cmp_num(a: &Num<'_>, b: &Num<'_>) -> Option<Ordering> {
    match (a, b) {
        (Num::I(x), Num::I(y)) => Some(x.cmp(y)),
        (Num::F(x), Num::F(y)) => x.partial_cmp(y),
        (Num::B(x), Num::B(y)) => Some(x.cmp(y)),
        (Num::I(x), Num::B(y)) => Some(BigInt::from(*x).cmp(y)),
        (Num::B(x), Num::I(y)) => Some((*x).cmp(&BigInt::from(*y))),
        (Num::I(x), Num::F(y)) => cmp_int_float(&BigInt::from(*x), *y),
        (Num::B(x), Num::F(y)) => cmp_int_float(x, *y),
        (Num::F(x), Num::I(y)) => cmp_int_float(&BigInt::from(*y), *x).map(Ordering::reverse),
        (Num::F(x), Num::B(y)) => cmp_int_float(y, *x).map(Ordering::reverse),
    }
}

/// Python `==` between two values (never fails).
pub(crate) fn py_eq(a: &Value, b: &Value) -> bool {
    if let (Some(x), Some(y)) = (as_num(a), as_num(b)) {
        return cmp_num(&x, &y) == Some(Ordering::Equal);
    }
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Bytes(x), Value::Bytes(y)) => x == y,
        (Value::List(x), Value::List(y)) | (Value::Tuple(x), Value::Tuple(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| py_eq(p, q))
        }
        (Value::Set(x), Value::Set(y)) => {
            x.len() == y.len() && x.iter().all(|p| y.iter().any(|q| py_eq(p, q)))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.iter().any(|(k2, v2)| py_eq(k, k2) && py_eq(v, v2)))
        }
        _ => false,
    }
}

/// Python `<` between two values; `Err` where Python raises TypeError.
pub(crate) fn py_lt(a: &Value, b: &Value, complex_maps: bool) -> Result<bool, ()> {
    if let (Some(x), Some(y)) = (as_num(a), as_num(b)) {
        return Ok(cmp_num(&x, &y) == Some(Ordering::Less));
    }
    let _ = complex_maps; // complex numbers (maps) are unordered in Python: TypeError below
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => Ok(x < y),
        (Value::Bytes(x), Value::Bytes(y)) => Ok(x < y),
        (Value::List(x), Value::List(y)) | (Value::Tuple(x), Value::Tuple(y)) => {
            for (p, q) in x.iter().zip(y) {
                if !py_eq(p, q) {
                    return py_lt(p, q, complex_maps);
                }
            }
            Ok(x.len() < y.len())
        }
        _ => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_float_comparisons_are_exact() {
        let big = BigInt::from(9007199254740993i64);
        assert_eq!(
            cmp_int_float(&big, 9007199254740992.0),
            Some(Ordering::Greater)
        );
        assert_eq!(cmp_int_float(&BigInt::from(1), 1.0), Some(Ordering::Equal));
        assert_eq!(cmp_int_float(&BigInt::from(1), 1.5), Some(Ordering::Less));
        assert_eq!(cmp_int_float(&BigInt::from(-2), -1.5), Some(Ordering::Less));
        assert_eq!(cmp_int_float(&BigInt::from(0), f64::NAN), None);
        assert_eq!(
            bigint_from_integral_f64(1e20),
            "100000000000000000000".parse::<BigInt>().unwrap()
        );
        assert_eq!(bigint_from_integral_f64(-3.0), BigInt::from(-3));
    }

    #[test]
    fn sort_is_stable_and_fallible() {
        let v = [3, 1, 2, 1];
        let order = try_sort(v.len(), |a, b| Some(v[a] < v[b])).unwrap();
        assert_eq!(order, vec![1, 3, 2, 0]);
        assert!(try_sort(3, |_, _| None).is_none());
        assert_eq!(try_sort(0, |_, _| None), Some(vec![]));
    }
}
