//! [`Replica`]: the handle users hold.

use super::ReplicaError;
use super::actor::{ReplicaActor, ReplicaMsg};
use super::options::ReplicaOptions;
use super::persist;
use super::shared::{Core, Outbox, Shared, wall_ms};
use super::view::{Diff, MapView};
use crate::clock::{Hlc, Timestamp};
use crate::codec;
use crate::crdt::{AwLwwMap, Embeddable, ReplicaId};
use crate::sync::{SyncConfig, SyncState};
use ractor::{Actor, ActorRef};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::mpsc;

/// Room for the key and the message framing around a single write, so that a write accepted by
/// [`Replica::put`] always fits one sync message.
const WRITE_OVERHEAD: usize = 256;

/// A replica of one named CRDT: the handle to its actor and its state. Cheap to clone; all
/// clones are the same replica.
///
/// Writes are applied locally and return without waiting for any other node (with
/// [`Ack::Durable`](super::Ack::Durable), after the local storage has them); neighbours get
/// them on the next sync interval. Reads see this replica's state: every local write, and
/// every remote write received so far.
///
/// ```
/// use herd::replica::{Diff, Kv, ReplicaOptions};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), herd::replica::ReplicaError> {
/// let kv: Kv = Kv::start_local(ReplicaOptions::new("config")).await?;
/// let mut diffs = kv.subscribe();
/// kv.put("colour".to_string(), "blue".to_string()).await?;
/// assert_eq!(kv.get("colour").as_deref(), Some("blue"));
/// assert_eq!(
///     diffs.recv().await,
///     Some(vec![Diff::Added { key: "colour".to_string(), value: "blue".to_string() }])
/// );
/// kv.stop().await?;
/// # Ok(())
/// # }
/// ```
pub struct Replica<C: MapView> {
    shared: Arc<Shared<C>>,
    actor: ActorRef<ReplicaMsg>,
    committer: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl<C: MapView> Clone for Replica<C> {
    fn clone(&self) -> Self {
        Replica {
            shared: self.shared.clone(),
            actor: self.actor.clone(),
            committer: self.committer.clone(),
        }
    }
}

/// The replica the node program runs: string keys to string values.
pub type Kv = Replica<AwLwwMap<String, String>>;

/// A malformed frame to send to a neighbour, to test that it is refused.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Bytes that are not a sync message.
    Garbage,
    /// A frame larger than `max_sync_size`.
    Oversized,
    /// A frame of a wire version newer than this one.
    FutureVersion,
    /// Bytes without the cluster's envelope.
    Unframed,
}

/// Counters and figures of a replica.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ReplicaStats {
    /// The replica's name.
    pub name: String,
    /// Its id.
    pub replica_id: u64,
    /// Keys present.
    pub keys: usize,
    /// The Merkle root: equal roots mean equal states.
    pub root: u64,
    /// Current neighbours (node names).
    pub neighbours: Vec<String>,
    /// Sync bytes sent (payloads, before the cluster envelope).
    pub bytes_sent: u64,
    /// Sync bytes received.
    pub bytes_received: u64,
    /// Sync messages sent.
    pub messages_sent: u64,
    /// Sync messages received and accepted.
    pub messages_received: u64,
    /// Sync messages refused (malformed, oversized, future version, not from a neighbour).
    pub rejected_messages: u64,
    /// Frames refused by the cluster layer before reaching the replica (bad envelope).
    pub frames_rejected: u64,
    /// Bytes handed to the transport, the cluster's envelope included (not ractor's own
    /// framing or TCP headers).
    pub transport_bytes_sent: u64,
    /// Bytes received through the transport, envelope included.
    pub transport_bytes_received: u64,
    /// Deltas sent.
    pub deltas_sent: u64,
    /// Keys sent by the repair path.
    pub repair_keys_sent: u64,
    /// Times unacknowledged delta messages were sent again.
    pub delta_resends: u64,
    /// Keys too large for some neighbour's message limit (each counted once per neighbour).
    pub entries_too_large_for_peer: u64,
    /// Neighbours' notices of keys too large for this replica's message limit.
    pub entries_too_large_here: u64,
    /// Deltas not yet acknowledged by every neighbour.
    pub buffered_deltas: usize,
    /// Messages the transport could not send (the protocol resends or repairs).
    pub send_errors: u64,
    /// Storage commits (each one atomic batch; one fsync with durable storage).
    pub storage_commits: u64,
}

