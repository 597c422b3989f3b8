//! herd's view of which nodes are members: sans-IO, driven by session events, heartbeats,
//! leave announcements and ticks, with `now` passed in.
//!
//! ractor_cluster's sessions are not membership: a duplicate-connection election closes one
//! of two sessions to a live peer, a reconnect closes one and opens another, and a hung peer
//! (SIGSTOP, a black-holed link) keeps its session forever because ractor has no pong
//! timeout. This module turns those raw facts into one event stream in which, per node name,
//! [`MemberEvent::Up`] and [`MemberEvent::Down`] alternate:
//!
//! * **Up** when a session to the node authenticates while it was not Up (or a heartbeat
//!   arrives from a node that was declared unresponsive but whose session survived).
//! * **Down, [`DownReason::Left`]** at once when the node announces that it is leaving.
//! * **Down, [`DownReason::ConnectionClosed`]** when its last session closed and none came
//!   back within [`DetectorConfig::reconnect_grace`]: a reconnect inside that window is
//!   invisible.
//! * **Down, [`DownReason::Unresponsive`]** when no heartbeat arrived for
//!   [`DetectorConfig::down_after`] although a session is open, from a node this one
//!   watches (see the `monitors` module: each node watches a few ring successors and
//!   reports its verdicts, [`Detector::poll_report`]), or when a node another one reported
//!   did not answer our own probe within `down_after`. The caller then closes the
//!   node's sessions ([`Detector::poll_disconnect`]) so that its group members leave and its
//!   replicas stop being neighbours; when it answers again, a new session brings it back Up.
//!
//! # Why a fixed timeout, not phi-accrual
//! Phi-accrual (Hayashibara et al., used by Akka and Cassandra) adapts the threshold to the
//! observed distribution of heartbeat gaps. It earns its keep over WANs whose latency drifts;
//! on a LAN the gap distribution is a spike at the heartbeat interval, and what causes long
//! gaps is not the network but a starved process (CPU contention, a GC-like pause, swap).
//! phi then needs a large `acceptable_heartbeat_pause` anyway (Akka's default is 3 s) to
//! survive those, and its detection time becomes hard to state. A fixed timeout with a
//! stated margin (`down_after` = 7.5 heartbeat intervals at the defaults) gives a detection
//! time one can read off the configuration, and the pause that matters most — *our own*
//! process not running — is handled separately: a tick that comes late by more than half of
//! `down_after` means this node was not running, so the silence it observed is its own fault
//! and every deadline restarts (otherwise a node resumed after SIGSTOP would declare
//! everyone else dead). The detector keeps each peer's mean and largest heartbeat gap so the
//! margin can be checked on a real deployment (`herd node`'s `members` answer shows them).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::monitors::{self, Watchers};

/// Why a node is reported down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DownReason {
    /// Its last session closed (process exited or crashed, connection reset) and no new one
    /// opened within [`DetectorConfig::reconnect_grace`].
    ConnectionClosed,
    /// The failure detector: no heartbeat for [`DetectorConfig::down_after`] while its session
    /// stayed open (a hung process, a black-holed network). Its sessions are closed.
    Unresponsive,
    /// It announced that it is leaving ([`Node::shutdown`](super::Node::shutdown)).
    Left,
}

/// A change of membership, as seen by this node. For each node name, `Up` and `Down`
/// alternate, starting with `Up`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum MemberEvent {
    /// `node` became a member.
    Up {
        /// The node's name.
        node: String,
    },
    /// `node` stopped being a member.
    Down {
        /// The node's name.
        node: String,
        /// Why.
        reason: DownReason,
    },
}

/// The state of one peer, as [`Node::peers`](super::Node::peers) reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerState {
    /// A member, heard from recently.
    Up,
    /// Still a member, but silent for longer than [`DetectorConfig::suspect_after`] or
    /// without a session: it will be Down unless it answers soon.
    Suspected,
    /// Not a member.
    Down,
}

/// One peer's state and the detector's figures for it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct PeerStatus {
    /// The node's name.
    pub node: String,
    /// Up, suspected or down.
    pub state: PeerState,
    /// Why it is down, when it is.
    pub down_reason: Option<DownReason>,
    /// Milliseconds since its last heartbeat (`None` before the first).
    pub last_heard_ms: Option<u64>,
    /// Mean gap between its heartbeats, in milliseconds (moving average).
    pub mean_gap_ms: Option<f64>,
    /// Largest gap between two of its heartbeats while it was up, in milliseconds.
    pub max_gap_ms: Option<u64>,
    /// Heartbeats received from it.
    pub heartbeats: u64,
}

