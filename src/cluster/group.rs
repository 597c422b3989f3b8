//! Groups: one wire-facing endpoint actor per (node, group), found by the others through a pg
//! group.

use std::collections::{BTreeSet, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use ractor::pg::{self, GroupChangeMessage};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};

use super::ClusterError;
use super::envelope;
use super::members::{MemberTable, endpoint_name, node_of_endpoint, pg_group};
use super::ratelimit::RateLimited;

/// How long [`Group::leave`] waits for the endpoint to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// Told the sender of every accepted frame (the failure detector's proof of life).
pub(crate) type ActivityHook = Arc<dyn Fn(&str) + Send + Sync>;

/// What a graceful leave runs before the endpoint stops (a replica hands its data over).
pub(crate) type HandoverHook =
    Arc<dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync>;

/// What a group's `on_event` callback receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupEvent {
    /// A message from another member.
    Message {
        /// The sender's node name.
        from: String,
        /// The payload, as the sender passed it to [`Group::send`].
        bytes: Vec<u8>,
    },
    /// The node names of the **remote** live members of this group (this node excluded).
    /// Sent once right after joining and then on every change.
    Members(BTreeSet<String>),
}

/// Message counters of one group on this node, since it joined.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[non_exhaustive]
pub struct GroupStats {
    /// Messages handed to ractor for sending.
    pub frames_sent: u64,
    /// Bytes of those messages, envelope included.
    pub bytes_sent: u64,
    /// Messages received, accepted and delivered to `on_event`.
    pub frames_received: u64,
    /// Bytes of those messages, envelope included.
    pub bytes_received: u64,
    /// Received messages refused: bad or oversized envelope, future version, or a sender
    /// that is not a member.
    pub frames_rejected: u64,
    /// Sends that failed (not a member, too large, ractor refused).
    pub send_errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    frames_sent: AtomicU64,
    bytes_sent: AtomicU64,
    frames_received: AtomicU64,
    bytes_received: AtomicU64,
    frames_rejected: AtomicU64,
    send_errors: AtomicU64,
}

fn add(a: &AtomicU64, n: usize) {
    a.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
}

/// What the [`Group`] handles and the endpoint actor share.
struct Shared {
    group: String,
    pg_group: String,
    node: String,
    max_message_size: usize,
    members: RwLock<MemberTable<ActorCell>>,
    counters: Counters,
    left: AtomicBool,
    handover: Mutex<Option<HandoverHook>>,
    handed_over: AtomicBool,
    /// Told of every accepted frame's sender: traffic is proof of life for the failure
    /// detector (heartbeats queue behind large sync messages on the same session).
    activity: Option<ActivityHook>,
    /// One warning a second about refused frames at most: a peer sending garbage must not
    /// fill the disk with log lines. All are counted in the stats.
    reject_log: RateLimited,
}

impl Shared {
    fn members(&self) -> std::sync::RwLockReadGuard<'_, MemberTable<ActorCell>> {
        self.members.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn members_mut(&self) -> std::sync::RwLockWriteGuard<'_, MemberTable<ActorCell>> {
        self.members.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Decodes a received frame; counts and logs it either way.
    fn receive(&self, frame: &[u8]) -> Option<(String, Vec<u8>)> {
        let c = &self.counters;
        match envelope::decode(frame, self.max_message_size) {
            Ok((from, bytes)) => {
                if from == self.node || !self.members().contains(&from) {
                    c.frames_rejected.fetch_add(1, Ordering::Relaxed);
                    if let Some(held) = self.reject_log.allow(tokio::time::Instant::now()) {
                        tracing::warn!(group = %self.group, from = %from, held_back = held, "message from a node that is not a member of the group, dropped");
                    }
                    return None;
                }
                c.frames_received.fetch_add(1, Ordering::Relaxed);
                add(&c.bytes_received, frame.len());
                if let Some(activity) = &self.activity {
                    activity(&from);
                }
                Some((from, bytes))
            }
            Err(e) => {
                c.frames_rejected.fetch_add(1, Ordering::Relaxed);
                if let Some(held) = self.reject_log.allow(tokio::time::Instant::now()) {
                    tracing::warn!(group = %self.group, len = frame.len(), error = %e, held_back = held, "bad frame, dropped");
                }
                None
            }
        }
    }

