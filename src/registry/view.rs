//! What shows, and who holds each name: a local decision from the replicated claims, this
//! node's view of which nodes are live, and which incarnation of each node is current.
//! Nothing here writes to the replica.

use super::{Entry, RegistryEvent, Slot};
use smol_str::SmolStr;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use tokio::sync::mpsc::UnboundedSender;

/// The current incarnation of a node: the one that started last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Current {
    pub(super) started_ms: u64,
    pub(super) incarnation: u64,
}

/// The order of claims on one name: the smallest wins.
pub(super) type Rank = (u64, SmolStr, u64, u64);

/// The claims on one name that show, in rank order: the first holds the name. Almost always
/// one: a sorted vector of exactly that, where a `BTreeMap` allocated a node of eleven
/// (Rank, Entry) slots, ~2 KB per name.
pub(super) type Claims = Vec<(Rank, Entry)>;

/// This node's view of the registry map.
pub(super) struct View {
    /// Nodes whose claims show: this node and the live members hosting this registry.
    pub(super) live: BTreeSet<SmolStr>,
    /// The latest incarnation record of each node.
    pub(super) current: HashMap<SmolStr, Current>,
    /// Nodes whose current incarnation wrote its record since this node last saw them go.
    pub(super) confirmed: HashSet<SmolStr>,
    /// The claims that show, by name, in rank order: the first one holds the name.
    pub(super) names: BTreeMap<SmolStr, Claims>,
    /// The claims that show, by slot (to find them again when they go).
    pub(super) visible: HashMap<Slot, Rank>,
    pub(super) subscribers: Vec<UnboundedSender<RegistryEvent>>,
}

impl View {
    pub(super) fn new(me: &str) -> Self {
        View {
            live: BTreeSet::from([SmolStr::from(me)]),
            current: HashMap::new(),
            confirmed: HashSet::from([SmolStr::from(me)]),
            names: BTreeMap::new(),
            visible: HashMap::new(),
            subscribers: Vec::new(),
        }
    }

    /// Whether a claim of `node`'s `incarnation` shows.
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

    /// Whether settling `slot` at `at_ms` would change what shows.
    pub(super) fn would_change(&self, slot: &Slot, at_ms: Option<u64>) -> bool {
        let Slot::Name {
            node, incarnation, ..
        } = slot
        else {
            return false;
        };
        let should = at_ms.filter(|_| self.shows(node, *incarnation));
        self.visible.get(slot).map(|r| r.0) != should
    }

    /// The holder of `name`.
    pub(super) fn winner(&self, name: &str) -> Option<&Entry> {
        self.names.get(name).and_then(|c| c.first()).map(|(_, e)| e)
    }

    /// Brings one claim's visibility up to date (`at_ms` is its registration time in the
    /// replica, `None` if it is gone). Returns the name when the claim's showing changed.
    pub(super) fn settle(&mut self, slot: &Slot, at_ms: Option<u64>) -> Option<SmolStr> {
        let Slot::Name {
            name,
            node,
            incarnation,
            id,
        } = slot
        else {
            return None;
        };
        let should = at_ms.filter(|_| self.shows(node, *incarnation));
        if self.visible.get(slot).map(|r| r.0) == should {
            return None; // nothing changed (the usual case in a rescan)
        }
        let rank = |at: u64| (at, node.clone(), *incarnation, *id);
        let old = self.visible.remove(slot);
        if let Some(r) = &old
            && let Some(claims) = self.names.get_mut(name)
        {
            claims.retain(|(rank, _)| rank != r);
            if claims.is_empty() {
                self.names.remove(name);
            }
        }
        if let Some(at) = should {
            let r = rank(at);
            self.visible.insert(slot.clone(), r.clone());
            // Capacity 1: a vector's first growth makes room for four.
            let claims = self
                .names
                .entry(name.clone())
                .or_insert_with(|| Vec::with_capacity(1));
            let at_rank = claims.partition_point(|(rank, _)| *rank < r);
            let entry = Entry {
                name: name.clone(),
                node: node.clone(),
                incarnation: *incarnation,
                registered_ms: at,
                slot: slot.clone(),
            };
            claims.insert(at_rank, (r, entry));
        }
        (old.map(|r| r.0) != should).then(|| name.clone())
    }

    pub(super) fn publish(&mut self, events: Vec<RegistryEvent>) {
        if events.is_empty() {
            return;
        }
        self.subscribers.retain(|s| !s.is_closed());
        for event in events {
            for s in &self.subscribers {
                let _ = s.send(event.clone());
            }
        }
    }
}