/// Settings of the failure detector. Every node of a cluster should use the same values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DetectorConfig {
    /// How often a node sends a heartbeat to each peer. Default 200 ms (a few dozen bytes
    /// per peer per beat).
    pub heartbeat_interval: Duration,
    /// Silence after which a peer shows as suspected (informational). Default 600 ms.
    pub suspect_after: Duration,
    /// Silence after which a peer with an open session is declared Down
    /// ([`DownReason::Unresponsive`]). Default 1.5 s: 7.5 heartbeat intervals, so a peer is
    /// declared dead after missing seven beats in a row, and a hung peer is reported within
    /// about 1.55 s (the goal is 2 s; measured 1,528 ms).
    pub down_after: Duration,
    /// How long a peer whose last session closed may take to reconnect before it is declared
    /// Down ([`DownReason::ConnectionClosed`]). Default 1 s: the dialer's first retries come
    /// after 50, 100 and 200 ms (250 ms for learned peers).
    pub reconnect_grace: Duration,
    /// How long a peer whose session just authenticated may stay silent before its first
    /// heartbeat without being declared unresponsive. Default 5 s. A new session starts with
    /// both sides sending every published actor (one ractor pg message per published name,
    /// tens of thousands for a large Registry), during which neither side's session reads
    /// anything else, and the first heartbeats queue behind them. Without this grace a busy
    /// peer was declared Down, its session closed, the next session began with the same
    /// flood, and the cluster never settled. Once a heartbeat has arrived, `down_after`
    /// applies as usual; a peer that hangs before its first heartbeat is reported after this
    /// window; a closed connection is reported as before.
    pub session_grace: Duration,
    /// How many peers watch each node (ask it for heartbeats and apply `down_after` to it).
    /// Default 3. A node sends and receives about this many heartbeats per interval whatever
    /// the cluster's size; in a cluster of at most `monitors` + 1 nodes everyone watches
    /// everyone. A watcher that declares a peer unresponsive tells the others, which probe it
    /// themselves (`down_after`) before declaring it down. See the cluster module docs.
    pub monitors: usize,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            heartbeat_interval: Duration::from_millis(200),
            suspect_after: Duration::from_millis(600),
            down_after: Duration::from_millis(1500),
            reconnect_grace: Duration::from_secs(1),
            session_grace: Duration::from_secs(5),
            monitors: 3,
        }
    }
}

impl DetectorConfig {
    /// How often the detector checks its deadlines: half the heartbeat interval, at most
    /// 100 ms, so a deadline is noticed at most that late. (A quarter before: twice the
    /// wake-ups of an idle node for 50 ms less detection time.)
    pub(crate) fn tick_interval(&self) -> Duration {
        (self.heartbeat_interval / 2).clamp(Duration::from_millis(1), Duration::from_millis(100))
    }

    /// How long a watch lasts unless renewed: twice `down_after`, so a renewal lost with a
    /// closing session is noticed (as silence) before the watched side stops beating.
    pub(crate) fn watch_lease(&self) -> Duration {
        self.down_after * 2
    }

    /// How often a watcher renews its watch.
    fn watch_renewal(&self) -> Duration {
        self.watch_lease() / 2
    }

    /// How long a peer that answered a probe stays watched: through the reporter's own
    /// recovery of it, so a second report does not start a second probe at once.
    fn probe_keep(&self) -> Duration {
        self.down_after * 2
    }

    /// Checks the settings make sense together.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.heartbeat_interval.is_zero() {
            return Err("heartbeat_interval is 0".into());
        }
        if self.monitors == 0 {
            return Err("monitors is 0: no node would be watched".into());
        }
        if self.down_after < self.heartbeat_interval * 2 {
            return Err(format!(
                "down_after ({:?}) must be at least twice heartbeat_interval ({:?})",
                self.down_after, self.heartbeat_interval
            ));
        }
        Ok(())
    }
}

/// What the detector knows about one peer.
#[derive(Debug, Clone)]
struct Peer {
    /// Reported as a member (the last event for it was Up).
    up: bool,
    /// Why it went down, when it is down.
    down_reason: Option<DownReason>,
    /// At least one authenticated session is open.
    live: bool,
    /// It announced its leave; no heartbeat brings it back until a new session opens.
    left: bool,
    /// Deadline base: the last heartbeat, or when it came up.
    last_heard: Instant,
    /// When it last came up: no Unresponsive before [`DetectorConfig::session_grace`] after.
    up_since: Instant,
    /// When its last session closed, while it is still up.
    closed_since: Option<Instant>,
    /// The last heartbeat's arrival, for the gap figures.
    last_beat: Option<Instant>,
    mean_gap: Option<f64>,
    max_gap: Option<Duration>,
    beats: u64,
    /// While we watch it (and its silence counts): when to renew the watch (send it a watch
    /// request).
    renew_at: Option<Instant>,
    /// Another node reported it unresponsive and we probe it ourselves.
    probe: Option<Probe>,
}

