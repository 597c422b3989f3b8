//! In-process tests of registries wired to each other (across processes: `tests/registry.rs`).

use super::*;
use crate::replica::testing::{Net, wire};
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

fn options() -> RegistryOptions {
    RegistryOptions::new("registry")
        .replica(ReplicaOptions::new("registry").sync_interval(Duration::from_millis(5)))
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn next(rx: &mut mpsc::UnboundedReceiver<RegistryEvent>) -> RegistryEvent {
    timeout(DEADLINE, rx.recv()).await.unwrap().unwrap()
}

fn holder(r: &Registry, name: &str) -> Option<String> {
    r.whereis(name).map(|e| e.node.to_string())
}

#[tokio::test]
async fn register_lookup_select_unregister() {
    let r = Registry::start_local("a", options()).await.unwrap();
    let mut events = r.subscribe();
    let w1 = actor().await;
    let w2 = actor().await;
    let reg = r.register("worker/1", &w1).await.unwrap();
    // Read your writes: shows before register returned.
    assert_eq!(holder(&r, "worker/1").as_deref(), Some("a"));
    let found: ActorRef<()> = r
        .lookup("worker/1")
        .and_then(NamedActor::into_local)
        .unwrap();
    assert_eq!(found.get_id(), w1.get_id());
    assert!(
        matches!(next(&mut events).await, RegistryEvent::Registered(e) if e.name == "worker/1")
    );
    match r.register("worker/1", &w2).await {
        Err(RegistryError::AlreadyRegistered { holder }) => assert_eq!(holder.node, "a"),
        other => panic!("expected AlreadyRegistered, got {other:?}"),
    }
    r.register("worker/2", &w2).await.unwrap();
    r.register("other", &w2).await.unwrap();
    assert_eq!(r.count(), 3);
    let names: Vec<String> = r
        .select("worker/")
        .into_iter()
        .map(|e| e.name.to_string())
        .collect();
    assert_eq!(names, ["worker/1", "worker/2"]);
    next(&mut events).await;
    next(&mut events).await;
    r.unregister(&reg).await.unwrap();
    r.unregister(&reg).await.unwrap(); // idempotent
    assert!(
        matches!(next(&mut events).await, RegistryEvent::Unregistered(e) if e.name == "worker/1")
    );
    assert!(r.lookup::<()>("worker/1").is_none());
    assert_eq!(r.count(), 2);
    assert!(events.try_recv().is_err(), "one event per change");
    w1.stop(None);
    w2.stop(None);
    r.stop().await.unwrap();
}

#[tokio::test]
async fn a_stopped_actor_loses_its_names() {
    let r = Registry::start_local("a", options()).await.unwrap();
    let w = actor().await;
    r.register("x", &w).await.unwrap();
    r.register("y", &w).await.unwrap();
    w.stop(None);
    until("names gone", || r.count() == 0).await;
    r.stop().await.unwrap();
}

#[tokio::test]
async fn another_nodes_claim_cannot_be_removed_here() {
    let a = Registry::start_local("a", options()).await.unwrap();
    let b = Registry::start_local("b", options()).await.unwrap();
    wire(a.replica(), "a", b.replica(), "b");
    let w = actor().await;
    let reg = a.register("x", &w).await.unwrap();
    until("x on b", || holder(&b, "x").as_deref() == Some("a")).await;
    assert!(matches!(
        b.unregister(&reg).await,
        Err(RegistryError::NotOwned(_))
    ));
    // b sees the name as taken.
    let v = actor().await;
    assert!(matches!(
        b.register("x", &v).await,
        Err(RegistryError::AlreadyRegistered { .. })
    ));
    w.stop(None);
    v.stop(None);
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

/// Two sides of a partition register one name; after the heal both pick the earlier claim,
/// and only the loser's node acts: one conflict event, its actor stopped, its claim removed.
#[tokio::test]
async fn a_conflict_has_one_winner_everywhere_and_the_loser_stops() {
    let a = Registry::start_local("a", options()).await.unwrap();
    let b = Registry::start_local("b", options()).await.unwrap();
    let net = Net::default();
    net.join("a", a.replica());
    net.join("b", b.replica());
    let first = actor().await;
    let second = actor().await;
    a.register("x", &first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    b.register("x", &second).await.unwrap();
    let mut on_a = a.subscribe();
    let mut on_b = b.subscribe();
    a.replica().set_neighbours(["b".to_string()]);
    b.replica().set_neighbours(["a".to_string()]);
    until("both see a's claim", || {
        holder(&a, "x").as_deref() == Some("a") && holder(&b, "x").as_deref() == Some("a")
    })
    .await;
    until("loser stopped", || {
        second.get_status() == ractor::ActorStatus::Stopped
    })
    .await;
    // b: its own claim left, a's took the name, and b was told of its loss.
    let mut saw_conflict = 0;
    let end = Instant::now() + Duration::from_millis(200);
    while Instant::now() < end {
        if let Ok(Some(RegistryEvent::Conflict { winner, loser })) =
            timeout(Duration::from_millis(50), on_b.recv()).await
        {
            assert_eq!(winner.node, "a");
            assert_eq!(loser.node, "b");
            saw_conflict += 1;
        }
    }
    assert_eq!(
        saw_conflict, 1,
        "exactly one conflict event on the loser's node"
    );
    while let Ok(e) = on_a.try_recv() {
        assert!(
            !matches!(e, RegistryEvent::Conflict { .. }),
            "winner not told"
        );
    }
    assert_eq!(first.get_status(), ractor::ActorStatus::Running);
    until("loser's claim gone from both maps", || {
        let claims = |r: &Registry| {
            r.replica().read(|m| {
                m.iter()
                    .filter(|(s, _)| matches!(s, Slot::Name { name, .. } if name == "x"))
                    .count()
            })
        };
        claims(&a) == 1 && claims(&b) == 1
    })
    .await;
    first.stop(None);
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[tokio::test]
async fn notify_policy_keeps_the_loser_running() {
    let a = Registry::start_local("a", options()).await.unwrap();
    let b = Registry::start_local("b", options().conflict(ConflictPolicy::Notify))
        .await
        .unwrap();
    let net = Net::default();
    net.join("a", a.replica());
    net.join("b", b.replica());
    let first = actor().await;
    let second = actor().await;
    a.register("x", &first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    b.register("x", &second).await.unwrap();
    let mut on_b = b.subscribe();
    a.replica().set_neighbours(["b".to_string()]);
    b.replica().set_neighbours(["a".to_string()]);
    loop {
        if matches!(next(&mut on_b).await, RegistryEvent::Conflict { .. }) {
            break;
        }
    }
    assert_eq!(holder(&b, "x").as_deref(), Some("a"));
    assert_eq!(second.get_status(), ractor::ActorStatus::Running);
    first.stop(None);
    second.stop(None);
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

/// `a` goes out of `b`'s view and comes back with the same incarnation: its names leave and
/// show again, once, with no re-registration (Horde #291). With `a_sees_it`, `a` loses sight
/// of `b` too (a partition); without, only `b` saw anything (a reconnect in which one of two
/// sessions was closed), and `a` must still confirm itself when `b` asks.
async fn out_of_view_and_back(a_sees_it: bool) {
    let a = Registry::start_local("a", options()).await.unwrap();
    let b = Registry::start_local("b", options()).await.unwrap();
    wire(a.replica(), "a", b.replica(), "b");
    let w = actor().await;
    a.register("x", &w).await.unwrap();
    until("x on b", || holder(&b, "x").is_some()).await;
    let mut on_b = b.subscribe();
    if a_sees_it {
        a.replica().set_neighbours(Vec::<String>::new());
    }
    b.replica().set_neighbours(Vec::<String>::new());
    assert!(matches!(
        next(&mut on_b).await,
        RegistryEvent::Unregistered(_)
    ));
    assert_eq!(b.count(), 0);
    if a_sees_it {
        a.replica().set_neighbours(["b".to_string()]);
    }
    b.replica().set_neighbours(["a".to_string()]);
    assert!(matches!(next(&mut on_b).await, RegistryEvent::Registered(e) if e.node == "a"));
    assert_eq!(holder(&b, "x").as_deref(), Some("a"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(on_b.try_recv().is_err(), "no duplicate");
    w.stop(None);
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

/// Names of a node out of view (down, partitioned) are hidden, and shown again, with no
/// re-registration, when it returns with the same incarnation (Horde #291).
#[tokio::test]
async fn names_of_a_node_out_of_view_come_back_without_a_rewrite() {
    out_of_view_and_back(true).await;
}

/// A leave and return seen by one side only: the side that saw it gets the names back.
#[tokio::test]
async fn names_come_back_when_only_one_side_saw_the_other_leave() {
    out_of_view_and_back(false).await;
}

/// A node that joins a registry already holding names waits until it holds them all.
#[tokio::test]
async fn a_joining_node_is_synced_before_it_answers() {
    let a = Registry::start_local("a", options()).await.unwrap();
    let w = actor().await;
    for i in 0..500 {
        a.register(format!("n{i}"), &w).await.unwrap();
    }
    let b = Registry::start_local("b", options()).await.unwrap();
    wire(a.replica(), "a", b.replica(), "b");
    assert!(b.until_synced(&["a".to_string()], DEADLINE).await);
    assert_eq!(b.count(), 500, "no name missing once synced");
    w.stop(None);
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}
