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
//! | core | [`crdt`], [`clock`], [`merkle`] | pure data structures: dots, causal contexts, delta-CRDTs, the hybrid logical clock, the anti-entropy hash tree |
//! | protocol | [`sync`] | the sans-IO anti-entropy state machine: delta path and Merkle repair path |
//! | runtime | [`replica`] | the ractor actor around one CRDT: reads and writes, ticks, neighbours' messages, subscribers, group-committed storage |
//! | cluster | [`cluster`] | ractor_cluster nodes: seeds, reconnects, membership by node name, one group per replica name |
//! | edges | [`codec`], [`storage`] | the versioned, size-limited wire format; a replica's state and id across restarts: the trait, redb on disk, memory for tests |
//!
//! The core and the protocol are sans-IO: they never read a clock, a socket or a random source
//! by themselves. The replica actors and the cluster layer move time and bytes into them; the
//! products (Agent, Presence, Registry, DynamicSupervisor) come next.
//!
//! ## A first example
//! ```
//! use herd::clock::Hlc;
//! use herd::crdt::{AwLwwMap, Crdt, ReplicaId};
//!
//! let mut clock = Hlc::default();
//! let mut here = AwLwwMap::new();
//! let mut there = AwLwwMap::new();
//! // A write returns a delta: a few bytes that carry just this change.
//! let delta = here.put(ReplicaId::new(1), clock.now(1_000), "max_conns", 512u32);
//! there.join(&delta);
//! there.join(&delta); // duplicates are harmless
//! assert_eq!(there.get("max_conns"), Some(&512));
//! ```
#![forbid(unsafe_code)]

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub mod agent;
pub mod clock;
pub mod cluster;
pub mod codec;
pub mod crdt;
pub mod merkle;
pub mod replica;
pub mod storage;
pub mod sync;
