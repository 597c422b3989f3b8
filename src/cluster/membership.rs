//! The node's membership, shared by its event loop, its heartbeat endpoint and its users:
//! the [`Detector`] behind a lock, the stream of [`MemberEvent`]s, and the session actors to
//! close when a peer is declared unresponsive.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use ractor::ActorRef;
use ractor_cluster::NodeSessionMessage;
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::detector::{Detector, DetectorConfig, MemberEvent, PeerStatus};
use super::lock;

/// The failure detector is told of other traffic from a peer at most this often.
const ACTIVITY_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// Events kept for a subscriber that is slow to read; beyond this it gets
/// [`broadcast::error::RecvError::Lagged`] and should resubscribe.
const EVENT_BUFFER: usize = 1024;

/// The current members together with the stream of later changes: nothing in between is
/// missed, nothing is counted twice.
#[derive(Debug)]
pub struct Subscription {
    /// The peers that were members when the subscription was taken, sorted. This node is
    /// not included.
    pub members: BTreeSet<String>,
    /// Every membership change after that snapshot, in order. A subscriber that falls more
    /// than 1024 events behind gets `RecvError::Lagged` and should subscribe again.
    pub events: broadcast::Receiver<MemberEvent>,
}

/// What a detector tick asks the heartbeat task to send.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    /// Peers to ask for heartbeats (start or renew a watch).
    pub(crate) watch: Vec<String>,
    /// Peers we declared unresponsive as their watcher: tell every other member.
    pub(crate) report: Vec<String>,
}

/// An open session: the peer's name once authenticated, and the session's actor.
type SessionActor = (Option<String>, ActorRef<NodeSessionMessage>);

struct Inner {
    detector: Detector,
    events: broadcast::Sender<MemberEvent>,
}

/// Membership of one node. See the module docs.
pub(crate) struct Membership {
    config: DetectorConfig,
    inner: Mutex<Inner>,
    /// Open sessions' actors by ractor `node_id`, to close a peer declared unresponsive.
    sessions: Mutex<HashMap<u64, SessionActor>>,
}

