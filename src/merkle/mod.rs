//! Merkle trees over a replica's keys, for anti-entropy: find which keys differ between two
//! replicas while sending few bytes.
//!
//! Pure and sans-IO. Owns the tree, its fixed [`Shape`], node addressing ([`NodePath`]) and
//! the hashes ([`KeyHash`], [`Digest`]). Does not own the sync protocol (`sync/`), the
//! encoding of what it sends, or how a key's digest is computed from its entries: the caller
//! hashes a key's canonical irreducible entries ([`Digest::of_parts`]) and tells the tree.
//!
//! MEASUREMENTS_PLACEHOLDER

mod compare;
mod error;
mod hash;
mod path;
mod tree;

#[cfg(test)]
mod tests;

pub use compare::Comparison;
pub use error::MerkleError;
pub use hash::{Digest, KeyHash};
pub use path::{NodePath, Shape};
pub use tree::MerkleTree;
