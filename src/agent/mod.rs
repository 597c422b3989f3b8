//! A replicated value for distributed configuration: [`Agent<T>`], for any serde type `T`.
//!
//! # What it is for
//! One value (a config struct, nested structs, maps, options) that every node can read at
//! memory speed and any node can change. Updates never wait for another node; they spread
//! over the replica's delta path within a sync interval, and anti-entropy repairs what a
//! partition or a restart missed.
//!
//! # How a value is stored
//! Each update is diffed **field by field**, following `T`'s serde shape (see `doc.rs`):
//! structs and maps become their fields, recursively; numbers, strings, booleans, `None`,
//! sequences and empty objects are leaves. Every leaf is one key of a replicated
//! [`AwLwwMap`], keyed by its JSON pointer (`/limits/max_conns`), so:
//!
//! * **Two nodes that change different fields at the same time both keep their change.**
//!   The seed's `Aviato.Agent` keeps the whole value under one key and silently loses one of
//!   them; DeltaCrdt's per-key last-writer-wins does the rest of the damage there.
//! * **The same field changed on two nodes: one winner, the same everywhere**, by the hybrid
//!   logical clock timestamp of the write and then the replica id.
//! * **A field removed on one node while another changes it** (a map entry deleted, an enum
//!   switching variant): the removal is a write too (a tombstone leaf), so the later of the
//!   two by the same order wins, the same everywhere. A removed map entry leaves its
//!   tombstones in the map; a config that churns through millions of map keys grows with
//!   them.
//! * **Rolling upgrades:** an update writes only the leaves that `T` knows and that changed.
//!   A node with an older `T` never erases a field only the newer `T` has, and the newer node
//!   sees the older node's changes (fields it lacks in the data take their serde defaults).
//! * **The initial value is a default, not a write.** It shows through wherever no node has
//!   written, so a node that starts with an empty store does not overwrite the cluster's
//!   value with its defaults.
//!
//! # Reads
//! [`get`](Agent::get) rebuilds `T` from this node's replica: every change this node made,
//! and every change that has reached it. It is not a consensus read. A monotone condition
//! ("the config has feature X enabled") can be awaited with
//! [`wait_until`](Agent::wait_until).

mod doc;
#[cfg(test)]
mod tests;

pub use doc::Leaf;

use crate::cluster::Node;
use crate::crdt::AwLwwMap;
use crate::replica::{Replica, ReplicaError, ReplicaOptions, Subscription, Update};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// The replica under an Agent: leaves by JSON pointer.
pub type AgentReplica = Replica<AwLwwMap<String, Leaf>>;

