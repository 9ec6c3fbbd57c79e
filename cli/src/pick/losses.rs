//! What a round trip loses: walks the original and the decoded [`Value`] side by side and
//! classifies every difference (tuples that came back as lists, NaN that came back as
//! null, non-string keys that became strings, ...). Nothing here knows which codec made
//! the difference.

use serde::Serialize;
use wirecall_codecs::Value;

/// One kind of difference between an original value and its round trip (serialized as is
/// in `wirecall pick --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct Loss {
    /// Stable machine name, e.g. `tuple_to_list`.
    pub kind: &'static str,
    /// What happens, in words, e.g. `tuples become lists`.
    pub what: String,
    /// How many places in the value show this difference.
    pub count: usize,
    /// Where the first one is, as a path from the root (`$.fields[2]`).
    pub first_at: String,
}

/// Every difference between `original` and `decoded`, grouped by kind in the order first
/// seen. Empty when they are the same (floats by bit pattern, any NaN equal to any NaN;
/// sets compared as sets).
pub(super) fn diff(original: &Value, decoded: &Value) -> Vec<Loss> {
    let mut out = Vec::new();
    walk(original, decoded, &mut String::from("$"), &mut out);
    out
}

fn add(out: &mut Vec<Loss>, kind: &'static str, what: impl Into<String>, at: &str) {
    if let Some(l) = out.iter_mut().find(|l| l.kind == kind) {
        l.count += 1;
    } else {
        out.push(Loss {
            kind,
            what: what.into(),
            count: 1,
            first_at: at.to_owned(),
        });
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 24 {
        let cut: String = s.chars().take(21).collect();
        format!("{cut}...")
    } else {
        s
    }
}

fn key_path(path: &str, key: &Value) -> String {
    match key {
        Value::Str(s)
            if !s.is_empty()
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !s.starts_with(|c: char| c.is_ascii_digit()) =>
        {
            format!("{path}.{s}")
        }
        other => format!("{path}[{}]", short(other)),
    }
}

fn is_int(v: &Value) -> bool {
    matches!(v, Value::Int(_) | Value::BigInt(_))
}

fn beyond_64_bits(v: &Value) -> bool {
    match v {
        Value::Int(i) => i64::try_from(*i).is_err() && u64::try_from(*i).is_err(),
        Value::BigInt(_) => true,
        _ => false,
    }
}

fn walk(a: &Value, b: &Value, path: &mut String, out: &mut Vec<Loss>) {
    if a.same_as(b) {
        return;
    }
    match (a, b) {
        (Value::Tuple(x), Value::List(y)) => {
            add(out, "tuple_to_list", "tuples become lists", path);
            seq(x, y, path, out);
        }
        (Value::Set(x), Value::List(y)) => {
            add(out, "set_to_list", "sets become lists", path);
            seq(x, y, path, out);
        }
        (Value::Set(x), Value::Set(y)) => {
            let same_members = x.len() == y.len()
                && x.iter().all(|e| y.iter().any(|f| e.same_as(f)))
                && y.iter().all(|f| x.iter().any(|e| e.same_as(f)));
            if !same_members {
                seq(x, y, path, out);
            }
        }
        (Value::List(x), Value::List(y)) | (Value::Tuple(x), Value::Tuple(y)) => {
            seq(x, y, path, out)
        }
        (Value::List(_), Value::Tuple(_)) => add(out, "list_to_tuple", "lists become tuples", path),
        (Value::Bytes(_), Value::List(y)) if y.iter().all(is_int) => {
            add(out, "bytes_to_list", "bytes become lists of ints", path)
        }
        (Value::Bytes(_), Value::Str(_)) => add(out, "bytes_to_str", "bytes become strings", path),
        (Value::Bytes(_), Value::Map(_)) => add(
            out,
            "bytes_to_map",
            "bytes become base64 dicts ({'data': ..., 'encoding': 'base64'})",
            path,
        ),
        (Value::Str(_), Value::Bytes(_)) => add(out, "str_to_bytes", "strings become bytes", path),
        (Value::Float(f), other) if f.is_nan() => {
            add(out, "nan", format!("NaN becomes {}", describe(other)), path)
        }
        (Value::Float(f), other) if f.is_infinite() => add(
            out,
            "infinity",
            format!("infinities become {}", describe(other)),
            path,
        ),
        (Value::Float(f), Value::Float(g)) if *f == 0.0 && *g == 0.0 => {
            add(out, "negative_zero", "-0.0 loses its sign", path)
        }
        (Value::Float(_), Value::Float(_)) => {
            add(out, "float_precision", "floats lose precision", path)
        }
        (Value::Float(_), Value::Int(_)) => {
            add(out, "float_to_int", "whole-number floats become ints", path)
        }
        (i, Value::Float(_)) if beyond_64_bits(i) => add(
            out,
            "bigint_to_float",
            "ints beyond 64 bits become floats",
            path,
        ),
        (i, Value::Str(_)) if beyond_64_bits(i) => add(
            out,
            "bigint_to_str",
            "ints beyond 64 bits become strings",
            path,
        ),
        (i, Value::Bytes(_)) if beyond_64_bits(i) => add(
            out,
            "bigint_to_bytes",
            "ints beyond 64 bits become bytes",
            path,
        ),
        (i, j) if is_int(i) && is_int(j) => {
            if beyond_64_bits(i) {
                add(
                    out,
                    "bigint_truncated",
                    "ints beyond 64 bits change value",
                    path,
                )
            } else {
                add(out, "int_changed", "ints change value", path)
            }
        }
        (Value::Int(_), Value::Float(_)) => add(out, "int_to_float", "ints become floats", path),
        (Value::Bool(_), j) if is_int(j) => add(out, "bool_to_int", "bools become ints", path),
        (Value::Str(_), Value::Str(_)) => add(out, "str_changed", "strings change", path),
        (Value::Map(x), Value::Map(y)) => map(x, y, path, out),
        (x, y) => add(
            out,
            "type_changed",
            format!("{} becomes {}", plural(x), describe(y)),
            path,
        ),
    }
}

fn plural(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bools",
        Value::Int(_) | Value::BigInt(_) => "ints",
        Value::Float(_) => "floats",
        Value::Str(_) => "strings",
        Value::Bytes(_) => "bytes",
        Value::List(_) => "lists",
        Value::Tuple(_) => "tuples",
        Value::Set(_) => "sets",
        Value::Map(_) => "maps",
        Value::Ext { .. } => "ext values",
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Float(_) => format!("the float {}", short(v)),
        Value::Str(_) => format!("the string {}", short(v)),
        other => format!("a {}", other.type_name()),
    }
}

