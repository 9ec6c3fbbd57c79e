//! CodecSet parsing/printing/errors and the Registry with a user codec.
#![cfg(all(
    feature = "json",
    feature = "msgpack",
    feature = "cbor",
    feature = "bincode",
    feature = "postcard",
    feature = "ron",
    feature = "serpent"
))]

use std::sync::Arc;

use proptest::prelude::*;
use wirecall_codecs::*;

#[test]
fn codec_set_parses_and_prints() {
    let s: CodecSet = " JSON , msgpack,,cbor ".parse().unwrap();
    assert_eq!(s.to_string(), "json,msgpack,cbor");
    assert_eq!(s.len(), 3);
    assert!(s.contains(CodecId::CBOR) && !s.contains(CodecId::RON));
    assert_eq!(
        s.iter().collect::<Vec<_>>(),
        vec![CodecId::JSON, CodecId::MSGPACK, CodecId::CBOR]
    );
    let all: CodecSet = "all".parse().unwrap();
    assert_eq!(all, CodecSet::all_builtin());
    assert_eq!(
        all.to_string(),
        "json,msgpack,cbor,bincode,postcard,ron,serpent,marshal"
    );
    let user: CodecSet = "json,codec#200".parse().unwrap();
    assert!(user.contains(CodecId::new(200)));
    assert_eq!(user.to_string(), "json,codec#200");
    assert_eq!(user.to_string().parse::<CodecSet>().unwrap(), user);
}

#[test]
fn codec_set_errors_list_the_known_names() {
    let err = "json,yaml".parse::<CodecSet>().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnknownCodec);
    assert_eq!(err.origin(), Origin::Config);
    assert!(
        err.to_string().contains("unknown codec `yaml`; known codecs: json, msgpack, cbor, bincode, postcard, ron, serpent"),
        "{err}"
    );
    let err = " , ".parse::<CodecSet>().unwrap_err();
    assert!(err.to_string().contains("empty codec list"), "{err}");
}

#[test]
fn refusal_text_and_check() {
    let s: CodecSet = "json,msgpack".parse().unwrap();
    assert_eq!(
        s.refusal(CodecId::CBOR),
        "codec `cbor` is not accepted by this server; accepted: json, msgpack"
    );
    assert!(s.check(CodecId::JSON).is_ok());
    let err = s.check(CodecId::CBOR).unwrap_err();
    assert_eq!(
        (err.kind(), err.origin(), err.codec()),
        (ErrorKind::NotAccepted, Origin::Peer, CodecId::CBOR)
    );
    assert!(!err.is_retryable());
    assert_eq!(
        CodecSet::EMPTY.refusal(CodecId::JSON),
        "codec `json` is not accepted by this server; accepted: none"
    );
}

proptest! {
    #[test]
    fn codec_set_display_parse_roundtrip(ids in prop::collection::btree_set(1u8..=254, 1..12)) {
        let set: CodecSet = ids.iter().map(|b| CodecId::new(*b)).filter(|id| id.is_builtin() || id.is_user() || id.get() > 7).collect();
        // Reserved ids 8..=127 print as codec#N and parse back too.
        let text = set.to_string();
        let back: CodecSet = text.parse().unwrap();
        prop_assert_eq!(back, set);
        prop_assert_eq!(set.len(), ids.len());
        let mut other = CodecSet::new();
        for id in set.iter() {
            prop_assert!(other.insert(id));
            prop_assert!(!other.insert(id));
        }
        prop_assert_eq!(other, set);
        for id in set.iter() {
            prop_assert!(other.remove(id));
        }
        prop_assert!(other.is_empty());
    }
}

/// A user codec: a line-oriented "key=value" text format over flat string maps, to show
/// the extension point (any codec working on Value fits).
struct KeyValue;

impl DynCodec for KeyValue {
    fn encode_value(&self, value: &Value, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let map = value.as_map().ok_or_else(|| {
            CodecError::unsupported(
                CodecId::new(200),
                Origin::Local,
                format!("kv needs a map, got {}", value.type_name()),
            )
        })?;
        for (k, v) in map {
            match (k, v) {
                (Value::Str(k), Value::Str(v)) => {
                    out.extend_from_slice(k.as_bytes());
                    out.push(b'=');
                    out.extend_from_slice(v.as_bytes());
                    out.push(b'\n');
                }
                _ => {
                    return Err(CodecError::unsupported(
                        CodecId::new(200),
                        Origin::Local,
                        "kv carries string pairs only",
                    ))
                }
            }
        }
        Ok(())
    }
    fn decode_value(&self, bytes: &[u8], _limits: &Limits) -> Result<Value, CodecError> {
        let text =
            std::str::from_utf8(bytes).map_err(|e| CodecError::decode(CodecId::new(200), e))?;
        let mut m = Vec::new();
        for line in text.lines() {
            let (k, v) = line.split_once('=').ok_or_else(|| {
                CodecError::decode(CodecId::new(200), format!("line without `=`: {line:?}"))
            })?;
            m.push((Value::from(k), Value::from(v)));
        }
        Ok(Value::Map(m))
    }
    fn human_readable(&self) -> bool {
        true
    }
}

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
struct Cfg {
    host: String,
    mode: String,
}

