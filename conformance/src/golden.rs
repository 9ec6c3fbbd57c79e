//! wirecall's own golden vectors: `vectors/codecs/<codec>.json`, one file per codec, pinning
//! the documented `Value` mapping of each codec to exact bytes (or to an expected error).
//!
//! File shape (all values in the vector notation, see `NOTATION.md`):
//!
//! ```json
//! {"codec": "cbor", "description": "...", "generator": "...",
//!  "vectors": [
//!    {"name": "int 24", "value": 24, "hex": "1818", "source": "python cbor2 canonical=True"},
//!    {"name": "tuple", "value": {"$tuple": [1]}, "hex": "8101", "decoded": [1], "note": "..."},
//!    {"name": "text", "value": "é", "text": "\"é\""},
//!    {"name": "nan", "value": {"$float": "nan"}, "encode_error": "Unsupported"},
//!    {"name": "truncated", "hex": "19", "decode_error": "Decode"},
//!    {"name": "u8 not self-describing", "value": 1, "hex": "02", "decode_error": "NotSelfDescribing"},
//!    {"name": "non-preferred", "value": 0, "hex": "1800", "decode_only": true}
//!  ]}
//! ```
//!
//! * `hex` / `text`: the exact encoding (`text` for text codecs, compared as UTF-8 bytes).
//! * `decoded`: what decoding gives when it differs from `value` (e.g. a tuple comes back as
//!   a list); default `value`.
//! * `encode_error` / `decode_error`: the expected `wirecall_codecs::ErrorKind` name, or `"any"`.
//! * `decode_only`: the bytes are not what the encoder writes but must decode to `value`.
//! * `source` / `note`: where the bytes come from and why they differ from a reference.

use std::path::Path;

use wirecall_codecs::{CodecId, Value};

use crate::json::{self, Json};
use crate::suites::{list_files, read_text};
use crate::{codec, notation, SuiteReport};

/// One golden vector, parsed.
#[derive(Debug, Clone)]
pub struct GoldenVector {
    /// The vector's name.
    pub name: String,
    /// The value to encode (absent for decode-error vectors).
    pub value: Option<Value>,
    /// The exact encoding.
    pub bytes: Option<Vec<u8>>,
    /// What decoding `bytes` gives, when it is not `value`.
    pub decoded: Option<Value>,
    /// Expected encode error kind (`ErrorKind` debug name or `"any"`).
    pub encode_error: Option<String>,
    /// Expected decode error kind.
    pub decode_error: Option<String>,
    /// The bytes are accepted input, not the encoder's output.
    pub decode_only: bool,
}

/// A golden vector file: its codec and vectors.
#[derive(Debug, Clone)]
pub struct GoldenFile {
    /// The codec the file is for.
    pub codec: CodecId,
    /// The vectors, in file order.
    pub vectors: Vec<GoldenVector>,
}

/// The parsed file with the source offsets of its nodes, for positioned errors.
struct Source<'a> {
    text: &'a str,
    doc: &'a Json,
    offsets: &'a [usize],
}

fn field_value(src: &Source<'_>, v: &Json, key: &str, name: &str) -> Result<Option<Value>, String> {
    let Some(j) = v.get(key) else {
        return Ok(None);
    };
    let start = json::preorder_index(src.doc, j).unwrap_or(0);
    let offsets = src.offsets.get(start..).unwrap_or_default();
    notation::from_json_in(j, src.text, offsets)
        .map(Some)
        .map_err(|e| format!("vector {name:?}: `{key}`: {e}"))
}

/// Parses a golden vector file.
pub fn parse_golden(text: &str) -> Result<GoldenFile, String> {
    let (doc, offsets) = json::parse_with_offsets(text).map_err(|e| e.to_string())?;
    let src = Source {
        text,
        doc: &doc,
        offsets: &offsets,
    };
    let name = doc
        .get("codec")
        .and_then(Json::as_str)
        .ok_or("no `codec` name")?;
    let codec = CodecId::from_builtin_name(name).ok_or(format!("unknown codec {name:?}"))?;
    let list = doc
        .get("vectors")
        .and_then(Json::as_array)
        .ok_or("no `vectors` list")?;
    let mut vectors = Vec::with_capacity(list.len());
    for (n, v) in list.iter().enumerate() {
        let vname = v
            .get("name")
            .and_then(Json::as_str)
            .map_or_else(|| format!("#{n}"), str::to_owned);
        let bytes = match (
            v.get("hex").and_then(Json::as_str),
            v.get("text").and_then(Json::as_str),
        ) {
            (Some(h), None) => {
                Some(hex::decode(h).map_err(|e| format!("vector {vname:?}: bad hex: {e}"))?)
            }
            (None, Some(t)) => Some(t.as_bytes().to_vec()),
            (None, None) => None,
            (Some(_), Some(_)) => return Err(format!("vector {vname:?}: both `hex` and `text`")),
        };
        let vector = GoldenVector {
            value: field_value(&src, v, "value", &vname)?,
            decoded: field_value(&src, v, "decoded", &vname)?,
            encode_error: v
                .get("encode_error")
                .and_then(Json::as_str)
                .map(str::to_owned),
            decode_error: v
                .get("decode_error")
                .and_then(Json::as_str)
                .map(str::to_owned),
            decode_only: v
                .get("decode_only")
                .and_then(Json::as_bool)
                .unwrap_or(false),
            bytes,
            name: vname,
        };
        if vector.value.is_none() && vector.decode_error.is_none() {
            return Err(format!(
                "vector {:?}: needs `value` or `decode_error`",
                vector.name
            ));
        }
        if vector.bytes.is_none() && vector.encode_error.is_none() {
            return Err(format!(
                "vector {:?}: needs `hex`/`text` or `encode_error`",
                vector.name
            ));
        }
        vectors.push(vector);
    }
    Ok(GoldenFile { codec, vectors })
}

