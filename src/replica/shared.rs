//! The state a replica's handles, its actor and its committer share.
//!
//! # Why a lock and not the mailbox
//! Every call could go through the actor's mailbox, as DeltaCrdt's do through its GenServer.
//! A mailbox round trip costs two cross-task wake-ups (measured: `notes/runtime.md`, "Lock,
//! not mailbox"), several times the cost of the write itself, and every reader would queue
//! behind every sync message. So reads and writes take a short, uncontended-in-practice mutex
//! around the state instead; the actor only moves time (ticks) and bytes (neighbour messages)
//! into it, and the committer thread moves changes out to storage. Nothing slow happens under the lock:
//! no I/O, no fsync, no network send (messages are encoded under it, sent after).

use super::actor::ReplicaMsg;
use super::options::WriteConcern;
use super::persist;
use super::subscription::{Snapshot, Subscriber, Subscription};
use super::view::{Diff, MapView};
use super::{Ack, ReplicaError, ReplicaOptions};
use crate::clock::Hlc;
use crate::cluster::ClusterError;
use crate::crdt::{Crdt, ReplicaId};
use crate::storage::Storage;
use crate::sync::{SyncEvent, SyncState, Transmit};
use ractor::ActorRef;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, watch};

/// Where a replica's messages go: the cluster group of its name (see `cluster_glue.rs`).
pub(crate) trait Outbox: Send + Sync {
    /// Sends one sync message to the replica of the same name on node `to`.
    fn send(&self, to: &str, bytes: Vec<u8>) -> Result<(), ClusterError>;
    /// Sends bytes without the cluster envelope (fault injection in tests).
    #[cfg(any(test, feature = "test-hooks"))]
    fn send_unframed(&self, to: &str, bytes: Vec<u8>) -> Result<(), ClusterError>;
    /// Frames refused before reaching the replica (bad envelope, oversized).
    fn frames_rejected(&self) -> u64;
    /// Bytes sent and received through the transport, framing included.
    fn transport_bytes(&self) -> (u64, u64);
    /// Leaves the transport (the replica is stopping).
    fn close(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>>;
}

/// A batch of diffs sent to subscribers.
pub(crate) type DiffBatch<C> = Vec<Diff<<C as MapView>::Item, <C as MapView>::View>>;

/// The stores some keys held before a local change, for exact diffs.
pub(crate) type Before<C> = Vec<(
    <C as crate::sync::MapCrdt>::Key,
    Option<<C as crate::sync::MapCrdt>::Value>,
)>;

/// The part under the lock.
pub(crate) struct Core<C: MapView> {
    pub(crate) sync: SyncState<C, String>,
    pub(crate) hlc: Hlc,
    /// Keys changed since the last commit (only kept with storage).
    dirty: Vec<C::Key>,
    /// Something changed since the last commit (a key, or only the context).
    changed: bool,
    /// Sequence number of the last change; a commit covers every change up to the number it took.
    seq: u64,
    subscribers: Vec<Subscriber<C>>,
    /// Neighbours were set by hand: cluster membership no longer changes them.
    pub(crate) manual_neighbours: bool,
}

impl<C: MapView> Core<C> {
    /// True when someone listens for diffs (a lagged subscriber does not, until it re-reads).
    pub(crate) fn has_subscribers(&self) -> bool {
        self.subscribers.iter().any(Subscriber::active)
    }

    /// The stores `keys` hold now, if someone listens for diffs: taken before a local change.
    pub(crate) fn before<'k>(&self, keys: impl IntoIterator<Item = &'k C::Key>) -> Before<C> {
        if !self.has_subscribers() {
            return Vec::new();
        }
        let store = self.sync.crdt().as_causal().store();
        keys.into_iter()
            .map(|k| (k.clone(), store.get(k).cloned()))
            .collect()
    }

    /// The sequence number of the last change.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// Counts a local change that needs no storage or subscriber work; returns its number.
    pub(crate) fn touched(&mut self) -> u64 {
        self.changed = true;
        self.seq += 1;
        self.seq
    }
}

/// How far the committer got.
#[derive(Clone, Debug, Default)]
pub(crate) struct Committed {
    pub(crate) seq: u64,
    pub(crate) failed: Option<Arc<ReplicaError>>,
    /// The committer thread is gone (stopped, or panicked): nothing later will be committed.
    pub(crate) closed: bool,
}

