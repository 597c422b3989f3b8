//! In-process tests of presences wired to each other (across processes: `tests/presence.rs`).

use super::*;
use crate::replica::testing::{Net, wire};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::time::Duration;
use tokio::time::{Instant, timeout};

const DEADLINE: Duration = Duration::from_secs(10);

/// An actor that does nothing until stopped.
struct Idle;

impl Actor for Idle {
    type Msg = ();
    type State = ();
    type Arguments = ();
    async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

async fn actor() -> ActorRef<()> {
    Actor::spawn(None, Idle, ()).await.unwrap().0
}

fn options() -> ReplicaOptions {
    ReplicaOptions::new("presence").sync_interval(Duration::from_millis(5))
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn next(rx: &mut mpsc::UnboundedReceiver<PresenceDiff<String>>) -> PresenceDiff<String> {
    timeout(DEADLINE, rx.recv()).await.unwrap().unwrap()
}

fn is_join(d: &PresenceDiff<String>, key: &str, meta: &str) -> bool {
    matches!(d, PresenceDiff::Join { key: k, placement, .. } if k == key && placement.meta == meta)
}

fn is_leave(d: &PresenceDiff<String>, key: &str) -> bool {
    matches!(d, PresenceDiff::Leave { key: k, .. } if k == key)
}

#[tokio::test]
async fn track_list_update_untrack_with_one_diff_each() {
    let p: Presence<String> = Presence::start_local("a", options()).await.unwrap();
    let mut diffs = p.subscribe(Some("lobby"));
    let mut other = p.subscribe(Some("elsewhere"));
    let user = actor().await;
    let t = p
        .track(&user.get_cell(), "lobby", "u1", "online".into())
        .await
        .unwrap();
    assert!(is_join(&next(&mut diffs).await, "u1", "online"));
    let list = p.list("lobby");
    assert_eq!(list["u1"].len(), 1);
    assert_eq!(list["u1"][0].node, "a");
    assert_eq!(list["u1"][0].meta, "online");

    p.update(&t, "away".into()).await.unwrap();
    assert!(is_leave(&next(&mut diffs).await, "u1"));
    assert!(is_join(&next(&mut diffs).await, "u1", "away"));
    assert_eq!(p.count("lobby"), 1, "a meta change is not a second place");

    p.untrack(&t).await.unwrap();
    assert!(is_leave(&next(&mut diffs).await, "u1"));
    p.untrack(&t).await.unwrap(); // idempotent
    assert!(p.list("lobby").is_empty());
    assert_eq!(p.count("lobby"), 0);
    assert!(
        other.try_recv().is_err(),
        "another topic's subscriber saw nothing"
    );
    assert!(diffs.try_recv().is_err(), "exactly one diff per change");
    user.stop(None);
    p.stop().await.unwrap();
}

#[tokio::test]
async fn a_stopped_actor_is_untracked() {
    let p: Presence<String> = Presence::start_local("a", options()).await.unwrap();
    let mut diffs = p.subscribe(None);
    let user = actor().await;
    p.track(&user.get_cell(), "t", "k1", "m".into())
        .await
        .unwrap();
    p.track(&user.get_cell(), "t", "k2", "m".into())
        .await
        .unwrap();
    next(&mut diffs).await;
    next(&mut diffs).await;
    user.stop(None);
    let leaves = [next(&mut diffs).await, next(&mut diffs).await];
    assert!(
        leaves
            .iter()
            .all(|d| matches!(d, PresenceDiff::Leave { .. }))
    );
    until("untracked", || p.is_empty()).await;
    p.stop().await.unwrap();
}

#[tokio::test]
async fn another_nodes_track_cannot_be_changed_here() {
    let a: Presence<String> = Presence::start_local("a", options()).await.unwrap();
    let b: Presence<String> = Presence::start_local("b", options()).await.unwrap();
    let user = actor().await;
    let t = a
        .track(&user.get_cell(), "t", "k", "m".into())
        .await
        .unwrap();
    assert!(matches!(
        b.untrack(&t).await,
        Err(PresenceError::NotOwned(_))
    ));
    assert!(matches!(
        b.update(&t, "x".into()).await,
        Err(PresenceError::NotOwned(_))
    ));
    user.stop(None);
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

/// `a` goes out of `b`'s view and comes back with the same incarnation: its entries leave,
/// then join again once, with no write of theirs. With `a_sees_it`, `a` loses sight of `b`
/// too (a partition); without, only `b` saw anything (a reconnect in which one of two
/// sessions was closed), and `a` must still confirm itself when `b` asks.
async fn out_of_view_and_back(a_sees_it: bool) {
    let a: Presence<String> = Presence::start_local("a", options()).await.unwrap();
    let b: Presence<String> = Presence::start_local("b", options()).await.unwrap();
    wire(a.replica(), "a", b.replica(), "b");
    let mut on_b = b.subscribe(Some("room"));
    let user = actor().await;
    a.track(&user.get_cell(), "room", "u1", "here".into())
        .await
        .unwrap();
    assert!(is_join(&next(&mut on_b).await, "u1", "here"));
    assert_eq!(b.list("room")["u1"][0].node, "a");
    assert_eq!((b.count("room"), b.count("other")), (1, 0));

    if a_sees_it {
        a.replica().set_neighbours(Vec::<String>::new());
    }
    b.replica().set_neighbours(Vec::<String>::new());
    assert!(is_leave(&next(&mut on_b).await, "u1"));
    assert!(b.list("room").is_empty());
    assert_eq!(b.count("room"), 0);
    if a_sees_it {
        a.replica().set_neighbours(["b".to_string()]);
    }
    b.replica().set_neighbours(["a".to_string()]);
    assert!(is_join(&next(&mut on_b).await, "u1", "here"));
    assert_eq!(b.list("room")["u1"].len(), 1, "no duplicate");
    assert_eq!(b.count("room"), 1, "no duplicate");
    assert!(on_b.try_recv().is_err());
    user.stop(None);
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

/// A node that goes out of view (down, partitioned) leaves; when it is back with the same
/// incarnation its entries join again, once, with no write.
#[tokio::test]
async fn a_node_out_of_view_leaves_and_comes_back_without_duplicates() {
    out_of_view_and_back(true).await;
}

/// A leave and return seen by one side only: the side that saw it gets the entries back.
#[tokio::test]
async fn entries_come_back_when_only_one_side_saw_the_other_leave() {
    out_of_view_and_back(false).await;
}

/// A restarted node is a new incarnation: its previous run's entries never show again, and
/// the new run removes them from the map.
#[tokio::test]
async fn a_restarted_node_leaves_no_ghosts() {
    let a: Presence<String> = Presence::start_local("a", options()).await.unwrap();
    let b: Presence<String> = Presence::start_local("b", options()).await.unwrap();
    let net = Net::default();
    net.join("a", a.replica());
    net.join("b", b.replica());
    a.replica().set_neighbours(["b".to_string()]);
    b.replica().set_neighbours(["a".to_string()]);
    let user = actor().await;
    a.track(&user.get_cell(), "room", "old", "1".into())
        .await
        .unwrap();
    until("old entry on b", || b.list("room").contains_key("old")).await;
    // a goes down (b sees it go), and comes back as a new run with a new track.
    b.replica().set_neighbours(Vec::<String>::new());
    a.stop().await.unwrap();
    until("a out of b's view", || b.list("room").is_empty()).await;
    let a2: Presence<String> = Presence::start_local("a", options()).await.unwrap();
    net.join("a", a2.replica());
    a2.replica().set_neighbours(["b".to_string()]);
    b.replica().set_neighbours(["a".to_string()]);
    let user2 = actor().await;
    a2.track(&user2.get_cell(), "room", "new", "2".into())
        .await
        .unwrap();
    until("new entry on b", || b.list("room").contains_key("new")).await;
    // The old entry reached a2 through the repair and was removed there and then on b.
    until("old entry gone from both maps", || {
        let in_map = |p: &Presence<String>| {
            p.replica().read(|m| {
                m.iter()
                    .any(|(s, _)| matches!(s, Slot::Entry { key, .. } if key == "old"))
            })
        };
        !in_map(&a2) && !in_map(&b)
    })
    .await;
    assert!(!b.list("room").contains_key("old"));
    assert!(!a2.list("room").contains_key("old"));
    user.stop(None);
    user2.stop(None);
    a2.stop().await.unwrap();
    b.stop().await.unwrap();
}