fn random_u64() -> u64 {
    // std's RandomState is seeded from the OS's randomness once per thread and stepped per
    // instance; mixing in the time and process id keeps two fresh processes apart even so.
    static STEP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let step = STEP.fetch_add(1, Ordering::Relaxed);
    let salt = (std::time::SystemTime::now(), std::process::id(), step);
    RandomState::new().hash_one(salt).max(1)
}

impl<C: MapView> Replica<C> {
    /// Starts a replica that is part of no cluster: it syncs only with neighbours set by
    /// hand, or with none. Must be called inside a tokio runtime.
    ///
    /// Loads the state and replica id from `options.storage` if it holds a replica; an empty
    /// store gets a fresh random replica id.
    ///
    /// # Errors
    /// [`ReplicaError::Storage`], [`ReplicaError::CorruptState`] or
    /// [`ReplicaError::InconsistentState`] when the store cannot be read (nothing is
    /// overwritten); [`ReplicaError::Actor`] when the actor cannot start.
    pub async fn start_local(options: ReplicaOptions) -> Result<Self, ReplicaError> {
        let (loaded, storage) = match options.storage.clone() {
            None => (None, None),
            Some(storage) => {
                let s = storage.clone();
                let loaded = tokio::task::spawn_blocking(move || -> Result<_, ReplicaError> {
                    match persist::load::<C>(s.as_ref())? {
                        Some(loaded) => Ok(loaded),
                        None => {
                            let id = random_u64();
                            s.init(id)?;
                            Ok(persist::Loaded {
                                replica_id: id,
                                crdt: C::default(),
                            })
                        }
                    }
                })
                .await
                .map_err(|e| ReplicaError::Actor(e.to_string()))??;
                (Some(loaded), Some(storage))
            }
        };
        let restored = loaded
            .as_ref()
            .is_some_and(|l| !l.crdt.as_causal().context().is_empty());
        let (id, crdt) = match loaded {
            Some(l) => (l.replica_id, l.crdt),
            None => (random_u64(), C::default()),
        };
        let hlc = match crdt.max_timestamp() {
            Some(last) => Hlc::resume(last, Hlc::DEFAULT_MAX_DRIFT_MS),
            None => Hlc::new(Hlc::DEFAULT_MAX_DRIFT_MS),
        };
        let config = SyncConfig {
            max_sync_size: options.max_sync_size,
            ..SyncConfig::default()
        };
        let sync = SyncState::new(ReplicaId::new(id), random_u64(), crdt, config);
        let (wake, woken) = match storage {
            Some(_) => {
                let (tx, rx) = std::sync::mpsc::sync_channel(1);
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let shared = Arc::new(Shared::new(
            options.name.clone(),
            sync,
            hlc,
            restored,
            options.ack,
            storage,
            wake,
            options.max_sync_size,
        ));
        let committer = match woken {
            Some(woken) => Some(spawn_committer(shared.clone(), woken)?),
            None => None,
        };
        let (actor, _join) = Actor::spawn(
            None,
            ReplicaActor::<C>::new(),
            (shared.clone(), options.sync_interval),
        )
        .await
        .map_err(|e| ReplicaError::Actor(e.to_string()))?;
        Ok(Replica {
            shared,
            actor,
            committer: Arc::new(Mutex::new(committer)),
        })
    }

    /// Connects the replica to its transport; called once by the cluster glue.
    pub(crate) fn attach(&self, outbox: Arc<dyn Outbox>) {
        let _ = self.shared.outbox.set(outbox);
    }

    /// The shared state, for the cluster glue's graceful handover.
    pub(crate) fn shared(&self) -> &Arc<Shared<C>> {
        &self.shared
    }

    /// The actor, for the cluster glue to deliver frames and membership to.
    pub(crate) fn actor(&self) -> &ActorRef<ReplicaMsg> {
        &self.actor
    }

    /// Applies a local change: `op` runs a mutator of the CRDT with this replica's id and a
    /// fresh hybrid-logical-clock timestamp, and returns the mutator's delta.
    ///
    /// Subscribers are told of each key the delta touches. Without the values from before,
    /// the kind of each diff is inferred from the delta: if it overwrote or removed anything,
    /// its present keys are reported as [`Diff::Updated`] (even when the visible value is the
    /// same) and its absent keys as [`Diff::Removed`], else as [`Diff::Added`]. A delta over
    /// several keys cannot tell which key it overwrote, so mixed changes are all reported as
    /// updates. The typed methods such as [`Replica::put`] give exact diffs.
    ///
    /// # Errors
    /// With [`Ack::Durable`](super::Ack::Durable) storage: the commit failed (the change is
    /// applied in memory).
    pub async fn mutate(
        &self,
        op: impl FnOnce(&mut C, ReplicaId, Timestamp) -> C,
    ) -> Result<(), ReplicaError> {
        let seq = {
            let mut core = self.shared.lock();
            let ts = core.hlc.now(wall_ms());
            let delta = core.sync.mutate(|c, id| op(c, id, ts));
            self.shared.after_local(&mut core, &delta, None)
        };
        self.shared.await_commit(seq).await
    }

    /// Runs `f` on the current state. The replica is locked meanwhile: keep `f` short.
    pub fn read<R>(&self, f: impl FnOnce(&C) -> R) -> R {
        f(self.shared.lock().sync.crdt())
    }

    /// Sets the neighbours by hand (node names), as with DeltaCrdt's `set_neighbours`. From
    /// then on, cluster membership no longer changes them.
    pub fn set_neighbours<I: IntoIterator<Item = String>>(&self, nodes: I) {
        let mut core = self.shared.lock();
        core.manual_neighbours = true;
        core.sync.set_neighbours(nodes);
    }

    /// The current neighbours (node names).
    pub fn neighbours(&self) -> Vec<String> {
        self.shared.lock().sync.neighbours().cloned().collect()
    }

    /// A stream of diffs: every change of a key's visible value, local or remote, in the
    /// order this replica applied them, batched per change. Dropping the receiver
    /// unsubscribes.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<Vec<Diff<C::Key, C::View>>> {
        self.shared.subscribe()
    }

    /// This replica's id.
    pub fn id(&self) -> ReplicaId {
        self.shared.id
    }

    /// The replica's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// True when the state was loaded from storage (a restart), false for a fresh replica.
    pub fn restored(&self) -> bool {
        self.shared.restored
    }

    /// Counters and figures.
    pub fn stats(&self) -> ReplicaStats {
        let transport = self
            .shared
            .outbox
            .get()
            .map_or((0, 0), |o| o.transport_bytes());
        let core = self.shared.lock();
        let s = core.sync.stats();
        ReplicaStats {
            name: self.shared.name.clone(),
            replica_id: self.shared.id.as_u64(),
            keys: core.sync.crdt().as_causal().store().key_count(),
            root: core.sync.root().0,
            neighbours: core.sync.neighbours().cloned().collect(),
            bytes_sent: s.bytes_sent,
            bytes_received: s.bytes_received,
            messages_sent: s.messages_sent,
            messages_received: s.messages_received,
            rejected_messages: s.rejected_messages,
            frames_rejected: self.shared.outbox.get().map_or(0, |o| o.frames_rejected()),
            transport_bytes_sent: transport.0,
            transport_bytes_received: transport.1,
            deltas_sent: s.deltas_sent,
            repair_keys_sent: s.repair_keys_sent,
            delta_resends: s.delta_resends,
            entries_too_large_for_peer: s.entries_too_large_for_peer,
            entries_too_large_here: s.entries_too_large_here,
            buffered_deltas: core.sync.buffered_deltas(),
            send_errors: self.shared.send_errors.load(Ordering::Relaxed),
            storage_commits: self.shared.commits.load(Ordering::Relaxed),
        }
    }

    /// Waits until every write made so far is durable in storage (for
    /// [`Ack::Applied`](super::Ack), or a write-behind store).
    ///
    /// # Errors
    /// [`ReplicaError::StorageFailed`] if a commit failed.
    pub async fn flush(&self) -> Result<(), ReplicaError> {
        let seq = self.shared.lock().seq();
        self.shared.until_durable(seq).await
    }

    /// Stops the replica: its actor, then a last commit and flush of its storage. Other
    /// clones of this handle stop working: writes still apply in memory but are not synced,
    /// and durable writes return an error.
    ///
    /// # Errors
    /// The last commit or flush failed.
    pub async fn stop(self) -> Result<(), ReplicaError> {
        if let Some(outbox) = self.shared.outbox.get() {
            outbox.close().await;
        }
        self.actor.stop(None);
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.wake_committer();
        let committer = self
            .committer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = committer {
            tokio::task::spawn_blocking(move || handle.join())
                .await
                .map_err(|e| ReplicaError::Actor(e.to_string()))?
                .map_err(|_| ReplicaError::Actor("committer panicked".into()))?;
        }
        let failed = self.shared.committed.borrow().failed.clone();
        match failed {
            Some(e) => Err(ReplicaError::StorageFailed(e)),
            None => Ok(()),
        }
    }

    /// Sends a malformed frame to neighbour node `to`, to test that it is refused and counted.
    #[doc(hidden)]
    pub fn inject(&self, to: &str, fault: Fault) -> Result<(), ReplicaError> {
        let outbox = self
            .shared
            .outbox
            .get()
            .ok_or_else(|| ReplicaError::Cluster("not attached to a cluster".into()))?;
        let v = codec::WIRE_VERSION;
        let result = match fault {
            Fault::Garbage => outbox.send(to, vec![v, 0xff, 0xff, 0xff, 0x7f, 0x00, 0x13]),
            Fault::FutureVersion => outbox.send(to, vec![v + 1, 0, 1, 2, 3]),
            Fault::Oversized => {
                let mut bytes = vec![0u8; self.shared.max_sync_size + 1];
                bytes[0] = v;
                outbox.send(to, bytes)
            }
            Fault::Unframed => outbox.send_unframed(to, b"\x00not a herd frame\xff".to_vec()),
        };
        result.map_err(ReplicaError::Cluster)
    }
}

impl<K, V> Replica<AwLwwMap<K, V>>
where
    K: Hash + Eq + Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static,
    V: Clone + PartialEq + Debug + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Sets `key` to `value`. Concurrent writes to one key are resolved by last-writer-wins on
    /// hybrid-logical-clock timestamps, the same winner on every replica.
    ///
    /// # Errors
    /// [`ReplicaError::TooLarge`] (nothing applied) when the write could never fit a sync
    /// message; with [`Ack::Durable`](super::Ack::Durable) storage, a failed commit.
    pub async fn put(&self, key: K, value: V) -> Result<(), ReplicaError> {
        self.check_fits(&key, &value)?;
        let seq = {
            let mut core = self.shared.lock();
            let ts = core.hlc.now(wall_ms());
            self.put_locked(&mut core, ts, key, value)
        };
        self.shared.await_commit(seq).await
    }

