//! How keys and their entries become Merkle leaves.

use crate::crdt::Dot;
use crate::merkle::{Digest, KeyHash};
use serde::Serialize;
use xxhash_rust::xxh3::xxh3_64;

/// The key's position in the Merkle tree: xxh3 of its wire encoding, so every replica (and
/// every version of herd that speaks the same wire format) places it alike. `std::hash` is not
/// stable across Rust versions and platforms; the codec's encoding is.
pub(crate) fn key_hash<K: Serialize>(key: &K) -> KeyHash {
    // Most keys encode in a few dozen bytes: do that on the stack (this runs on every write)
    // and fall back to the heap for the rest. Both give the codec's exact bytes.
    let mut buf = [0u8; 128];
    match crate::codec::encode_into(key, &mut buf) {
        Some(bytes) => KeyHash::of(bytes),
        None => match crate::codec::encode(key, usize::MAX) {
            Ok(bytes) => KeyHash::of(&bytes),
            // Only types the codec cannot encode at all get here; they could not be sent either.
            Err(_) => KeyHash(0),
        },
    }
}

/// The digest of a key's entries (`None` when it has none): the wrapping sum of a hash of
/// each entry's dot.
///
/// A dot names one write, and one write has one value, so hashing the dots alone identifies
/// the entries without re-encoding their values: cheap to keep up to date on every join, and
/// independent of the order entries are stored in (so the dots need not be collected).
pub(crate) fn store_digest<S: crate::crdt::DotStore>(store: &S) -> Option<Digest> {
    let mut sum = 0u64;
    let mut any = false;
    store.for_each_dot(&mut |d| {
        sum = sum.wrapping_add(dot_hash(d));
        any = true;
    });
    any.then_some(Digest(sum))
}

fn dot_hash(d: Dot) -> u64 {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&d.replica.as_u64().to_le_bytes());
    bytes[8..].copy_from_slice(&d.counter.to_le_bytes());
    xxh3_64(&bytes)
}

/// A hash of a causal context's encoding, for the idle heartbeat.
pub(crate) fn context_hash<T: Serialize>(ctx: &T) -> u64 {
    crate::codec::encode(ctx, usize::MAX)
        .map(|bytes| xxh3_64(&bytes))
        .unwrap_or(0)
}