impl Membership {
    pub(crate) fn new(config: DetectorConfig, me: &str) -> Self {
        Membership {
            config,
            inner: Mutex::new(Inner {
                detector: Detector::new(config, me),
                events: broadcast::channel(EVENT_BUFFER).0,
            }),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// Runs `f` on the detector, then publishes its events and closes the sessions of peers
    /// it declared unresponsive. Events are sent under the lock, which is what makes
    /// [`subscribe`](Self::subscribe)'s snapshot exact.
    fn with<R>(&self, f: impl FnOnce(&mut Detector) -> R) -> R {
        let mut closing = Vec::new();
        let out = {
            let mut inner = lock(&self.inner);
            let out = f(&mut inner.detector);
            while let Some(event) = inner.detector.poll_event() {
                match &event {
                    MemberEvent::Up { node } => tracing::info!(peer = %node, "member up"),
                    MemberEvent::Down { node, reason } => {
                        tracing::info!(peer = %node, ?reason, "member down");
                    }
                }
                // No receiver is not an error: nobody subscribed.
                let _ = inner.events.send(event);
            }
            while let Some(name) = inner.detector.poll_disconnect() {
                closing.push(name);
            }
            out
        };
        for name in closing {
            self.close_sessions(&name);
        }
        out
    }

    /// Stops every session to `name`: ractor then closes the sockets, removes the peer's
    /// stand-ins from the pg groups (so replicas drop it as a neighbour), and reports the
    /// sessions disconnected, which starts a redial.
    fn close_sessions(&self, name: &str) {
        let actors: Vec<ActorRef<NodeSessionMessage>> = lock(&self.sessions)
            .values()
            .filter(|(n, _)| n.as_deref() == Some(name))
            .map(|(_, a)| a.clone())
            .collect();
        tracing::warn!(peer = %name, sessions = actors.len(), "peer unresponsive: closing its sessions");
        for a in actors {
            a.stop(Some("herd: peer unresponsive".into()));
        }
    }

    /// Stops session `node_id` (a refused duplicate).
    pub(crate) fn close_session(&self, node_id: u64) {
        let actor = lock(&self.sessions).get(&node_id).map(|(_, a)| a.clone());
        if let Some(a) = actor {
            a.stop(Some("herd: node name already taken".into()));
        }
    }

    /// Whether session `node_id` is open and running (not closing).
    pub(crate) fn session_alive(&self, node_id: u64) -> bool {
        lock(&self.sessions)
            .get(&node_id)
            .is_some_and(|(_, a)| a.get_status() == ractor::ActorStatus::Running)
    }

    pub(crate) fn session_opened(&self, node_id: u64, actor: ActorRef<NodeSessionMessage>) {
        lock(&self.sessions).insert(node_id, (None, actor));
    }

    /// Session `node_id` authenticated as `name` (a refused duplicate never is named here,
    /// so closing an unresponsive peer never closes the duplicate's session or vice versa).
    pub(crate) fn session_named(&self, node_id: u64, name: &str) {
        if let Some(s) = lock(&self.sessions).get_mut(&node_id) {
            s.0 = Some(name.to_string());
        }
    }

    pub(crate) fn session_closed(&self, node_id: u64) {
        lock(&self.sessions).remove(&node_id);
    }

    pub(crate) fn peer_live(&self, now: Instant, name: &str) {
        self.with(|d| d.handle_session_up(now, name));
    }

    pub(crate) fn peer_lost(&self, now: Instant, name: &str) {
        self.with(|d| d.handle_session_down(now, name));
    }

    pub(crate) fn heartbeat(&self, now: Instant, name: &str) {
        self.with(|d| d.handle_heartbeat(now, name));
    }

    /// A hook for the groups: a frame from `name` arrived. Throttled to one detector update
    /// per peer every [`ACTIVITY_EVERY`], so a busy group does not contend on the lock.
    pub(crate) fn activity_hook(self: &Arc<Self>) -> super::group::ActivityHook {
        let weak = Arc::downgrade(self);
        let last: Mutex<HashMap<String, Instant>> = Mutex::new(HashMap::new());
        Arc::new(move |name: &str| {
            let now = Instant::now();
            {
                let mut last = lock(&last);
                match last.get_mut(name) {
                    Some(t) if now.saturating_duration_since(*t) < ACTIVITY_EVERY => return,
                    Some(t) => *t = now,
                    None => {
                        last.insert(name.to_string(), now);
                    }
                }
            }
            if let Some(m) = weak.upgrade() {
                m.with(|d| d.handle_activity(now, name));
            }
        })
    }

    pub(crate) fn leave(&self, now: Instant, name: &str) {
        self.with(|d| d.handle_leave(now, name));
    }

    /// Checks the deadlines; returns the watch requests and reports to send.
    pub(crate) fn tick(&self, now: Instant) -> Outbox {
        self.with(|d| {
            d.handle_tick(now);
            Outbox {
                watch: std::iter::from_fn(|| d.poll_watch()).collect(),
                report: std::iter::from_fn(|| d.poll_report()).collect(),
            }
        })
    }

    /// `name` watches us; true when the watch is new rather than a renewal.
    pub(crate) fn watched_by(&self, now: Instant, name: &str) -> bool {
        self.with(|d| d.handle_watch(now, name))
    }

    /// `reporter` declared `name` unresponsive.
    pub(crate) fn report(&self, now: Instant, reporter: &str, name: &str) {
        self.with(|d| d.handle_report(now, reporter, name));
    }

    /// The peers to send a heartbeat to now.
    pub(crate) fn beat_targets(&self, now: Instant) -> Vec<String> {
        lock(&self.inner).detector.beat_targets(now)
    }

    /// The current members and the stream of later changes, atomically.
    pub(crate) fn subscribe(&self) -> Subscription {
        let inner = lock(&self.inner);
        Subscription {
            members: inner.detector.members(),
            events: inner.events.subscribe(),
        }
    }

    pub(crate) fn members(&self) -> BTreeSet<String> {
        lock(&self.inner).detector.members()
    }

    pub(crate) fn status(&self) -> Vec<PeerStatus> {
        lock(&self.inner).detector.status(Instant::now())
    }

    pub(crate) fn pauses(&self) -> u64 {
        lock(&self.inner).detector.pauses()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_subscription_sees_each_change_once_either_in_the_snapshot_or_the_stream() {
        let m = Membership::new(DetectorConfig::default(), "a");
        let t = Instant::now();
        m.tick(t);
        m.peer_live(t, "b");
        m.peer_live(t, "c");
        let mut early = m.subscribe();
        assert_eq!(early.members, BTreeSet::from(["b".into(), "c".into()]));
        m.leave(t, "c");
        let late = m.subscribe();
        assert_eq!(late.members, BTreeSet::from(["b".into()]));
        assert_eq!(
            early.events.try_recv().ok(),
            Some(MemberEvent::Down {
                node: "c".into(),
                reason: super::super::DownReason::Left
            })
        );
        assert!(early.events.try_recv().is_err(), "nothing twice");
        // A closed connection that comes back within the grace period: no event at all.
        m.peer_lost(t, "b");
        for ms in (50..=3000).step_by(50) {
            let now = t + Duration::from_millis(ms);
            if ms == 400 {
                m.peer_live(now, "b");
            }
            if ms % 200 == 0 {
                m.heartbeat(now, "b");
            }
            m.tick(now);
        }
        assert_eq!(m.pauses(), 0);
        let mut late = late;
        assert!(late.events.try_recv().is_err());
        assert_eq!(m.members(), BTreeSet::from(["b".into()]));
    }
}