    fn send_raw(&self, to: &str, frame: Vec<u8>) -> Result<(), ClusterError> {
        if self.left.load(Ordering::Acquire) {
            return Err(ClusterError::ShutDown);
        }
        let cell = self
            .members()
            .current(to)
            .ok_or_else(|| ClusterError::NotAMember {
                group: self.group.clone(),
                node: to.to_string(),
            })?;
        let len = frame.len();
        ActorRef::<Vec<u8>>::from(cell)
            .send_message(frame)
            .map_err(|e| ClusterError::Send {
                node: to.to_string(),
                reason: e.to_string(),
            })?;
        self.counters.frames_sent.fetch_add(1, Ordering::Relaxed);
        add(&self.counters.bytes_sent, len);
        Ok(())
    }

    fn counted(&self, r: Result<(), ClusterError>) -> Result<(), ClusterError> {
        if let Err(e) = &r {
            self.counters.send_errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(group = %self.group, error = %e, "send failed");
        }
        r
    }
}

/// This node's membership of one group: send to other members, read members and counters,
/// leave. Cheap to clone; all clones are the same membership.
#[derive(Clone)]
pub struct Group {
    shared: Arc<Shared>,
    endpoint: ActorRef<Vec<u8>>,
    /// The node's group registry, to unregister on leave.
    registry: Weak<Mutex<HashMap<String, Group>>>,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("group", &self.shared.group)
            .field("node", &self.shared.node)
            .finish_non_exhaustive()
    }
}

impl Group {
    /// The group's name.
    pub fn name(&self) -> &str {
        &self.shared.group
    }

    /// Sends `bytes` to the member on node `to`. Fire-and-forget: `Ok` means the message was
    /// queued for that node's current session, not that it arrived (a session that closes
    /// loses what it had queued).
    ///
    /// # Errors
    ///
    /// [`ClusterError::TooLarge`] if `bytes` is over `max_message_size`,
    /// [`ClusterError::NotAMember`] if `to` is not a live member of the group,
    /// [`ClusterError::Send`] if ractor refuses the message, [`ClusterError::ShutDown`] after
    /// [`Group::leave`]. Each is counted in [`GroupStats::send_errors`].
    pub fn send(&self, to: &str, bytes: Vec<u8>) -> Result<(), ClusterError> {
        let s = &self.shared;
        let r = if bytes.len() > s.max_message_size {
            Err(ClusterError::TooLarge {
                len: bytes.len(),
                limit: s.max_message_size,
            })
        } else {
            envelope::encode(&s.node, &bytes, s.max_message_size)
                .map_err(ClusterError::from)
                .and_then(|frame| s.send_raw(to, frame))
        };
        s.counted(r)
    }

    /// Sends `bytes` (in the envelope) to one particular stand-in, not to a node's current
    /// one: to reach a session that does not own its node name (a duplicate being refused).
    pub(crate) fn send_to_cell(&self, cell: ActorCell, bytes: &[u8]) -> Result<(), ClusterError> {
        let s = &self.shared;
        let frame = envelope::encode(&s.node, bytes, s.max_message_size)?;
        ActorRef::<Vec<u8>>::from(cell)
            .send_message(frame)
            .map_err(|e| ClusterError::Send {
                node: "?".into(),
                reason: e.to_string(),
            })
    }

    /// The stand-ins of this group's members that belong to session `node_id`, from ractor's
    /// registry (a refused duplicate's stand-in is never in the member table).
    pub(crate) fn cells_of_session(&self, node_id: u64) -> Vec<ActorCell> {
        pg::get_members(&self.shared.pg_group)
            .into_iter()
            .filter(|c| matches!(c.get_id(), ractor::ActorId::Remote { node_id: n, .. } if n == node_id))
            .collect()
    }

