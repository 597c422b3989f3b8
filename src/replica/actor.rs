//! The ractor actor of a replica: it moves time (ticks) and neighbours' bytes into the
//! sync state and sends what the protocol wants sent.

use super::shared::Shared;
use super::view::MapView;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::collections::BTreeSet;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Ticks between two publications of the counters through the `metrics` facade.
const METRICS_EVERY_TICKS: u64 = 20;

/// What a replica's actor is told. Local only: the cluster layer turns network frames into
/// [`ReplicaMsg::Inbound`] after checking their envelope.
#[derive(ractor_cluster::RactorMessage)]
pub(crate) enum ReplicaMsg {
    /// A sync interval passed.
    Tick,
    /// Sync bytes from the replica of the same name on node `from`.
    Inbound { from: String, bytes: Vec<u8> },
    /// The nodes now hosting a replica of this name.
    Members(BTreeSet<String>),
    /// Messages wait to be sent now: greetings to new neighbours, or local writes for idle
    /// neighbours ([`ReplicaOptions::send_when_idle`](super::ReplicaOptions::send_when_idle)).
    Flush,
}

impl ReplicaMsg {
    /// What kind of step the message asks for, for logs.
    fn kind(&self) -> &'static str {
        match self {
            ReplicaMsg::Tick => "tick",
            ReplicaMsg::Inbound { .. } => "inbound",
            ReplicaMsg::Members(_) => "members",
            ReplicaMsg::Flush => "flush",
        }
    }

    /// The bytes it carries from a neighbour.
    fn inbound_len(&self) -> usize {
        match self {
            ReplicaMsg::Inbound { bytes, .. } => bytes.len(),
            _ => 0,
        }
    }
}

pub(crate) struct ReplicaActor<C>(PhantomData<fn() -> C>);

impl<C> ReplicaActor<C> {
    pub(crate) fn new() -> Self {
        ReplicaActor(PhantomData)
    }
}

/// The actor's state: the shared replica, and its tick count.
pub(crate) struct ActorState<C: MapView> {
    shared: Arc<Shared<C>>,
    ticks: u64,
}

impl<C: MapView> Actor for ReplicaActor<C> {
    type Msg = ReplicaMsg;
    type State = ActorState<C>;
    type Arguments = (Arc<Shared<C>>, Duration);

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        (shared, interval): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(interval, || ReplicaMsg::Tick);
        let _ = shared.flusher.set(myself);
        Ok(ActorState { shared, ticks: 0 })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // However the actor stops (stop, the last handle dropped, its supervisor), the
        // replica stops with it: writes are refused, the committer finishes, the group is left.
        let shared = &state.shared;
        shared.stopping.store(true, Ordering::SeqCst);
        shared.wake_committer();
        shared.acks.notify_waiters();
        shared.close_outbox().await;
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let shared = state.shared.clone();
        let span = match &message {
            ReplicaMsg::Tick => tracing::trace_span!("tick", replica = %shared.name),
            ReplicaMsg::Inbound { from, bytes } => {
                tracing::debug_span!("inbound", replica = %shared.name, peer = %from, bytes = bytes.len())
            }
            ReplicaMsg::Members(_) => tracing::debug_span!("members", replica = %shared.name),
            ReplicaMsg::Flush => tracing::trace_span!("flush", replica = %shared.name),
        };
        if matches!(message, ReplicaMsg::Tick) {
            state.ticks += 1;
            if state.ticks % METRICS_EVERY_TICKS == 0 {
                shared.stats().publish_metrics();
            }
        }
        handle_message(&shared, message).instrument(span).await;
        Ok(())
    }
}

/// A sync step that holds the replica longer than this is logged: readers and writers wait
/// on that lock, and on a small machine so do the heartbeats that keep the node a member.
const SLOW_STEP: Duration = Duration::from_millis(100);

/// Whether this thread is a worker of a multi-threaded tokio runtime, where
/// [`tokio::task::block_in_place`] is allowed (it panics on a current-thread runtime).
fn may_block_in_place() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

async fn handle_message<C: MapView>(shared: &Arc<Shared<C>>, message: ReplicaMsg) {
    let inbound = matches!(message, ReplicaMsg::Inbound { .. });
    let (kind, len) = (message.kind(), message.inbound_len());
    let step = move || {
        let mut core = shared.lock();
        let started = Instant::now();
        match message {
            ReplicaMsg::Tick => core.sync.handle_tick(),
            ReplicaMsg::Inbound { from, bytes } => {
                if let Err(error) = core.sync.handle_message(&from, &bytes) {
                    // Counted in the stats; the replica keeps serving.
                    tracing::warn!(replica = %shared.name, from = %from, %error, "refused a sync message");
                }
            }
            ReplicaMsg::Flush => {
                // Cleared first: a write after this point asks again and is not lost.
                shared.flush_pending.store(false, Ordering::Release);
                let _ = core.sync.flush();
            }
            ReplicaMsg::Members(members) => {
                if !core.manual_neighbours {
                    tracing::info!(replica = %shared.name, ?members, "neighbours follow membership");
                    shared.set_neighbours(&mut core, members);
                }
            }
        }
        while let Some(warning) = core.sync.poll_warning() {
            // Each is reported once per key and neighbour by the sync layer.
            tracing::warn!(replica = %shared.name, ?warning, "entry does not fit a neighbour's message limit");
        }
        let drained = (shared.drain(&mut core), core.seq());
        let took = started.elapsed();
        if took > SLOW_STEP {
            tracing::warn!(replica = %shared.name, step = kind, bytes = len, took_ms = took.as_millis() as u64, "a sync step held the replica");
        }
        drained
    };
    let (transmits, seq) = if may_block_in_place() {
        // A step can take a while (a 1 MiB repair joined, a burst packed): the worker it runs
        // on hands its other tasks (sessions, heartbeats) to another thread meanwhile, so a
        // busy replica does not make its node look dead to its peers.
        tokio::task::block_in_place(step)
    } else {
        step()
    };
    if inbound {
        // Acknowledgements arrive as messages: wake writes waiting for their write concern.
        shared.acks.notify_waiters();
    }
    shared.wake_committer();
    shared.send_when_durable(transmits, seq).await;
}
