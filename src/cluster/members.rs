//! Who is in a group, by node name: the pure bookkeeping behind a group's endpoint actor.
//!
//! A node name can map to more than one remote stand-in for a short while: during a reconnect
//! the new session's stand-in may join the pg group before the old one leaves. The name stays a
//! member until its last stand-in leaves, and messages go to the newest one.

use std::collections::{BTreeMap, BTreeSet};

use ractor::ActorId;

/// The pg group (default scope) whose members are the endpoints of group `group`.
pub(crate) fn pg_group(group: &str) -> String {
    format!("herd:{group}")
}

/// The registered name of `node`'s endpoint actor for `group`. Remote stand-ins report it
/// through `get_name()`, which is how a pg member is mapped to a node name.
pub(crate) fn endpoint_name(group: &str, node: &str) -> String {
    format!("herd:{group}@{node}")
}

/// The node name inside an endpoint actor's name, if it is an endpoint of `group`.
pub(crate) fn node_of_endpoint<'a>(group: &str, actor_name: &'a str) -> Option<&'a str> {
    let node = actor_name
        .strip_prefix("herd:")?
        .strip_prefix(group)?
        .strip_prefix('@')?;
    (!node.is_empty()).then_some(node)
}

/// The name herd gives ractor_cluster for node `name` in incarnation `incarnation` (a random
/// number per process): `"{name}#{incarnation:x}"`.
///
/// ractor elects between sessions of one peer *name*: with the bare herd name, a second
/// process calling itself `b` is either silently refused by ractor before authentication
/// (herd never learns why and cannot tell it) or displaces the first `b`. With the
/// incarnation, ractor admits both, and herd, which compares the herd names, refuses the
/// newcomer itself and tells it why.
pub(crate) fn ractor_name(name: &str, incarnation: u64) -> String {
    format!("{name}#{incarnation:x}")
}

/// herd's node name from ractor_cluster's full node name, `"{name}#{incarnation}@{hostname}"`.
pub(crate) fn node_of_peer(full_name: &str) -> &str {
    let name = full_name
        .rsplit_once('@')
        .map_or(full_name, |(name, _host)| name);
    name.rsplit_once('#').map_or(name, |(name, _inc)| name)
}

/// Node name -> the stand-ins (oldest first) through which that node's endpoint is reached.
#[derive(Debug)]
pub(crate) struct MemberTable<C> {
    by_name: BTreeMap<String, Vec<(ActorId, C)>>,
}

impl<C> Default for MemberTable<C> {
    fn default() -> Self {
        Self {
            by_name: BTreeMap::new(),
        }
    }
}

impl<C: Clone> MemberTable<C> {
    /// Records that `name` is reachable through stand-in `id`. Returns whether the set of
    /// member names changed. A stand-in already known is ignored.
    pub(crate) fn join(&mut self, name: &str, id: ActorId, cell: C) -> bool {
        if self
            .by_name
            .values()
            .flatten()
            .any(|(known, _)| *known == id)
        {
            return false;
        }
        match self.by_name.get_mut(name) {
            Some(cells) => {
                cells.push((id, cell));
                false
            }
            None => {
                self.by_name.insert(name.to_string(), vec![(id, cell)]);
                true
            }
        }
    }

    /// Forgets stand-in `id`. Returns whether the set of member names changed (the stand-in
    /// was its node's last).
    pub(crate) fn leave(&mut self, id: ActorId) -> bool {
        let Some(name) = self
            .by_name
            .iter()
            .find(|(_, cells)| cells.iter().any(|(known, _)| *known == id))
            .map(|(name, _)| name.clone())
        else {
            return false;
        };
        let Some(cells) = self.by_name.get_mut(&name) else {
            return false;
        };
        cells.retain(|(known, _)| *known != id);
        if cells.is_empty() {
            self.by_name.remove(&name);
            true
        } else {
            false
        }
    }

    /// The stand-in to send to for `name`: the newest one.
    pub(crate) fn current(&self, name: &str) -> Option<C> {
        self.by_name
            .get(name)
            .and_then(|cells| cells.last())
            .map(|(_, cell)| cell.clone())
    }

    /// Whether `name` is a member.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// The member names.
    pub(crate) fn names(&self) -> BTreeSet<String> {
        self.by_name.keys().cloned().collect()
    }

    /// Forgets everyone.
    pub(crate) fn clear(&mut self) {
        self.by_name.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(node_id: u64, pid: u64) -> ActorId {
        ActorId::Remote { node_id, pid }
    }

    #[test]
    fn names_roundtrip() {
        assert_eq!(pg_group("kv"), "herd:kv");
        let n = endpoint_name("kv", "node-1");
        assert_eq!(n, "herd:kv@node-1");
        assert_eq!(node_of_endpoint("kv", &n), Some("node-1"));
        // Groups and node names may contain '@'.
        let n = endpoint_name("a@b", "x@y");
        assert_eq!(node_of_endpoint("a@b", &n), Some("x@y"));
        assert_eq!(node_of_endpoint("kv", "herd:kv@"), None);
        assert_eq!(node_of_endpoint("kv", "herd:kv2@n"), None);
        assert_eq!(node_of_endpoint("kv", "herd:other@n"), None);
        assert_eq!(node_of_endpoint("kv", "something-else"), None);
    }

    #[test]
    fn peer_names() {
        assert_eq!(node_of_peer("b@127.0.0.1"), "b");
        assert_eq!(node_of_peer("a@b@[::1]"), "a@b");
        assert_eq!(node_of_peer("plain"), "plain");
        let full = format!("{}@127.0.0.1", ractor_name("n#1@x", 0xbeef));
        assert_eq!(node_of_peer(&full), "n#1@x");
    }

    #[test]
    fn join_and_leave_report_name_changes() {
        let mut t = MemberTable::default();
        assert!(t.join("b", remote(1, 10), 'x'));
        assert!(!t.join("b", remote(1, 10), 'x'), "same stand-in twice");
        assert!(t.join("c", remote(2, 10), 'y'));
        assert_eq!(t.names(), ["b".to_string(), "c".to_string()].into());
        assert!(t.leave(remote(1, 10)));
        assert!(!t.leave(remote(1, 10)), "unknown stand-in");
        assert!(!t.contains("b"));
        assert_eq!(t.current("b"), None);
        assert_eq!(t.current("c"), Some('y'));
        t.clear();
        assert!(t.names().is_empty());
    }

    #[test]
    fn reconnect_overlap_keeps_the_member_and_sends_to_the_newest() {
        let mut t = MemberTable::default();
        assert!(t.join("b", remote(1, 10), "old"));
        // New session's stand-in joins before the old one leaves.
        assert!(!t.join("b", remote(2, 10), "new"));
        assert_eq!(t.current("b"), Some("new"));
        assert!(
            !t.leave(remote(1, 10)),
            "b still reachable through the new stand-in"
        );
        assert_eq!(t.current("b"), Some("new"));
        assert!(t.leave(remote(2, 10)));
        assert!(t.names().is_empty());
        // And in the other order: the old one leaves first.
        assert!(t.join("b", remote(3, 10), "old"));
        assert!(t.leave(remote(3, 10)));
        assert!(t.join("b", remote(4, 10), "new"));
        assert_eq!(t.current("b"), Some("new"));
    }
}
