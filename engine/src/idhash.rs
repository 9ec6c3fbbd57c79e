//! A fast hasher for maps keyed by small integers this process chooses itself (its own
//! request ids, registered provider ids), where SipHash's protection against chosen keys is
//! not needed and its cost showed up on every call.
//!
//! Not for keys a peer picks: a peer could then choose colliding keys.

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