fn kind_matches(want: &str, got: &wirecall_codecs::CodecError) -> bool {
    want == "any" || format!("{:?}", got.kind()) == want
}

fn show(codec: CodecId, bytes: &[u8]) -> String {
    match codec {
        CodecId::JSON | CodecId::RON | CodecId::SERPENT => {
            format!("{:?}", String::from_utf8_lossy(bytes))
        }
        _ => hex::encode(bytes),
    }
}

/// Runs one parsed golden file into `report`.
pub fn check_golden(file: &GoldenFile, report: &mut SuiteReport) {
    let c = file.codec;
    for v in &file.vectors {
        let id = format!("{c} {:?}", v.name);
        if let (Some(value), Some(want)) = (&v.value, &v.encode_error) {
            match codec::encode(c, value) {
                Ok(got) => report.fail(format!(
                    "{id}: expected a {want} error, encoded to {}",
                    show(c, &got)
                )),
                Err(e) => report.check(kind_matches(want, &e), || {
                    format!("{id}: expected a {want} error, got {e}")
                }),
            }
            continue;
        }
        let Some(bytes) = &v.bytes else { continue };
        if let (Some(value), false) = (&v.value, v.decode_only) {
            match codec::encode(c, value) {
                Ok(got) => report.check(&got == bytes, || {
                    format!("{id}: expected {}\n  got {}", show(c, bytes), show(c, &got))
                }),
                Err(e) => report.fail(format!("{id}: encode failed: {e}")),
            }
        }
        match (&v.decode_error, codec::decode(c, bytes)) {
            (Some(want), Err(e)) => report.check(kind_matches(want, &e), || {
                format!("{id}: expected a {want} decode error, got {e}")
            }),
            (Some(want), Ok(got)) => report.fail(format!(
                "{id}: expected a {want} decode error, decoded to {}",
                notation::print(&got)
            )),
            (None, Ok(got)) => {
                let want = v.decoded.as_ref().or(v.value.as_ref());
                report.check(want.is_some_and(|w| notation::same(w, &got)), || {
                    format!(
                        "{id}: decoded to {}, expected {}",
                        notation::print(&got),
                        want.map(notation::print).unwrap_or_default()
                    )
                });
            }
            (None, Err(e)) => {
                report.fail(format!("{id}: decode of {} failed: {e}", show(c, bytes)))
            }
        }
    }
}

/// Runs every `vectors/codecs/*.json` file under `own_dir` (this crate's `vectors` folder).
pub fn run_golden(own_dir: &Path) -> SuiteReport {
    let mut report = SuiteReport::new("golden");
    let files = match list_files(&own_dir.join("codecs"), "json") {
        Ok(f) => f,
        Err(e) => {
            report.fail(e);
            return report;
        }
    };
    if files.is_empty() {
        report.fail(format!(
            "no golden files in {}",
            own_dir.join("codecs").display()
        ));
    }
    for path in files {
        match read_text(&path)
            .and_then(|t| parse_golden(&t).map_err(|e| format!("{}: {e}", path.display())))
        {
            Ok(file) => check_golden(&file, &mut report),
            Err(e) => report.fail(e),
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_in_vector_files_have_positions() {
        let text = "{\"codec\": \"cbor\",\n \"vectors\": [\n  {\"name\": \"x\", \"value\": [1, {\"$bytes\": \"zz\"}], \"hex\": \"00\"}]}";
        let e = parse_golden(text).unwrap_err();
        assert!(e.contains("line 3, column 41"), "{e}");
        assert!(parse_golden("{\"codec\": \"nope\", \"vectors\": []}").is_err());
        let ok = parse_golden("{\"codec\": \"json\", \"vectors\": [{\"name\": \"n\", \"value\": 1, \"text\": \"1\"}]}").unwrap();
        assert_eq!(ok.vectors.len(), 1);
        assert_eq!(ok.vectors[0].bytes.as_deref(), Some(&b"1"[..]));
    }
}