fn seq(x: &[Value], y: &[Value], path: &mut String, out: &mut Vec<Loss>) {
    if x.len() != y.len() {
        add(out, "length_changed", "sequences change length", path);
    }
    let base = path.len();
    for (i, (a, b)) in x.iter().zip(y).enumerate() {
        path.push_str(&format!("[{i}]"));
        walk(a, b, path, out);
        path.truncate(base);
    }
}

fn map(x: &[(Value, Value)], y: &[(Value, Value)], path: &str, out: &mut Vec<Loss>) {
    if x.len() != y.len() {
        let unique = x
            .iter()
            .enumerate()
            .filter(|(i, (k, _))| !x[..*i].iter().any(|(k2, _)| k2.same_as(k)))
            .count();
        if unique < x.len() && y.len() == unique {
            add(
                out,
                "duplicate_keys",
                "duplicate map keys are dropped",
                path,
            );
        } else {
            add(out, "map_entries", "map entries are lost or added", path);
        }
    }
    let in_order = x.iter().zip(y).all(|((k1, _), (k2, _))| key_match(k1, k2));
    let mut reported_order = false;
    for (i, (k, v)) in x.iter().enumerate() {
        // Prefer the entry at the same position; otherwise find the key anywhere.
        let found = match y.get(i) {
            Some(e) if key_match(k, &e.0) => Some(e),
            _ => y.iter().find(|(k2, _)| key_match(k, k2)),
        };
        let Some((k2, v2)) = found else {
            continue;
        };
        if !in_order && !reported_order {
            add(out, "key_order", "map key order changes", path);
            reported_order = true;
        }
        let p = key_path(path, k);
        if !k.same_as(k2) {
            match (k, k2) {
                (_, Value::Str(_)) => add(
                    out,
                    "nonstring_key",
                    "non-string map keys become strings",
                    &p,
                ),
                _ => add(out, "key_changed", format!("{} keys change", plural(k)), &p),
            }
        }
        let mut p = p;
        walk(v, v2, &mut p, out);
    }
}

