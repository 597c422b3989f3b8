//! [`Replica`]: the handle users hold, generic over the replicated type.

use super::actor::{ReplicaActor, ReplicaMsg};
use super::options::{ReadConcern, ReplicaOptions, WriteConcern};
use super::persist;
use super::shared::{Outbox, Shared, wall_ms};
use super::subscription::{Snapshot, Subscription};
use super::view::MapView;
use super::{ReplicaError, ReplicaStats};
use crate::clock::{Hlc, Timestamp};
use crate::codec;
use crate::crdt::ReplicaId;
use crate::storage::{RedbStorage, Storage};
use crate::sync::{SyncConfig, SyncState};
use ractor::{Actor, ActorCell, ActorRef, ActorStatus};
use serde::Serialize;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::time::Instant;

/// Room for the key and the message framing around a single write, so that a write accepted by
/// a replica always fits one sync message.
const WRITE_OVERHEAD: usize = 256;

/// The smallest `max_sync_size` a replica starts with: room for the framing of a write and
/// for the protocol's own messages (digests, acknowledgements, Merkle descent steps).
pub(crate) const MIN_SYNC_SIZE: usize = 1024;

/// A replica of one named CRDT: the handle to its actor and its state. Cheap to clone; all
/// clones are the same replica.
///
/// Writes are applied locally and return without waiting for any other node (with
/// [`Ack::Durable`](super::Ack::Durable), after the local storage has them; with a
/// [`WriteConcern`] other than `Local`, after enough neighbours acknowledged them); neighbours
/// get them on the next sync interval. Reads see this replica's state: every local write, and
/// every remote write received so far.
///
/// Each replicable type has its typed methods (see the [module docs](super) for the table):
/// `put`/`get`/`delete` for [`AwLwwMap`](crate::crdt::AwLwwMap) ([`Kv`](super::Kv) is the
/// string-to-string one), `add`/`remove`/`contains` for sets, `increment`/`value` for counters,
/// `write`/`values` for multi-value registers, `set`/`get` at a path for documents.
/// [`mutate`](Self::mutate) runs any mutator of the type.
///
/// # Lifetime
/// The replica runs until [`stop`](Self::stop) is called, **its last handle is dropped**, or
/// its actor dies. Dropping the last handle stops it as `stop` does, in the background: the
/// actor stops, the group is left, and a last commit and flush of the storage run on the
/// committer thread (call `stop` to wait for them and see their errors). A [`Subscription`]
/// does not keep the replica running. After that, writes fail with
/// [`ReplicaError::Stopped`]; reads still see the last state.
///
/// ```
/// use herd::replica::{Diff, Kv, ReplicaOptions, Update};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), herd::replica::ReplicaError> {
/// let kv = Kv::start_local(ReplicaOptions::new("config")).await?;
/// let mut updates = kv.subscribe();
/// kv.put("colour", "blue").await?;
/// assert_eq!(kv.get("colour").as_deref(), Some("blue"));
/// assert_eq!(
///     updates.recv().await,
///     Some(Update::Diffs(vec![Diff::Added { key: "colour".to_string(), value: "blue".to_string() }]))
/// );
/// kv.stop().await?;
/// # Ok(())
/// # }
/// ```
pub struct Replica<C: MapView> {
    pub(super) shared: Arc<Shared<C>>,
    actor: ActorRef<ReplicaMsg>,
    owner: Arc<Owner<C>>,
}

impl<C: MapView> Clone for Replica<C> {
    fn clone(&self) -> Self {
        Replica {
            shared: self.shared.clone(),
            actor: self.actor.clone(),
            owner: self.owner.clone(),
        }
    }
}

impl<C: MapView> std::fmt::Debug for Replica<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("name", &self.shared.name)
            .field("id", &self.shared.id)
            .finish_non_exhaustive()
    }
}

