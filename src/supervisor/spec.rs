//! What a child is (its spec, as the user gives it) and what the desired-state replica holds.

use serde::{Deserialize, Serialize};

/// A child's stable, user-given id: the one identity of a child everywhere, across restarts,
/// failovers and handovers (Horde gives a restarted child a fresh random id, which is how one
/// child became eight in Horde #207).
pub type ChildId = String;

/// When a child that exited is started again (as OTP's `restart` values).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
pub enum Restart {
    /// Always restarted, whether it stopped normally or failed.
    #[default]
    Permanent,
    /// Restarted only if it failed (panicked or returned an error); a normal stop ends it
    /// and removes its spec.
    Transient,
    /// Never restarted: any exit ends it and removes its spec.
    Temporary,
}

/// A child to run somewhere in the cluster: an id, the kind of child (a name registered on
/// every node with [`SupervisorOptions::kind`](super::SupervisorOptions::kind)), the
/// serialized arguments its factory reads, and a restart policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildSpec {
    /// The child's id.
    pub id: ChildId,
    /// The kind: which factory starts it.
    pub kind: String,
    /// Arguments for the factory, in whatever encoding the kind uses.
    pub args: Vec<u8>,
    /// When it is restarted.
    pub restart: Restart,
}

impl ChildSpec {
    /// A [`Restart::Permanent`] child `id` of kind `kind` with arguments `args`.
    pub fn new(id: impl Into<ChildId>, kind: impl Into<String>, args: impl Into<Vec<u8>>) -> Self {
        ChildSpec {
            id: id.into(),
            kind: kind.into(),
            args: args.into(),
            restart: Restart::Permanent,
        }
    }

    /// Sets the restart policy.
    #[must_use]
    pub fn restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }
}

/// A key of the desired-state replica. One replica holds the specs, the marks of children
/// that exceeded their restart intensity, and the marks of nodes handing their children
/// over; one key per child keeps each child its own Merkle leaf.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Key {
    /// A child's spec: desired state, any node may write it.
    Spec(ChildId),
    /// A child that exceeded its restart intensity on `node`: it is not started again
    /// anywhere until it is terminated (so a crash loop does not travel the cluster).
    Failed(ChildId),
    /// A node leaving gracefully: no child is placed on it from the moment this shows.
    Draining {
        /// The node.
        node: String,
        /// Its supervisor's incarnation (a random number per start).
        incarnation: u64,
    },
}

/// A value of the desired-state replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// A spec (the id is the key's).
    Spec {
        /// The kind.
        kind: String,
        /// The arguments.
        args: Vec<u8>,
        /// The restart policy.
        restart: Restart,
    },
    /// Why and where the child failed for good.
    Failed {
        /// The node whose restart intensity was exceeded.
        node: String,
        /// The last error.
        reason: String,
    },
    /// A drain mark.
    Draining,
}

impl Value {
    pub(crate) fn from_spec(spec: &ChildSpec) -> Self {
        Value::Spec {
            kind: spec.kind.clone(),
            args: spec.args.clone(),
            restart: spec.restart,
        }
    }

    pub(crate) fn to_spec(&self, id: &str) -> Option<ChildSpec> {
        match self {
            Value::Spec {
                kind,
                args,
                restart,
            } => Some(ChildSpec {
                id: id.to_owned(),
                kind: kind.clone(),
                args: args.clone(),
                restart: *restart,
            }),
            _ => None,
        }
    }
}

/// Where a child stands, as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildStatus {
    /// Running on `node` (its registration shows here).
    Running {
        /// The node.
        node: String,
    },
    /// Exceeded its restart intensity on `node`; not restarted until terminated.
    Failed {
        /// The node.
        node: String,
        /// The last error.
        reason: String,
    },
    /// Wanted but not running anywhere this node can see: being started, handed over, or
    /// waiting for a node to take it (after a crash, until the failure detector fires).
    Pending,
}

/// One child, for [`which_children`](super::Supervisor::which_children).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildInfo {
    /// The id.
    pub id: ChildId,
    /// The kind.
    pub kind: String,
    /// The restart policy.
    pub restart: Restart,
    /// Where it stands.
    pub status: ChildStatus,
}

/// Counts of children, for [`count_children`](super::Supervisor::count_children).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ChildCounts {
    /// Specs (every child the cluster wants).
    pub specs: usize,
    /// Children whose registration shows.
    pub running: usize,
    /// Children marked failed.
    pub failed: usize,
    /// The rest: wanted, not running anywhere visible.
    pub pending: usize,
}