/// Our own check of a peer another node reported unresponsive.
#[derive(Debug, Clone, Copy)]
struct Probe {
    since: Instant,
    answered: bool,
}

impl Peer {
    fn new(now: Instant) -> Self {
        Peer {
            up: false,
            down_reason: None,
            live: false,
            left: false,
            last_heard: now,
            up_since: now,
            closed_since: None,
            last_beat: None,
            mean_gap: None,
            max_gap: None,
            beats: 0,
            renew_at: None,
            probe: None,
        }
    }

    /// We watch it: its silence counts.
    fn watched(&self) -> bool {
        self.renew_at.is_some()
    }

    /// Heard from it: a heartbeat or other traffic.
    fn heard(&mut self, now: Instant) {
        self.last_heard = self.last_heard.max(now);
        if let Some(p) = &mut self.probe {
            p.answered = true;
        }
    }
}

/// Membership and failure detection for one node. See the [module docs](self).
///
/// Call order: feed `handle_*` as things happen (each takes `now`), call
/// [`handle_tick`](Self::handle_tick) regularly (every
/// [`DetectorConfig::tick_interval`]), and after each call drain
/// [`poll_event`](Self::poll_event) and [`poll_disconnect`](Self::poll_disconnect); after a
/// tick also [`poll_watch`](Self::poll_watch) and [`poll_report`](Self::poll_report). Send
/// heartbeats to [`beat_targets`](Self::beat_targets) every heartbeat interval.
#[derive(Debug)]
pub(crate) struct Detector {
    config: DetectorConfig,
    /// This node's name: its place on the watch ring.
    me: String,
    peers: BTreeMap<String, Peer>,
    /// The members we watch by the ring; `None` when membership changed since.
    ring: Option<BTreeSet<String>>,
    /// The peers watching us.
    watchers: Watchers,
    last_tick: Option<Instant>,
    events: VecDeque<MemberEvent>,
    disconnects: VecDeque<String>,
    /// Peers to send a watch request to.
    watch_requests: VecDeque<String>,
    /// Peers we declared unresponsive as their watcher, to tell the other members about.
    reports: VecDeque<String>,
    /// Ticks that came so late that this node must have been paused.
    pauses: u64,
}

impl Detector {
    pub(crate) fn new(config: DetectorConfig, me: &str) -> Self {
        Detector {
            config,
            me: me.to_string(),
            peers: BTreeMap::new(),
            ring: None,
            watchers: Watchers::default(),
            last_tick: None,
            events: VecDeque::new(),
            disconnects: VecDeque::new(),
            watch_requests: VecDeque::new(),
            reports: VecDeque::new(),
            pauses: 0,
        }
    }

    fn peer(&mut self, name: &str, now: Instant) -> &mut Peer {
        self.peers
            .entry(name.to_string())
            .or_insert_with(|| Peer::new(now))
    }

    fn go_up(&mut self, name: &str, now: Instant) {
        let p = self.peer(name, now);
        if p.up {
            return;
        }
        p.up = true;
        p.probe = None;
        p.down_reason = None;
        p.left = false;
        p.last_heard = now;
        p.up_since = now;
        p.closed_since = None;
        // Gaps across a down period say nothing about the detector's margin.
        p.last_beat = None;
        self.ring = None;
        self.events.push_back(MemberEvent::Up {
            node: name.to_string(),
        });
    }

    fn go_down(&mut self, name: &str, now: Instant, reason: DownReason) {
        let p = self.peer(name, now);
        if !p.up {
            return;
        }
        p.up = false;
        p.down_reason = Some(reason);
        p.closed_since = None;
        p.probe = None;
        self.ring = None;
        self.events.push_back(MemberEvent::Down {
            node: name.to_string(),
            reason,
        });
        if reason == DownReason::Unresponsive && self.peers.get(name).is_some_and(|p| p.live) {
            self.disconnects.push_back(name.to_string());
        }
    }

    /// A session to `name` authenticated and it had none: it is live.
    pub(crate) fn handle_session_up(&mut self, now: Instant, name: &str) {
        let p = self.peer(name, now);
        p.live = true;
        p.closed_since = None;
        p.left = false;
        self.go_up(name, now);
    }

