//! Subscriptions: bounded streams of diffs that a slow subscriber cannot turn into unbounded
//! memory.
//!
//! Each subscriber has a bounded queue of diff batches. A batch that does not fit is not
//! queued: the subscriber is marked *lagged* and gets nothing more until it has read what was
//! queued; its next [`recv`](Subscription::recv) then returns [`Update::Lagged`] with a fresh
//! snapshot of the visible state, taken under the replica's lock together with re-arming the
//! queue, so diffs after it continue exactly where the snapshot ends. Memory per subscriber
//! is therefore at most `capacity` batches, whatever the write rate.

use super::ReplicaError;
use super::shared::{DiffBatch, Shared};
use super::view::{Diff, MapView};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use tokio::sync::mpsc;

/// The visible state of a replica: every item (a key, or a path of a document) and its value.
pub type Snapshot<C> = HashMap<<C as MapView>::Item, <C as MapView>::View>;

/// What a [`Subscription`] yields.
#[derive(Debug, Clone)]
pub enum Update<I, V> {
    /// The diffs of one change (one write, one batch of writes, or one message from a
    /// neighbour), in the order the replica applied them.
    Diffs(Vec<Diff<I, V>>),
    /// The subscriber fell behind by more than its queue holds, and diffs were dropped. This is
    /// the visible state now, in place of what was missed; diffs continue after it.
    Lagged(HashMap<I, V>),
}

impl<I: std::hash::Hash + Eq, V: PartialEq> PartialEq for Update<I, V> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Update::Diffs(a), Update::Diffs(b)) => a == b,
            (Update::Lagged(a), Update::Lagged(b)) => a == b,
            _ => false,
        }
    }
}

/// The publisher's side of one subscriber (kept by the replica, under its lock).
pub(crate) struct Subscriber<C: MapView> {
    tx: mpsc::Sender<DiffBatch<C>>,
    lagged: Arc<AtomicBool>,
}

impl<C: MapView> Subscriber<C> {
    /// True when the subscriber still wants diffs: alive and not lagged.
    pub(crate) fn active(&self) -> bool {
        !self.lagged.load(Ordering::Acquire) && !self.tx.is_closed()
    }

    /// True when the subscription was dropped.
    pub(crate) fn closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Queues `batch`, or marks the subscriber lagged when its queue is full. Never blocks.
    pub(crate) fn offer(&self, batch: DiffBatch<C>) {
        if self.lagged.load(Ordering::Acquire) {
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(batch) {
            self.lagged.store(true, Ordering::Release);
        }
    }
}

/// A stream of a replica's diffs: every change of a visible value, local or remote, in the
/// order the replica applied them. Bounded: see [`Update::Lagged`]. Dropping it unsubscribes.
///
/// # Examples
/// ```
/// use herd::replica::{Diff, Kv, ReplicaOptions, Update};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), herd::replica::ReplicaError> {
/// let kv = Kv::start_local(ReplicaOptions::new("config")).await?;
/// kv.put("colour", "blue").await?;
/// let (mut state, mut updates) = kv.subscribe_with_snapshot();
/// kv.put("size", "L").await?;
/// match updates.recv().await {
///     Some(Update::Diffs(diffs)) => diffs.into_iter().for_each(|d| d.apply_to(&mut state)),
///     Some(Update::Lagged(now)) => state = now,
///     None => {}
/// }
/// assert_eq!(state, kv.to_map());
/// # Ok(())
/// # }
/// ```
pub struct Subscription<C: MapView> {
    rx: mpsc::Receiver<DiffBatch<C>>,
    lagged: Arc<AtomicBool>,
    shared: Weak<Shared<C>>,
}

impl<C: MapView> Subscription<C> {
    /// A subscriber and its subscription, with room for `capacity` batches.
    pub(crate) fn pair(capacity: usize, shared: &Arc<Shared<C>>) -> (Subscriber<C>, Self) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let lagged = Arc::new(AtomicBool::new(false));
        let subscriber = Subscriber {
            tx,
            lagged: lagged.clone(),
        };
        let subscription = Subscription {
            rx,
            lagged,
            shared: Arc::downgrade(shared),
        };
        (subscriber, subscription)
    }

    /// The next update; `None` once the replica is gone (dropped or stopped).
    ///
    /// # Cancel safety
    /// Cancel safe: an update is removed from the queue only when it is returned.
    pub async fn recv(&mut self) -> Option<Update<C::Item, C::View>> {
        match self.rx.try_recv() {
            Ok(diffs) => return Some(Update::Diffs(diffs)),
            Err(mpsc::error::TryRecvError::Disconnected) => return None,
            Err(mpsc::error::TryRecvError::Empty) => {}
        }
        if self.lagged.load(Ordering::Acquire) {
            return self.resync().ok().map(Update::Lagged);
        }
        // Lag is only ever marked when the queue is full, so waiting on an empty queue cannot
        // miss it.
        self.rx.recv().await.map(Update::Diffs)
    }

    /// The next update if one is ready, without waiting.
    pub fn try_recv(&mut self) -> Option<Update<C::Item, C::View>> {
        match self.rx.try_recv() {
            Ok(diffs) => Some(Update::Diffs(diffs)),
            Err(_) if self.lagged.load(Ordering::Acquire) => self.resync().ok().map(Update::Lagged),
            Err(_) => None,
        }
    }

    /// Batches waiting to be read: at most the subscription's capacity.
    pub fn queued(&self) -> usize {
        self.rx.len()
    }

    /// True when the subscriber fell behind and diffs were dropped (the next
    /// [`recv`](Self::recv) returns [`Update::Lagged`]).
    pub fn lagged(&self) -> bool {
        self.lagged.load(Ordering::Acquire)
    }

    /// Under the replica's lock: drops what is queued, takes a snapshot, and re-arms the
    /// queue, so the diffs published after it are exactly those after the snapshot.
    fn resync(&mut self) -> Result<Snapshot<C>, ReplicaError> {
        let shared = self.shared.upgrade().ok_or(ReplicaError::Stopped)?;
        let core = shared.lock();
        while self.rx.try_recv().is_ok() {}
        self.lagged.store(false, Ordering::Release);
        Ok(super::shared::snapshot(&core))
    }
}

impl<C: MapView> std::fmt::Debug for Subscription<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("queued", &self.queued())
            .field("lagged", &self.lagged())
            .finish()
    }
}