/// Whether a decoded key `k2` stands for the original key `k`: the same value, or the
/// same value written as a string (as JSON writes non-string keys).
fn key_match(k: &Value, k2: &Value) -> bool {
    if k.same_as(k2) {
        return true;
    }
    let Value::Str(s) = k2 else {
        return false;
    };
    match k {
        Value::Int(i) => s == &i.to_string(),
        Value::BigInt(i) => s == &i.to_string(),
        Value::Float(f) => {
            s.parse::<f64>()
                .is_ok_and(|g| g == *f || (g.is_nan() && f.is_nan()))
                || (f.is_nan() && s == "NaN")
                || (f.is_infinite() && s.trim_start_matches('-') == "Infinity")
        }
        Value::Bool(b) => {
            s == if *b { "true" } else { "false" } || s == if *b { "True" } else { "False" }
        }
        Value::Null => s == "null" || s == "None",
        other => s == &other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(a: &Value, b: &Value) -> Vec<&'static str> {
        diff(a, b).iter().map(|l| l.kind).collect()
    }

    #[test]
    fn identical_values_lose_nothing_and_nan_equals_nan() {
        let v = Value::List(vec![Value::Float(f64::NAN), Value::Int(1)]);
        assert!(diff(&v, &v.clone()).is_empty());
        let s1 = Value::Set(vec![Value::Int(1), Value::Int(2)]);
        let s2 = Value::Set(vec![Value::Int(2), Value::Int(1)]);
        assert!(diff(&s1, &s2).is_empty());
    }

    #[test]
    fn classifies_container_changes() {
        let t = Value::Tuple(vec![Value::Int(1), Value::Tuple(vec![])]);
        let l = Value::List(vec![Value::Int(1), Value::List(vec![])]);
        let d = diff(&t, &l);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].kind, "tuple_to_list");
        assert_eq!(d[0].count, 2);
        assert_eq!(d[0].first_at, "$");
        assert_eq!(
            kinds(
                &Value::Set(vec![Value::Int(1)]),
                &Value::List(vec![Value::Int(1)])
            ),
            ["set_to_list"]
        );
        assert_eq!(
            kinds(&Value::Bytes(vec![7]), &Value::List(vec![Value::Int(7)])),
            ["bytes_to_list"]
        );
    }

    #[test]
    fn classifies_numbers() {
        assert_eq!(kinds(&Value::Float(f64::NAN), &Value::Null), ["nan"]);
        assert_eq!(
            kinds(&Value::Float(f64::INFINITY), &Value::Null),
            ["infinity"]
        );
        assert_eq!(
            kinds(&Value::Float(-0.0), &Value::Float(0.0)),
            ["negative_zero"]
        );
        assert_eq!(kinds(&Value::Float(2.0), &Value::Int(2)), ["float_to_int"]);
        let big = Value::Int(1 << 100);
        assert_eq!(kinds(&big, &Value::Float(1e30)), ["bigint_to_float"]);
        assert_eq!(kinds(&big, &Value::Str("x".into())), ["bigint_to_str"]);
    }

    #[test]
    fn classifies_map_keys_with_paths() {
        let a = Value::Map(vec![(
            Value::Str("outer".into()),
            Value::Map(vec![(Value::Int(10), Value::Tuple(vec![]))]),
        )]);
        let b = Value::Map(vec![(
            Value::Str("outer".into()),
            Value::Map(vec![(Value::Str("10".into()), Value::List(vec![]))]),
        )]);
        let d = diff(&a, &b);
        assert_eq!(
            d.iter()
                .map(|l| (l.kind, l.first_at.as_str()))
                .collect::<Vec<_>>(),
            [
                ("nonstring_key", "$.outer[10]"),
                ("tuple_to_list", "$.outer[10]")
            ]
        );
        let dup = Value::Map(vec![
            (Value::Str("k".into()), Value::Int(1)),
            (Value::Str("k".into()), Value::Int(2)),
        ]);
        let one = Value::Map(vec![(Value::Str("k".into()), Value::Int(2))]);
        assert!(kinds(&dup, &one).contains(&"duplicate_keys"));
        let ab = Value::Map(vec![
            (Value::Str("a".into()), Value::Null),
            (Value::Str("b".into()), Value::Null),
        ]);
        let ba = Value::Map(vec![
            (Value::Str("b".into()), Value::Null),
            (Value::Str("a".into()), Value::Null),
        ]);
        assert_eq!(kinds(&ab, &ba), ["key_order"]);
    }

    #[test]
    fn unknown_changes_name_both_types() {
        let d = diff(&Value::Null, &Value::Bool(false));
        assert_eq!(d[0].kind, "type_changed");
        assert!(d[0].what.contains("null"), "{}", d[0].what);
    }
}