    /// The last session to `name` closed.
    pub(crate) fn handle_session_down(&mut self, now: Instant, name: &str) {
        let p = self.peer(name, now);
        p.live = false;
        if p.up {
            p.closed_since = Some(now);
        }
    }

    /// A heartbeat from `name` arrived.
    pub(crate) fn handle_heartbeat(&mut self, now: Instant, name: &str) {
        let p = self.peer(name, now);
        if let Some(prev) = p.last_beat {
            let gap = now.saturating_duration_since(prev);
            p.max_gap = Some(p.max_gap.map_or(gap, |m| m.max(gap)));
            let g = gap.as_secs_f64() * 1e3;
            p.mean_gap = Some(p.mean_gap.map_or(g, |m| 0.9 * m + 0.1 * g));
        }
        p.last_beat = Some(now);
        p.heard(now);
        p.beats += 1;
        // Declared unresponsive, but its session survived (closing it failed or raced):
        // it answers again, so it is a member again.
        let back = !p.up && p.live && !p.left;
        if back {
            self.go_up(name, now);
        }
    }

    /// Some other message from `name` arrived (a sync message): it is alive, even if its
    /// heartbeats are queued behind large messages on the same session. Counts for the
    /// deadline only, not for the heartbeat gap figures, and never brings a peer back Up.
    pub(crate) fn handle_activity(&mut self, now: Instant, name: &str) {
        if let Some(p) = self.peers.get_mut(name)
            && p.up
        {
            p.heard(now);
        }
    }

    /// `name` asked us for heartbeats (it watches us).
    /// Returns whether the watch is new (answer it at once) rather than a renewal.
    pub(crate) fn handle_watch(&mut self, now: Instant, name: &str) -> bool {
        self.watchers
            .grant(name, now, now + self.config.watch_lease())
    }

    /// `reporter` declared `name` unresponsive. Unless we watch it already, we probe it
    /// ourselves: it is down for us too if it does not answer within the probe timeout.
    pub(crate) fn handle_report(&mut self, now: Instant, reporter: &str, name: &str) {
        if name == self.me {
            tracing::info!(by = %reporter, "a peer reported this node unresponsive");
            return;
        }
        if let Some(p) = self.peers.get_mut(name)
            && p.up
            && !p.watched()
            && p.probe.is_none()
        {
            p.probe = Some(Probe {
                since: now,
                answered: false,
            });
        }
    }

    /// The peers to send a heartbeat to now: the ones watching us.
    pub(crate) fn beat_targets(&mut self, now: Instant) -> Vec<String> {
        self.watchers.targets(now)
    }

    /// `name` announced that it is leaving.
    pub(crate) fn handle_leave(&mut self, now: Instant, name: &str) {
        self.peer(name, now).left = true;
        self.go_down(name, now, DownReason::Left);
    }

    /// Checks the deadlines and who to watch.
    pub(crate) fn handle_tick(&mut self, now: Instant) {
        let late = self
            .last_tick
            .map(|t| now.saturating_duration_since(t))
            .is_some_and(|d| d > self.config.down_after / 2);
        self.last_tick = Some(now);
        if late {
            // This node did not run for a while (stopped, starved): the silence was ours.
            // Restart every deadline instead of blaming the peers.
            self.pauses += 1;
            for p in self.peers.values_mut() {
                p.last_heard = now;
                p.last_beat = None;
                if p.closed_since.is_some() {
                    p.closed_since = Some(now);
                }
                if let Some(probe) = &mut p.probe {
                    probe.since = now;
                }
            }
            return;
        }
        self.update_watches(now);
        let c = self.config;
        let mut down = Vec::new();
        for (name, p) in &self.peers {
            if !p.up {
                continue;
            }
            if let Some(since) = p.closed_since {
                if now.saturating_duration_since(since) >= c.reconnect_grace {
                    down.push((name.clone(), DownReason::ConnectionClosed, false));
                }
            } else if p.watched()
                && now.saturating_duration_since(p.last_heard) >= c.down_after
                && (p.last_beat.is_some()
                    || now.saturating_duration_since(p.up_since) >= c.session_grace)
            {
                // A probe (a watch started on another node's report) holds the peer to the
                // watchers' own bar, `down_after` from the watch: on an overloaded machine,
                // where a verdict is more likely false, the others are no quicker to agree
                // with it (a verdict closes sessions, whose reopening adds load). Its verdict
                // is not reported again: the watcher did.
                down.push((name.clone(), DownReason::Unresponsive, p.probe.is_none()));
            }
        }
        for (name, reason, report) in down {
            self.go_down(&name, now, reason);
            if report {
                self.reports.push_back(name);
            }
        }
    }

