//! What is visible, and the join/leave diffs when that changes: a local decision from the
//! replicated entries, this node's view of which nodes are live, and which incarnation of each
//! node is current. Nothing here writes to the replica.

use super::{Placement, PresenceDiff, Record, Slot, TrackRef};
use smol_str::SmolStr;
use std::collections::{BTreeSet, HashMap, HashSet};
use tokio::sync::mpsc::UnboundedSender;

/// The current incarnation of a node: the one that started last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Current {
    pub(super) started_ms: u64,
    pub(super) incarnation: u64,
}

pub(super) struct Subscriber<M> {
    pub(super) topic: Option<String>,
    pub(super) tx: UnboundedSender<PresenceDiff<M>>,
}

/// This node's view of the presence map.
pub(super) struct View<M> {
    /// Nodes whose entries show: this node and the live members hosting this presence.
    pub(super) live: BTreeSet<SmolStr>,
    /// The latest incarnation record of each node.
    pub(super) current: HashMap<SmolStr, Current>,
    /// Nodes whose current incarnation wrote its record since this node last saw them go.
    pub(super) confirmed: HashSet<SmolStr>,
    /// Entries visible now, with the meta subscribers were last told.
    pub(super) visible: HashMap<Slot, M>,
    /// How many of them each topic has (kept by [`settle`](Self::settle), so that counting a
    /// topic does not scan every entry).
    pub(super) per_topic: HashMap<SmolStr, usize>,
    pub(super) subscribers: Vec<Subscriber<M>>,
}

impl<M: Clone + PartialEq> View<M> {
    pub(super) fn new(me: &str) -> Self {
        View {
            live: BTreeSet::from([SmolStr::from(me)]),
            current: HashMap::new(),
            confirmed: HashSet::from([SmolStr::from(me)]),
            visible: HashMap::new(),
            per_topic: HashMap::new(),
            subscribers: Vec::new(),
        }
    }

    /// Whether an entry of `node`'s `incarnation` shows.
    pub(super) fn shows(&self, node: &str, incarnation: u64) -> bool {
        self.live.contains(node)
            && self.confirmed.contains(node)
            && self.current.get(node).map(|c| c.incarnation) == Some(incarnation)
    }

    /// Notes a record; returns true when it changed which incarnation of its node is current.
    pub(super) fn record_incarnation(&mut self, node: &str, now: Current) -> bool {
        match self.current.get(node) {
            Some(c) if *c >= now => false,
            _ => {
                self.current.insert(node.into(), now);
                true
            }
        }
    }

    /// Brings one entry's visibility up to date (`meta` is its value in the replica, `None`
    /// if it is gone), telling subscribers what changed: a join when it starts to show, a
    /// leave when it stops, a leave and a join when its meta changed.
    pub(super) fn settle(&mut self, slot: &Slot, meta: Option<&M>) -> Vec<PresenceDiff<M>> {
        let Slot::Entry {
            topic,
            key,
            node,
            incarnation,
            ..
        } = slot
        else {
            return Vec::new();
        };
        let should = meta.filter(|_| self.shows(node, *incarnation));
        let placement = |meta: M| Placement {
            node: node.to_string(),
            meta,
            track: TrackRef { slot: slot.clone() },
        };
        let mut out = Vec::new();
        let leave = |meta: M| PresenceDiff::Leave {
            topic: topic.to_string(),
            key: key.to_string(),
            placement: placement(meta),
        };
        let join = |meta: M| PresenceDiff::Join {
            topic: topic.to_string(),
            key: key.to_string(),
            placement: placement(meta),
        };
        match (self.visible.remove(slot), should) {
            (None, None) => {}
            (None, Some(m)) => {
                out.push(join(m.clone()));
                self.visible.insert(slot.clone(), m.clone());
                *self.per_topic.entry(topic.clone()).or_default() += 1;
            }
            (Some(old), None) => {
                out.push(leave(old));
                if let Some(n) = self.per_topic.get_mut(topic) {
                    *n -= 1;
                    if *n == 0 {
                        self.per_topic.remove(topic);
                    }
                }
            }
            (Some(old), Some(m)) => {
                if old != *m {
                    out.push(leave(old));
                    out.push(join(m.clone()));
                }
                self.visible.insert(slot.clone(), m.clone());
            }
        }
        out
    }

    pub(super) fn publish(&mut self, diffs: Vec<PresenceDiff<M>>) {
        if diffs.is_empty() {
            return;
        }
        self.subscribers.retain(|s| !s.tx.is_closed());
        for diff in diffs {
            for s in &self.subscribers {
                if s.topic.as_deref().is_none_or(|t| t == diff.topic()) {
                    let _ = s.tx.send(diff.clone());
                }
            }
        }
    }
}

/// The meta of a record, if it is an entry's.
pub(super) fn meta<M>(record: Option<&Record<M>>) -> Option<&M> {
    match record {
        Some(Record::Meta(m)) => Some(m),
        _ => None,
    }
}
