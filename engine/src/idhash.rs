//! A fast hasher for maps keyed by small integers this process chooses itself (its own
//! request ids, registered provider ids), where SipHash's protection against chosen keys is
//! not needed and its cost showed up on every call.
//!
//! Not for keys a peer picks: a peer could then choose colliding keys. (Looking up a key a
//! peer picks in a table the process filled is fine: see [`NameHasher`].)

use std::hash::{BuildHasherDefault, Hasher};

/// Fibonacci hashing of one integer: a multiply spreads sequential ids over the high bits,
/// which `HashMap`'s SwissTable uses for its control bytes.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Integers take the fast paths below; anything else still hashes correctly.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u16(&mut self, n: u16) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A `HashMap` hasher builder for [`IdHasher`].
pub(crate) type IdBuild = BuildHasherDefault<IdHasher>;

/// A word-at-a-time hasher for the method names of a routing table: the table's keys are the
/// names the server's owner registered and a peer only looks names up, so colliding names
/// could slow nothing but their own lookup (a table that never grows from peer input), and
/// SipHash's cost on every call buys nothing.
#[derive(Default, Clone, Copy)]
pub(crate) struct NameHasher(u64);

impl NameHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7C_C1_B7_27_22_0A_95);
    }
}

impl Hasher for NameHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            // The length keeps "a" and "a\0" apart.
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }
}

/// A `HashMap` hasher builder for [`NameHasher`].
pub(crate) type NameBuild = BuildHasherDefault<NameHasher>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn sequential_ids_spread_and_round_trip() {
        let mut m: HashMap<u64, u64, IdBuild> = HashMap::default();
        for i in 0..10_000u64 {
            m.insert(i, i * 3);
        }
        for i in 0..10_000u64 {
            assert_eq!(m.remove(&i), Some(i * 3));
        }
        assert!(m.is_empty());
        // Consecutive ids differ in their top 7 bits (the SwissTable tag) most of the time.
        let tag = |n: u64| {
            let mut h = IdHasher::default();
            h.write_u64(n);
            h.finish() >> 57
        };
        let distinct = (0..128u64)
            .map(tag)
            .collect::<std::collections::HashSet<_>>()
            .len();
        assert!(distinct > 64, "only {distinct} distinct tags for 128 ids");
    }

    #[test]
    fn names_hash_by_content_and_look_up() {
        let h = |b: &str| {
            let mut x = NameHasher::default();
            x.write(b.as_bytes());
            x.finish()
        };
        assert_eq!(h("my_service_say_hello"), h("my_service_say_hello"));
        assert_ne!(h("my_service_say_hello"), h("my_service_say_hellp"));
        assert_ne!(h("a"), h("a\0"));
        assert_ne!(h("abcdefgh"), h("abcdefgh\0"));
        let names: Vec<String> = (0..500).map(|i| format!("svc_method_{i}")).collect();
        let m: HashMap<Box<str>, usize, NameBuild> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone().into_boxed_str(), i))
            .collect();
        for (i, n) in names.iter().enumerate() {
            assert_eq!(m.get(n.as_str()), Some(&i));
        }
        assert_eq!(m.get("svc_method_500"), None);
        assert_eq!(m.get(""), None);
    }

    #[test]
    fn byte_input_is_hashed_by_content() {
        let h = |b: &[u8]| {
            let mut x = IdHasher::default();
            x.write(b);
            x.finish()
        };
        assert_eq!(h(b"abc"), h(b"abc"));
        assert_ne!(h(b"abc"), h(b"abd"));
    }
}