#[test]
fn registry_with_a_user_codec() {
    let mut reg = Registry::new();
    let id = CodecId::new(200);
    reg.register(id, "kv", Arc::new(KeyValue)).unwrap();
    assert_eq!(reg.by_name("KV"), Some(id));
    assert_eq!(reg.name(id), Some("kv"));
    assert!(reg.contains(id));
    assert!(reg.info(id).unwrap().human_readable);
    assert!(reg.all().contains(id));

    let cfg = Cfg {
        host: "h".into(),
        mode: "fast".into(),
    };
    let bytes = reg.encode(id, &cfg).unwrap();
    assert_eq!(bytes, b"host=h\nmode=fast\n");
    let back: Cfg = reg.decode(id, &bytes).unwrap();
    assert_eq!(back, cfg);
    let err = reg.encode(id, &(1, 2)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);

    // Built-ins still dispatch statically through the same registry.
    let json = reg.by_name("json").unwrap();
    assert_eq!(
        reg.encode(json, &cfg).unwrap(),
        br#"{"host":"h","mode":"fast"}"#
    );

    // Sets with user names.
    let set = reg.parse_set("json,kv").unwrap();
    assert_eq!(reg.set_to_string(&set), "json,kv");
    assert_eq!(set.to_string(), "json,codec#200");
    assert_eq!(
        reg.refusal(&set, CodecId::CBOR),
        "codec `cbor` is not accepted by this server; accepted: json, kv"
    );
    let err = reg.parse_set("json,nope").unwrap_err();
    assert!(
        err.to_string().contains(
            "known codecs: json, msgpack, cbor, bincode, postcard, ron, serpent, marshal, kv"
        ),
        "{err}"
    );

    // Limits apply to user codecs too.
    let small = reg.clone().with_limits(Limits::DEFAULT.with_max_input(4));
    let err = small.decode_value(id, b"a=bcdef").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LimitExceeded);
}

#[test]
fn registration_is_refused_with_clear_errors() {
    let mut reg = Registry::new();
    let codec: Arc<dyn DynCodec> = Arc::new(KeyValue);
    let err = reg
        .register(CodecId::new(5), "kv", codec.clone())
        .unwrap_err();
    assert_eq!(
        (err.kind(), err.origin()),
        (ErrorKind::Registration, Origin::Config)
    );
    assert!(err.to_string().contains("128-254"), "{err}");
    assert!(reg
        .register(CodecId::new(255), "kv", codec.clone())
        .is_err());
    assert!(reg
        .register(CodecId::new(100), "kv", codec.clone())
        .is_err());
    let err = reg
        .register(CodecId::new(130), "json", codec.clone())
        .unwrap_err();
    assert!(err.to_string().contains("built-in"), "{err}");
    let err = reg
        .register(CodecId::new(130), "Bad Name", codec.clone())
        .unwrap_err();
    assert!(err.to_string().contains("invalid codec name"), "{err}");
    reg.register(CodecId::new(130), "kv", codec.clone())
        .unwrap();
    let err = reg
        .register(CodecId::new(131), "kv", codec.clone())
        .unwrap_err();
    assert!(
        err.to_string().contains("already registered with id 130"),
        "{err}"
    );
    let err = reg
        .register(CodecId::new(130), "kv2", codec.clone())
        .unwrap_err();
    assert!(err.to_string().contains("already taken by `kv`"), "{err}");
    reg.register(CodecId::new(254), "kv2", codec).unwrap();
    assert_eq!(reg.by_name("kv2"), Some(CodecId::new(254)));
}

#[test]
fn unknown_ids_give_typed_errors() {
    let reg = Registry::new();
    for raw in [0u8, 9, 127, 128, 200, 255] {
        let id = CodecId::new(raw);
        let err = reg.decode::<u8>(id, b"1").unwrap_err();
        assert_eq!(
            (err.kind(), err.origin()),
            (ErrorKind::UnknownCodec, Origin::Peer),
            "{raw}"
        );
        let err = reg.encode(id, &1u8).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnknownCodec);
        assert!(err.to_string().contains("json"), "{err}");
        assert!(reg.decode_value(id, b"1").is_err());
        assert!(decode::<u8>(id, b"1", &Limits::DEFAULT).is_err());
    }
    let err = reg.decode::<u8>(CodecId::new(200), b"1").unwrap_err();
    assert!(err.to_string().contains("Registry::register"), "{err}");
}

#[test]
fn free_functions_and_registry_agree_for_builtins() {
    let reg = Registry::new();
    let v = (1u32, "two", [3.0f64, 4.5], Some(true));
    for id in CodecSet::all_builtin().iter() {
        let mut a = Vec::new();
        encode_into(id, &v, &mut a).unwrap();
        assert_eq!(reg.encode(id, &v).unwrap(), a, "{id}");
        let back: (u32, String, [f64; 2], Option<bool>) = reg.decode(id, &a).unwrap();
        assert_eq!(back, (1, "two".to_owned(), [3.0, 4.5], Some(true)));
        assert_eq!(reg.name(id), id.builtin_name());
        assert_eq!(reg.info(id), builtin_info(id));
    }
}