/// Why an Agent call failed. Unless a variant says otherwise, nothing was changed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The value could not be turned into fields (e.g. a map whose keys are not strings or
    /// numbers). Nothing was written.
    #[error("value cannot be stored field by field: {0}")]
    Encode(#[source] serde_json::Error),
    /// The replicated fields do not decode into `T` on this node (a field of another type
    /// written by a different version, or fields left half-removed by concurrent changes).
    /// The replicated state is unchanged; a later update that writes the fields fixes it.
    #[error("the replicated value does not decode into this type: {0}")]
    Decode(#[source] serde_json::Error),
    /// The replica refused: a field too large for a sync message
    /// ([`ReplicaError::TooLarge`], nothing of the update applied), storage, or the actor.
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// [`wait_until`](Agent::wait_until) gave up; the condition did not hold in time.
    #[error("condition not met within {0:?}")]
    Timeout(Duration),
}

/// A replicated value of type `T`. Cheap to clone; every clone is the same Agent.
///
/// # Examples
/// ```no_run
/// use herd::agent::Agent;
/// use herd::cluster::{Node, NodeConfig};
/// use herd::replica::ReplicaOptions;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Clone, Serialize, Deserialize)]
/// struct Config {
///     max_conns: u32,
///     maintenance: bool,
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let node = Node::start(NodeConfig::new("a").seed("127.0.0.1:4101")).await?;
/// let initial = Config { max_conns: 100, maintenance: false };
/// let config = Agent::start(&node, ReplicaOptions::new("config"), initial).await?;
/// config.update(|c| c.max_conns = 512).await?; // only `/max_conns` is written
/// assert_eq!(config.get()?.max_conns, 512);
/// # Ok(()) }
/// ```
pub struct Agent<T> {
    replica: AgentReplica,
    initial: Arc<doc::Leaves>,
    /// Serialises this node's read-modify-write updates: two local updates never race.
    writer: Arc<tokio::sync::Mutex<()>>,
    _value: PhantomData<fn() -> T>,
}

impl<T> Clone for Agent<T> {
    fn clone(&self) -> Self {
        Agent {
            replica: self.replica.clone(),
            initial: self.initial.clone(),
            writer: self.writer.clone(),
            _value: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned> Agent<T> {
    /// Starts the Agent's replica on `node` (its name and storage from `options`; durable
    /// by default like every replica with storage), with `initial` as the value wherever no
    /// node has written.
    ///
    /// An update is sent to the other nodes at once rather than at the next sync tick
    /// ([`ReplicaOptions::send_when_idle`] is turned on): configuration changes are rare, and
    /// should arrive within a round trip.
    ///
    /// # Errors
    /// [`AgentError::Encode`] if `initial` cannot be stored field by field; the replica's
    /// start errors.
    pub async fn start(
        node: &Node,
        options: ReplicaOptions,
        initial: T,
    ) -> Result<Self, AgentError> {
        let initial = doc::flatten(&initial)?;
        let replica = AgentReplica::start(node, options.send_when_idle(true)).await?;
        Ok(Self::over(replica, initial))
    }

    /// Like [`start`](Self::start), without a cluster: neighbours are set by hand (tests, or
    /// a transport of your own).
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub async fn start_local(options: ReplicaOptions, initial: T) -> Result<Self, AgentError> {
        let initial = doc::flatten(&initial)?;
        let replica = AgentReplica::start_local(options.send_when_idle(true)).await?;
        Ok(Self::over(replica, initial))
    }

    fn over(replica: AgentReplica, initial: doc::Leaves) -> Self {
        Agent {
            replica,
            initial: Arc::new(initial),
            writer: Arc::new(tokio::sync::Mutex::new(())),
            _value: PhantomData,
        }
    }

    /// The current value on this node.
    ///
    /// # Errors
    /// [`AgentError::Decode`] if the replicated fields do not decode into `T`.
    pub fn get(&self) -> Result<T, AgentError> {
        doc::rebuild(&self.leaves())
    }

    /// Calls `f` with the current value.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn get_with<R>(&self, f: impl FnOnce(&T) -> R) -> Result<R, AgentError> {
        Ok(f(&self.get()?))
    }

    /// Changes the value: `f` edits a copy of the current value, and the fields it changed
    /// are written (one atomic batch, durable when it returns if the storage is durable).
    ///
    /// # Errors
    /// [`AgentError::Decode`] if the current value does not decode (nothing written);
    /// [`AgentError::Encode`] if the new one cannot be stored; [`AgentError::Replica`] with
    /// [`ReplicaError::TooLarge`] if a field is too large for a sync message (nothing
    /// written).
    ///
    /// # Cancel safety
    /// Cancelling after the write was applied leaves it applied (and spreading); the caller
    /// just does not learn whether it became durable.
    pub async fn update(&self, f: impl FnOnce(&mut T)) -> Result<(), AgentError> {
        self.get_and_update(f).await
    }

    /// Like [`update`](Self::update), returning what `f` returns.
    ///
    /// # Errors
    /// As [`update`](Self::update).
    ///
    /// # Cancel safety
    /// As [`update`](Self::update).
    pub async fn get_and_update<R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<R, AgentError> {
        let _writer = self.writer.lock().await;
        let current = self.leaves();
        let mut value: T = doc::rebuild(&current)?;
        // Diff against the value as `T` sees it, so fields `T` does not know stay untouched.
        let before = doc::flatten(&value)?;
        let out = f(&mut value);
        let after = doc::flatten(&value)?;
        let changes = doc::diff(&before, &after);
        if !changes.is_empty() {
            self.replica.put_many(changes).await?;
        }
        Ok(out)
    }

    /// Waits until `condition` holds for the value on this node, and returns that value.
    /// Meant for monotone conditions ("the config has X"), which stay true once true.
    ///
    /// # Errors
    /// [`AgentError::Timeout`] after `timeout`; [`AgentError::Decode`] as [`get`](Self::get).
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    pub async fn wait_until(
        &self,
        condition: impl Fn(&T) -> bool,
        timeout: Duration,
    ) -> Result<T, AgentError> {
        let mut changes = self.replica.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let value = self.get()?;
            if condition(&value) {
                return Ok(value);
            }
            match tokio::time::timeout_at(deadline, changes.recv()).await {
                Ok(Some(_)) => {}
                // The replica stopped: nothing will change any more.
                Ok(None) | Err(_) => return Err(AgentError::Timeout(timeout)),
            }
        }
    }

    /// A stream of changes: after each change (local or remote) the new value and the JSON
    /// pointers of the fields that changed.
    pub fn subscribe(&self) -> AgentSubscription<T> {
        AgentSubscription {
            agent: self.clone(),
            diffs: self.replica.subscribe(),
        }
    }

    /// The replica under the Agent (stats, neighbours, flush).
    pub fn replica(&self) -> &AgentReplica {
        &self.replica
    }

    /// Stops the Agent's replica (see [`Replica::stop`]).
    ///
    /// # Errors
    /// The last commit or flush failed.
    pub async fn stop(self) -> Result<(), AgentError> {
        Ok(self.replica.stop().await?)
    }

    fn leaves(&self) -> doc::Leaves {
        let replicated = self.replica.to_map();
        doc::overlay((*self.initial).clone(), replicated.iter())
    }
}

/// Changes of an [`Agent`], from [`Agent::subscribe`].
pub struct AgentSubscription<T> {
    agent: Agent<T>,
    diffs: Subscription<AwLwwMap<String, Leaf>>,
}

/// One change seen by an [`AgentSubscription`].
#[derive(Debug, Clone, PartialEq)]
pub struct AgentChange<T> {
    /// The value after the change.
    pub value: T,
    /// JSON pointers of the fields that changed (`""` when the value is not an object).
    /// Empty when [`lagged`](Self::lagged).
    pub fields: Vec<String>,
    /// The subscriber fell behind and changes were skipped: `value` is current, but which
    /// fields changed since the previous change seen is not known.
    pub lagged: bool,
}

impl<T: Serialize + DeserializeOwned> AgentSubscription<T> {
    /// The next change; `None` once the Agent stopped.
    ///
    /// # Errors
    /// [`AgentError::Decode`] if the value after the change does not decode into `T`.
    ///
    /// # Cancel safety
    /// Cancel safe: a change not yet returned stays queued.
    pub async fn recv(&mut self) -> Option<Result<AgentChange<T>, AgentError>> {
        let (fields, lagged) = match self.diffs.recv().await? {
            Update::Diffs(batch) => (batch.iter().map(|d| d.key().clone()).collect(), false),
            Update::Lagged(_) => (Vec::new(), true),
        };
        Some(self.agent.get().map(|value| AgentChange {
            value,
            fields,
            lagged,
        }))
    }
}
