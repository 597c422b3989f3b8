//! Joining a replica to the cluster: one [`Group`] per replica name, whose members are the
//! replica's neighbours unless they were set by hand; and the graceful handover a leaving
//! replica runs before its group endpoint stops.

use super::actor::ReplicaMsg;
use super::shared::{Outbox, Shared};
use super::view::MapView;
use super::{Replica, ReplicaError, ReplicaOptions};
use crate::cluster::{ClusterError, Group, GroupEvent, HandoverHook, HandoverProbe, Node};
use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How often a handover re-checks its condition when nothing woke it.
const HANDOVER_POLL: Duration = Duration::from_millis(20);

impl Outbox for Group {
    fn send(&self, to: &str, bytes: Vec<u8>) -> Result<(), ClusterError> {
        Group::send(self, to, bytes)
    }

    #[cfg(any(test, feature = "test-hooks"))]
    fn send_unframed(&self, to: &str, bytes: Vec<u8>) -> Result<(), ClusterError> {
        Group::send_unframed(self, to, bytes)
    }

    fn frames_rejected(&self) -> u64 {
        self.stats().frames_rejected
    }

    fn transport_bytes(&self) -> (u64, u64) {
        let stats = self.stats();
        (stats.bytes_sent, stats.bytes_received)
    }

    fn close(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.leave())
    }
}

/// The neighbours that have shown, since the handover started, that they hold everything
/// this replica holds.
#[derive(Default)]
struct Handover {
    active: AtomicBool,
    confirmed: Mutex<BTreeSet<String>>,
    changed: watch::Sender<u64>,
}