    /// Refuses a write that could never fit one sync message.
    fn check_fits(&self, key: &K, value: &V) -> Result<(), ReplicaError> {
        let size = codec::encoded_len(&(key, value))?;
        let limit = self.shared.max_sync_size;
        if size + WRITE_OVERHEAD > limit {
            return Err(ReplicaError::TooLarge { size, limit });
        }
        Ok(())
    }

    /// One put under the lock; returns its change number.
    fn put_locked(&self, core: &mut Core<AwLwwMap<K, V>>, ts: Timestamp, key: K, value: V) -> u64 {
        if !core.has_subscribers() && self.shared.storage.is_none() {
            // Nobody needs the delta back: skip cloning it (the common in-memory case).
            core.sync.mutate_quiet(|c, id| c.put(id, ts, key, value));
            return core.touched();
        }
        let known = core
            .has_subscribers()
            .then(|| (key.clone(), core.sync.crdt().get(&key).cloned()));
        let delta = core.sync.mutate(|c, id| c.put(id, ts, key, value));
        let known = known.as_ref().map(|(k, v)| (k, v.clone()));
        self.shared.after_local(core, &delta, known)
    }

    /// Sets many keys at once: one lock, one commit to wait for, and (between two ticks) one
    /// delta group for the neighbours. The way to load data in bulk, or to pipeline writes
    /// with durable storage: a thousand keys cost about one fsync, not a thousand.
    ///
    /// # Errors
    /// As [`put`](Self::put). A write too large to sync is refused before any of the batch
    /// is applied.
    pub async fn put_many(
        &self,
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> Result<(), ReplicaError> {
        let entries: Vec<(K, V)> = entries.into_iter().collect();
        for (key, value) in &entries {
            self.check_fits(key, value)?;
        }
        let seq = {
            let mut core = self.shared.lock();
            let wall = wall_ms();
            let mut seq = core.seq();
            for (key, value) in entries {
                let ts = core.hlc.now(wall);
                seq = self.put_locked(&mut core, ts, key, value);
            }
            seq
        };
        self.shared.await_commit(seq).await
    }

    /// Removes `key`. Removing an absent key changes nothing.
    ///
    /// # Errors
    /// With [`Ack::Durable`](super::Ack::Durable) storage, a failed commit.
    pub async fn delete<Q>(&self, key: &Q) -> Result<(), ReplicaError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let seq = {
            let mut core = self.shared.lock();
            let before = core
                .has_subscribers()
                .then(|| core.sync.crdt().get(key).cloned())
                .flatten();
            let delta = core.sync.mutate(|c, _| c.remove(key));
            let removed = delta
                .as_causal()
                .store()
                .iter()
                .next()
                .map(|(k, _)| k.clone());
            let known = removed.as_ref().map(|k| (k, before));
            self.shared.after_local(&mut core, &delta, known)
        };
        self.shared.await_commit(seq).await
    }

