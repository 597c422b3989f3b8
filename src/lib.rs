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
//! A replica of a string map and a subscription to its changes. Started with
//! [`Replica::start`](replica::Replica::start) on a [`cluster::Node`] instead, it finds its
//! neighbours (the nodes running a replica of the same name) by itself. See
//! [`replica`] for the replicable types (sets, counters, registers, documents).
//! ```
//! use herd::replica::{Diff, Kv, ReplicaOptions, Update};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), herd::replica::ReplicaError> {
//! let config = Kv::start_local(ReplicaOptions::new("config")).await?;
//! let (state, mut updates) = config.subscribe_with_snapshot();
//! assert!(state.is_empty());
//! config.put("max_conns", "512").await?; // applied locally; neighbours get it next tick
//! assert_eq!(config.get("max_conns").as_deref(), Some("512"));
//! assert_eq!(
//!     updates.recv().await,
//!     Some(Update::Diffs(vec![Diff::Added {
//!         key: "max_conns".to_string(),
//!         value: "512".to_string(),
//!     }]))
//! );
//! config.stop().await?;
//! # Ok(())
//! # }
//! ```
//!
//! The CRDTs underneath are plain data, usable without any runtime:
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

#[doc = include_str!("../book/src/replicas.md")]
#[cfg(doctest)]
pub struct BookReplicasDoctests;

pub mod agent;
pub mod clock;
pub mod cluster;
pub mod codec;
pub mod crdt;
pub mod merkle;
pub mod presence;
pub mod registry;
pub mod replica;
pub mod storage;
pub mod supervisor;
pub mod sync;