impl Handover {
    fn confirm(&self, from: String) {
        let new = self
            .confirmed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(from);
        if new {
            self.changed.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    fn confirmed(&self) -> BTreeSet<String> {
        self.confirmed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The neighbours set by hand, if they were: then they, not the group's members, are who
/// must hold the data.
fn manual_neighbours<C: MapView>(shared: &Shared<C>) -> Option<BTreeSet<String>> {
    let core = shared.lock();
    core.manual_neighbours
        .then(|| core.sync.neighbours().cloned().collect())
}

/// Whether a leaving replica may go: every neighbour confirmed, or there is nobody to hand
/// anything to.
fn may_leave(
    probe: &HandoverProbe,
    group: &Group,
    manual: Option<BTreeSet<String>>,
    confirmed: &BTreeSet<String>,
) -> bool {
    if let Some(neighbours) = manual {
        // Only neighbours that are reachable can confirm; the others get it by repair later.
        let reachable: BTreeSet<String> =
            neighbours.intersection(&group.members()).cloned().collect();
        return reachable.is_subset(confirmed);
    }
    match probe.peers_synced() {
        // No peer: nothing can be handed over; wait only for seeds that may still answer.
        None => !probe.has_seeds(),
        // A session is still syncing: its peer may host this replica.
        Some(false) => false,
        Some(true) => {
            let members = group.members();
            if members.is_empty() {
                // Nobody else hosts this replica, unless a join is still on its way from
                // ractor's registry to the endpoint.
                group.remote_in_registry() == 0
            } else {
                members.is_subset(confirmed)
            }
        }
    }
}

/// Waits until every neighbour holds what this replica holds, or `probe.timeout` passes.
/// The replica keeps syncing meanwhile (its actor runs); this only watches.
async fn hand_over<C: MapView>(
    probe: HandoverProbe,
    group: Group,
    handover: Arc<Handover>,
    shared: Arc<Shared<C>>,
) {
    let name = shared.name.clone();
    let started = Instant::now();
    let deadline = started + probe.timeout;
    let mut changed = handover.changed.subscribe();
    handover.active.store(true, Ordering::Release);
    probe_neighbours(&shared).await;
    loop {
        if may_leave(
            &probe,
            &group,
            manual_neighbours(&shared),
            &handover.confirmed(),
        ) {
            tracing::debug!(replica = %name, took = ?started.elapsed(), "handover done");
            return;
        }
        if Instant::now() >= deadline {
            let missing: Vec<String> = group
                .members()
                .difference(&handover.confirmed())
                .cloned()
                .collect();
            tracing::warn!(replica = %name, ?missing, timeout = ?probe.timeout, "handover timed out; leaving anyway (unconfirmed data stays in this node's storage)");
            return;
        }
        tokio::select! {
            _ = changed.changed() => {}
            // Not confirmed yet (a write went out after the last answer): ask again.
            () = tokio::time::sleep(HANDOVER_POLL) => probe_neighbours(&shared).await,
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// Asks every neighbour for its causal context now, rather than waiting for its next digest
/// (up to a sync interval away): the answer shows whether it holds everything.
async fn probe_neighbours<C: MapView>(shared: &Shared<C>) {
    let (transmits, seq) = {
        let mut core = shared.lock();
        core.sync.probe_neighbours();
        (shared.drain(&mut core), core.seq())
    };
    shared.send_when_durable(transmits, seq).await;
}

impl<C: MapView> Replica<C> {
    /// Starts a replica on `node`: it joins the node's group named `options.name`, and its
    /// neighbours follow the live nodes hosting a replica of the same name (Horde's
    /// `members: :auto`) until [`set_neighbours`](Replica::set_neighbours) is called.
    ///
    /// A graceful leave ([`Replica::stop`], [`Node::shutdown`]) first hands over: it waits
    /// until every neighbour has shown that it holds everything this replica holds, at most
    /// [`NodeConfig::handover_timeout`](crate::cluster::NodeConfig::handover_timeout).
    ///
    /// # Errors
    /// As [`start_local`](Replica::start_local); [`ReplicaError::LimitsDisagree`] (nothing
    /// started) when the replica's `max_sync_size` exceeds the node's `max_message_size`, so
    /// that its larger messages would be refused by the transport; [`ReplicaError::Cluster`]
    /// when the group cannot be joined (a replica of that name already runs on this node).
    ///
    /// # Cancel safety
    /// Not cancel safe (see [`start_local`](Replica::start_local)).
    pub async fn start(node: &Node, options: ReplicaOptions) -> Result<Self, ReplicaError> {
        let max_message_size = node.max_message_size();
        if options.max_sync_size > max_message_size {
            return Err(ReplicaError::LimitsDisagree {
                max_sync_size: options.max_sync_size,
                max_message_size,
            });
        }
        let replica = Self::start_local(options).await?;
        let actor = replica.actor_ref().clone();
        let handover = Arc::new(Handover::default());
        let watching = Arc::clone(&handover);
        let shared: Arc<Shared<C>> = Arc::clone(replica.shared());
        let on_event = Box::new(move |event: GroupEvent| {
            let msg = match event {
                GroupEvent::Message { from, bytes } => {
                    if watching.active.load(Ordering::Acquire)
                        && shared.lock().sync.shows_peer_has_all(&bytes)
                    {
                        watching.confirm(from.clone());
                    }
                    ReplicaMsg::Inbound { from, bytes }
                }
                GroupEvent::Members(members) => ReplicaMsg::Members(members),
            };
            // Fails only once the actor stopped; nothing is left to deliver to.
            let _ = actor.cast(msg);
        });
        match node.join_group(replica.name(), on_event).await {
            Ok(group) => {
                let probe = Arc::new(node.handover_probe());
                let g = group.clone();
                // Weak: the hook lives in the group, which the replica's state holds.
                let weak = Arc::downgrade(replica.shared());
                let hook: HandoverHook = Arc::new(move || {
                    let probe = HandoverProbe::clone(&probe);
                    let (g, handover, weak) = (g.clone(), Arc::clone(&handover), weak.clone());
                    Box::pin(async move {
                        if let Some(shared) = weak.upgrade() {
                            hand_over(probe, g, handover, shared).await;
                        }
                    })
                });
                group.set_handover(hook);
                replica.attach(Arc::new(group));
                Ok(replica)
            }
            Err(e) => {
                let _ = replica.stop().await;
                Err(e.into())
            }
        }
    }
}