/// Shared by every clone of a handle; dropping the last one stops the replica.
struct Owner<C: MapView> {
    shared: Arc<Shared<C>>,
    actor: ActorRef<ReplicaMsg>,
    committer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl<C: MapView> Drop for Owner<C> {
    fn drop(&mut self) {
        if !self.shared.stopping.swap(true, Ordering::SeqCst) {
            // The actor leaves the group in its post_stop; the committer sees `stopping`,
            // commits and flushes what is left, and exits.
            self.actor.stop(None);
            self.shared.wake_committer();
        }
    }
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
    /// Loads the state and replica id from the options' storage if it holds a replica; an
    /// empty store gets a fresh random replica id.
    ///
    /// # Errors
    /// [`ReplicaError::Storage`], [`ReplicaError::CorruptState`] or
    /// [`ReplicaError::InconsistentState`] when the store cannot be opened or read (nothing is
    /// overwritten); [`ReplicaError::NameMismatch`] when the store was opened for another
    /// replica; [`ReplicaError::SyncSizeTooSmall`] for a `max_sync_size` under 1 KiB;
    /// [`ReplicaError::Spawn`] or [`ReplicaError::Thread`] when the actor or the committer
    /// cannot start.
    ///
    /// # Cancel safety
    /// Not cancel safe: cancelled after the store was opened, the replica is not started but
    /// a fresh store may have been given its id.
    pub async fn start_local(options: ReplicaOptions) -> Result<Self, ReplicaError> {
        if options.max_sync_size < MIN_SYNC_SIZE {
            return Err(ReplicaError::SyncSizeTooSmall {
                max_sync_size: options.max_sync_size,
                min: MIN_SYNC_SIZE,
            });
        }
        let storage = open_storage(&options).await?;
        let (loaded, storage) = match storage {
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
                .await??;
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
            send_when_idle: options.send_when_idle,
            // Neighbours follow cluster membership, a full mesh, until set by hand.
            relay: false,
            ..SyncConfig::default()
        };
        let mut sync = SyncState::new(ReplicaId::new(id), random_u64(), crdt, config);
        sync.report_timestamps(C::store_timestamp);
        let (wake, woken) = match storage {
            Some(_) => {
                let (tx, rx) = std::sync::mpsc::sync_channel(1);
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let shared = Arc::new(Shared::new(&options, sync, hlc, restored, storage, wake));
        let committer = match woken {
            Some(woken) => Some(super::committer::spawn(shared.clone(), woken)?),
            None => None,
        };
        let args = (shared.clone(), options.sync_interval);
        let spawned = match options.supervisor.clone() {
            Some(supervisor) => {
                Actor::spawn_linked(None, ReplicaActor::<C>::new(), args, supervisor).await
            }
            None => Actor::spawn(None, ReplicaActor::<C>::new(), args).await,
        };
        let actor = match spawned {
            Ok((actor, _join)) => actor,
            Err(e) => {
                shared.stopping.store(true, Ordering::SeqCst);
                shared.wake_committer();
                return Err(e.into());
            }
        };
        let owner = Arc::new(Owner {
            shared: shared.clone(),
            actor: actor.clone(),
            committer: Mutex::new(committer),
        });
        Ok(Replica {
            shared,
            actor,
            owner,
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
    pub(crate) fn actor_ref(&self) -> &ActorRef<ReplicaMsg> {
        &self.actor
    }

    /// The replica's actor: to monitor it, link it, or read its status. Its messages are
    /// internal; stop the replica with [`stop`](Self::stop) rather than through the actor.
    pub fn actor(&self) -> ActorCell {
        self.actor.get_cell()
    }

    /// `Err(Stopped)` once the replica stopped or its actor died.
    pub(super) fn ensure_running(&self) -> Result<(), ReplicaError> {
        let stopped = self.shared.stopping.load(Ordering::Acquire)
            || matches!(
                self.actor.get_status(),
                ActorStatus::Stopping | ActorStatus::Stopped
            );
        if stopped {
            Err(ReplicaError::Stopped)
        } else {
            Ok(())
        }
    }

    /// Applies a local change: `op` runs a mutator of the CRDT with this replica's id and a
    /// fresh hybrid-logical-clock timestamp, and returns the mutator's delta.
    ///
    /// Subscribers are told of exactly the items whose visible value changed. To know the
    /// values from before, `mutate` copies the whole state first *while someone subscribes*
    /// (nothing is copied otherwise): on a large state with subscribers, prefer the typed
    /// methods, which copy only the key they change.
    ///
    /// # Errors
    /// [`ReplicaError::Stopped`] (nothing applied); with [`Ack::Durable`](super::Ack::Durable)
    /// storage, a failed commit (the change is applied in memory); a
    /// [`WriteConcern`] not met in time.
    ///
    /// # Cancel safety
    /// The change is applied before the first await: cancelling only stops the wait for
    /// storage and neighbours.
    pub async fn mutate(
        &self,
        op: impl FnOnce(&mut C, ReplicaId, Timestamp) -> C,
    ) -> Result<(), ReplicaError> {
        self.ensure_running()?;
        let seq = {
            let mut core = self.shared.lock();
            let ts = core.hlc.now(wall_ms());
            let old = core.has_subscribers().then(|| core.sync.crdt().clone());
            let delta = core.sync.mutate(|c, id| op(c, id, ts));
            let before = match &old {
                Some(old) => {
                    let store = old.as_causal().store();
                    delta
                        .as_causal()
                        .store()
                        .iter()
                        .map(|(k, _)| (k.clone(), store.get(k).cloned()))
                        .collect()
                }
                None => Vec::new(),
            };
            self.shared.after_local(&mut core, &delta, before)
        };
        self.finish(seq).await
    }

    /// Waits for what a write promises: storage per [`Ack`](super::Ack), then neighbours per
    /// the replica's [`WriteConcern`].
    pub(super) async fn finish(&self, seq: u64) -> Result<(), ReplicaError> {
        self.shared.await_commit(seq).await?;
        match self.shared.write_concern {
            WriteConcern::Local => Ok(()),
            concern => self.until_replicated(concern).await,
        }
    }

    /// Refuses a write that could never fit one sync message.
    pub(super) fn check_fits<T: Serialize + ?Sized>(&self, write: &T) -> Result<(), ReplicaError> {
        let size = codec::encoded_len(write)?;
        let limit = self.shared.max_sync_size;
        if size + WRITE_OVERHEAD > limit {
            return Err(ReplicaError::TooLarge { size, limit });
        }
        Ok(())
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
        // Hand-set neighbours need not all see each other: pass writes on.
        core.sync.set_relay(true);
        self.shared.set_neighbours(&mut core, nodes);
        drop(core);
        // The greetings to new neighbours leave now, not at the next tick.
        self.shared.request_flush();
    }

    /// The current neighbours (node names).
    pub fn neighbours(&self) -> Vec<String> {
        self.shared.neighbours.borrow().clone()
    }

    /// The neighbours, and every change of them: `changed().await` returns when the list
    /// changed since it was last seen (`borrow_and_update` reads it). For code that acts on
    /// members joining and leaving without polling [`neighbours`](Self::neighbours).
    ///
    /// ```no_run
    /// # async fn f(replica: herd::replica::Replica<herd::crdt::AwLwwMap<String, String>>) {
    /// let mut neighbours = replica.watch_neighbours();
    /// while neighbours.changed().await.is_ok() {
    ///     println!("now syncing with {:?}", *neighbours.borrow_and_update());
    /// }
    /// # }
    /// ```
    pub fn watch_neighbours(&self) -> tokio::sync::watch::Receiver<Vec<String>> {
        self.shared.neighbours.subscribe()
    }

    /// A stream of diffs: every change of a visible value, local or remote, in the order this
    /// replica applied them, batched per change. Bounded by
    /// [`subscription_capacity`](ReplicaOptions::subscription_capacity): a subscriber that
    /// falls further behind gets [`Update::Lagged`](super::Update::Lagged) with the current
    /// state instead of the diffs it missed. Dropping it unsubscribes.
    pub fn subscribe(&self) -> Subscription<C> {
        self.shared
            .subscribe(self.shared.subscription_capacity, false)
            .1
    }

    /// [`subscribe`](Self::subscribe) with room for at least `batches` batches: for the
    /// products, whose view is rebuilt over every entry when their subscription lags, so a
    /// deep queue during a burst of writes costs far less than a lag.
    pub(crate) fn subscribe_deep(&self, batches: usize) -> Subscription<C> {
        let capacity = self.shared.subscription_capacity.max(batches);
        self.shared.subscribe(capacity, false).1
    }

    /// The visible state now and the stream of diffs after it, taken atomically: applying
    /// the diffs to the snapshot in order gives the state at each later point, with no diff
    /// missed or counted twice.
    pub fn subscribe_with_snapshot(&self) -> (Snapshot<C>, Subscription<C>) {
        self.shared
            .subscribe(self.shared.subscription_capacity, true)
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
        self.shared.stats()
    }

    /// Waits until every write made so far is durable in storage (for
    /// [`Ack::Applied`](super::Ack), or a write-behind store).
    ///
    /// # Errors
    /// [`ReplicaError::StorageFailed`] if a commit failed; [`ReplicaError::Stopped`] if the
    /// replica stopped first.
    ///
    /// # Cancel safety
    /// Cancel safe: it only waits.
    pub async fn flush(&self) -> Result<(), ReplicaError> {
        let seq = self.shared.lock().seq();
        self.shared.until_durable(seq).await
    }

    /// Waits until the neighbours acknowledged every write made on this replica so far, as
    /// `concern` asks (all of them, or a majority of the group), or its timeout passes. Only
    /// the neighbours at the time of the call count. The acknowledgement is the delta path's:
    /// a delta that path gave up on (too large for one message, or dropped from a full
    /// buffer) counts as delivered and reaches the neighbour later, by the repair path.
    ///
    /// # Errors
    /// [`ReplicaError::NotAcknowledged`] at the timeout: the writes are applied locally and
    /// will still spread. [`ReplicaError::Stopped`] if the replica stops meanwhile.
    ///
    /// # Cancel safety
    /// Cancel safe: it only waits.
    pub async fn until_replicated(&self, concern: WriteConcern) -> Result<(), ReplicaError> {
        let wait = match concern {
            WriteConcern::Local => return Ok(()),
            WriteConcern::Majority(t) | WriteConcern::All(t) => t,
        };
        let started = Instant::now();
        let (seq, neighbours) = {
            let core = self.shared.lock();
            let neighbours: Vec<String> = core.sync.neighbours().cloned().collect();
            (core.sync.delta_head(), neighbours)
        };
        let required = match concern {
            WriteConcern::All(_) => neighbours.len(),
            _ => neighbours.len().div_ceil(2),
        };
        let shortfall = self
            .until_neighbours(started + wait, required, |sync| {
                sync.acknowledged(seq, &neighbours)
            })
            .await?;
        match shortfall {
            None => Ok(()),
            Some(acknowledged) => Err(ReplicaError::NotAcknowledged {
                acknowledged,
                required,
                waited: started.elapsed(),
            }),
        }
    }

    /// Waits until `count` (read under the lock after every message from a neighbour) reaches
    /// `required`, or `deadline`; the shared loop of the write and read concerns. Returns
    /// `None` once reached, the count at the deadline otherwise.
    async fn until_neighbours(
        &self,
        deadline: Instant,
        required: usize,
        count: impl Fn(&SyncState<C, String>) -> usize,
    ) -> Result<Option<usize>, ReplicaError> {
        loop {
            let notified = self.shared.acks.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let counted = count(&self.shared.lock().sync);
            if counted >= required {
                return Ok(None);
            }
            self.ensure_running()?;
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(Some(counted));
            }
        }
    }

    /// Waits until this replica includes what its neighbours hold, as `concern` asks (all of
    /// them, or a majority of the group), or its timeout passes: read afterwards, and the read
    /// includes every write those neighbours had when the call began. Each neighbour is asked
    /// once for its causal context (one small message each way); the gap, if any, is closed by
    /// the usual repair path. Only the neighbours at the time of the call count.
    ///
    /// ```no_run
    /// # async fn demo(kv: herd::replica::Kv) -> Result<(), herd::replica::ReplicaError> {
    /// use herd::replica::ReadConcern;
    /// use std::time::Duration;
    /// kv.until_caught_up(ReadConcern::Majority(Duration::from_secs(1))).await?;
    /// let value = kv.get("feature-flags"); // includes what a majority held
    /// # let _ = value; Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ReplicaError::NotCaughtUp`] at the timeout (a neighbour that is slow, gone, or whose
    /// answer was lost); [`ReplicaError::Stopped`] if the replica stops meanwhile.
    ///
    /// # Cancel safety
    /// Cancel safe: it only asks and waits.
    pub async fn until_caught_up(&self, concern: ReadConcern) -> Result<(), ReplicaError> {
        let wait = match concern {
            ReadConcern::Local => return Ok(()),
            ReadConcern::Majority(t) | ReadConcern::All(t) => t,
        };
        self.ensure_running()?;
        let started = Instant::now();
        let (probe, neighbours, transmits, seq) = {
            let mut core = self.shared.lock();
            let probe = core.sync.probe_neighbours();
            let neighbours: Vec<String> = core.sync.neighbours().cloned().collect();
            let transmits = self.shared.drain(&mut core);
            (probe, neighbours, transmits, core.seq())
        };
        // As everything sent: only after the state it was read from is durable.
        self.shared.until_durable(seq).await?;
        self.shared.transmit(transmits);
        let required = match concern {
            ReadConcern::All(_) => neighbours.len(),
            _ => neighbours.len().div_ceil(2),
        };
        let shortfall = self
            .until_neighbours(started + wait, required, |sync| {
                sync.probe_included(probe, &neighbours)
            })
            .await?;
        match shortfall {
            None => Ok(()),
            Some(included) => Err(ReplicaError::NotCaughtUp {
                included,
                required,
                waited: started.elapsed(),
            }),
        }
    }

    /// Stops the replica: leaves the cluster group, stops its actor, then makes a last
    /// commit and flush of its storage and waits for them. Other clones of this handle stop
    /// working: writes fail with [`ReplicaError::Stopped`]. Once it returns, and no other
    /// clone is left, the storage is released (a redb file can be opened again).
    ///
    /// # Errors
    /// The last commit or flush failed.
    ///
    /// # Cancel safety
    /// Cancelled after its first await, the replica still stops (in the background).
    pub async fn stop(self) -> Result<(), ReplicaError> {
        self.shared.close_outbox().await;
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.wake_committer();
        // Waiting for the actor to end releases its hold on the state (and on the storage
        // file, so the replica can be started again on it). An actor already gone returns at
        // once; one stuck longer than this is left to finish in the background.
        let _ = self
            .actor
            .stop_and_wait(None, Some(std::time::Duration::from_secs(10)))
            .await;
        let committer = self
            .owner
            .committer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = committer {
            // A panicked committer has already marked the replica failed or closed.
            let _ = tokio::task::spawn_blocking(move || handle.join()).await?;
        }
        let failed = self.shared.committed.borrow().failed.clone();
        match failed {
            Some(e) => Err(ReplicaError::StorageFailed(e)),
            None => Ok(()),
        }
    }
}

/// Opens the storage the options name, checking it belongs to this replica.
async fn open_storage(options: &ReplicaOptions) -> Result<Option<Arc<dyn Storage>>, ReplicaError> {
    let storage: Option<Arc<dyn Storage>> = match (&options.storage, options.redb_spec()) {
        (Some(s), _) => Some(s.clone()),
        (None, Some((dir, config))) => {
            let (dir, config, name) = (dir.clone(), config.clone(), options.name.clone());
            let store = tokio::task::spawn_blocking(move || RedbStorage::open(&dir, &name, config))
                .await??;
            Some(Arc::new(store))
        }
        (None, None) => None,
    };
    if let Some(stored) = storage.as_ref().and_then(|s| s.replica_name())
        && stored != options.name
    {
        return Err(ReplicaError::NameMismatch {
            replica: options.name.clone(),
            storage: stored.to_owned(),
        });
    }
    Ok(storage)
}
