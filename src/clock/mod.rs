//! Hybrid logical clocks (Kulkarni et al., "Logical Physical Clocks", 2014).
//!
//! This module owns time *as the CRDTs see it*: a [`Timestamp`] orders last-writer-wins
//! values, and an [`Hlc`] hands out timestamps that never go backwards, even when the wall
//! clock does. It never reads the wall clock itself: every method takes `wall_ms`, the
//! caller's reading of milliseconds since the Unix epoch, so tests drive time by hand.
//!
//! Ties between equal timestamps are broken by the writer's replica id (see
//! [`crate::crdt::AwLwwMap`]), so every replica picks the same winner.

mod hlc;
mod timestamp;

pub use hlc::{ClockError, Hlc};
pub use timestamp::Timestamp;
