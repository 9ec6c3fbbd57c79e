//! A tiny input declaring a huge length must not make any decoder allocate that length.
//!
//! A counting global allocator records the largest single allocation while each hostile
//! input is decoded (one test function, so nothing else runs concurrently in this binary).
#![cfg(all(
    feature = "json",
    feature = "msgpack",
    feature = "cbor",
    feature = "bincode",
    feature = "postcard",
    feature = "ron",
    feature = "serpent"
))]
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use wirecall_codecs::*;

struct Counting;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only records the requested size.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// serde's own sequence visitors reserve at most 1 MiB from a size hint; nothing may exceed it.
const CAP: usize = 1 << 20;

fn check(label: &str, f: impl FnOnce() -> bool) {
    LARGEST.store(0, Ordering::Relaxed);
    let failed = f();
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(failed, "{label}: hostile input decoded successfully");
    assert!(largest <= CAP, "{label}: allocated {largest} bytes at once");
}

#[test]
fn declared_lengths_do_not_drive_allocation() {
    let l = Limits::DEFAULT;
    let four_gib_u32 = [0xff, 0xff, 0xff, 0xff];
    let tail = [0u8; 8];
    let with = |prefix: &[u8]| -> Vec<u8> { [prefix, &four_gib_u32[..], &tail[..]].concat() };

    // msgpack: str32, bin32, array32, map32.
    for marker in [0xdbu8, 0xc6, 0xdd, 0xdf] {
        let input = with(&[marker]);
        check(&format!("msgpack typed {marker:x}"), || {
            decode::<Value>(CodecId::MSGPACK, &input, &l).is_err()
                && decode::<String>(CodecId::MSGPACK, &input, &l).is_err()
                && decode::<Vec<u64>>(CodecId::MSGPACK, &input, &l).is_err()
        });
        check(&format!("msgpack value {marker:x}"), || {
            decode_value(CodecId::MSGPACK, &input, &l).is_err()
        });
    }
    // cbor: text, bytes, array, map with a 64-bit length (2^64-1).
    for major in [0x7bu8, 0x5b, 0x9b, 0xbb] {
        let input = [&[major][..], &[0xff; 8][..], &tail[..]].concat();
        check(&format!("cbor {major:x}"), || {
            decode::<String>(CodecId::CBOR, &input, &l).is_err()
                && decode::<Vec<u64>>(CodecId::CBOR, &input, &l).is_err()
                && decode_value(CodecId::CBOR, &input, &l).is_err()
        });
        let input = with(&[major - 1]); // 32-bit length form
        check(&format!("cbor32 {major:x}"), || {
            decode::<String>(CodecId::CBOR, &input, &l).is_err()
                && decode_value(CodecId::CBOR, &input, &l).is_err()
        });
    }
    // bincode (standard config): varint 0xfd = u64 follows.
    let input = [&[0xfd][..], &[0xff; 8][..], &tail[..]].concat();
    check("bincode string", || {
        decode::<String>(CodecId::BINCODE, &input, &l).is_err()
    });
    check("bincode vec", || {
        decode::<Vec<u64>>(CodecId::BINCODE, &input, &l).is_err()
    });
    let input = [&[0xfc][..], &four_gib_u32[..], &tail[..]].concat();
    check("bincode bytes", || {
        decode::<serde_json::Value>(CodecId::BINCODE, &input, &l).is_err()
            && decode::<String>(CodecId::BINCODE, &input, &l).is_err()
    });
    // postcard: varint length 2^32-1.
    let input = [&[0xff, 0xff, 0xff, 0xff, 0x0f][..], &tail[..]].concat();
    check("postcard", || {
        decode::<String>(CodecId::POSTCARD, &input, &l).is_err()
            && decode::<Vec<u64>>(CodecId::POSTCARD, &input, &l).is_err()
    });
}
