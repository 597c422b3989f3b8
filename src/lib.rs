//! # herd
//!
//! Replicated, coordination-free state for [ractor](https://docs.rs/ractor) clusters.
//!
//! Every node holds a full replica of each named CRDT; writes are local and never wait for
//! another node; replicas converge by exchanging deltas and, to repair what deltas missed, by
//! comparing Merkle trees and shipping only what the peer lacks.
//!
//! ## Layers
//!
//! | layer | module | owns |
//! |---|---|---|
//! | core | [`crdt`], [`clock`] | pure data structures: dots, causal contexts, delta-CRDTs, the hybrid logical clock |
//!
//! The core is sans-IO: it never reads a clock, a socket or a random source by itself.
#![forbid(unsafe_code)]

pub mod clock;
pub mod codec;
pub mod crdt;
pub mod merkle;
