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

/// The claims on one name that show, in [`rank`] order: the first holds the name. Almost
/// always one: a sorted vector of exactly that, where a `BTreeMap` allocated a node of eleven
/// slots, ~2 KB per name.
pub(super) type Claims = Vec<Entry>;

/// The order of claims on one name: the smallest (registration time, node, incarnation, id)
/// wins.
pub(super) fn rank(entry: &Entry) -> (u64, &str, u64, u64) {
    let id = match &entry.slot {
        Slot::Name { id, .. } => *id,
        Slot::Incarnation { .. } => 0,
    };
    (entry.registered_ms, &entry.node, entry.incarnation, id)
}

/// This node's view of the registry map.
pub(super) struct View {
    /// Nodes whose claims show: this node and the live members hosting this registry.
    pub(super) live: BTreeSet<SmolStr>,
    /// The latest incarnation record of each node.
    pub(super) current: HashMap<SmolStr, Current>,
    /// Nodes whose current incarnation wrote its record since this node last saw them go.
    pub(super) confirmed: HashSet<SmolStr>,
    /// The claims that show, by name, in rank order: the first one holds the name. A claim
    /// is found again by its name (in its slot): no second index by slot.
    pub(super) names: BTreeMap<SmolStr, Claims>,
    pub(super) subscribers: Vec<UnboundedSender<RegistryEvent>>,
}

impl View {
    pub(super) fn new(me: &str) -> Self {
        View {
            live: BTreeSet::from([SmolStr::from(me)]),
            current: HashMap::new(),
            confirmed: HashSet::from([SmolStr::from(me)]),
            names: BTreeMap::new(),
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
        self.shown_at(slot) != should
    }

    /// The registration time of `slot`'s claim, if it shows.
    fn shown_at(&self, slot: &Slot) -> Option<u64> {
        let Slot::Name { name, .. } = slot else {
            return None;
        };
        self.names
            .get(name)?
            .iter()
            .find(|e| e.slot == *slot)
            .map(|e| e.registered_ms)
    }

    /// Every claim that shows.
    pub(super) fn visible(&self) -> impl Iterator<Item = &Slot> {
        self.names.values().flatten().map(|e| &e.slot)
    }

    /// The holder of `name`.
    pub(super) fn winner(&self, name: &str) -> Option<&Entry> {
        self.names.get(name).and_then(|c| c.first())
    }

    /// Brings one claim's visibility up to date (`at_ms` is its registration time in the
    /// replica, `None` if it is gone). Returns the name when the claim's showing changed.
    pub(super) fn settle(&mut self, slot: &Slot, at_ms: Option<u64>) -> Option<SmolStr> {
        let Slot::Name {
            name,
            node,
            incarnation,
            ..
        } = slot
        else {
            return None;
        };
        let should = at_ms.filter(|_| self.shows(node, *incarnation));
        let old = self.shown_at(slot);
        if old == should {
            return None; // nothing changed (the usual case in a rescan)
        }
        if old.is_some()
            && let Some(claims) = self.names.get_mut(name)
        {
            claims.retain(|e| e.slot != *slot);
            if claims.is_empty() {
                self.names.remove(name);
            }
        }
        if let Some(at) = should {
            let entry = Entry {
                name: name.clone(),
                node: node.clone(),
                incarnation: *incarnation,
                registered_ms: at,
                slot: slot.clone(),
            };
            // Capacity 1: a vector's first growth makes room for four.
            let claims = self
                .names
                .entry(name.clone())
                .or_insert_with(|| Vec::with_capacity(1));
            let at_rank = claims.partition_point(|e| rank(e) < rank(&entry));
            claims.insert(at_rank, entry);
        }
        Some(name.clone())
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