impl Committed {
    /// Waits until change `seq` is committed, a commit failed, or the committer is gone.
    pub(crate) async fn wait(
        rx: &mut watch::Receiver<Committed>,
        seq: u64,
    ) -> Result<(), ReplicaError> {
        let state = rx
            .wait_for(|c| c.seq >= seq || c.failed.is_some() || c.closed)
            .await
            .map_err(|_| ReplicaError::Stopped)?;
        match &state.failed {
            _ if state.seq >= seq => Ok(()),
            Some(e) => Err(ReplicaError::StorageFailed(e.clone())),
            None => Err(ReplicaError::Stopped),
        }
    }
}

/// Shared by handles, the actor and the committer.
pub(crate) struct Shared<C: MapView> {
    core: Mutex<Core<C>>,
    pub(crate) name: String,
    pub(crate) id: ReplicaId,
    pub(crate) restored: bool,
    pub(crate) ack: Ack,
    pub(crate) storage: Option<Arc<dyn Storage>>,
    pub(crate) committed: watch::Sender<Committed>,
    /// Wakes the committer; `None` without storage.
    wake: Option<std::sync::mpsc::SyncSender<()>>,
    pub(crate) stopping: AtomicBool,
    pub(crate) outbox: OnceLock<Arc<dyn Outbox>>,
    pub(crate) commits: AtomicU64,
    pub(crate) send_errors: AtomicU64,
    pub(crate) max_sync_size: usize,
    pub(crate) write_concern: WriteConcern,
    pub(crate) subscription_capacity: usize,
    /// Woken after every message from a neighbour (acknowledgements arrive as messages).
    pub(crate) acks: Notify,
    /// The transport was left (once).
    outbox_closed: AtomicBool,
    /// The replica's actor (set by the actor as it starts), told to send local writes at once
    /// when [`ReplicaOptions::send_when_idle`] is on, or woken by a write while it sleeps.
    pub(crate) flusher: OnceLock<ActorRef<ReplicaMsg>>,
    /// A [`ReplicaMsg::Flush`] is on its way: later writes ride along with it.
    pub(crate) flush_pending: AtomicBool,
    /// The actor's next tick is more than one sync interval away (nothing was due): a local
    /// write wakes it with [`ReplicaMsg::Wake`], once.
    pub(crate) sleeping: AtomicBool,
    /// The neighbours, kept apart from the core (readers must not wait on the core's lock
    /// while a long sync step holds it), in a watch so that the products learn of a change
    /// at once instead of polling.
    pub(crate) neighbours: watch::Sender<Vec<String>>,
}

