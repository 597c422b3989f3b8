//! In-process tests: placement, and one supervisor's restart rules (across processes:
//! `tests/supervisor.rs`).

use super::*;
use crate::registry::NamedActor;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::time::Instant;

const DEADLINE: Duration = Duration::from_secs(10);

fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn rendezvous_is_a_function_of_the_member_set() {
    let members = names(&["a", "b", "c"]);
    for i in 0..100 {
        let id = format!("child-{i}");
        let owner = Rendezvous.owner(&id, &members);
        assert!(owner.is_some());
        assert_eq!(owner, Rendezvous.owner(&id, &names(&["c", "a", "b"])));
    }
    assert_eq!(Rendezvous.owner("x", &[]), None);
}

#[test]
fn rendezvous_spreads_and_a_join_moves_only_what_the_newcomer_wins() {
    let three = names(&["a", "b", "c"]);
    let four = names(&["a", "b", "c", "d"]);
    let mut per = HashMap::new();
    let mut moved = 0;
    for i in 0..3000 {
        let id = format!("child-{i}");
        let before = Rendezvous.owner(&id, &three).unwrap_or_default();
        let after = Rendezvous.owner(&id, &four).unwrap_or_default();
        *per.entry(before.clone()).or_insert(0) += 1;
        if before != after {
            assert_eq!(after, "d", "a join moves children only to the newcomer");
            moved += 1;
        }
    }
    for (node, n) in per {
        assert!((800..1200).contains(&n), "{node} got {n} of 3000");
    }
    assert!((550..950).contains(&moved), "moved {moved} of 3000");
}

#[test]
fn quorum_counts_a_static_majority() {
    let q = Quorum::count(3);
    assert!(q.has_quorum(&names(&["a", "b"])));
    assert!(!q.has_quorum(&names(&["c"])));
    let q = Quorum::count(4);
    assert!(!q.has_quorum(&names(&["a", "b"])));
    let q = Quorum::members(["a", "b", "c"]);
    assert!(q.has_quorum(&names(&["a", "c", "x"])));
    assert!(!q.has_quorum(&names(&["a", "x", "y"])));
}

/// A child that does nothing; `()` stops it, a `panic` flag in its args makes it fail to
/// start.
struct Idle;

impl Actor for Idle {
    type Msg = ();
    type State = ();
    type Arguments = bool;
    async fn pre_start(&self, _: ActorRef<()>, fail: bool) -> Result<(), ActorProcessingErr> {
        if fail {
            panic!("this child panics on start");
        }
        Ok(())
    }
}

fn options(starts: Arc<AtomicUsize>) -> SupervisorOptions {
    SupervisorOptions::new("unit")
        .sync_interval(Duration::from_millis(5))
        .intensity(2, Duration::from_secs(5))
        .kind("idle", move |ctx: ChildContext| {
            let starts = starts.clone();
            async move {
                starts.fetch_add(1, Ordering::SeqCst);
                let fail = ctx.args == b"panic";
                let (actor, _) = Actor::spawn(None, Idle, fail).await?;
                Ok(actor.get_cell())
            }
        })
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn status(sup: &Supervisor, id: &str) -> Option<ChildStatus> {
    sup.which_children()
        .into_iter()
        .find(|c| c.id == id)
        .map(|c| c.status)
}

#[tokio::test]
async fn start_run_refuse_a_second_start_and_terminate() {
    let starts = Arc::new(AtomicUsize::new(0));
    let sup = Supervisor::start_local("a", options(starts.clone()))
        .await
        .unwrap();
    sup.start_child(ChildSpec::new("c1", "idle", Vec::new()))
        .await
        .unwrap();
    until("c1 running", || {
        status(&sup, "c1") == Some(ChildStatus::Running { node: "a".into() })
    })
    .await;
    let actor: ActorRef<()> = sup.lookup("c1").and_then(NamedActor::into_local).unwrap();
    // Horde #200: a second start of an existing id writes nothing.
    let stats = sup.specs().stats();
    match sup
        .start_child(ChildSpec::new("c1", "idle", b"other".to_vec()))
        .await
    {
        Err(SupervisorError::AlreadyPresent { id, node }) => {
            assert_eq!(id, "c1");
            assert_eq!(node.as_deref(), Some("a"));
        }
        other => panic!("{other:?}"),
    }
    let after = sup.specs().stats();
    assert_eq!((after.keys, after.root), (stats.keys, stats.root));
    assert!(matches!(
        sup.start_child(ChildSpec::new("c2", "nope", Vec::new()))
            .await,
        Err(SupervisorError::UnknownKind(_))
    ));
    assert_eq!(
        sup.count_children(),
        ChildCounts {
            specs: 1,
            running: 1,
            failed: 0,
            pending: 0
        }
    );
    sup.terminate_child("c1").await.unwrap();
    until("c1 stopped", || {
        actor.get_status() == ractor::ActorStatus::Stopped && sup.which_children().is_empty()
    })
    .await;
    assert!(matches!(
        sup.terminate_child("c1").await,
        Err(SupervisorError::NotFound(_))
    ));
    assert_eq!(starts.load(Ordering::SeqCst), 1);
    sup.shutdown().await.unwrap();
}

#[tokio::test]
async fn restart_policies() {
    let starts = Arc::new(AtomicUsize::new(0));
    let sup = Supervisor::start_local("a", options(starts.clone()))
        .await
        .unwrap();
    sup.start_child(ChildSpec::new("perm", "idle", Vec::new()))
        .await
        .unwrap();
    sup.start_child(ChildSpec::new("trans", "idle", Vec::new()).restart(Restart::Transient))
        .await
        .unwrap();
    until("both running", || sup.count_children().running == 2).await;
    let first: ActorRef<()> = sup.lookup("perm").and_then(NamedActor::into_local).unwrap();
    first.stop(None);
    until("perm restarted", || {
        sup.lookup::<()>("perm")
            .and_then(NamedActor::into_local)
            .is_some_and(|a| a.get_id() != first.get_id())
    })
    .await;
    // A transient child that stops normally is done: its spec goes.
    let trans: ActorRef<()> = sup
        .lookup("trans")
        .and_then(NamedActor::into_local)
        .unwrap();
    trans.stop(None);
    until("trans gone", || status(&sup, "trans").is_none()).await;
    assert_eq!(starts.load(Ordering::SeqCst), 3);
    sup.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_child_that_panics_on_start_is_failed_once() {
    let starts = Arc::new(AtomicUsize::new(0));
    let sup = Supervisor::start_local("a", options(starts.clone()))
        .await
        .unwrap();
    sup.start_child(ChildSpec::new("bad", "idle", b"panic".to_vec()))
        .await
        .unwrap();
    until("bad failed", || {
        matches!(status(&sup, "bad"), Some(ChildStatus::Failed { .. }))
    })
    .await;
    // Not retried after it failed: max_restarts 2 means 3 attempts in the window.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(starts.load(Ordering::SeqCst), 3);
    assert_eq!(sup.count_children().failed, 1);
    // Terminating clears the mark; the id can be used again.
    sup.terminate_child("bad").await.unwrap();
    until("bad gone", || sup.which_children().is_empty()).await;
    sup.start_child(ChildSpec::new("bad", "idle", Vec::new()))
        .await
        .unwrap();
    until("bad running", || sup.count_children().running == 1).await;
    sup.shutdown().await.unwrap();
}