    /// Starts, renews and ends watches: the ring's successors, peers being probed, and peers
    /// declared unresponsive whose session survived (their heartbeat brings them back).
    fn update_watches(&mut self, now: Instant) {
        let ring = self.ring.get_or_insert_with(|| {
            let members = self
                .peers
                .iter()
                .filter(|(_, p)| p.up)
                .map(|(n, _)| n.as_str());
            monitors::successors(&self.me, members, self.config.monitors)
        });
        for (name, p) in &mut self.peers {
            if let Some(probe) = p.probe
                && probe.answered
                && now.saturating_duration_since(probe.since) >= self.config.probe_keep()
            {
                p.probe = None;
            }
            let watch = if p.up {
                ring.contains(name) || p.probe.is_some()
            } else {
                p.live && !p.left && p.down_reason == Some(DownReason::Unresponsive)
            };
            if !watch {
                p.renew_at = None;
                continue;
            }
            if !p.watched() {
                // Silence before the watch did not count; it counts from now.
                p.last_heard = p.last_heard.max(now);
            }
            if p.renew_at.is_none_or(|at| at <= now) {
                p.renew_at = Some(now + self.config.watch_renewal());
                self.watch_requests.push_back(name.clone());
            }
        }
    }

    /// The next peer to send a watch request to, if any.
    #[must_use]
    pub(crate) fn poll_watch(&mut self) -> Option<String> {
        self.watch_requests.pop_front()
    }

    /// The next peer we declared unresponsive as its watcher, to report to the other members.
    #[must_use]
    pub(crate) fn poll_report(&mut self) -> Option<String> {
        self.reports.pop_front()
    }

    /// The next membership event, if any.
    #[must_use]
    pub(crate) fn poll_event(&mut self) -> Option<MemberEvent> {
        self.events.pop_front()
    }

    /// The next peer whose sessions must be closed (declared unresponsive), if any.
    #[must_use]
    pub(crate) fn poll_disconnect(&mut self) -> Option<String> {
        self.disconnects.pop_front()
    }

