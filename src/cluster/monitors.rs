//! Who watches whom: a bounded number of heartbeats per node, whatever the cluster's size.
//!
//! With every node beating to every other, an idle cluster of N nodes sends N·(N−1)
//! heartbeats per interval: at 32 nodes that was most of the idle traffic and most of two
//! cores. Instead, as in Akka Cluster, the nodes are placed on a ring by a hash of their names
//! and each node *watches* the [`DetectorConfig::monitors`](super::DetectorConfig::monitors)
//! members that follow it on the ring: it asks them for heartbeats ([`Watchers::grant`], a
//! lease the watcher renews) and applies the silence deadline to them only. Every member is
//! then watched by `monitors` others (when there are more than `monitors` + 1 nodes; in
//! smaller clusters everyone watches everyone, as before), and a node sends and receives
//! about `monitors` heartbeats per interval.
//!
//! A watcher that declares a member unresponsive tells every other member, which then probes
//! that member itself before declaring it down (see [`Detector`](super::detector) docs): one
//! broken link does not take a node out of the whole cluster, and a hung node is reported
//! everywhere within `down_after` plus a probe. Down members leave the ring, so in a partition
//! the watchers move on to the next member of the ring until every unreachable member has been
//! watched from this side.
//!
//! The lease (not a watch/unwatch pair) keeps the watched side's state honest whatever
//! happens to the watcher: a watcher that crashes, moves on, or loses its session simply stops
//! renewing, and the heartbeats stop a lease later.

use std::collections::{BTreeMap, BTreeSet};

use tokio::time::Instant;

/// A node's place on the ring: a fixed hash of its name, the same on every node (so that
/// every member is watched by the same number of others) and spread out (so that a partition
/// along names, `node-1..16` against `node-17..32`, still has watchers on both sides of most
/// boundaries).
fn position(name: &str) -> (u64, &str) {
    (xxhash_rust::xxh3::xxh3_64(name.as_bytes()), name)
}

/// The `k` members that follow `me` on the ring: the ones `me` watches. All of them when
/// there are no more than `k`.
pub(crate) fn successors<'a>(
    me: &str,
    members: impl IntoIterator<Item = &'a str>,
    k: usize,
) -> BTreeSet<String> {
    let mut ring: Vec<(u64, &str)> = members
        .into_iter()
        .filter(|m| *m != me)
        .map(position)
        .collect();
    if ring.len() <= k {
        return ring.into_iter().map(|(_, n)| n.to_string()).collect();
    }
    ring.sort_unstable();
    let start = ring.partition_point(|p| *p < position(me));
    ring.iter()
        .cycle()
        .skip(start)
        .take(k)
        .map(|(_, n)| n.to_string())
        .collect()
}

/// The peers watching this node, each until its lease ends.
#[derive(Debug, Default)]
pub(crate) struct Watchers {
    leases: BTreeMap<String, Instant>,
}

impl Watchers {
    /// `watcher` asked at `now` for heartbeats until `until`. True when it held no lease
    /// (a new watch, to be answered at once), false for a renewal.
    pub(crate) fn grant(&mut self, watcher: &str, now: Instant, until: Instant) -> bool {
        self.leases
            .insert(watcher.to_string(), until)
            .is_none_or(|old| old <= now)
    }

    /// The peers to send a heartbeat to now; forgets expired leases.
    pub(crate) fn targets(&mut self, now: Instant) -> Vec<String> {
        self.leases.retain(|_, until| *until > now);
        self.leases.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("node-{i}")).collect()
    }

    #[test]
    fn every_member_is_watched_by_exactly_k_others() {
        for (n, k) in [(2, 3), (4, 3), (5, 3), (8, 3), (64, 3), (64, 5), (200, 1)] {
            let all = names(n);
            let mut watched_by: BTreeMap<&str, usize> = BTreeMap::new();
            for me in &all {
                let mine = successors(me, all.iter().map(String::as_str), k);
                assert_eq!(mine.len(), k.min(n - 1), "{me} of {n}");
                assert!(!mine.contains(me));
                for m in &mine {
                    *watched_by
                        .entry(all.iter().find(|a| *a == m).unwrap())
                        .or_default() += 1;
                }
            }
            assert_eq!(watched_by.len(), n);
            assert!(watched_by.values().all(|&c| c == k.min(n - 1)), "{n}/{k}");
        }
    }

    #[test]
    fn a_member_going_down_moves_its_watchers_on_to_the_next() {
        let all = names(16);
        let me = "node-3";
        let before = successors(me, all.iter().map(String::as_str), 2);
        let gone = before.iter().next().unwrap().clone();
        let after = successors(me, all.iter().map(String::as_str).filter(|m| *m != gone), 2);
        assert_eq!(after.len(), 2);
        assert!(!after.contains(&gone));
        assert_eq!(before.intersection(&after).count(), 1);
    }

    #[test]
    fn leases_end() {
        let t = Instant::now();
        let mut w = Watchers::default();
        assert!(w.grant("a", t, t + Duration::from_secs(1)));
        assert!(w.grant("b", t, t + Duration::from_secs(3)));
        assert!(!w.grant("b", t, t + Duration::from_secs(3)), "a renewal");
        assert_eq!(w.targets(t), ["a", "b"]);
        assert_eq!(w.targets(t + Duration::from_secs(2)), ["b"]);
        let later = t + Duration::from_secs(2);
        assert!(
            w.grant("a", later, t + Duration::from_secs(5)),
            "expired: new again"
        );
        assert_eq!(w.targets(t + Duration::from_secs(4)), ["a"]);
    }
}