    /// Sends raw `bytes` without the envelope: only for fault-injection tests (a peer sending
    /// garbage). The receiver refuses and counts it.
    ///
    /// # Errors
    ///
    /// As [`Group::send`], without the size check.
    #[doc(hidden)]
    pub fn send_unframed(&self, to: &str, bytes: Vec<u8>) -> Result<(), ClusterError> {
        let s = &self.shared;
        s.counted(s.send_raw(to, bytes))
    }

    /// The node names of the remote live members of this group.
    pub fn members(&self) -> BTreeSet<String> {
        self.shared.members().names()
    }

    /// Every member of this group including this node, sorted: the same list on every node
    /// that sees the same membership, for products that compute placement from it.
    pub fn all_members(&self) -> Vec<String> {
        let mut all = self.members();
        all.insert(self.shared.node.clone());
        all.into_iter().collect()
    }

    /// How many remote members ractor's pg registry lists for this group right now: it may
    /// be ahead of [`members`](Self::members), whose updates go through the endpoint's
    /// mailbox.
    pub(crate) fn remote_in_registry(&self) -> usize {
        pg::get_members(&self.shared.pg_group)
            .iter()
            .filter(|c| !c.get_id().is_local())
            .count()
    }

    /// Sets what a graceful leave runs before the endpoint stops.
    pub(crate) fn set_handover(&self, hook: HandoverHook) {
        *super::lock(&self.shared.handover) = Some(hook);
    }

    /// Runs the handover hook, once (later calls return at once).
    pub(crate) async fn hand_over(&self) {
        if self.shared.handed_over.swap(true, Ordering::AcqRel) {
            return;
        }
        // Taken, not cloned: the hook holds this group, and the cycle must end here.
        let hook = super::lock(&self.shared.handover).take();
        if let Some(hook) = hook {
            hook().await;
        }
    }

    /// Message counters of this group on this node.
    pub fn stats(&self) -> GroupStats {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let c = &self.shared.counters;
        GroupStats {
            frames_sent: r(&c.frames_sent),
            bytes_sent: r(&c.bytes_sent),
            frames_received: r(&c.frames_received),
            bytes_received: r(&c.bytes_received),
            frames_rejected: r(&c.frames_rejected),
            send_errors: r(&c.send_errors),
        }
    }

    /// Leaves the group: runs the graceful handover first (a replica on this group waits,
    /// bounded, until its neighbours hold what it holds), then stops the endpoint, so other
    /// members see this node leave. Later sends fail with [`ClusterError::ShutDown`].
    /// Idempotent.
    pub async fn leave(&self) {
        if self.shared.left.load(Ordering::Acquire) {
            return;
        }
        self.hand_over().await;
        if self.shared.left.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(reg) = self.registry.upgrade() {
            super::lock(&reg).remove(&self.shared.group);
        }
        let _ = self
            .endpoint
            .stop_and_wait(Some("herd group left".into()), Some(STOP_TIMEOUT))
            .await;
        self.shared.members_mut().clear();
    }
}

/// Starts the endpoint of `group` on node `node`.
pub(crate) async fn start(
    group: &str,
    node: &str,
    max_message_size: usize,
    on_event: Box<dyn Fn(GroupEvent) + Send + Sync + 'static>,
    registry: Weak<Mutex<HashMap<String, Group>>>,
    activity: Option<ActivityHook>,
) -> Result<Group, ClusterError> {
    let shared = Arc::new(Shared {
        group: group.to_string(),
        pg_group: pg_group(group),
        node: node.to_string(),
        max_message_size,
        members: RwLock::new(MemberTable::default()),
        counters: Counters::default(),
        left: AtomicBool::new(false),
        handover: Mutex::new(None),
        handed_over: AtomicBool::new(false),
        reject_log: RateLimited::new(Duration::from_secs(1)),
        activity,
    });
    let endpoint = Endpoint {
        shared: Arc::clone(&shared),
        on_event,
    };
    let (endpoint, _handle) = Actor::spawn(Some(endpoint_name(group, node)), endpoint, ())
        .await
        .map_err(|e| match e {
            ractor::SpawnErr::ActorAlreadyRegistered(_) => ClusterError::AlreadyJoined {
                group: group.to_string(),
            },
            other => ClusterError::Spawn {
                group: group.to_string(),
                reason: other.to_string(),
            },
        })?;
    Ok(Group {
        shared,
        endpoint,
        registry,
    })
}

