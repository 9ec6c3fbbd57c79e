#!/usr/bin/env python3
"""Writes the native wire protocol vectors (protocol/SPEC.md) as JSON files.

This script is a second, independent implementation of the frame layout: it builds every
vector's bytes with `struct` straight from the SPEC tables, without using the Rust crate, so
the Rust tests that read these files check the crate against the SPEC and not against itself.

Run from anywhere: python3 generate.py   (rewrites the *.json files beside this script)
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
MAGIC = bytes([0x89, 0x57, 0x43, 0x50])

HELLO, WELCOME, REFUSE, CALL, REPLY, ERROR, CANCEL, STREAM_ITEM, STREAM_END, PING, PONG, GOAWAY, CREDIT = range(1, 14)
KIND_NAMES = {1: "HELLO", 2: "WELCOME", 3: "REFUSE", 4: "CALL", 5: "REPLY", 6: "ERROR", 7: "CANCEL",
              8: "STREAM_ITEM", 9: "STREAM_END", 10: "PING", 11: "PONG", 12: "GOAWAY", 13: "CREDIT"}
ONEWAY, STREAM = 0x0001, 0x0002
DEFAULT_LIMITS = {"max_frame_len": 16 << 20, "max_annotations_len": 16 << 10, "max_in_flight": 128}


def frame(kind, flags=0, codec=0, provider=0, rid=0, route=b"", ann=b"", payload=b"", kwargs=b"",
          att=b"", version=1, magic=MAGIC, res9=0, res22=0, res23=0, lens=None):
    """Header (SPEC §2) followed by the sections; `lens` overrides the declared lengths."""
    rl, al, pl, kl, tl = lens or (len(route), len(ann), len(payload), len(kwargs), len(att))
    head = magic + struct.pack(">BBHBBHQHBBIIII", version, kind, flags, codec, res9, provider, rid,
                               rl, res22, res23, al, pl, kl, tl)
    assert len(head) == 40
    return head + route + ann + payload + kwargs + att


def limits_bytes(l):
    return struct.pack(">III", l["max_frame_len"], l["max_annotations_len"], l["max_in_flight"])


def hello_body(versions, codecs, limits=DEFAULT_LIMITS):
    return bytes([len(versions)]) + bytes(versions) + bytes([len(codecs)]) + bytes(codecs) + limits_bytes(limits)


def extensions_bytes(entries):
    """Handshake extensions (SPEC §6.1.1): (tag, value bytes) pairs."""
    return b"".join(bytes([tag]) + struct.pack(">H", len(v)) + v for tag, v in entries)


def welcome_body(version, codec, accepted, limits=DEFAULT_LIMITS):
    return bytes([version, codec, len(accepted)]) + bytes(accepted) + limits_bytes(limits)


def refuse_body(code, versions, accepted, message):
    m = message.encode() if isinstance(message, str) else message
    return struct.pack(">I", code) + bytes([len(versions)]) + bytes(versions) + bytes([len(accepted)]) + \
        bytes(accepted) + struct.pack(">H", len(m)) + m


def goaway_body(last, code, message):
    m = message.encode() if isinstance(message, str) else message
    return struct.pack(">QIH", last, code, len(m)) + m


def error_body(code, type_name="", message="", trace="", accepted=(), detail=b"", names=()):
    t = type_name.encode() if isinstance(type_name, str) else type_name
    m = message.encode()
    tr = trace.encode()
    body = struct.pack(">IH", code, len(t)) + t + struct.pack(">I", len(m)) + m + struct.pack(">I", len(tr)) + \
        tr + bytes([len(accepted)]) + bytes(accepted)
    if code in (0x07, 0x08):  # UNKNOWN_PROVIDER, UNKNOWN_METHOD: the names list (SPEC §7)
        body += struct.pack(">H", len(names))
        for n in names:
            nb = n.encode()
            body += struct.pack(">H", len(nb)) + nb
    return body + detail


def entry(key, value):
    k = key.encode() if isinstance(key, str) else key
    return bytes([len(k)]) + k + struct.pack(">I", len(value)) + value


def ann_json(entries):
    return [[k, v.hex()] for k, v in entries]


def ann_bytes(entries):
    return b"".join(entry(k, v) for k, v in entries)


# ---- expected decoded frames (the JSON notation of README.md) ----

def j_call(rid, provider, codec, method, args=b"", kwargs=b"", att=b"", ann=(), oneway=False, upload=False):
    d = {"kind": "CALL", "request_id": rid, "provider": provider, "codec": codec, "oneway": oneway,
         "method": method, "annotations": ann_json(ann), "args": args.hex(), "kwargs": kwargs.hex(),
         "attachment": att.hex()}
    if upload:
        # Flag UPLOAD (§6.13); the key is left out when the flag is clear.
        d["upload"] = True
    return d


def j_reply(rid, codec, result=b"", att=b"", ann=(), stream=False):
    return {"kind": "REPLY", "request_id": rid, "codec": codec, "stream": stream, "annotations": ann_json(ann),
            "result": result.hex(), "attachment": att.hex()}


def j_error(rid, codec, code, type_name="", message="", trace="", accepted=(), detail=b"", ann=(), names=()):
    return {"kind": "ERROR", "request_id": rid, "codec": codec, "annotations": ann_json(ann), "code": code,
            "type_name": type_name, "message": message, "trace": trace, "accepted": list(accepted),
            "names": list(names), "detail": detail.hex()}


def j_item(rid, codec, item=b"", att=b"", ann=()):
    return {"kind": "STREAM_ITEM", "request_id": rid, "codec": codec, "annotations": ann_json(ann),
            "item": item.hex(), "attachment": att.hex()}


def v_ok(name, spec, desc, data, frames, limits=None):
    v = {"name": name, "spec": spec, "description": desc, "hex": data.hex(), "frames": frames, "error": None}
    if limits:
        v["limits"] = limits
    return v


def v_err(name, spec, desc, data, error, frames=(), limits=None):
    v = {"name": name, "spec": spec, "description": desc, "hex": data.hex(), "frames": list(frames), "error": error}
    if limits:
        v["limits"] = limits
    return v


def kinds():
    out = []
    h = hello_body([1], [2, 1])
    out.append(v_ok("hello-basic", "§3, §6.1", "HELLO offering version 1 and msgpack then json, default limits",
                    frame(HELLO, payload=h),
                    [{"kind": "HELLO", "versions": [1], "codecs": [2, 1], "limits": DEFAULT_LIMITS}]))
    lim = {"max_frame_len": 4096, "max_annotations_len": 0, "max_in_flight": 1}
    out.append(v_ok("hello-min-limits-user-codec", "§5, §6.1, §8",
                    "HELLO offering versions 2 then 1, serpent, json and user codec 200, with the smallest legal limits",
                    frame(HELLO, payload=hello_body([2, 1], [7, 1, 200], lim)),
                    [{"kind": "HELLO", "versions": [2, 1], "codecs": [7, 1, 200], "limits": lim}]))
    ext = [(1, b"\x01"), (200, b"private")]
    out.append(v_ok("hello-extensions", "§6.1, §6.1.1",
                    "HELLO offering compression (tag 1, zstd) and a private-use tag 200",
                    frame(HELLO, payload=hello_body([1], [1]) + extensions_bytes(ext)),
                    [{"kind": "HELLO", "versions": [1], "codecs": [1], "limits": DEFAULT_LIMITS,
                      "extensions": [{"tag": t, "value": v.hex()} for t, v in ext]}]))
    out.append(v_ok("welcome-extensions", "§6.2, §6.1.1",
                    "WELCOME answering compression (tag 1) and callbacks (tag 2, empty value)",
                    frame(WELCOME, payload=welcome_body(1, 1, [1]) + extensions_bytes([(1, b"\x01"), (2, b"")])),
                    [{"kind": "WELCOME", "version": 1, "codec": 1, "accepted": [1], "limits": DEFAULT_LIMITS,
                      "extensions": [{"tag": 1, "value": "01"}, {"tag": 2, "value": ""}]}]))
    out.append(v_ok("welcome-basic", "§3, §6.2", "WELCOME: version 1, default codec json, accepted json and msgpack",
                    frame(WELCOME, payload=welcome_body(1, 1, [1, 2])),
                    [{"kind": "WELCOME", "version": 1, "codec": 1, "accepted": [1, 2], "limits": DEFAULT_LIMITS}]))
    out.append(v_ok("refuse-no-common-codec", "§3, §6.3", "REFUSE NO_COMMON_CODEC naming version 1 and the accepted set",
                    frame(REFUSE, payload=refuse_body(3, [1], [1, 2], "no codec in common")),
                    [{"kind": "REFUSE", "code": 3, "versions": [1], "accepted": [1, 2], "message": "no codec in common"}]))
    out.append(v_ok("refuse-empty-lists", "§6.3", "REFUSE PERMISSION_DENIED with empty lists and message",
                    frame(REFUSE, payload=refuse_body(0x0F, [], [], "")),
                    [{"kind": "REFUSE", "code": 15, "versions": [], "accepted": [], "message": ""}]))
    out.append(v_ok("call-basic", "§3, §6.4", "CALL #1 to provider 42, json, method calc_add, positional args only, no kwargs",
                    frame(CALL, codec=1, provider=42, rid=1, route=b"calc_add", payload=b"[1,2]"),
                    [j_call(1, 42, 1, "calc_add", b"[1,2]")]))
    out.append(v_ok("call-kwargs", "§6.4", "CALL with msgpack positional args [\"Matthieu\"] and kwargs {\"lastname\":\"Dorier\"}",
                    frame(CALL, codec=2, provider=42, rid=2, route=b"my_service_say_hello",
                          payload=bytes.fromhex("91a84d61747468696575"),
                          kwargs=bytes.fromhex("81a86c6173746e616d65a6446f72696572")),
                    [j_call(2, 42, 2, "my_service_say_hello", bytes.fromhex("91a84d61747468696575"),
                            bytes.fromhex("81a86c6173746e616d65a6446f72696572"))]))
    out.append(v_ok("call-oneway", "§4", "CALL with flag ONEWAY",
                    frame(CALL, flags=ONEWAY, codec=1, provider=7, rid=3, route=b"notify", payload=b"[]"),
                    [j_call(3, 7, 1, "notify", b"[]", oneway=True)]))
    out.append(v_ok("call-upload", "§4, §6.13", "CALL with flag UPLOAD: argument items follow from the caller",
                    frame(CALL, flags=0x0008, codec=1, provider=7, rid=3, route=b"sum", payload=b"[]"),
                    [j_call(3, 7, 1, "sum", b"[]", upload=True)]))
    ann = [("wc.deadline", struct.pack(">Q", 1_500_000)), ("wc.corr", bytes(range(16))), ("tenant", b"acme")]
    out.append(v_ok("call-annotations", "§6.7", "CALL with a 1.5 s deadline, a correlation id and a user key/value",
                    frame(CALL, codec=1, provider=1, rid=4, route=b"m", ann=ann_bytes(ann), payload=b"[]"),
                    [j_call(4, 1, 1, "m", b"[]", ann=ann)]))
    att = bytes(range(256)) * 4
    out.append(v_ok("call-attachment", "§6.4", "CALL with a 1 KiB raw attachment after the payload",
                    frame(CALL, codec=5, provider=1, rid=5, route=b"upload", payload=b"\x01\x02", att=att),
                    [j_call(5, 1, 5, "upload", b"\x01\x02", att=att)]))
    ann2 = [("k", b"")]
    out.append(v_ok("call-all-sections", "§2, §6.4", "CALL with every section present, in order",
                    frame(CALL, flags=ONEWAY, codec=3, provider=0xFFFF, rid=6, route="méthode".encode(),
                          ann=ann_bytes(ann2), payload=b"\x80", kwargs=b"\xa0", att=b"BULK"),
                    [j_call(6, 0xFFFF, 3, "méthode", b"\x80", b"\xa0", b"BULK", ann2, oneway=True)]))
    out.append(v_ok("call-codec-user", "§5", "CALL in user codec 200 (decodes; acceptance is the server's per-frame check)",
                    frame(CALL, codec=200, provider=1, rid=7, route=b"m", payload=b"x"),
                    [j_call(7, 1, 200, "m", b"x")]))
    out.append(v_ok("call-codec-reserved-builtin", "§5", "CALL in codec 100 (reserved for future built-ins) still decodes",
                    frame(CALL, codec=100, provider=1, rid=8, route=b"m"),
                    [j_call(8, 1, 100, "m")]))
    out.append(v_ok("call-max-request-id", "§2", "CALL with the largest request id",
                    frame(CALL, codec=1, provider=1, rid=2**64 - 1, route=b"m", payload=b"[]"),
                    [j_call(2**64 - 1, 1, 1, "m", b"[]")]))
    out.append(v_ok("reply-basic", "§3, §6.4", "REPLY to #1 in json",
                    frame(REPLY, codec=1, rid=1, payload=b"3"), [j_reply(1, 1, b"3")]))
    ann3 = [("server", b"a")]
    out.append(v_ok("reply-stream", "§4, §6.4", "REPLY with flag STREAM and a response annotation",
                    frame(REPLY, flags=STREAM, codec=2, rid=9, ann=ann_bytes(ann3), payload=b"\xc0"),
                    [j_reply(9, 2, b"\xc0", ann=ann3, stream=True)]))
    out.append(v_ok("reply-attachment", "§6.4", "REPLY whose result travels as a raw attachment",
                    frame(REPLY, codec=5, rid=10, payload=b"\x00", att=b"\xff" * 100),
                    [j_reply(10, 5, b"\x00", b"\xff" * 100)]))
    out.append(v_ok("error-application", "§7", "ERROR APPLICATION_ERROR with type name, message and a two-line trace",
                    frame(ERROR, rid=11, payload=error_body(0x0D, "builtins.ValueError", "bad value",
                                                            "line 1\nline 2")),
                    [j_error(11, 0, 13, "builtins.ValueError", "bad value", "line 1\nline 2")]))
    out.append(v_ok("error-codec-refused", "§7", "ERROR CODEC_REFUSED listing the accepted set (json, msgpack)",
                    frame(ERROR, rid=12, payload=error_body(0x04, "", "codec CBOR refused", "", [1, 2])),
                    [j_error(12, 0, 4, "", "codec CBOR refused", "", [1, 2])]))
    out.append(v_ok("error-detail", "§7", "ERROR with a json detail value after the fixed part",
                    frame(ERROR, codec=1, rid=13, ann=ann_bytes(ann3),
                          payload=error_body(0x0D, "E", "m", "", [], b"{\"x\":1}")),
                    [j_error(13, 1, 13, "E", "m", "", [], b"{\"x\":1}", ann3)]))
    out.append(v_ok("error-unknown-method-names", "§7, §11", "ERROR UNKNOWN_METHOD listing the exposed names",
                    frame(ERROR, rid=15, payload=error_body(0x08, "", "no method x", "", [], b"",
                                                             ["calc_add", "calc_sub"])),
                    [j_error(15, 0, 8, "", "no method x", "", [], b"", (), ["calc_add", "calc_sub"])]))
    out.append(v_ok("error-unknown-provider-no-names", "§7", "ERROR UNKNOWN_PROVIDER with an empty names list",
                    frame(ERROR, rid=16, payload=error_body(0x07, "", "no provider 9")),
                    [j_error(16, 0, 7, "", "no provider 9")]))
    out.append(v_ok("error-application-code", "§9", "ERROR with an application-defined code",
                    frame(ERROR, rid=14, payload=error_body(0x80000001)),
                    [j_error(14, 0, 0x80000001)]))
    out.append(v_ok("cancel", "§3, §6.5", "CANCEL #15", frame(CANCEL, rid=15),
                    [{"kind": "CANCEL", "request_id": 15}]))
    out.append(v_ok("stream-item", "§6.5", "STREAM_ITEM for #9", frame(STREAM_ITEM, codec=2, rid=9, payload=b"\x01"),
                    [j_item(9, 2, b"\x01")]))
    out.append(v_ok("stream-item-attachment", "§6.5", "STREAM_ITEM with annotations and an attachment",
                    frame(STREAM_ITEM, codec=2, rid=9, ann=ann_bytes(ann3), payload=b"\x02", att=b"raw"),
                    [j_item(9, 2, b"\x02", b"raw", ann3)]))
    out.append(v_ok("stream-end", "§6.5", "STREAM_END for #9", frame(STREAM_END, rid=9),
                    [{"kind": "STREAM_END", "request_id": 9}]))
    out.append(v_ok("credit", "§3, §6.12", "CREDIT of 16 items for #9", frame(CREDIT, rid=9, payload=struct.pack(">I", 16)),
                    [{"kind": "CREDIT", "request_id": 9, "credit": 16}]))
    out.append(v_ok("ping", "§6.6", "PING with 8 opaque bytes", frame(PING, payload=bytes(range(1, 9))),
                    [{"kind": "PING", "data": "0102030405060708"}]))
    out.append(v_ok("pong", "§6.6", "PONG echoing them", frame(PONG, payload=bytes(range(1, 9))),
                    [{"kind": "PONG", "data": "0102030405060708"}]))
    out.append(v_ok("goaway-graceful", "§6.6", "GOAWAY NO_ERROR, last accepted call #20",
                    frame(GOAWAY, payload=goaway_body(20, 0, "restart")),
                    [{"kind": "GOAWAY", "last_request_id": 20, "code": 0, "message": "restart"}]))
    out.append(v_ok("goaway-error", "§6.6, §10", "GOAWAY PROTOCOL_ERROR with a message",
                    frame(GOAWAY, payload=goaway_body(0, 1, "bad frame")),
                    [{"kind": "GOAWAY", "last_request_id": 0, "code": 1, "message": "bad frame"}]))
    two = frame(PING, payload=b"\x00" * 8) + frame(CANCEL, rid=2)
    out.append(v_ok("two-frames", "§1", "two frames back to back in one buffer", two,
                    [{"kind": "PING", "data": "0000000000000000"}, {"kind": "CANCEL", "request_id": 2}]))
    return out


def flags():
    out = []
    out.append(v_err("flags-unknown-bit-on-call", "§4", "CALL with undefined flag 0x0010",
                     frame(CALL, flags=0x0010, codec=1, rid=1, route=b"m"), "bad_flags"))
    out.append(v_err("flags-compressed-not-in-force", "§4, §6.9",
                     "CALL with flag COMPRESSED on a connection without compression in force "
                     "(the runner's decoder has none): refused from the header",
                     frame(CALL, flags=0x0004, codec=1, rid=1, route=b"m"), "bad_flags"))
    out.append(v_err("flags-upload-with-oneway", "§4, §6.13",
                     "CALL with ONEWAY and UPLOAD: a oneway call has no answer to end its argument stream",
                     frame(CALL, flags=0x0009, codec=1, rid=1, route=b"m"), "bad_flags"))
    out.append(v_err("flags-upload-on-reply", "§4", "UPLOAD is only valid on CALL",
                     frame(REPLY, flags=0x0008, codec=1, rid=1), "bad_flags"))
    out.append(v_err("flags-high-bit", "§4", "PING with flag 0x8000", frame(PING, flags=0x8000, payload=bytes(8)),
                     "bad_flags"))
    out.append(v_err("flags-oneway-on-reply", "§4", "ONEWAY is only valid on CALL",
                     frame(REPLY, flags=ONEWAY, codec=1, rid=1), "bad_flags"))
    out.append(v_err("flags-stream-on-call", "§4", "STREAM is only valid on REPLY",
                     frame(CALL, flags=STREAM, codec=1, rid=1, route=b"m"), "bad_flags"))
    out.append(v_err("flags-stream-on-stream-item", "§4", "STREAM is not valid on STREAM_ITEM",
                     frame(STREAM_ITEM, flags=STREAM, codec=1, rid=1), "bad_flags"))
    out.append(v_err("flags-on-hello", "§4", "no flag is valid on HELLO",
                     frame(HELLO, flags=ONEWAY, payload=hello_body([1], [1])), "bad_flags"))
    return out


def header_rules():
    out = []
    call = frame(CALL, codec=1, provider=1, rid=1, route=b"m", payload=b"[]")
    out.append(v_err("bad-magic-pyro", "§1", "a Pyro5 header is not a native frame",
                     b"PYRO" + bytes.fromhex("01f6") + bytes(34), "bad_magic"))
    out.append(v_err("bad-magic-first-byte", "§1, §2", "an HTTP request is rejected at its first byte", b"G",
                     "bad_magic"))
    out.append(v_err("bad-magic-third-byte", "§2", "rejected as soon as the prefix stops matching", b"\x89WX",
                     "bad_magic"))
    out.append(v_err("truncated-magic", "§2, §10", "stream ends after 2 magic bytes", b"\x89W", "truncated"))
    out.append(v_err("truncated-header", "§10", "stream ends inside the header", call[:20], "truncated"))
    out.append(v_err("truncated-body", "§10", "stream ends inside the payload", call[:-1], "truncated"))
    out.append(v_err("unsupported-version-0", "§2", "version 0", frame(PING, version=0, payload=bytes(8)),
                     "unsupported_version"))
    out.append(v_err("unsupported-version-2", "§2", "version 2", frame(PING, version=2, payload=bytes(8)),
                     "unsupported_version"))
    out.append(v_err("check-order-version-before-kind", "§2", "version is checked before kind",
                     frame(0xEE, version=9), "unsupported_version"))
    for k in (0x00, 0x0E, 0xFF):
        out.append(v_err("unknown-kind-%02x" % k, "§3", "kind 0x%02x is not defined in version 1" % k,
                         frame(k), "unknown_kind"))
    out.append(v_err("check-order-kind-before-flags", "§2", "kind is checked before flags",
                     frame(0x0E, flags=0xFFFF), "unknown_kind"))
    out.append(v_err("check-order-flags-before-reserved", "§2", "flags are checked before reserved bytes",
                     frame(PING, flags=0x0100, res9=1, payload=bytes(8)), "bad_flags"))
    for off, kw in ((9, "res9"), (22, "res22"), (23, "res23")):
        out.append(v_err("reserved-byte-%d" % off, "§2", "reserved byte %d is not zero" % off,
                         frame(PING, payload=bytes(8), **{kw: 1}), "reserved_not_zero"))
    out.append(v_err("check-order-reserved-before-fields", "§2", "reserved bytes are checked before field rules",
                     frame(CALL, res22=1), "reserved_not_zero"))
    # per-kind field rules (§3 table)
    hb = hello_body([1], [1])
    rules = [
        ("hello-codec", frame(HELLO, codec=1, payload=hb)),
        ("hello-request-id", frame(HELLO, rid=1, payload=hb)),
        ("hello-provider", frame(HELLO, provider=1, payload=hb)),
        ("hello-route", frame(HELLO, route=b"m", payload=hb)),
        ("hello-annotations", frame(HELLO, ann=entry("a", b""), payload=hb)),
        ("hello-kwargs", frame(HELLO, payload=hb, kwargs=b"x")),
        ("hello-attachment", frame(HELLO, payload=hb, att=b"x")),
        ("welcome-provider", frame(WELCOME, provider=3, payload=welcome_body(1, 1, [1]))),
        ("refuse-route", frame(REFUSE, route=b"x", payload=refuse_body(3, [], [], ""))),
        ("call-request-id-zero", frame(CALL, codec=1, route=b"m")),
        ("call-codec-zero", frame(CALL, rid=1, route=b"m")),
        ("call-codec-255", frame(CALL, codec=255, rid=1, route=b"m")),
        ("call-no-route", frame(CALL, codec=1, rid=1)),
        ("reply-codec-zero", frame(REPLY, rid=1, payload=b"x")),
        ("reply-request-id-zero", frame(REPLY, codec=1, payload=b"x")),
        ("reply-provider", frame(REPLY, codec=1, rid=1, provider=1)),
        ("reply-route", frame(REPLY, codec=1, rid=1, route=b"m")),
        ("reply-kwargs", frame(REPLY, codec=1, rid=1, kwargs=b"x")),
        ("error-request-id-zero", frame(ERROR, payload=error_body(1))),
        ("error-codec-255", frame(ERROR, codec=255, rid=1, payload=error_body(1))),
        ("error-kwargs", frame(ERROR, rid=1, payload=error_body(1), kwargs=b"x")),
        ("error-attachment", frame(ERROR, rid=1, payload=error_body(1), att=b"x")),
        ("cancel-request-id-zero", frame(CANCEL)),
        ("cancel-codec", frame(CANCEL, codec=1, rid=1)),
        ("cancel-payload", frame(CANCEL, rid=1, payload=b"x")),
        ("cancel-annotations", frame(CANCEL, rid=1, ann=entry("a", b""))),
        ("stream-item-codec-zero", frame(STREAM_ITEM, rid=1, payload=b"x")),
        ("stream-item-kwargs", frame(STREAM_ITEM, codec=1, rid=1, kwargs=b"x")),
        ("stream-end-payload", frame(STREAM_END, rid=1, payload=b"x")),
        ("stream-end-attachment", frame(STREAM_END, rid=1, att=b"x")),
        ("credit-request-id-zero", frame(CREDIT, payload=bytes(4))),
        ("credit-payload-short", frame(CREDIT, rid=1, payload=bytes(3))),
        ("credit-codec", frame(CREDIT, codec=1, rid=1, payload=bytes(4))),
        ("ping-payload-7", frame(PING, payload=bytes(7))),
        ("ping-payload-9", frame(PING, payload=bytes(9))),
        ("ping-request-id", frame(PING, rid=1, payload=bytes(8))),
        ("pong-codec", frame(PONG, codec=1, payload=bytes(8))),
        ("goaway-request-id", frame(GOAWAY, rid=1, payload=goaway_body(0, 0, ""))),
    ]
    for name, data in rules:
        out.append(v_err("field-" + name, "§3", "breaks the §3 table: " + name.replace("-", " "), data, "bad_field"))
    return out


def limits():
    out = []
    small = {"max_frame_len": 4096, "max_annotations_len": 16, "max_in_flight": 1}
    at = frame(CALL, codec=1, rid=1, route=b"m", payload=bytes(4096 - 41))
    out.append(v_ok("limit-frame-at-max", "§8", "a frame of exactly max_frame_len (4096) bytes is accepted", at,
                    [j_call(1, 0, 1, "m", bytes(4096 - 41))], small))
    over = frame(CALL, codec=1, rid=1, route=b"m", payload=bytes(4096 - 40))
    out.append(v_err("limit-frame-over-max", "§8", "one byte over max_frame_len is rejected from the header",
                     over, "frame_too_large", limits=small))
    out.append(v_err("limit-frame-header-only", "§2, §8",
                     "a header declaring 1 GiB is rejected before any byte of the body arrives",
                     frame(CALL, codec=1, rid=1, route=b"m", lens=(1, 0, 1 << 30, 0, 0)), "frame_too_large",
                     limits=small))
    out.append(v_err("limit-lengths-overflow", "§2, §8",
                     "every length at its maximum: the sum does not wrap and is rejected",
                     frame(CALL, codec=1, rid=1, lens=(0xFFFF, 0, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)),
                     "frame_too_large"))
    out.append(v_err("limit-lengths-overflow-32bit", "§2, §8",
                     "lengths whose sum wraps a 32-bit integer to a small value are still rejected",
                     frame(CALL, codec=1, rid=1, lens=(1, 0, 0xFFFFFFFF, 0, 0x30)), "frame_too_large"))
    ok_ann = [("abc", b"1234567")]  # 1 + 3 + 4 + 7 = 15 bytes
    ann16 = [("abc", b"12345678")]
    out.append(v_ok("limit-annotations-at-max", "§8", "16 bytes of annotations with max_annotations_len 16",
                    frame(CALL, codec=1, rid=1, route=b"m", ann=ann_bytes(ann16)),
                    [j_call(1, 0, 1, "m", ann=ann16)], small))
    ann17 = ann_bytes([("abc", b"123456789")])
    out.append(v_err("limit-annotations-over-max", "§8", "17 bytes of annotations with max_annotations_len 16",
                     frame(CALL, codec=1, rid=1, route=b"m", ann=ann17), "annotations_too_large", limits=small))
    out.append(v_ok("limit-annotations-under", "§8", "15 bytes of annotations", frame(CALL, codec=1, rid=1,
                    route=b"m", ann=ann_bytes(ok_ann)), [j_call(1, 0, 1, "m", ann=ok_ann)], small))
    out.append(v_err("limit-route-max-length", "§8",
                     "a 65535-byte route with the default 16 MiB limit is fine for the header, but this frame is cut short",
                     frame(CALL, codec=1, rid=1, lens=(0xFFFF, 0, 0, 0, 0)), "truncated"))
    return out


def bodies():
    out = []
    lim = limits_bytes(DEFAULT_LIMITS)
    bad = [
        ("hello-truncated", HELLO, hello_body([1], [1])[:-1], "malformed_body"),
        ("hello-no-versions", HELLO, b"\x00\x01\x01" + lim, "malformed_body"),
        ("hello-no-codecs", HELLO, b"\x01\x01\x00" + lim, "malformed_body"),
        ("hello-codec-zero-in-list", HELLO, hello_body([1], [1, 0]), "malformed_body"),
        ("hello-codec-255-in-list", HELLO, hello_body([1], [255]), "malformed_body"),
        ("hello-frame-limit-too-small", HELLO,
         hello_body([1], [1], {"max_frame_len": 4095, "max_annotations_len": 0, "max_in_flight": 1}), "malformed_body"),
        ("hello-in-flight-zero", HELLO,
         hello_body([1], [1], {"max_frame_len": 4096, "max_annotations_len": 0, "max_in_flight": 0}), "malformed_body"),
        ("hello-trailing-byte", HELLO, hello_body([1], [1]) + b"\x00", "malformed_body"),
        ("hello-extension-tag-zero", HELLO, hello_body([1], [1]) + extensions_bytes([(0, b"")]), "malformed_body"),
        ("hello-extension-twice", HELLO, hello_body([1], [1]) + extensions_bytes([(1, b"\x01"), (1, b"\x01")]),
         "malformed_body"),
        ("hello-extension-past-body", HELLO, hello_body([1], [1]) + extensions_bytes([(1, b"\x01\x02")])[:-1],
         "malformed_body"),
        ("welcome-extension-tag-zero", WELCOME, welcome_body(1, 1, [1]) + extensions_bytes([(0, b"x")]),
         "malformed_body"),
        ("welcome-codec-not-accepted", WELCOME, welcome_body(1, 3, [1, 2]), "malformed_body"),
        ("welcome-empty-accepted", WELCOME, bytes([1, 1, 0]) + lim, "malformed_body"),
        ("welcome-truncated", WELCOME, welcome_body(1, 1, [1])[:-2], "malformed_body"),
        ("refuse-message-not-utf8", REFUSE, refuse_body(3, [1], [1], b"\xff\xfe"), "invalid_utf8"),
        ("refuse-message-truncated", REFUSE, refuse_body(3, [1], [1], "abc")[:-1], "malformed_body"),
        ("goaway-truncated", GOAWAY, goaway_body(1, 0, "")[:-1], "malformed_body"),
        ("goaway-trailing", GOAWAY, goaway_body(1, 0, "") + b"x", "malformed_body"),
        ("goaway-message-not-utf8", GOAWAY, goaway_body(1, 0, b"\xc3"), "invalid_utf8"),
    ]
    for name, kind, body, err in bad:
        out.append(v_err("body-" + name, "§6", "malformed %s body: %s" % (KIND_NAMES[kind], name), frame(kind, payload=body), err))
    ebad = [
        ("error-truncated", 0, error_body(1)[:-1], "malformed_body"),
        ("error-type-not-utf8", 0, error_body(1, b"\xff"), "invalid_utf8"),
        ("error-detail-without-codec", 0, error_body(1, "", "", "", [], b"x"), "malformed_body"),
        ("error-accepted-zero", 0, error_body(4, "", "", "", [0]), "malformed_body"),
        ("error-message-overruns", 0, struct.pack(">IHI", 1, 0, 1000) + b"short", "malformed_body"),
        ("error-names-count-overruns", 0, error_body(8, names=["a"])[:-3] + struct.pack(">H", 50) + b"\x00\x01a",
         "malformed_body"),
        ("error-name-overruns", 0, error_body(8, names=["abc"])[:-1], "malformed_body"),
    ]
    for name, codec, body, err in ebad:
        out.append(v_err("body-" + name, "§7", "malformed ERROR body: " + name, frame(ERROR, codec=codec, rid=1,
                                                                                     payload=body), err))
    out.append(v_err("route-not-utf8", "§3", "a CALL's route must be UTF-8",
                     frame(CALL, codec=1, rid=1, route=b"\xff"), "invalid_utf8"))
    return out


def annotations():
    out = []
    def call_with(a):
        return frame(CALL, codec=1, rid=1, route=b"m", ann=a)
    out.append(v_err("annotations-empty-key", "§6.7", "an entry with a 0-length key",
                     call_with(b"\x00" + struct.pack(">I", 0)), "malformed_body"))
    out.append(v_err("annotations-truncated-entry", "§6.7", "an entry cut inside its value length",
                     call_with(b"\x01k\x00\x00"), "malformed_body"))
    out.append(v_err("annotations-value-overruns", "§6.7", "a value length past the section end",
                     call_with(b"\x01k" + struct.pack(">I", 5) + b"abc"), "malformed_body"))
    out.append(v_err("annotations-key-not-utf8", "§6.7", "a key that is not UTF-8",
                     call_with(b"\x01\xff" + struct.pack(">I", 0)), "invalid_utf8"))
    out.append(v_err("annotations-deadline-wrong-length", "§6.7", "wc.deadline must be 8 bytes",
                     call_with(entry("wc.deadline", bytes(4))), "malformed_body"))
    out.append(v_err("annotations-corr-wrong-length", "§6.7", "wc.corr must be 16 bytes",
                     call_with(entry("wc.corr", bytes(15))), "malformed_body"))
    out.append(v_err("annotations-batch-wrong-length", "§6.7, §6.8", "wc.batch must be 9 bytes",
                     call_with(entry("wc.batch", bytes(8))), "malformed_body"))
    out.append(v_err("annotations-batch-unknown-flag", "§6.7, §6.8", "wc.batch flags other than 01 are rejected",
                     call_with(entry("wc.batch", struct.pack(">QB", 1, 2))), "malformed_body"))
    out.append(v_err("annotations-batch-id-zero", "§6.7, §6.8", "wc.batch cannot name request id 0",
                     call_with(entry("wc.batch", struct.pack(">QB", 0, 1))), "malformed_body"))
    batch = [("wc.batch", struct.pack(">QB", 1, 1))]
    out.append(v_ok("annotations-batch", "§6.7, §6.8", "CALL #1 opening and closing its own ordered batch",
                    call_with(ann_bytes(batch)), [j_call(1, 0, 1, "m", ann=batch)]))
    fut = [("wc.future", b"\x01"), ("k", b"v"), ("k", b"w")]
    out.append(v_ok("annotations-unknown-protocol-key", "§6.7",
                    "an unknown wc. key is kept and ignored; duplicate user keys keep their order",
                    call_with(ann_bytes(fut)), [j_call(1, 0, 1, "m", ann=fut)]))
    ping = frame(PING, payload=bytes(8))
    out.append(v_err("garbage-after-frame", "§10", "a valid frame followed by garbage: the frame, then bad_magic",
                     ping + b"xyz", "bad_magic", [{"kind": "PING", "data": "0000000000000000"}]))
    out.append(v_err("partial-after-frame", "§10", "a valid frame followed by a magic prefix at end of stream",
                     ping + b"\x89", "truncated", [{"kind": "PING", "data": "0000000000000000"}]))
    return out


# ---- sessions: the connection rules of §10 ----

SERVER_CFG = {"versions": [1], "accepted": [1, 2], "limits": DEFAULT_LIMITS}
CLIENT_CFG = {"versions": [1], "codecs": [2, 1], "limits": DEFAULT_LIMITS}
HELLO_F = frame(HELLO, payload=hello_body([1], [3, 2, 1]))
WELCOME_F = frame(WELCOME, payload=welcome_body(1, 2, [1, 2]))


COMPRESSED = 0x0004


def zstd_raw(data):
    """A zstd frame (RFC 8878) holding `data` in one raw block: single segment, 1-byte content
    size, no checksum; valid for any zstd decoder, built here without a zstd library."""
    assert len(data) < 256
    block = struct.pack("<I", 1 | (0 << 1) | (len(data) << 3))[:3]
    return bytes([0x28, 0xB5, 0x2F, 0xFD, 0x20, len(data)]) + block + data


def zstd_rle(byte, count):
    """A zstd frame of `count` copies of `byte` in one RLE block (count < 65536: 2-byte content
    size, stored minus 256)."""
    assert 256 <= count < 65536
    block = struct.pack("<I", 1 | (1 << 1) | (count << 3))[:3]
    return bytes([0x28, 0xB5, 0x2F, 0xFD, 0x60]) + struct.pack("<H", count - 256) + block + bytes([byte])


def packed(declared, data, alg=1):
    """A section in compressed form (SPEC §6.9): algorithm id, decompressed length, data."""
    return bytes([alg]) + struct.pack(">I", declared) + data


def compression():
    """Compressed frames, for a decoder with zstd in force (the vector's `compression`)."""
    z = [1]
    args, kwargs, item = b"[1,2,3]", b'{"k":"v"}', b'"item"'
    out = [
        v_ok("compression-call", "§6.9", "CALL with COMPRESSED: payload and kwargs inflated, the "
             "attachment raw", frame(CALL, flags=COMPRESSED, codec=1, provider=7, rid=1, route=b"m",
                                    payload=packed(len(args), zstd_raw(args)),
                                    kwargs=packed(len(kwargs), zstd_raw(kwargs)), att=b"raw"),
             [j_call(1, 7, 1, "m", args, kwargs, b"raw")]),
        v_ok("compression-call-empty-kwargs", "§6.9", "an empty section stays empty (no prefix)",
             frame(CALL, flags=COMPRESSED | ONEWAY, codec=1, rid=2, route=b"m",
                   payload=packed(len(args), zstd_raw(args))),
             [j_call(2, 0, 1, "m", args, oneway=True)]),
        v_ok("compression-reply-stream", "§6.9", "REPLY with STREAM and COMPRESSED, then a "
             "compressed STREAM_ITEM", frame(REPLY, flags=STREAM | COMPRESSED, codec=1, rid=1,
                                              payload=packed(len(args), zstd_raw(args)))
             + frame(STREAM_ITEM, flags=COMPRESSED, codec=1, rid=1, payload=packed(len(item), zstd_raw(item))),
             [j_reply(1, 1, args, stream=True), j_item(1, 1, item)]),
        v_ok("compression-rle", "§6.9", "a section inflating 12 bytes to 1,000 (an RLE block)",
             frame(REPLY, flags=COMPRESSED, codec=1, rid=1, payload=packed(1000, zstd_rle(0x61, 1000))),
             [j_reply(1, 1, b"a" * 1000)]),
        v_err("compression-declared-over-limit", "§6.9, §8", "declares 1 MiB under a 4096-byte frame "
              "limit: refused before decompressing", frame(REPLY, flags=COMPRESSED, codec=1, rid=1,
                                                         payload=packed(1 << 20, zstd_raw(b"x"))),
              "decompressed_too_large", limits={"max_frame_len": 4096, "max_annotations_len": 16 << 10,
                                                "max_in_flight": 128}),
        v_err("compression-inflates-past-declared", "§6.9", "declares 10 bytes, inflates to 1,000",
              frame(REPLY, flags=COMPRESSED, codec=1, rid=1, payload=packed(10, zstd_rle(0x61, 1000))),
              "inflates_past_declared"),
        v_err("compression-inflates-short", "§6.9", "declares 8 bytes, inflates to 7",
              frame(REPLY, flags=COMPRESSED, codec=1, rid=1, payload=packed(8, zstd_raw(args))),
              "bad_compressed_data"),
        v_err("compression-not-zstd", "§6.9", "data that is not a zstd frame",
              frame(REPLY, flags=COMPRESSED, codec=1, rid=1, payload=packed(7, b"not zstd")),
              "bad_compressed_data"),
        v_err("compression-algorithm-not-in-force", "§6.9", "algorithm id 2, not in force",
              frame(REPLY, flags=COMPRESSED, codec=1, rid=1, payload=packed(len(args), zstd_raw(args), alg=2)),
              "bad_compressed_data"),
        v_err("compression-short-prefix", "§6.9", "a compressed section shorter than its prefix",
              frame(REPLY, flags=COMPRESSED, codec=1, rid=1, payload=b"\x01\x00\x00"),
              "bad_compressed_data"),
        v_err("compression-flag-on-error", "§4, §6.9", "COMPRESSED is never valid on ERROR",
              frame(ERROR, flags=COMPRESSED, rid=1, payload=error_body(14)), "bad_flags"),
    ]
    for v in out:
        v["compression"] = z
    return out


def step(recv, send=(), events=(), error=None):
    return {"recv": recv.hex(), "send": list(send), "events": list(events), "error": error}


def sessions():
    s = []
    def srv(name, spec, desc, steps, cfg=SERVER_CFG):
        s.append({"name": name, "spec": spec, "description": desc, "role": "server", "config": cfg, "steps": steps})
    def cli(name, spec, desc, steps, cfg=CLIENT_CFG):
        s.append({"name": name, "spec": spec, "description": desc, "role": "client", "config": cfg,
                  "initial_send": [{"kind": "HELLO", "versions": [1], "codecs": [2, 1], "limits": cfg["limits"]}],
                  "steps": steps})
    hs = step(HELLO_F, [{"kind": "WELCOME", "version": 1, "codec": 2, "accepted": [1, 2], "limits": DEFAULT_LIMITS}],
              ["connected"])
    call1 = frame(CALL, codec=1, provider=1, rid=1, route=b"m", payload=b"[]")
    srv("server-handshake", "§6.2, §10", "the default codec is the client's first accepted choice (msgpack)", [hs])
    srv("server-no-common-codec", "§6.3, §10", "HELLO offering cbor only is refused with the accepted set",
        [step(frame(HELLO, payload=hello_body([1], [3])),
              [{"kind": "REFUSE", "code": 3, "versions": [1], "accepted": [1, 2]}], [], "no_common_codec")])
    srv("server-no-common-version", "§6.3, §10", "HELLO offering version 2 only is refused",
        [step(frame(HELLO, payload=hello_body([2], [1])),
              [{"kind": "REFUSE", "code": 2, "versions": [1], "accepted": [1, 2]}], [], "no_common_version")])
    srv("server-unknown-extension", "§6.1.1",
        "a HELLO offering extensions the server does not support gets a WELCOME without them",
        [step(frame(HELLO, payload=hello_body([1], [3, 2, 1]) + extensions_bytes([(1, b"\x01"), (200, b"x")])),
              [{"kind": "WELCOME", "version": 1, "codec": 2, "accepted": [1, 2], "limits": DEFAULT_LIMITS}],
              ["connected"])])
    srv("server-call-before-hello", "§10", "a CALL before HELLO is fatal",
        [step(call1, [{"kind": "GOAWAY", "code": 1}], [], "unexpected_frame")])
    srv("server-second-hello", "§10", "a second HELLO is fatal",
        [hs, step(HELLO_F, [{"kind": "GOAWAY", "code": 1}], [], "unexpected_frame")])
    srv("server-call", "§6.4", "an accepted CALL is dispatched", [hs, step(call1, [], ["call"])])
    srv("server-upload-not-in-force", "§6.13",
        "a CALL with flag UPLOAD on a connection where client → server streams were not agreed is fatal",
        [hs, step(frame(CALL, flags=0x0008, codec=1, provider=1, rid=1, route=b"m", payload=b"[]"),
                  [{"kind": "GOAWAY", "code": 1}], [], "bad_flags")])
    # Client → server streams in force (the server's window 4, SPEC §6.13).
    up_cfg = dict(SERVER_CFG, upload_window=4)
    up_hello = frame(HELLO, payload=hello_body([1], [3, 2, 1]) + extensions_bytes([(3, b"")]))
    up_hs = step(up_hello, [{"kind": "WELCOME", "version": 1, "codec": 2, "accepted": [1, 2],
                             "limits": DEFAULT_LIMITS,
                             "extensions": [{"tag": 3, "value": "00000004"}]}], ["connected"])
    up_call = frame(CALL, flags=0x0008, codec=1, provider=1, rid=1, route=b"m", payload=b"[]")
    def up_item(n):
        return frame(STREAM_ITEM, codec=1, rid=1, payload=str(n).encode())
    srv("server-upload-window", "§6.1.1, §6.13",
        "a HELLO offering client → server streams gets the server's window (4) in WELCOME",
        [up_hs], cfg=up_cfg)
    srv("server-upload-over-credit", "§6.13, §9",
        "an UPLOAD call's items within the window are taken; one more than the window is fatal (FLOW_CONTROL)",
        [up_hs, step(up_call + b"".join(up_item(i) for i in range(4)), [], ["call"] + ["stream_item"] * 4),
         step(up_item(4), [{"kind": "GOAWAY", "code": 0x12}], [], "flow_control")], cfg=up_cfg)
    srv("server-upload-item-after-end", "§6.13",
        "an argument item after the call's STREAM_END is fatal",
        [up_hs, step(up_call + up_item(0) + frame(STREAM_END, rid=1), [], ["call", "stream_item", "stream_end"]),
         step(up_item(1), [{"kind": "GOAWAY", "code": 1}], [], "unexpected_frame")], cfg=up_cfg)
    srv("server-upload-with-oneway", "§4, §6.13", "a CALL with ONEWAY and UPLOAD is fatal (bad_flags)",
        [up_hs, step(frame(CALL, flags=0x0009, codec=1, provider=1, rid=1, route=b"m", payload=b"[]"),
                     [{"kind": "GOAWAY", "code": 1}], [], "bad_flags")], cfg=up_cfg)
    srv("server-stream-item-from-client", "§6.13",
        "a STREAM_ITEM from the client without client → server streams in force is fatal",
        [hs, step(call1, [], ["call"]),
         step(frame(STREAM_ITEM, codec=1, rid=1, payload=b"1"), [{"kind": "GOAWAY", "code": 1}], [],
              "unexpected_frame")])
    srv("server-codec-refused", "§5, §7, §10", "a CALL in cbor is answered CODEC_REFUSED listing json, msgpack",
        [hs, step(frame(CALL, codec=3, provider=1, rid=1, route=b"m"),
                  [{"kind": "ERROR", "request_id": 1, "code": 4, "accepted": [1, 2]}], ["rejected"])])
    srv("server-oneway-codec-refused", "§4, §10", "a ONEWAY CALL in a refused codec is dropped without an answer",
        [hs, step(frame(CALL, flags=ONEWAY, codec=3, provider=1, rid=1, route=b"m"), [], ["rejected"])])
    def batch_call(rid, first, last, codec=1):
        return frame(CALL, codec=codec, provider=1, rid=rid, route=b"m", payload=b"[]",
                     ann=entry("wc.batch", struct.pack(">QB", first, 1 if last else 0)))
    srv("server-batch-held", "§6.8", "an ordered batch of two: only the first call is dispatched",
        [hs, step(batch_call(1, 1, False) + batch_call(2, 1, True), [], ["call"])])
    srv("server-batch-skipped", "§6.8, §9", "an ordered batch whose first call is refused (cbor): the second is answered SKIPPED",
        [hs, step(batch_call(1, 1, False, codec=3) + batch_call(2, 1, True),
                  [{"kind": "ERROR", "request_id": 1, "code": 4, "accepted": [1, 2]},
                   {"kind": "ERROR", "request_id": 2, "code": 0x11}], ["rejected", "rejected"])])
    srv("server-batch-names-later-id", "§6.8", "a wc.batch naming a later request id is fatal",
        [hs, step(batch_call(1, 5, True), [{"kind": "GOAWAY", "code": 1}], [], "malformed_body")])
    one = dict(SERVER_CFG, limits={"max_frame_len": 4096, "max_annotations_len": 64, "max_in_flight": 1})
    srv("server-too-many-in-flight", "§8, §10", "the second CALL over max_in_flight 1 is answered TOO_MANY_IN_FLIGHT",
        [dict(hs, send=[{"kind": "WELCOME", "limits": one["limits"]}]), step(call1, [], ["call"]),
         step(frame(CALL, codec=1, provider=1, rid=2, route=b"m"),
              [{"kind": "ERROR", "request_id": 2, "code": 6}], ["rejected"])], one)
    srv("server-oneway-not-counted", "§4, §8", "ONEWAY calls do not count toward max_in_flight",
        [dict(hs, send=[{"kind": "WELCOME"}]), step(call1, [], ["call"]),
         step(frame(CALL, flags=ONEWAY, codec=1, provider=1, rid=2, route=b"m"), [], ["call"])], one)
    srv("server-frame-too-large", "§8, §10", "a frame over max_frame_len is fatal: GOAWAY LIMIT_EXCEEDED",
        [dict(hs, send=[{"kind": "WELCOME"}]),
         step(frame(CALL, codec=1, rid=1, route=b"m", payload=bytes(5000)), [{"kind": "GOAWAY", "code": 5}], [],
              "frame_too_large")], one)
    srv("server-request-id-not-increasing", "§2, §10", "request ids must strictly increase",
        [hs, step(frame(CALL, codec=1, provider=1, rid=2, route=b"m"), [], ["call"]),
         step(frame(CALL, codec=1, provider=1, rid=2, route=b"m"), [{"kind": "GOAWAY", "code": 1}], [],
              "request_id_not_increasing")])
    srv("server-cancel", "§10", "CANCEL of a call in flight is answered CANCELLED",
        [hs, step(call1, [], ["call"]),
         step(frame(CANCEL, rid=1), [{"kind": "ERROR", "request_id": 1, "code": 9}], ["cancelled"]),
         step(frame(CANCEL, rid=1), [], [])])
    srv("server-cancel-unknown", "§10", "CANCEL of an id never called is fatal",
        [hs, step(frame(CANCEL, rid=5), [{"kind": "GOAWAY", "code": 1}], [], "unknown_request")])
    window4 = frame(CALL, codec=1, provider=1, rid=1, route=b"m", payload=b"[]",
                    ann=entry("wc.window", struct.pack(">I", 4)))
    srv("server-credit", "§6.12", "CREDIT for a call with a window raises its credit; a CREDIT crossing its end is ignored",
        [hs, step(window4, [], ["call"]),
         step(frame(CREDIT, rid=1, payload=struct.pack(">I", 2)), [], ["credit"]),
         step(frame(CANCEL, rid=1), [{"kind": "ERROR", "request_id": 1, "code": 9}], ["cancelled"]),
         step(frame(CREDIT, rid=1, payload=struct.pack(">I", 2)), [], [])])
    srv("server-credit-overflow", "§6.12, §9", "CREDIT raising the credit outstanding past 2^32-1: GOAWAY FLOW_CONTROL",
        [hs, step(window4, [], ["call"]),
         step(frame(CREDIT, rid=1, payload=struct.pack(">I", 0xFFFFFFFF)), [{"kind": "GOAWAY", "code": 0x12}], [],
              "flow_control")])
    srv("server-credit-unknown", "§6.12, §10", "CREDIT for an id never called is fatal",
        [hs, step(frame(CREDIT, rid=5, payload=struct.pack(">I", 1)), [{"kind": "GOAWAY", "code": 1}], [],
                  "unknown_request")])
    srv("server-credit-zero", "§6.12", "a CREDIT of 0 items is malformed",
        [hs, step(window4, [], ["call"]),
         step(frame(CREDIT, rid=1, payload=bytes(4)), [{"kind": "GOAWAY", "code": 1}], [], "malformed_body")])
    srv("server-stream-item-from-client", "§10", "a STREAM_ITEM sent to a server is fatal",
        [hs, step(window4, [], ["call"]),
         step(frame(STREAM_ITEM, codec=1, rid=1, payload=b"1"), [{"kind": "GOAWAY", "code": 1}], [],
              "unexpected_frame")])
    srv("server-ping", "§6.6, §10", "PING is answered PONG with the same bytes",
        [hs, step(frame(PING, payload=b"abcdefgh"), [{"kind": "PONG", "data": b"abcdefgh".hex()}], [])])
    srv("server-ping-before-hello", "§10", "PING is answered even before the handshake",
        [step(frame(PING, payload=bytes(8)), [{"kind": "PONG", "data": "0000000000000000"}], [])])
    srv("server-unsolicited-pong", "§10", "an unsolicited PONG is ignored",
        [hs, step(frame(PONG, payload=bytes(8)), [], [])])
    srv("server-reply-from-client", "§10, §6.10", "a REPLY sent to a server without callbacks in force is fatal",
        [hs, step(frame(REPLY, codec=1, rid=1), [{"kind": "GOAWAY", "code": 1}], [], "unexpected_frame")])
    srv("server-client-goaway", "§10", "client GOAWAY with nothing in flight: drained",
        [hs, step(frame(GOAWAY, payload=goaway_body(0, 0, "")), [], ["goaway", "drained"])])
    srv("server-client-goaway-in-flight", "§10", "client GOAWAY waits for calls in flight; a later CALL is fatal",
        [hs, step(call1, [], ["call"]), step(frame(GOAWAY, payload=goaway_body(1, 0, "")), [], ["goaway"]),
         step(frame(CALL, codec=1, provider=1, rid=2, route=b"m"), [{"kind": "GOAWAY", "code": 1}], [],
              "after_goaway")])
    srv("server-peer-closed", "§6.6, §10", "GOAWAY with an error code is fatal and not answered",
        [hs, step(frame(GOAWAY, payload=goaway_body(0, 1, "bye")), [], [], "peer_closed")])
    srv("server-bad-magic", "§1, §10", "garbage instead of HELLO: GOAWAY PROTOCOL_ERROR",
        [step(b"GET / HTTP/1.1\r\n", [{"kind": "GOAWAY", "code": 1}], [], "bad_magic")])
    srv("server-unsupported-version", "§2, §10", "a frame of version 2: GOAWAY UNSUPPORTED_VERSION",
        [step(frame(HELLO, version=2, payload=hello_body([2], [1])), [{"kind": "GOAWAY", "code": 2}], [],
              "unsupported_version")])
    cli("client-handshake", "§6.2, §10", "WELCOME completes the handshake",
        [step(WELCOME_F, [], ["connected"])])
    cli("client-refused", "§6.3, §10", "REFUSE ends the connection with the server's lists",
        [step(frame(REFUSE, payload=refuse_body(3, [1], [7], "no")), [], [], "refused")])
    cli("client-welcome-codec-not-offered", "§6.2", "a WELCOME choosing a codec the client did not offer is fatal",
        [step(frame(WELCOME, payload=welcome_body(1, 3, [3])), [{"kind": "GOAWAY", "code": 1}], [],
              "malformed_body")])
    cli("client-welcome-extension-not-offered", "§6.1.1",
        "a WELCOME answering a handshake extension the client did not offer is fatal",
        [step(frame(WELCOME, payload=welcome_body(1, 2, [1, 2]) + extensions_bytes([(2, b"")])),
              [{"kind": "GOAWAY", "code": 1}], [], "malformed_body")])
    cli("client-welcome-version-not-offered", "§6.2", "a WELCOME choosing a version the client did not offer is fatal",
        [step(frame(WELCOME, payload=welcome_body(2, 1, [1])), [{"kind": "GOAWAY", "code": 1}], [],
              "malformed_body")])
    cli("client-second-welcome", "§10", "a second WELCOME is fatal",
        [step(WELCOME_F, [], ["connected"]), step(WELCOME_F, [{"kind": "GOAWAY", "code": 1}], [], "unexpected_frame")])
    cli("client-reply-before-welcome", "§10", "a REPLY before WELCOME is fatal",
        [step(frame(REPLY, codec=1, rid=1), [{"kind": "GOAWAY", "code": 1}], [], "unexpected_frame")])
    cli("client-reply-unknown-request", "§10", "a REPLY to a request id not in flight is fatal",
        [step(WELCOME_F, [], ["connected"]),
         step(frame(REPLY, codec=1, rid=7), [{"kind": "GOAWAY", "code": 1}], [], "unknown_request")])
    cli("client-error-unknown-request", "§10", "an ERROR for a request id not in flight is fatal",
        [step(WELCOME_F, [], ["connected"]),
         step(frame(ERROR, rid=7, payload=error_body(1)), [{"kind": "GOAWAY", "code": 1}], [], "unknown_request")])
    cli("client-stream-end-unknown-request", "§10", "a STREAM_END for a request id not in flight is fatal",
        [step(WELCOME_F, [], ["connected"]),
         step(frame(STREAM_END, rid=3), [{"kind": "GOAWAY", "code": 1}], [], "unknown_request")])
    cli("client-call-from-server", "§10, §6.10", "a CALL sent to a client without callbacks in force is fatal",
        [step(WELCOME_F, [], ["connected"]),
         step(call1, [{"kind": "GOAWAY", "code": 1}], [], "unexpected_frame")])
    cli("client-goaway", "§10", "server GOAWAY with nothing in flight: drained",
        [step(WELCOME_F, [], ["connected"]), step(frame(GOAWAY, payload=goaway_body(0, 0, "")), [],
                                                  ["goaway", "drained"])])
    cli("client-ping", "§10", "the client answers PING too",
        [step(WELCOME_F, [], ["connected"]),
         step(frame(PING, payload=bytes(8)), [{"kind": "PONG", "data": "0000000000000000"}], [])])
    cli("client-limit", "§8", "the client enforces its own max_frame_len",
        [step(WELCOME_F, [], ["connected"]),
         step(frame(REPLY, codec=1, rid=1, lens=(0, 0, 5000, 0, 0)), [{"kind": "GOAWAY", "code": 5}], [],
              "frame_too_large")],
        dict(CLIENT_CFG, limits={"max_frame_len": 4096, "max_annotations_len": 16, "max_in_flight": 4}))
    return s


def write(name, description, vectors, key="vectors"):
    with open(os.path.join(HERE, name), "w") as f:
        json.dump({"description": description, key: vectors}, f, indent=1, ensure_ascii=False)
        f.write("\n")


def main():
    write("kinds.json", "Every message kind decoded from its bytes (SPEC §3, §6, §7).", kinds())
    write("flags.json", "Every flag rule (SPEC §4); valid uses are in kinds.json.", flags())
    write("header.json", "Header rules: magic, version, kind, reserved bytes, check order, per-kind fields "
                         "(SPEC §1-§3).", header_rules())
    write("limits.json", "Limits enforced from the header before allocating (SPEC §8).", limits())
    write("bodies.json", "Malformed fixed binary bodies (SPEC §6, §7).", bodies())
    write("compression.json", "Compressed frames (SPEC §6.9), decoded with zstd in force (`compression`: the "
                              "algorithm ids in force).", compression())
    write("annotations.json", "The annotation section and garbage after a frame (SPEC §6.7, §10).", annotations())
    write("sessions.json", "Connection rules (SPEC §10): bytes fed to a client or server state machine.",
          sessions(), key="sessions")


if __name__ == "__main__":
    main()