/// Milliseconds since the Unix epoch, for the hybrid logical clock.
pub(crate) fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl<C: MapView> Shared<C> {
    pub(crate) fn new(
        options: &ReplicaOptions,
        sync: SyncState<C, String>,
        hlc: Hlc,
        restored: bool,
        storage: Option<Arc<dyn Storage>>,
        wake: Option<std::sync::mpsc::SyncSender<()>>,
    ) -> Self {
        let id = sync.id();
        Shared {
            core: Mutex::new(Core {
                sync,
                hlc,
                dirty: Vec::new(),
                changed: false,
                seq: 0,
                subscribers: Vec::new(),
                manual_neighbours: false,
            }),
            name: options.name.clone(),
            id,
            restored,
            ack: options.ack,
            storage,
            committed: watch::channel(Committed::default()).0,
            wake,
            stopping: AtomicBool::new(false),
            outbox: OnceLock::new(),
            commits: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            max_sync_size: options.max_sync_size,
            write_concern: options.write_concern,
            subscription_capacity: options.subscription_capacity,
            acks: Notify::new(),
            outbox_closed: AtomicBool::new(false),
            flusher: OnceLock::new(),
            flush_pending: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            neighbours: watch::channel(Vec::new()).0,
        }
    }

    /// Leaves the transport, once.
    pub(crate) async fn close_outbox(&self) {
        if let Some(outbox) = self.outbox.get()
            && !self.outbox_closed.swap(true, Ordering::SeqCst)
        {
            outbox.close().await;
        }
    }

    /// The state, locked. A panic in a user's `read` or `mutate` closure poisons the lock; the
    /// state is still a valid CRDT state (joins and mutators finish before they return deltas),
    /// so the poison is ignored rather than turned into a panic of every later call.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Core<C>> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies a local change made under `core`: records it for storage and subscribers.
    /// `before` holds, when someone listens for diffs, the store of every key the change may
    /// touch as it was before (see [`Core::before`]). Returns the change's sequence number.
    pub(crate) fn after_local(&self, core: &mut Core<C>, delta: &C, before: Before<C>) -> u64 {
        let causal = delta.as_causal();
        if causal.is_bottom() {
            return core.seq;
        }
        if !before.is_empty() {
            let state = core.sync.crdt().as_causal().store();
            let mut diffs = Vec::new();
            for (key, was) in &before {
                C::diff(key, was.as_ref(), state.get(key), &mut diffs);
            }
            publish(core, diffs);
        }
        if self.storage.is_some() {
            core.dirty
                .extend(causal.store().iter().map(|(k, _)| k.clone()));
        }
        core.changed = true;
        core.seq += 1;
        self.after_write(core);
        core.seq
    }

    /// Like [`after_local`](Self::after_local) for a change made with nobody to tell and
    /// nothing to store (the in-memory fast path). Returns the change's sequence number.
    pub(crate) fn after_quiet_local(&self, core: &mut Core<C>) -> u64 {
        self.after_write(core);
        core.touched()
    }

    /// A local write waits to be sent: at once to idle neighbours when asked
    /// ([`SyncConfig::send_when_idle`](crate::sync::SyncConfig)), else at the next tick,
    /// which comes within a sync interval even if the actor was sleeping.
    fn after_write(&self, core: &Core<C>) {
        if core.sync.config().send_when_idle {
            self.request_flush();
        } else if self.sleeping.swap(false, Ordering::AcqRel)
            && let Some(actor) = self.flusher.get()
        {
            // The actor gone means the replica is stopping: nothing to wake.
            let _ = actor.cast(ReplicaMsg::Wake);
        }
    }

    /// Asks the actor to send what waits now: queued messages, and local writes to idle
    /// neighbours when [`SyncConfig::send_when_idle`](crate::sync::SyncConfig) is on (see
    /// [`SyncState::flush`]). One request at a time, so a burst of writes costs one actor
    /// message and travels grouped.
    pub(crate) fn request_flush(&self) {
        if let Some(actor) = self.flusher.get()
            && !self.flush_pending.swap(true, Ordering::AcqRel)
            && actor.cast(ReplicaMsg::Flush).is_err()
        {
            // The actor is gone: the replica is stopping, nothing will be sent anyway.
            self.flush_pending.store(false, Ordering::Release);
        }
    }

    /// Sets the sync layer's neighbours, and the copy of them that
    /// [`Replica::neighbours`](super::Replica::neighbours) reads without the core's lock.
    pub(crate) fn set_neighbours(
        &self,
        core: &mut Core<C>,
        nodes: impl IntoIterator<Item = String>,
    ) {
        core.sync.set_neighbours(nodes);
        let now: Vec<String> = core.sync.neighbours().cloned().collect();
        self.neighbours.send_if_modified(|old| {
            let changed = *old != now;
            *old = now;
            changed
        });
    }

    /// Sends `transmits`, read from the state at `seq`, once that state is durable: a crash
    /// must never forget a dot of ours that a neighbour already holds (the restarted replica
    /// keeps its id and would mint that dot again, and the neighbour would ignore the write).
    pub(crate) async fn send_when_durable(&self, transmits: Vec<Transmit<String>>, seq: u64) {
        if transmits.is_empty() {
            return;
        }
        if let Err(error) = self.until_durable(seq).await {
            tracing::warn!(replica = %self.name, %error, "not sending: state not stored");
            return;
        }
        self.transmit(transmits);
    }

    /// Handles what a sync call left behind: events (for storage and subscribers) and
    /// transmits (returned, to be sent after the lock is released).
    pub(crate) fn drain(&self, core: &mut Core<C>) -> Vec<Transmit<String>> {
        while let Some(event) = core.sync.poll_event() {
            match event {
                SyncEvent::StoresChanged(changes) => {
                    let keys = match changes.into_previous() {
                        Ok(changes) => {
                            let state = core.sync.crdt().as_causal().store();
                            let mut diffs = Vec::new();
                            for (key, before) in &changes {
                                C::diff(key, before.as_ref(), state.get(key), &mut diffs);
                            }
                            publish(core, diffs);
                            changes.into_iter().map(|(k, _)| k).collect()
                        }
                        Err(keys) => keys,
                    };
                    if self.storage.is_some() {
                        core.dirty.extend(keys);
                    }
                    core.touched();
                }
                SyncEvent::ContextGrew => {
                    if self.storage.is_some() {
                        core.touched();
                    }
                }
                SyncEvent::RemoteTimestamp(remote) => {
                    // Ordered after what neighbours wrote even when their wall clock runs
                    // ahead (Kulkarni et al.). Beyond the drift bound it is not observed: the
                    // clock stays sane, and the value still wins where its timestamp says.
                    if let Err(error) = core.hlc.observe(wall_ms(), remote) {
                        tracing::warn!(%error, "not following a neighbour's clock");
                    }
                }
            }
        }
        let mut out = Vec::new();
        while let Some(t) = core.sync.poll_transmit() {
            out.push(t);
        }
        out
    }

    /// Adds a subscriber with room for `capacity` batches, and returns it with the visible
    /// state it starts from (taken under the same lock, so no diff is lost or doubled); turns
    /// on the sync layer's capture of previous values.
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        capacity: usize,
        with_snapshot: bool,
    ) -> (Snapshot<C>, Subscription<C>) {
        let (subscriber, subscription) = Subscription::pair(capacity, self);
        let mut core = self.lock();
        let state = if with_snapshot {
            snapshot(&core)
        } else {
            Snapshot::<C>::new()
        };
        core.subscribers.retain(|s| !s.closed());
        core.subscribers.push(subscriber);
        core.sync.track_previous(true);
        (state, subscription)
    }

    /// Sends messages to neighbours; failures are counted (the protocol resends or repairs).
    pub(crate) fn transmit(&self, transmits: Vec<Transmit<String>>) {
        let Some(outbox) = self.outbox.get() else {
            if !transmits.is_empty() {
                self.send_errors
                    .fetch_add(transmits.len() as u64, Ordering::Relaxed);
            }
            return;
        };
        for t in transmits {
            if let Err(e) = outbox.send(&t.to, t.bytes) {
                self.send_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(replica = %self.name, to = %t.to, error = %e, "send failed");
            }
        }
    }

    /// Asks the committer to write what changed.
    pub(crate) fn wake_committer(&self) {
        if let Some(wake) = &self.wake {
            // Full means a wake-up is already pending: it will see this change too.
            let _ = wake.try_send(());
        }
    }

    /// Waits until the change numbered `seq` is committed, if writes wait for storage.
    pub(crate) async fn await_commit(&self, seq: u64) -> Result<(), ReplicaError> {
        if self.storage.is_none() {
            return Ok(());
        }
        self.wake_committer();
        if self.ack == Ack::Applied {
            return Ok(());
        }
        let mut rx = self.committed.subscribe();
        Committed::wait(&mut rx, seq).await
    }

    /// Waits until everything up to change `seq` is durable: committed, and flushed if the
    /// store writes behind. Nothing read from the state may leave the node before that: a
    /// restarted replica keeps its id, and must not mint again a dot a neighbour already holds.
    pub(crate) async fn until_durable(&self, seq: u64) -> Result<(), ReplicaError> {
        let Some(storage) = self.storage.clone() else {
            return Ok(());
        };
        self.wake_committer();
        let mut rx = self.committed.subscribe();
        Committed::wait(&mut rx, seq).await?;
        if !storage.durable_on_apply() {
            tokio::task::spawn_blocking(move || storage.flush()).await??;
        }
        Ok(())
    }

    /// One group commit: takes what changed under the lock, writes it outside. Returns false
    /// when there was nothing to write.
    pub(crate) fn commit_once(&self) -> Result<bool, ReplicaError> {
        let Some(storage) = &self.storage else {
            return Ok(false);
        };
        let (batch, seq) = {
            let mut core = self.lock();
            if !core.changed {
                return Ok(false);
            }
            let mut keys = std::mem::take(&mut core.dirty);
            core.changed = false;
            dedup(&mut keys);
            (persist::batch_for(core.sync.crdt(), &keys)?, core.seq)
        };
        let _span = tracing::debug_span!("commit", replica = %self.name, seq).entered();
        storage.apply(&batch)?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.committed.send_modify(|c| c.seq = c.seq.max(seq));
        Ok(true)
    }
}

fn publish<C: MapView>(core: &mut Core<C>, diffs: DiffBatch<C>) {
    if diffs.is_empty() {
        return;
    }
    core.subscribers.retain(|s| !s.closed());
    if let Some((last, rest)) = core.subscribers.split_last() {
        for s in rest {
            if s.active() {
                s.offer(diffs.clone());
            }
        }
        last.offer(diffs);
    }
    if core.subscribers.is_empty() {
        core.sync.track_previous(false);
    }
}

/// The visible state: every item and its value.
pub(crate) fn snapshot<C: MapView>(core: &Core<C>) -> Snapshot<C> {
    let mut out = Snapshot::<C>::new();
    for (key, store) in core.sync.crdt().as_causal().store().iter() {
        C::visit(key, store, &mut |item, value| {
            out.insert(item, value);
        });
    }
    out
}

fn dedup<K: std::hash::Hash + Eq + Clone>(keys: &mut Vec<K>) {
    let mut seen = std::collections::HashSet::with_capacity(keys.len());
    keys.retain(|k| seen.insert(k.clone()));
}