    /// The value of `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shared.lock().sync.crdt().get(key).cloned()
    }

    /// A copy of the whole map.
    pub fn to_map(&self) -> HashMap<K, V> {
        let core = self.shared.lock();
        core.sync
            .crdt()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// How many keys are present.
    pub fn len(&self) -> usize {
        self.shared.lock().sync.crdt().len()
    }

    /// True when no key is present.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The committer: one thread per replica with storage, so an fsync never blocks the async
/// runtime, and writes that arrive during one commit share the next (group commit).
fn spawn_committer<C: MapView>(
    shared: Arc<Shared<C>>,
    woken: std::sync::mpsc::Receiver<()>,
) -> Result<std::thread::JoinHandle<()>, ReplicaError> {
    std::thread::Builder::new()
        .name(format!("herd-commit-{}", shared.name))
        .spawn(move || {
            /// Marks the committer gone however the thread ends (return or unwind), so no
            /// writer waits forever for a commit that will not come.
            struct Closed<C: MapView>(Arc<Shared<C>>);
            impl<C: MapView> Drop for Closed<C> {
                fn drop(&mut self) {
                    self.0.committed.send_modify(|c| c.closed = true);
                }
            }
            let _closed = Closed(shared.clone());
            loop {
                let closed = woken.recv().is_err();
                let stopping = closed || shared.stopping.load(Ordering::SeqCst);
                if shared.committed.borrow().failed.is_none() {
                    let result = shared.commit_once().and_then(|_| {
                        if let (true, Some(s)) = (stopping, &shared.storage) {
                            s.flush()?;
                        }
                        Ok(())
                    });
                    if let Err(e) = result {
                        tracing::error!(replica = %shared.name, error = %e, "storage commit failed");
                        shared
                            .committed
                            .send_modify(|c| c.failed = Some(e.to_string()));
                    }
                }
                if stopping {
                    return;
                }
            }
        })
        .map_err(|e| ReplicaError::Actor(format!("committer thread: {e}")))
}