    /// The peers that are members (Up or Suspected), sorted.
    pub(crate) fn members(&self) -> BTreeSet<String> {
        self.peers
            .iter()
            .filter(|(_, p)| p.up)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// How many times this node found itself paused.
    pub(crate) fn pauses(&self) -> u64 {
        self.pauses
    }

    /// Every peer ever seen, with its state and figures.
    pub(crate) fn status(&self, now: Instant) -> Vec<PeerStatus> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.peers
            .iter()
            .map(|(name, p)| {
                let silent = now.saturating_duration_since(p.last_heard);
                let state = if !p.up {
                    PeerState::Down
                } else if p.closed_since.is_some() || silent >= self.config.suspect_after {
                    PeerState::Suspected
                } else {
                    PeerState::Up
                };
                PeerStatus {
                    node: name.clone(),
                    state,
                    down_reason: p.down_reason,
                    last_heard_ms: p
                        .last_beat
                        .map(|b| ms(now.saturating_duration_since(b)))
                        .or_else(|| (p.beats > 0).then(|| ms(silent))),
                    mean_gap_ms: p.mean_gap.map(|g| (g * 10.0).round() / 10.0),
                    max_gap_ms: p.max_gap.map(ms),
                    heartbeats: p.beats,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn drain(d: &mut Detector) -> Vec<MemberEvent> {
        std::iter::from_fn(|| d.poll_event()).collect()
    }

    fn up(n: &str) -> MemberEvent {
        MemberEvent::Up { node: n.into() }
    }

    fn down(n: &str, reason: DownReason) -> MemberEvent {
        MemberEvent::Down {
            node: n.into(),
            reason,
        }
    }

    /// Ticks every 50 ms from `*t` for `d`, beating from `beating` every 200 ms.
    fn run(det: &mut Detector, t: &mut Instant, d: Duration, beating: &[&str]) {
        let end = *t + d;
        let mut k = 0u64;
        while *t < end {
            *t += 50 * MS;
            k += 1;
            if k.is_multiple_of(4) {
                for n in beating {
                    det.handle_heartbeat(*t, n);
                }
            }
            det.handle_tick(*t);
        }
    }

    #[test]
    fn a_silent_peer_goes_down_and_its_sessions_are_closed() {
        let mut t = Instant::now();
        let mut d = Detector::new(DetectorConfig::default(), "a");
        d.handle_tick(t);
        d.handle_session_up(t, "b");
        run(&mut d, &mut t, 5000 * MS, &["b"]);
        assert_eq!(drain(&mut d), [up("b")]);
        assert_eq!(d.poll_disconnect(), None);
        let silent_from = t;
        run(&mut d, &mut t, 3000 * MS, &[]);
        assert_eq!(drain(&mut d), [down("b", DownReason::Unresponsive)]);
        assert_eq!(d.poll_disconnect().as_deref(), Some("b"));
        assert!(d.members().is_empty());
        let st = &d.status(t)[0];
        assert_eq!(st.state, PeerState::Down);
        assert!(st.max_gap_ms.is_some_and(|g| g >= 200));
        let _ = silent_from;
        // Its session closes (we closed it), then a new one authenticates: Up again.
        d.handle_session_down(t, "b");
        d.handle_session_up(t, "b");
        assert_eq!(drain(&mut d), [up("b")]);
    }

    #[test]
    fn detection_time_is_down_after_plus_at_most_a_tick() {
        let mut t = Instant::now();
        let c = DetectorConfig::default();
        let mut d = Detector::new(c, "a");
        d.handle_tick(t);
        d.handle_session_up(t, "b");
        run(&mut d, &mut t, c.session_grace + 1000 * MS, &["b"]);
        let last = t;
        while d.members().contains("b") {
            t += c.tick_interval();
            d.handle_tick(t);
        }
        let took = t - last;
        assert!(took >= c.down_after && took <= c.down_after + c.tick_interval() + 200 * MS);
    }

    #[test]
    fn a_reconnect_within_the_grace_period_is_invisible() {
        let mut t = Instant::now();
        let mut d = Detector::new(DetectorConfig::default(), "a");
        d.handle_tick(t);
        d.handle_session_up(t, "b");
        drain(&mut d);
        d.handle_session_down(t, "b");
        run(&mut d, &mut t, 400 * MS, &[]);
        assert_eq!(d.status(t)[0].state, PeerState::Suspected);
        d.handle_session_up(t, "b");
        run(&mut d, &mut t, 3000 * MS, &["b"]);
        assert_eq!(drain(&mut d), []);
        // A close with no reconnect: down after the grace period, not before.
        d.handle_session_down(t, "b");
        run(&mut d, &mut t, 900 * MS, &[]);
        assert_eq!(drain(&mut d), []);
        run(&mut d, &mut t, 200 * MS, &[]);
        assert_eq!(drain(&mut d), [down("b", DownReason::ConnectionClosed)]);
        assert_eq!(d.poll_disconnect(), None, "nothing left to close");
    }

    #[test]
    fn a_leave_is_down_at_once_and_only_once() {
        let mut t = Instant::now();
        let mut d = Detector::new(DetectorConfig::default(), "a");
        d.handle_tick(t);
        d.handle_session_up(t, "b");
        d.handle_leave(t, "b");
        // A heartbeat still in flight, then the session closing: no more events.
        d.handle_heartbeat(t, "b");
        d.handle_session_down(t, "b");
        run(&mut d, &mut t, 3000 * MS, &[]);
        assert_eq!(drain(&mut d), [up("b"), down("b", DownReason::Left)]);
        // It comes back (restarted): Up.
        d.handle_session_up(t, "b");
        assert_eq!(drain(&mut d), [up("b")]);
    }

    #[test]
    fn a_paused_detector_blames_itself_not_the_peers() {
        let mut t = Instant::now();
        let mut d = Detector::new(DetectorConfig::default(), "a");
        d.handle_tick(t);
        d.handle_session_up(t, "b");
        drain(&mut d);
        // This process is stopped for 5 s: no ticks, no heartbeats handled.
        t += 5000 * MS;
        d.handle_tick(t);
        run(&mut d, &mut t, 2000 * MS, &["b"]);
        assert_eq!(drain(&mut d), []);
        assert_eq!(d.pauses(), 1);
    }

    #[test]
    fn a_surviving_session_answering_again_brings_the_peer_back() {
        let mut t = Instant::now();
        let mut d = Detector::new(DetectorConfig::default(), "a");
        d.handle_tick(t);
        d.handle_session_up(t, "b");
        run(&mut d, &mut t, 6000 * MS, &[]);
        assert_eq!(d.poll_disconnect().as_deref(), Some("b"));
        d.handle_heartbeat(t, "b");
        assert_eq!(
            drain(&mut d),
            [up("b"), down("b", DownReason::Unresponsive), up("b")]
        );
    }

    #[test]
    fn other_traffic_keeps_a_peer_up_but_does_not_bring_it_back() {
        let mut t = Instant::now();
        let mut d = Detector::new(DetectorConfig::default(), "a");
        d.handle_tick(t);
        d.handle_session_up(t, "b");
        // No heartbeats for 6 s, but sync messages every 300 ms: still up.
        for _ in 0..20 {
            run(&mut d, &mut t, 300 * MS, &[]);
            d.handle_activity(t, "b");
        }
        assert_eq!(drain(&mut d), [up("b")]);
        run(&mut d, &mut t, 2000 * MS, &[]);
        assert_eq!(drain(&mut d), [down("b", DownReason::Unresponsive)]);
        d.handle_activity(t, "b");
        assert_eq!(drain(&mut d), []);
    }

    #[test]
    fn a_restart_on_the_same_address_after_a_leave_comes_back_up() {
        // The new process's session authenticates before the old one's close is seen (the
        // event loop then reports a second live session; the old one's close later leaves
        // one live, which is not a loss).
        let t = Instant::now();
        let mut d = Detector::new(DetectorConfig::default(), "a");
        d.handle_tick(t);
        d.handle_session_up(t, "b");
        d.handle_leave(t, "b");
        d.handle_session_up(t, "b");
        assert_eq!(
            drain(&mut d),
            [up("b"), down("b", DownReason::Left), up("b")]
        );
    }

    #[test]
    fn a_new_session_has_its_grace_before_silence_counts() {
        let mut t = Instant::now();
        let c = DetectorConfig::default();
        let mut d = Detector::new(c, "a");
        d.handle_tick(t);
        d.handle_session_up(t, "b");
        let up_at = t;
        // Its first heartbeats are stuck behind the initial exchange: no Down in the grace.
        run(&mut d, &mut t, c.session_grace - 100 * MS, &[]);
        assert_eq!(drain(&mut d), [up("b")]);
        while d.members().contains("b") {
            t += c.tick_interval();
            d.handle_tick(t);
        }
        let took = t - up_at;
        assert!(took >= c.session_grace && took <= c.session_grace + c.tick_interval());
        assert_eq!(drain(&mut d), [down("b", DownReason::Unresponsive)]);
        // After the grace, silence counts from the last heartbeat as before.
        d.handle_session_down(t, "b");
        d.handle_session_up(t, "b");
        run(&mut d, &mut t, c.session_grace, &["b"]);
        let last = t;
        while d.members().contains("b") {
            t += c.tick_interval();
            d.handle_tick(t);
        }
        assert!(t - last <= c.down_after + c.tick_interval() + 200 * MS);
    }

    /// A detector "a" with peers `p0..p{n}` up, past their session grace, and the peers it
    /// watches (drained from its first watch requests).
    fn cluster(n: usize, t: &mut Instant) -> (Detector, Vec<String>, BTreeSet<String>) {
        let mut d = Detector::new(DetectorConfig::default(), "a");
        d.handle_tick(*t);
        let peers: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
        for p in &peers {
            d.handle_session_up(*t, p);
        }
        let all: Vec<&str> = peers.iter().map(String::as_str).collect();
        run(&mut d, t, 6000 * MS, &all);
        drain(&mut d);
        let watched: BTreeSet<String> = std::iter::from_fn(|| d.poll_watch()).collect();
        (d, peers, watched)
    }

    #[test]
    fn only_the_ring_successors_are_watched_and_only_their_silence_counts() {
        let mut t = Instant::now();
        let (mut d, peers, watched) = cluster(10, &mut t);
        let all = peers.iter().map(String::as_str).chain(["a"]);
        assert_eq!(watched, monitors::successors("a", all, 3));
        // The unwatched say nothing for a long time: still members.
        let beating: Vec<&str> = watched.iter().map(String::as_str).collect();
        run(&mut d, &mut t, 10_000 * MS, &beating);
        assert_eq!(drain(&mut d), []);
        assert_eq!(d.members().len(), 10);
        // One watched peer falls silent: Down, its sessions closed, and reported.
        let silent = beating[0];
        run(&mut d, &mut t, 2000 * MS, &beating[1..]);
        assert_eq!(drain(&mut d), [down(silent, DownReason::Unresponsive)]);
        assert_eq!(d.poll_disconnect().as_deref(), Some(silent));
        assert_eq!(d.poll_report().as_deref(), Some(silent));
        assert_eq!(d.poll_report(), None);
    }

    #[test]
    fn watches_are_requested_again_before_their_lease_ends() {
        let mut t = Instant::now();
        let (mut d, _, watched) = cluster(10, &mut t);
        let c = DetectorConfig::default();
        let mut requests = 0;
        let start = t;
        while t < start + c.watch_lease() * 3 {
            t += c.tick_interval();
            d.handle_tick(t);
            for n in &watched {
                d.handle_heartbeat(t, n);
            }
            while let Some(n) = d.poll_watch() {
                assert!(watched.contains(&n));
                requests += 1;
            }
        }
        // Renewed every half lease: about 6 times each in three leases.
        assert!((15..=21).contains(&requests), "{requests}");
    }

    #[test]
    fn a_reported_peer_is_probed_and_down_only_if_it_does_not_answer() {
        let mut t = Instant::now();
        let (mut d, peers, watched) = cluster(10, &mut t);
        let c = DetectorConfig::default();
        let mut unwatched = peers.iter().filter(|p| !watched.contains(*p));
        let (hung, fine) = (unwatched.next().unwrap(), unwatched.next().unwrap());
        let reported = t;
        d.handle_report(t, "p9", hung);
        d.handle_report(t, "p9", fine);
        t += c.tick_interval();
        d.handle_tick(t);
        // (Renewals of the ring's watches may fall on this tick too.)
        let asked: BTreeSet<String> = std::iter::from_fn(|| d.poll_watch())
            .filter(|p| !watched.contains(p))
            .collect();
        assert_eq!(asked, BTreeSet::from([hung.clone(), fine.clone()]));
        d.handle_heartbeat(t, fine);
        let beating: Vec<&str> = watched
            .iter()
            .map(String::as_str)
            .chain([fine.as_str()])
            .collect();
        while d.members().contains(hung) {
            t += 50 * MS;
            for n in &beating {
                d.handle_heartbeat(t, n);
            }
            d.handle_tick(t);
        }
        let took = t - reported;
        assert!(
            took >= c.down_after && took <= c.down_after + c.tick_interval() + 100 * MS,
            "{took:?}"
        );
        assert_eq!(drain(&mut d), [down(hung, DownReason::Unresponsive)]);
        // A probe's verdict is not reported again: its watchers did.
        assert_eq!(d.poll_report(), None);
        // The peer that answered stays, and is no longer watched once the probe is over.
        run(&mut d, &mut t, c.probe_keep() + 500 * MS, &beating);
        let _ = std::iter::from_fn(|| d.poll_watch()).count();
        run(&mut d, &mut t, 10_000 * MS, &beating[..beating.len() - 1]);
        assert!(d.members().contains(fine));
        assert_eq!(drain(&mut d), []);
    }

    #[test]
    fn a_watched_peer_going_down_moves_the_watch_on_along_the_ring() {
        let mut t = Instant::now();
        let (mut d, peers, watched) = cluster(10, &mut t);
        let gone = watched.iter().next().unwrap().clone();
        d.handle_leave(t, &gone);
        t += 50 * MS;
        d.handle_tick(t);
        let asked: BTreeSet<String> = std::iter::from_fn(|| d.poll_watch())
            .filter(|p| !watched.contains(p))
            .collect();
        let members = peers
            .iter()
            .map(String::as_str)
            .filter(|p| *p != gone)
            .chain(["a"]);
        let now_watched = monitors::successors("a", members, 3);
        assert_eq!(now_watched.len(), 3);
        assert!(!now_watched.contains(&gone));
        // The newcomer is asked now; the other two are renewed on their schedule.
        assert_eq!(
            asked,
            now_watched
                .difference(&watched)
                .cloned()
                .collect::<BTreeSet<_>>()
        );
        assert_eq!(asked.len(), 1);
    }

    #[test]
    fn heartbeats_go_to_the_watchers_until_their_leases_end() {
        let t = Instant::now();
        let c = DetectorConfig::default();
        let mut d = Detector::new(c, "a");
        d.handle_watch(t, "b");
        d.handle_watch(t + c.watch_lease() / 2, "c");
        assert_eq!(d.beat_targets(t), ["b", "c"]);
        assert_eq!(d.beat_targets(t + c.watch_lease() + MS), ["c"]);
        assert!(d.beat_targets(t + c.watch_lease() * 2).is_empty());
    }

    #[test]
    fn config_checks() {
        assert!(DetectorConfig::default().validate().is_ok());
        let none = DetectorConfig {
            monitors: 0,
            ..DetectorConfig::default()
        };
        assert!(none.validate().is_err());
        let bad = DetectorConfig {
            down_after: Duration::from_millis(300),
            ..DetectorConfig::default()
        };
        assert!(bad.validate().is_err());
        assert_eq!(
            DetectorConfig::default().tick_interval(),
            Duration::from_millis(100)
        );
    }
}
