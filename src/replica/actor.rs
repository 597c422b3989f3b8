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

/// Sync intervals between two publications of the counters through the `metrics` facade.
const METRICS_EVERY_TICKS: u32 = 20;

/// What a replica's actor is told. Local only: the cluster layer turns network frames into
/// [`ReplicaMsg::Inbound`] after checking their envelope.
#[derive(ractor_cluster::RactorMessage)]
pub(crate) enum ReplicaMsg {
    /// A sync interval passed (or several, while nothing was due).
    Tick,
    /// A local write while the actor was sleeping: tick again within one sync interval.
    Wake,
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
            ReplicaMsg::Wake => "wake",
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

/// The actor's state: the shared replica, and its timer.
///
/// The actor ticks every sync interval while the protocol has something to do at ticks
/// (deltas in flight, a repair landing, digests each interval); when it has not, it sleeps
/// until the next thing due (up to the longest digest interval), counting the intervals that
/// passed. An idle replica then wakes a few times a second instead of twenty: two nodes with
/// a thousand idle replicas each spent most of a core on ticks. A message from a neighbour
/// is handled at once whatever the timer, and a local write wakes a sleeping actor.
pub(crate) struct ActorState<C: MapView> {
    shared: Arc<Shared<C>>,
    /// The sync interval.
    interval: Duration,
    /// The time of the last tick on the actor's grid (its start plus whole intervals): the
    /// sync layer's tick count stands for it, and ticks stay in phase whether the actor slept
    /// or not, so a write waits for the next grid point as it did with a fixed timer.
    grid: Instant,
    /// When the pending timer fires, and the timer itself (aborted when rescheduled).
    next_tick: Instant,
    timer: Option<tokio::task::JoinHandle<Result<(), ractor::MessagingErr<ReplicaMsg>>>>,
    /// When the counters were last published.
    published: Instant,
    /// What the last step said of the next tick: in this many ticks something is due.
    due: u64,
}

impl<C: MapView> ActorState<C> {
    /// The grid point `due` ticks after the last tick.
    fn grid_point(&self, due: u64) -> Instant {
        self.grid + self.interval * u32::try_from(due.max(1)).unwrap_or(u32::MAX)
    }

    /// Sets the timer to fire at `at` (at once if that passed), replacing the pending one.
    fn schedule(&mut self, myself: &ActorRef<ReplicaMsg>, at: Instant) {
        if let Some(old) = self.timer.take() {
            old.abort();
        }
        let now = Instant::now();
        self.next_tick = at;
        self.timer =
            Some(myself.send_after(at.saturating_duration_since(now), || ReplicaMsg::Tick));
        self.shared
            .sleeping
            .store(at > now + self.interval, Ordering::Release);
    }

    /// After a step that found something due `due` ticks after the last tick: fire no later.
    fn due_in(&mut self, myself: &ActorRef<ReplicaMsg>, due: u64) {
        let at = self.grid_point(due);
        if at < self.next_tick {
            self.schedule(myself, at);
        }
    }

