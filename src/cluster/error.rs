//! The cluster layer's error type.

use std::net::SocketAddr;

use crate::codec::CodecError;

/// Why a cluster operation failed.
///
/// Every variant leaves the node and its groups running: a failed send loses only that message,
/// a failed join leaves the node without that group, a failed start leaves nothing behind.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The [`NodeConfig`](super::NodeConfig) cannot be used (empty or over-long node name,
    /// zero message size, a seed that is not `host:port`, ...).
    #[error("invalid node configuration: {reason}")]
    InvalidConfig {
        /// What is wrong with it.
        reason: String,
    },

    /// The node could not listen on its address (port taken, address not local, ...).
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address that was asked for.
        addr: SocketAddr,
        /// What ractor_cluster or the OS reported.
        reason: String,
    },

    /// This node already has a member of this group; [`Group::leave`](super::Group::leave)
    /// it first, or keep using the existing [`Group`](super::Group).
    #[error("this node already joined group {group:?}")]
    AlreadyJoined {
        /// The group's name.
        group: String,
    },

    /// Group names starting with `_herd.` are reserved for herd's own use (heartbeats).
    /// Nothing was joined.
    #[error("group name {group:?} is reserved (names starting with `_herd.` are herd's)")]
    ReservedGroup {
        /// The group's name.
        group: String,
    },

    /// The group's endpoint actor could not be started.
    #[error("cannot start the endpoint of group {group:?}: {reason}")]
    Spawn {
        /// The group's name.
        group: String,
        /// What ractor reported.
        reason: String,
    },

    /// The destination node is not (or no longer) a live member of the group: it never joined,
    /// it left, or its node is disconnected. Nothing was sent.
    #[error("node {node:?} is not a live member of group {group:?}")]
    NotAMember {
        /// The group's name.
        group: String,
        /// The node name the message was addressed to.
        node: String,
    },

    /// The payload is larger than the node's `max_message_size`. Nothing was sent; split the
    /// message.
    #[error("payload of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The payload's length.
        len: usize,
        /// The configured `max_message_size`.
        limit: usize,
    },

    /// ractor refused to queue the message (the member's stand-in has stopped, typically
    /// because its session just closed). Nothing was sent.
    #[error("cannot send to node {node:?}: {reason}")]
    Send {
        /// The node name the message was addressed to.
        node: String,
        /// What ractor reported.
        reason: String,
    },

    /// The envelope could not be encoded.
    #[error("cannot encode envelope: {0}")]
    Envelope(#[from] CodecError),

    /// A peer refused this node because another live node already uses its name (two
    /// processes with one name would make sessions flap and isolate one of them). The node
    /// stopped dialing; start it again under a unique name.
    #[error(
        "node {by:?} refused this node: another live node named {name:?} is already a member at {existing}"
    )]
    NameTaken {
        /// This node's name.
        name: String,
        /// The peer that refused it.
        by: String,
        /// The address the node holding the name advertises.
        existing: String,
    },

    /// Only an actor of this node can be published; this one is a stand-in for an actor of
    /// another node. Nothing was published.
    #[error("cannot publish {name:?}: the actor is not local to this node")]
    NotLocal {
        /// The name it was to be published under.
        name: String,
    },

    /// The node (or the group) has been shut down.
    #[error("the node has been shut down")]
    ShutDown,
}