/// The wire-facing actor of one group on one node. Its message type is `Vec<u8>`, which
/// ractor can carry remotely and whose decoding never panics; herd decodes the envelope.
struct Endpoint {
    shared: Arc<Shared>,
    on_event: Box<dyn Fn(GroupEvent) + Send + Sync + 'static>,
}

impl Endpoint {
    fn emit(&self, event: GroupEvent) {
        if std::panic::catch_unwind(AssertUnwindSafe(|| (self.on_event)(event))).is_err() {
            tracing::error!(group = %self.shared.group, "group on_event callback panicked");
        }
    }

    fn emit_members(&self) {
        let names = self.shared.members().names();
        self.emit(GroupEvent::Members(names));
    }

    /// Records remote pg members; returns whether the member names changed.
    fn joined(&self, cells: Vec<ActorCell>) -> bool {
        let mut changed = false;
        let mut table = self.shared.members_mut();
        for cell in cells {
            let id = cell.get_id();
            if id.is_local() {
                continue;
            }
            let Some(actor_name) = cell.get_name() else {
                tracing::warn!(group = %self.shared.group, ?id, "unnamed member in the group, ignored");
                continue;
            };
            let Some(node) = node_of_endpoint(&self.shared.group, &actor_name) else {
                tracing::warn!(group = %self.shared.group, ?id, %actor_name, "foreign member in the group, ignored");
                continue;
            };
            if node == self.shared.node {
                tracing::warn!(group = %self.shared.group, ?id, "a remote node uses this node's name; ignored");
                continue;
            }
            let node = node.to_string();
            changed |= table.join(&node, id, cell);
        }
        changed
    }

    fn left(&self, cells: &[ActorCell]) -> bool {
        let mut table = self.shared.members_mut();
        let mut changed = false;
        for cell in cells {
            changed |= table.leave(cell.get_id());
        }
        changed
    }
}

impl Actor for Endpoint {
    type Msg = Vec<u8>;
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<(), ActorProcessingErr> {
        let group = self.shared.pg_group.clone();
        // Monitor first, then read the current members: a member that joins in between is
        // seen twice, which the table ignores.
        pg::monitor(group.clone(), myself.get_cell());
        pg::join(group.clone(), vec![myself.get_cell()]);
        self.joined(pg::get_members(&group));
        self.emit_members();
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        frame: Vec<u8>,
        _state: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        if let Some((from, bytes)) = self.shared.receive(&frame) {
            self.emit(GroupEvent::Message { from, bytes });
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        _state: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ProcessGroupChanged(change) = evt {
            let changed = match change {
                GroupChangeMessage::Join(scope, group, cells)
                    if scope == pg::DEFAULT_SCOPE && group == self.shared.pg_group =>
                {
                    self.joined(cells)
                }
                GroupChangeMessage::Leave(scope, group, cells)
                    if scope == pg::DEFAULT_SCOPE && group == self.shared.pg_group =>
                {
                    self.left(&cells)
                }
                _ => false,
            };
            if changed {
                let names = self.shared.members().names();
                tracing::debug!(group = %self.shared.group, members = ?names, "group members changed");
                self.emit(GroupEvent::Members(names));
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        pg::demonitor(self.shared.pg_group.clone(), myself.get_id());
        Ok(())
    }
}
