//! The two 64-bit hashes the tree works with, and the mix that folds them into a node.

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::{Xxh3Default, xxh3_64};

/// The hash of a key: it decides the leaf bucket the key lands in.
///
/// Every replica must compute it the same way from the same canonical key bytes, so use
/// [`KeyHash::of`] unless you have a reason not to. Two distinct keys with one `KeyHash`
/// are one entry for the tree: the caller should then give that entry the digest of both
/// keys' entries (with n = 10⁶ keys the chance of any such pair is about n²/2⁶⁵ ≈ 3·10⁻⁸).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KeyHash(pub u64);

impl KeyHash {
    /// Hashes canonical key bytes with xxh3-64.
    ///
    /// # Examples
    ///
    /// ```
    /// use herd::merkle::KeyHash;
    /// assert_eq!(KeyHash::of(b"user:42"), KeyHash::of(b"user:42"));
    /// assert_ne!(KeyHash::of(b"user:42"), KeyHash::of(b"user:43"));
    /// ```
    #[must_use]
    pub fn of(bytes: &[u8]) -> Self {
        Self(xxh3_64(bytes))
    }
}

/// A 64-bit digest: of one key's canonical entries (a leaf entry), or of a whole subtree
/// (a node). The tree never sees values, only the digests the caller computes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Digest(pub u64);

impl Digest {
    /// The digest of an empty subtree (the sum of no contributions).
    pub const EMPTY: Digest = Digest(0);

    /// Hashes bytes with xxh3-64.
    #[must_use]
    pub fn of(bytes: &[u8]) -> Self {
        Self(xxh3_64(bytes))
    }

    /// Hashes an ordered sequence of byte strings, e.g. the canonical encodings of a key's
    /// irreducible entries in canonical order.
    ///
    /// Each part is prefixed with its length, so `["ab", "c"]` and `["a", "bc"]` differ.
    ///
    /// # Examples
    ///
    /// ```
    /// use herd::merkle::Digest;
    /// assert_ne!(Digest::of_parts([&b"ab"[..], b"c"]), Digest::of_parts([&b"a"[..], b"bc"]));
    /// ```
    #[must_use]
    pub fn of_parts<I>(parts: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let mut hasher = Xxh3Default::new();
        for part in parts {
            let part = part.as_ref();
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        Self(hasher.digest())
    }
}

/// What one (key, digest) pair adds to every node above it.
///
/// Hashing the pair (rather than summing raw digests) makes contributions look independent
/// and uniform, so a wrapping sum of them is a multiset hash: two different sets collide with
/// probability about 2⁻⁶⁴ per compared node, and an entry moved to another key changes the sum.
pub(crate) fn contribution(key: KeyHash, digest: Digest) -> u64 {
    let mut buf = [0u8; 16];
    buf[..8].copy_from_slice(&key.0.to_le_bytes());
    buf[8..].copy_from_slice(&digest.0.to_le_bytes());
    xxh3_64(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contribution_depends_on_key_and_digest() {
        let c = contribution(KeyHash(1), Digest(2));
        assert_ne!(c, contribution(KeyHash(2), Digest(2)));
        assert_ne!(c, contribution(KeyHash(1), Digest(3)));
        // Swapping key and digest must not give the same contribution.
        assert_ne!(c, contribution(KeyHash(2), Digest(1)));
    }

    #[test]
    fn of_parts_is_length_prefixed() {
        assert_ne!(
            Digest::of_parts([b"ab".as_slice(), b"c"]),
            Digest::of_parts([b"a".as_slice(), b"bc"])
        );
        assert_ne!(
            Digest::of_parts([b"".as_slice()]),
            Digest::of_parts(Vec::<&[u8]>::new())
        );
    }
}
