//! Heartbeats and leave announcements: a reserved group on herd's own envelope, not a
//! second transport.
//!
//! Every node joins the group [`HEARTBEAT_GROUP`] at start. Its endpoint is a dedicated actor,
//! so heartbeats are handled off the replicas' path: a replica busy applying a large repair
//! does not delay them. One task per node ticks the detector, sends [`Beat::Alive`] every
//! `heartbeat_interval` to the peers watching it ([`Beat::Watch`], see the `monitors`
//! module), sends the detector's watch requests and tells every member about a peer it
//! declared unresponsive ([`Beat::Unreachable`]). [`Node::shutdown`](super::Node::shutdown)
//! sends [`Beat::Leave`] and waits (briefly) for each peer's [`Beat::LeaveAck`], so that peers
//! report the node Down at once and the announcement is not lost with the closing sessions.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use super::group::{Group, GroupEvent};
use super::lock;
use super::membership::Membership;

/// The reserved group carrying heartbeats. Users cannot join names starting with `_herd.`.
pub(crate) const HEARTBEAT_GROUP: &str = "_herd.heartbeat";

/// Prefix of reserved group names.
pub(crate) const RESERVED_PREFIX: &str = "_herd.";

/// The largest heartbeat message accepted.
const BEAT_LIMIT: usize = 1024;

/// A heartbeat group message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Beat {
    /// "I am alive."
    Alive,
    /// "I am leaving now": report me Down at once.
    Leave,
    /// "I saw your leave."
    LeaveAck,
    /// "Your name belongs to another live node, which advertises `existing`: I am closing
    /// your session." The receiver stops dialing and reports the refusal.
    NameTaken {
        /// The address the node already holding the name advertises.
        existing: String,
    },
    /// "I watch you: send me heartbeats for a lease" (renewed while the sender watches).
    /// A new watch is answered at once with an [`Beat::Alive`].
    Watch,
    /// "I watch `node` and declared it unresponsive": the receiver probes it itself.
    Unreachable {
        /// The node's name.
        node: String,
    },
}

/// Encodes a beat (a few bytes; an address for [`Beat::NameTaken`]).
pub(crate) fn encode(beat: &Beat) -> Vec<u8> {
    // Small variants: encoding cannot fail; an absurdly long address encodes as empty,
    // which the receiver refuses.
    crate::codec::encode(beat, BEAT_LIMIT).unwrap_or_default()
}

/// Who acknowledged our leave announcement.
#[derive(Debug, Default)]
pub(crate) struct LeaveAcks {
    acked: Mutex<BTreeSet<String>>,
    changed: watch::Sender<u64>,
}

impl LeaveAcks {
    fn ack(&self, from: String) {
        lock(&self.acked).insert(from);
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// The heartbeat group's `on_event`: feeds the detector, answers leaves.
pub(crate) fn on_event(
    membership: Arc<Membership>,
    group: Arc<OnceLock<Group>>,
    acks: Arc<LeaveAcks>,
    refused: Arc<dyn Fn(String, String) + Send + Sync>,
) -> Box<dyn Fn(GroupEvent) + Send + Sync + 'static> {
    Box::new(move |event| {
        let GroupEvent::Message { from, bytes } = event else {
            return;
        };
        match crate::codec::decode::<Beat>(&bytes, BEAT_LIMIT) {
            Ok(Beat::Alive) => membership.heartbeat(Instant::now(), &from),
            Ok(Beat::Watch) => {
                // A new watcher hears from us at once (a probe waits on it); a renewal is
                // answered by the next regular beat.
                if membership.watched_by(Instant::now(), &from)
                    && let Some(g) = group.get()
                {
                    let _ = g.send(&from, encode(&Beat::Alive));
                }
            }
            Ok(Beat::Unreachable { node }) => membership.report(Instant::now(), &from, &node),
            Ok(Beat::Leave) => {
                membership.leave(Instant::now(), &from);
                if let Some(g) = group.get() {
                    let _ = g.send(&from, encode(&Beat::LeaveAck));
                }
            }
            Ok(Beat::LeaveAck) => acks.ack(from),
            Ok(Beat::NameTaken { existing }) => refused(from, existing),
            Err(e) => {
                tracing::warn!(from = %from, error = %e, "bad heartbeat message, dropped");
            }
        }
    })
}

/// Sends heartbeats and ticks the detector, forever (the caller aborts it).
pub(crate) async fn run(membership: Arc<Membership>, group: Group, interval: Duration) {
    let mut ticks = tokio::time::interval(membership.config().tick_interval());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_beat = Instant::now();
    loop {
        let now = ticks.tick().await;
        // A peer whose session just closed refuses a send; the detector handles it.
        if now >= next_beat {
            next_beat = now + interval;
            let beat = encode(&Beat::Alive);
            for peer in membership.beat_targets(now) {
                let _ = group.send(&peer, beat.clone());
            }
        }
        let out = membership.tick(Instant::now());
        let watch = encode(&Beat::Watch);
        for peer in out.watch {
            let _ = group.send(&peer, watch.clone());
        }
        for node in out.report {
            let report = encode(&Beat::Unreachable { node: node.clone() });
            for peer in group.members() {
                if peer != node {
                    let _ = group.send(&peer, report.clone());
                }
            }
        }
    }
}

/// Announces our leave to every member of `group` and waits until each acknowledged it or
/// `timeout` passed. Returns the peers that did not acknowledge.
pub(crate) async fn announce_leave(
    group: &Group,
    acks: &LeaveAcks,
    timeout: Duration,
) -> BTreeSet<String> {
    let peers = group.members();
    let mut changed = acks.changed.subscribe();
    for peer in &peers {
        let _ = group.send(peer, encode(&Beat::Leave));
    }
    let deadline = Instant::now() + timeout;
    loop {
        let missing: BTreeSet<String> = {
            let acked = lock(&acks.acked);
            peers.difference(&acked).cloned().collect()
        };
        if missing.is_empty() {
            return missing;
        }
        tokio::select! {
            res = changed.changed() => if res.is_err() { return missing },
            () = tokio::time::sleep_until(deadline) => return missing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_roundtrip_and_are_tiny() {
        for b in [Beat::Alive, Beat::Leave, Beat::LeaveAck, Beat::Watch] {
            let bytes = encode(&b);
            assert!(bytes.len() <= 4, "{bytes:?}");
            assert_eq!(crate::codec::decode::<Beat>(&bytes, BEAT_LIMIT).unwrap(), b);
        }
        let taken = Beat::NameTaken {
            existing: "127.0.0.1:4000".into(),
        };
        assert_eq!(
            crate::codec::decode::<Beat>(&encode(&taken), BEAT_LIMIT).unwrap(),
            taken
        );
        let report = Beat::Unreachable {
            node: "node-7".into(),
        };
        assert_eq!(
            crate::codec::decode::<Beat>(&encode(&report), BEAT_LIMIT).unwrap(),
            report
        );
        assert!(crate::codec::decode::<Beat>(&[0xff, 0xff], BEAT_LIMIT).is_err());
    }
}
