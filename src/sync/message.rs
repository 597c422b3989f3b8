//! The protocol's messages. Encoded with [`crate::codec`]; changing their shape is a wire
//! format change (see the golden vectors in `sync/tests`).

use crate::crdt::{Causal, CausalContext, Dot, DotMap, DotStore, ReplicaId};
use crate::merkle::{Digest, KeyHash, NodePath};
use serde::{Deserialize, Serialize};

/// A range `from..=to` of one replica's dots, which the receiver may record as seen.
pub(crate) type DotRange = (ReplicaId, u64, u64);

/// One message between two replicas of the same CRDT.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound(
    serialize = "K: Serialize + std::hash::Hash + Eq + Clone + std::fmt::Debug, S: Serialize + crate::crdt::DotStore",
    deserialize = "K: Deserialize<'de> + std::hash::Hash + Eq + Clone + std::fmt::Debug, S: Deserialize<'de> + crate::crdt::DotStore"
))]
pub(crate) enum Message<K, S> {
    /// Delta path: the sender's deltas numbered `first..=last` in its incarnation `epoch`
    /// (those that came from the receiver are left out, but their numbers are covered).
    Deltas {
        epoch: u64,
        first: u64,
        last: u64,
        deltas: Vec<WireDelta<K, S>>,
    },
    /// Delta path: the `Deltas` message `first..=last` of incarnation `epoch` arrived. The
    /// sender decides what that acknowledges (it knows which earlier ones it gave up on).
    Ack { epoch: u64, first: u64, last: u64 },
    /// Repair path heartbeat: the sender's Merkle root and a hash of its causal context.
    Digest { root: Digest, ctx_hash: u64 },
    /// Repair path: the sender's causal context. The receiver answers with what the sender
    /// has not seen; if `root` equals the receiver's root, their stores are equal and the
    /// receiver may adopt the context as it is.
    Context {
        from: ReplicaId,
        root: Digest,
        ctx: CausalContext,
    },
    /// Repair path: for each key, *all* the sender's entries under it; `ctx` (a part of the
    /// sender's context) decides which of the receiver's entries were removed; `seen` are
    /// dot ranges whose every dot is in this message, dead at the sender, or already seen by
    /// the receiver.
    Repair {
        ctx: CausalContext,
        entries: Vec<(K, S)>,
        seen: Vec<DotRange>,
    },
    /// Merkle descent: the sender's children digests of nodes where the trees differ.
    Nodes {
        nodes: Vec<(NodePath, Vec<(u16, Digest)>)>,
    },
    /// Merkle descent, last step: the sender's keys in leaf buckets where the trees differ,
    /// and its context (to tell which of the receiver's keys it has removed). `reply` is set
    /// on an answer to a `Buckets`, which is not answered again.
    Buckets {
        ctx: CausalContext,
        reply: bool,
        buckets: Vec<(NodePath, Vec<(KeyHash, Digest)>)>,
    },
    /// Limits: the largest message the sender accepts. Sent to every new neighbour until it
    /// answers (`reply` set on the answer, which is not answered again), and whenever the
    /// sender refused a message for its size, so a neighbour with a larger limit learns it
    /// within a round trip.
    Hello { limit: u64, reply: bool },
    /// The sender holds an entry under `key` of `size` encoded bytes, which cannot be sent
    /// within the receiver's limit: the two stay different under that key until the entry
    /// shrinks or the limit grows. Sent once per key and limit, so both sides can report it.
    Oversized { key: KeyHash, size: u64 },
    /// Repair path, for keys whose entries are too large to travel with the context: for each
    /// key, the dots the sender holds under it; the receiver removes its dots under the key
    /// that `ctx` covers and the list lacks (what `Repair` decides with its context). The
    /// entries themselves follow in a `Repair` with no context.
    Removals {
        ctx: CausalContext,
        keys: Vec<(K, Vec<Dot>)>,
    },
    /// Read probe: "what do you hold?", for a read that must include the neighbours' state.
    /// `epoch` is the asker's incarnation; the answer echoes it with `probe`.
    Probe { epoch: u64, probe: u64 },
    /// Answer to a [`Message::Probe`]: the sender's causal context when the probe arrived.
    ProbeAnswer {
        epoch: u64,
        probe: u64,
        ctx: CausalContext,
    },
}

/// A delta as it travels: its context may leave out dots its store holds (see
/// [`CausalContext::without_held`]), which the receiver adds back. The same fields, in the same
/// order, as an encoded [`Causal`]; only the meaning of `ctx` differs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound(
    serialize = "K: Serialize + std::hash::Hash + Eq + Clone + std::fmt::Debug, S: Serialize + crate::crdt::DotStore",
    deserialize = "K: Deserialize<'de> + std::hash::Hash + Eq + Clone + std::fmt::Debug, S: Deserialize<'de> + crate::crdt::DotStore"
))]
pub(crate) struct WireDelta<K, S> {
    store: DotMap<K, S>,
    ctx: CausalContext,
    keyed: bool,
}

impl<K, S> WireDelta<K, S>
where
    K: std::hash::Hash + Eq + Clone + std::fmt::Debug,
    S: crate::crdt::DotStore,
{
    /// Packs `delta` for the wire, leaving out of its context what its store says.
    pub(crate) fn pack(delta: Causal<DotMap<K, S>>) -> Self {
        let mut held = std::collections::HashSet::new();
        delta.store.for_each_dot(&mut |d| {
            held.insert(d);
        });
        WireDelta {
            ctx: delta.ctx.without_held(&held),
            store: delta.store,
            keyed: delta.keyed,
        }
    }

    /// The delta again: its context with its store's dots added back (a no-op for a context
    /// that left none out), so it is well formed whatever the sender did.
    pub(crate) fn unpack(self) -> Causal<DotMap<K, S>> {
        let mut ctx = self.ctx;
        self.store.for_each_dot(&mut |d| ctx.insert(d));
        Causal {
            store: self.store,
            ctx,
            keyed: self.keyed,
        }
    }
}