    /// At a tick: moves the grid to the tick that came; returns how many intervals passed
    /// since the last one (one, unless the actor slept or was held up).
    fn advance_grid(&mut self, now: Instant) -> u64 {
        let passed = now.saturating_duration_since(self.grid).as_secs_f64()
            / self.interval.as_secs_f64().max(1e-9);
        // Rounded, so the grid stays within half an interval of the tick that came: a late
        // tick (a long step) shifts the phase rather than firing ticks back to back.
        let passed = (passed.round() as u64).max(1);
        self.grid = self.grid_point(passed);
        passed
    }
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
        let _ = shared.flusher.set(myself.clone());
        let now = Instant::now();
        let mut state = ActorState {
            shared,
            interval,
            grid: now,
            next_tick: now,
            timer: None,
            published: now,
            due: 1,
        };
        let first = state.grid_point(1);
        state.schedule(&myself, first);
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // However the actor stops (stop, the last handle dropped, its supervisor), the
        // replica stops with it: writes are refused, the committer finishes, the group is left.
        if let Some(timer) = state.timer.take() {
            timer.abort();
        }
        let shared = &state.shared;
        shared.stopping.store(true, Ordering::SeqCst);
        shared.wake_committer();
        shared.acks.notify_waiters();
        shared.close_outbox().await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let shared = state.shared.clone();
        let now = Instant::now();
        let ticks = match &message {
            ReplicaMsg::Wake => {
                // Tick within one interval, as if the actor had been awake.
                state.due_in(&myself, 1);
                return Ok(());
            }
            ReplicaMsg::Tick => state.advance_grid(now),
            _ => 0,
        };
        let span = match &message {
            ReplicaMsg::Tick | ReplicaMsg::Wake => {
                tracing::trace_span!("tick", replica = %shared.name)
            }
            ReplicaMsg::Inbound { from, bytes } => {
                tracing::debug_span!("inbound", replica = %shared.name, peer = %from, bytes = bytes.len())
            }
            ReplicaMsg::Members(_) => tracing::debug_span!("members", replica = %shared.name),
            ReplicaMsg::Flush => tracing::trace_span!("flush", replica = %shared.name),
        };
        if ticks > 0 && now.duration_since(state.published) >= state.interval * METRICS_EVERY_TICKS
        {
            state.published = now;
            shared.stats().publish_metrics();
        }
        let busy = state.due <= 1;
        let due = handle_message(&shared, message, ticks, busy)
            .instrument(span)
            .await;
        state.due = due;
        if ticks > 0 {
            let at = state.grid_point(due);
            state.schedule(&myself, at);
        } else {
            state.due_in(&myself, due);
        }
        Ok(())
    }
}

/// A sync step that holds the replica longer than this is logged: readers and writers wait
/// on that lock, and on a small machine so do the heartbeats that keep the node a member.
const SLOW_STEP: Duration = Duration::from_millis(100);

/// Messages from a neighbour at least this large are handled off the worker's other tasks.
const LONG_MESSAGE: usize = 64 << 10;

/// Whether this thread is a worker of a multi-threaded tokio runtime, where
/// [`tokio::task::block_in_place`] is allowed (it panics on a current-thread runtime).
fn may_block_in_place() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

/// Runs one sync step (`ticks` intervals passed, for a tick); returns in how many ticks
/// the protocol next has something due.
async fn handle_message<C: MapView>(
    shared: &Arc<Shared<C>>,
    message: ReplicaMsg,
    ticks: u64,
    busy: bool,
) -> u64 {
    let inbound = matches!(message, ReplicaMsg::Inbound { .. });
    // Steps that may take a while: a large message, a tick with deltas or a repair to send,
    // a change of neighbours. Small ones run inline: handing the worker over costs more than
    // they do, and two nodes with a thousand idle replicas each spent a core doing so.
    let may_be_long = match &message {
        ReplicaMsg::Inbound { bytes, .. } => bytes.len() >= LONG_MESSAGE,
        ReplicaMsg::Tick => busy,
        ReplicaMsg::Members(_) => true,
        ReplicaMsg::Wake | ReplicaMsg::Flush => false,
    };
    let (kind, len) = (message.kind(), message.inbound_len());
    let step = move || {
        let mut core = shared.lock();
        let started = Instant::now();
        match message {
            ReplicaMsg::Tick => core.sync.handle_ticks(ticks),
            ReplicaMsg::Wake => {}
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
        let drained = (
            shared.drain(&mut core),
            core.seq(),
            core.sync.ticks_until_due(),
        );
        let took = started.elapsed();
        if took > SLOW_STEP {
            tracing::warn!(replica = %shared.name, step = kind, bytes = len, took_ms = took.as_millis() as u64, "a sync step held the replica");
        }
        drained
    };
    let (transmits, seq, due) = if may_be_long && may_block_in_place() {
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
    due
}
