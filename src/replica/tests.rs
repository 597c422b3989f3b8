//! In-process tests of one or two replicas. Two replicas here talk through a loop-back
//! outbox into each other's actor; the real transport is tested with separate node processes
//! in `tests/cluster.rs`.

use super::actor::ReplicaMsg;
use super::shared::Outbox;
use super::*;
use crate::cluster::ClusterError;
use crate::storage::{MemoryStorage, Storage, WriteBatch};
use ractor::ActorRef;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::{Instant, timeout};

mod lifecycle;
mod subscriptions;
mod typed;

const DEADLINE: Duration = Duration::from_secs(10);

/// Delivers to another replica's actor as if from node `from`.
struct Loop {
    from: String,
    to: Mutex<Option<ActorRef<ReplicaMsg>>>,
}

impl Outbox for Loop {
    fn send(&self, to: &str, bytes: Vec<u8>) -> Result<(), ClusterError> {
        let not_sent = |reason: String| ClusterError::Send {
            node: to.to_string(),
            reason,
        };
        let actor = self.to.lock().unwrap().clone();
        let actor = actor.ok_or_else(|| not_sent("not wired".into()))?;
        actor
            .cast(ReplicaMsg::Inbound {
                from: self.from.clone(),
                bytes,
            })
            .map_err(|e| not_sent(e.to_string()))
    }
    fn send_unframed(&self, to: &str, bytes: Vec<u8>) -> Result<(), ClusterError> {
        self.send(to, bytes)
    }
    fn frames_rejected(&self) -> u64 {
        0
    }
    fn transport_bytes(&self) -> (u64, u64) {
        (0, 0)
    }
    fn close(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async {})
    }
}

fn options(name: &str) -> ReplicaOptions {
    ReplicaOptions::new(name).sync_interval(Duration::from_millis(5))
}

/// Two replicas "a" and "b" wired to each other as neighbours.
async fn pair() -> (Kv, Kv) {
    pair_of().await
}

/// Two replicas of any type, "a" and "b", wired to each other as neighbours.
async fn pair_of<C: MapView>() -> (Replica<C>, Replica<C>) {
    let a = Replica::start_local(options("kv")).await.unwrap();
    let b = Replica::start_local(options("kv")).await.unwrap();
    wire_pair(&a, &b);
    (a, b)
}

/// Makes `a` and `b` neighbours of each other (as nodes "a" and "b").
fn wire_pair<C: MapView>(a: &Replica<C>, b: &Replica<C>) {
    for (me, other, name, other_name) in [(a, b, "a", "b"), (b, a, "b", "a")] {
        me.attach(Arc::new(Loop {
            from: name.into(),
            to: Mutex::new(Some(other.actor_ref().clone())),
        }));
        me.set_neighbours([other_name.to_string()]);
    }
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The diffs of the next update (which must not be a lag).
async fn next_diffs<C: MapView>(sub: &mut Subscription<C>) -> Vec<Diff<C::Item, C::View>> {
    match timeout(DEADLINE, sub.recv()).await {
        Ok(Some(Update::Diffs(diffs))) => diffs,
        other => panic!("expected diffs, got {other:?}"),
    }
}

fn s(x: &str) -> String {
    x.to_string()
}

#[tokio::test]
async fn put_get_delete_to_map() {
    let kv = Kv::start_local(options("kv")).await.unwrap();
    kv.put(s("a"), s("1")).await.unwrap();
    kv.put(s("b"), s("2")).await.unwrap();
    kv.put(s("a"), s("3")).await.unwrap();
    kv.delete("b").await.unwrap();
    kv.delete("never there").await.unwrap();
    assert_eq!(kv.get("a"), Some(s("3")));
    assert_eq!(kv.get("b"), None);
    assert_eq!(kv.len(), 1);
    assert_eq!(kv.to_map(), [(s("a"), s("3"))].into_iter().collect());
    assert_eq!(kv.read(|m| m.len()), 1);
    kv.stop().await.unwrap();
}

#[tokio::test]
async fn local_diffs_report_only_visible_changes() {
    let kv = Kv::start_local(options("kv")).await.unwrap();
    let mut diffs = kv.subscribe();
    kv.put(s("k"), s("v1")).await.unwrap();
    kv.put(s("k"), s("v1")).await.unwrap(); // same value: no diff
    kv.put(s("k"), s("v2")).await.unwrap();
    kv.delete("k").await.unwrap();
    kv.delete("k").await.unwrap(); // absent: no diff
    kv.put(s("end"), s("x")).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 4 {
        got.extend(next_diffs(&mut diffs).await);
    }
    assert_eq!(
        got,
        vec![
            Diff::Added {
                key: s("k"),
                value: s("v1")
            },
            Diff::Updated {
                key: s("k"),
                value: s("v2")
            },
            Diff::Removed { key: s("k") },
            Diff::Added {
                key: s("end"),
                value: s("x")
            },
        ]
    );
}

#[tokio::test]
async fn generic_mutate_reports_adds_and_updates() {
    let kv = Kv::start_local(options("kv")).await.unwrap();
    let mut diffs = kv.subscribe();
    kv.mutate(|m, id, ts| m.put(id, ts, s("k"), s("1")))
        .await
        .unwrap();
    kv.mutate(|m, id, ts| m.put(id, ts, s("k"), s("2")))
        .await
        .unwrap();
    kv.mutate(|m, _, _| m.remove("k")).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        got.extend(next_diffs(&mut diffs).await);
    }
    assert_eq!(
        got,
        vec![
            Diff::Added {
                key: s("k"),
                value: s("1")
            },
            Diff::Updated {
                key: s("k"),
                value: s("2")
            },
            Diff::Removed { key: s("k") },
        ]
    );
}

#[tokio::test]
async fn two_replicas_converge_and_publish_remote_diffs() {
    let (a, b) = pair().await;
    let mut b_diffs = b.subscribe();
    for i in 0..200 {
        a.put(format!("k{i}"), format!("v{i}")).await.unwrap();
    }
    b.put(s("from-b"), s("1")).await.unwrap();
    a.delete("k7").await.unwrap();
    until("convergence", || {
        a.stats().root == b.stats().root && b.len() == 200
    })
    .await;
    assert_eq!(a.to_map(), b.to_map());
    assert_eq!(b.get("k7"), None);
    // b's subscriber saw every remote add, and the remove of k7 as a remove (or never saw
    // k7 at all if the add and the remove arrived in one delta group).
    let mut seen = std::collections::HashMap::new();
    while seen.len() < 200 {
        for d in next_diffs(&mut b_diffs).await {
            match d {
                Diff::Added { key, value } | Diff::Updated { key, value } => {
                    seen.insert(key, Some(value))
                }
                Diff::Removed { key } => seen.insert(key, None),
            };
        }
    }
    for (k, v) in b.to_map() {
        if k != "from-b" {
            assert_eq!(seen.get(&k), Some(&Some(v)), "{k}");
        }
    }
    assert!(matches!(seen.get("k7"), None | Some(None)));
}

#[tokio::test]
async fn durable_put_is_stored_before_it_returns_and_restart_keeps_id() {
    let store = MemoryStorage::new();
    let kv = Kv::start_local(options("kv").storage(store.clone()))
        .await
        .unwrap();
    assert!(!kv.restored());
    let id = kv.id();
    for i in 0..50 {
        kv.put(format!("k{i}"), s("v")).await.unwrap();
        // The store (a clone sees the same data) has it the moment put returned.
        assert!(store.len() > i, "put {i} returned before its commit");
    }
    kv.delete("k3").await.unwrap();
    assert_eq!(store.len(), 49);
    // A "crash": no stop(); a new replica on the same store.
    let again = Kv::start_local(options("kv").storage(store.clone()))
        .await
        .unwrap();
    assert!(again.restored());
    assert_eq!(again.id(), id);
    assert_eq!(again.to_map(), kv.to_map());
    // The restarted replica keeps writing with new dots and a clock that did not go back.
    again.put(s("k0"), s("after")).await.unwrap();
    assert_eq!(again.get("k0"), Some(s("after")));
    again.stop().await.unwrap();
}

#[tokio::test]
async fn concurrent_durable_writers_share_commits() {
    let store = MemoryStorage::new();
    let kv = Kv::start_local(options("kv").storage(store.clone()))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let kv = kv.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..100 {
                kv.put(format!("t{t}-{i}"), s("v")).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.len(), 800);
    assert!(kv.stats().storage_commits <= 800);
    kv.stop().await.unwrap();
}

#[tokio::test]
async fn write_behind_flushes_on_request_and_on_stop() {
    let store = MemoryStorage::new();
    let kv = Kv::start_local(options("kv").storage(store.clone()).ack(Ack::Applied))
        .await
        .unwrap();
    for i in 0..100 {
        kv.put(format!("k{i}"), s("v")).await.unwrap();
    }
    kv.flush().await.unwrap();
    assert_eq!(store.len(), 100);
    kv.put(s("last"), s("v")).await.unwrap();
    kv.stop().await.unwrap();
    assert_eq!(store.len(), 101);
}

#[tokio::test]
async fn an_empty_store_gets_a_fresh_id() {
    let a = Kv::start_local(options("kv").storage(MemoryStorage::new()))
        .await
        .unwrap();
    let b = Kv::start_local(options("kv").storage(MemoryStorage::new()))
        .await
        .unwrap();
    assert_ne!(a.id(), b.id());
    assert!(!a.restored() && !b.restored());
}

#[tokio::test]
async fn a_corrupt_store_is_refused_with_a_typed_error() {
    let store = MemoryStorage::new();
    store.init(7).unwrap();
    let mut batch = WriteBatch::new();
    batch.put(
        crate::codec::encode(&s("k"), 64).unwrap(),
        vec![1, 0xff, 0xff, 0xff],
    );
    store.apply(&batch).unwrap();
    let err = Kv::start_local(options("kv").storage(store.clone()))
        .await
        .err();
    assert!(
        matches!(err, Some(ReplicaError::CorruptState(_))),
        "{err:?}"
    );
    // A stored value whose dot the stored context lacks is refused too.
    let other = MemoryStorage::new();
    other.init(8).unwrap();
    let mut m = crate::crdt::AwLwwMap::new();
    let _ = m.put(
        crate::crdt::ReplicaId::new(1),
        crate::clock::Timestamp::new(1, 0),
        s("k"),
        s("v"),
    );
    let entry = crate::crdt::Embeddable::as_causal(&m)
        .store()
        .get("k")
        .unwrap()
        .clone();
    let mut batch = WriteBatch::new();
    batch.put(
        crate::codec::encode(&s("k"), 64).unwrap(),
        crate::codec::encode(&entry, 1024).unwrap(),
    );
    other.apply(&batch).unwrap();
    let err = Kv::start_local(options("kv").storage(other)).await.err();
    assert!(
        matches!(err, Some(ReplicaError::InconsistentState(_))),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_write_too_large_to_sync_is_refused_and_not_applied() {
    let kv = Kv::start_local(options("kv").max_sync_size(4096))
        .await
        .unwrap();
    let err = kv.put(s("big"), "x".repeat(5000)).await.err();
    assert!(
        matches!(err, Some(ReplicaError::TooLarge { .. })),
        "{err:?}"
    );
    assert_eq!(kv.get("big"), None);
    kv.put(s("small"), "x".repeat(100)).await.unwrap();
}

#[tokio::test]
async fn garbage_from_a_neighbour_is_counted_and_changes_nothing() {
    let (a, b) = pair().await;
    a.put(s("k"), s("v")).await.unwrap();
    until("sync", || b.get("k").is_some()).await;
    for fault in [Fault::Garbage, Fault::FutureVersion, Fault::Oversized] {
        a.inject("b", fault).unwrap();
    }
    until("rejections", || b.stats().rejected_messages >= 3).await;
    a.put(s("k2"), s("v2")).await.unwrap();
    until("sync after garbage", || b.get("k2").is_some()).await;
    assert_eq!(a.stats().root, b.stats().root);
}

#[tokio::test]
async fn put_many_is_one_commit_and_reports_each_key() {
    let store = MemoryStorage::new();
    let kv = Kv::start_local(options("kv").storage(store.clone()))
        .await
        .unwrap();
    kv.put(s("k1"), s("old")).await.unwrap();
    let mut diffs = kv.subscribe();
    let commits = kv.stats().storage_commits;
    kv.put_many((0..100).map(|i| (format!("k{i}"), s("new"))))
        .await
        .unwrap();
    assert_eq!(store.len(), 100, "all stored when put_many returned");
    assert_eq!(kv.stats().storage_commits, commits + 1);
    let mut got = Vec::new();
    while got.len() < 100 {
        got.extend(next_diffs(&mut diffs).await);
    }
    assert_eq!(
        got.iter()
            .filter(|d| matches!(d, Diff::Updated { .. }))
            .count(),
        1
    );
    let err = kv
        .put_many([(s("a"), s("1")), (s("b"), "x".repeat(2 << 20))])
        .await
        .err();
    assert!(
        matches!(err, Some(ReplicaError::TooLarge { .. })),
        "{err:?}"
    );
    assert_eq!(kv.get("a"), None, "nothing of a refused batch is applied");
}

#[tokio::test]
async fn the_clock_follows_timestamps_seen_from_neighbours() {
    let (a, b) = pair().await;
    // A neighbour whose clock runs 5 s ahead (within the drift bound) writes...
    let ahead = crate::clock::Timestamp::new(super::shared::wall_ms() + 5_000, 0);
    a.mutate(|m, id, _| m.put(id, ahead, s("k"), s("from the future")))
        .await
        .unwrap();
    until("sync", || b.get("k").is_some()).await;
    // ...so b's next write, made after seeing it, is stamped after it: a write concurrent
    // with b's (by a node that never saw a's) is ordered by what b saw, not by b's wall clock.
    b.put(s("other"), s("v")).await.unwrap();
    let stamped = b.read(|m| m.get_entry("other").map(|(_, e)| e.ts)).unwrap();
    assert!(stamped > ahead, "{stamped:?} <= {ahead:?}");
}

/// A store whose commits can be held "in flight" (an fsync that has not finished), and that
/// can "crash": held and later commits are then never written.
#[derive(Clone, Default)]
struct Stalling {
    inner: MemoryStorage,
    hold: Arc<std::sync::atomic::AtomicBool>,
    crashed: Arc<std::sync::atomic::AtomicBool>,
}

impl Storage for Stalling {
    fn load(&self) -> Result<Option<crate::storage::Snapshot>, crate::storage::StorageError> {
        self.inner.load()
    }
    fn init(&self, id: u64) -> Result<(), crate::storage::StorageError> {
        self.inner.init(id)
    }
    fn apply(&self, batch: &WriteBatch) -> Result<(), crate::storage::StorageError> {
        while self.hold.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(2));
        }
        if self.crashed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(crate::storage::StorageError::NotInitialized);
        }
        self.inner.apply(batch)
    }
    fn flush(&self) -> Result<(), crate::storage::StorageError> {
        Ok(())
    }
}

fn wire(me: &Kv, my_name: &str, other: &Kv, other_name: &str) -> Arc<Loop> {
    let l = Arc::new(Loop {
        from: my_name.into(),
        to: Mutex::new(Some(other.actor_ref().clone())),
    });
    me.attach(l.clone());
    me.set_neighbours([other_name.to_string()]);
    l
}

/// Found in review: a delta left for the neighbours while its commit was still in flight; a
/// crash in that window restarted the replica with its id and a context that forgot the
/// shipped dot, so its next write reused the dot and an acknowledged write was lost on every
/// replica. Nothing may leave before the state it was read from is durable.
#[tokio::test]
async fn nothing_is_sent_before_it_is_durable_so_a_crash_cannot_reuse_a_dot() {
    use std::sync::atomic::Ordering::SeqCst;
    let store = Stalling::default();
    let a = Kv::start_local(options("kv").storage(store.clone()))
        .await
        .unwrap();
    let b = Kv::start_local(options("kv")).await.unwrap();
    let _la = wire(&a, "a", &b, "b");
    let lb = wire(&b, "b", &a, "a");
    a.put(s("k0"), s("v0")).await.unwrap();
    until("k0 at b", || b.get("k0").is_some()).await;

    // The commit of k1 is in flight while ticks pass...
    store.hold.store(true, SeqCst);
    let a1 = a.clone();
    let pending = tokio::spawn(async move { a1.put(s("k1"), s("v1")).await });
    until("k1 applied on a", || a.get("k1").is_some()).await;
    // Ten sync intervals: with sends not held back, b has k1 after one.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(b.get("k1"), None, "k1 reached b before its commit");
    // ...and the process crashes: the commit never lands.
    store.crashed.store(true, SeqCst);
    store.hold.store(false, SeqCst);
    assert!(pending.await.unwrap().is_err(), "k1 was never stored");
    a.actor_ref().stop(None);

    // Restart on what the disk holds; a durable write is acknowledged.
    let a2 = Kv::start_local(options("kv").storage(store.inner.clone()))
        .await
        .unwrap();
    assert_eq!(a2.id(), a.id());
    *lb.to.lock().unwrap() = Some(a2.actor_ref().clone());
    let _la2 = wire(&a2, "a", &b, "b");
    a2.put(s("k2"), s("v2")).await.unwrap();
    until("convergence", || {
        a2.stats().root == b.stats().root && b.get("k2").is_some()
    })
    .await;
    assert_eq!(a2.get("k2"), Some(s("v2")));
    assert_eq!(b.get("k2"), Some(s("v2")));
    assert_eq!(b.get("k1"), None);
}

#[tokio::test]
async fn a_durable_put_after_stop_fails_instead_of_hanging() {
    let kv = Kv::start_local(options("kv").storage(MemoryStorage::new()))
        .await
        .unwrap();
    let other = kv.clone();
    kv.stop().await.unwrap();
    let r = timeout(DEADLINE, other.put(s("k"), s("v"))).await;
    assert!(matches!(r, Ok(Err(ReplicaError::Stopped))), "{r:?}");
}

/// A store whose engine panics on every commit.
#[derive(Default)]
struct Panicky(MemoryStorage);

impl Storage for Panicky {
    fn load(&self) -> Result<Option<crate::storage::Snapshot>, crate::storage::StorageError> {
        self.0.load()
    }
    fn init(&self, id: u64) -> Result<(), crate::storage::StorageError> {
        self.0.init(id)
    }
    fn apply(&self, _: &WriteBatch) -> Result<(), crate::storage::StorageError> {
        panic!("storage engine bug")
    }
    fn flush(&self) -> Result<(), crate::storage::StorageError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_panicking_store_fails_durable_writes_instead_of_hanging_them() {
    let kv = Kv::start_local(options("kv").storage(Panicky::default()))
        .await
        .unwrap();
    let r = timeout(DEADLINE, kv.put(s("k"), s("v"))).await;
    assert!(matches!(r, Ok(Err(_))), "{r:?}");
}

/// With `send_when_idle`, a write reaches an idle neighbour at once: here ticks are an hour
/// apart, so every write below travels on the flush alone (and a burst travels grouped).
#[tokio::test]
async fn send_when_idle_delivers_writes_without_waiting_for_a_tick() {
    let options = || {
        ReplicaOptions::new("kv")
            .sync_interval(Duration::from_secs(3600))
            .send_when_idle(true)
    };
    let a: Kv = Replica::start_local(options()).await.unwrap();
    let b: Kv = Replica::start_local(options()).await.unwrap();
    wire_pair(&a, &b);
    for i in 0..5 {
        a.put("k", format!("v{i}")).await.unwrap();
        let want = format!("v{i}");
        until("the write on b", || {
            b.get("k").as_deref() == Some(want.as_str())
        })
        .await;
    }
    for i in 0..100 {
        b.put(format!("burst{i}"), "x").await.unwrap();
    }
    until("the burst on a", || a.len() == 101).await;
}

/// A read concern asks the neighbours what they hold and waits until it is here: with ticks
/// an hour apart nothing closes the gap, so it times out (and says none was included) rather
/// than reading less than it asked for; with the usual ticks it returns with the write here.
#[tokio::test]
async fn a_read_concern_waits_until_the_neighbours_state_is_here() {
    let slow = || ReplicaOptions::new("kv").sync_interval(Duration::from_secs(3600));
    let a: Kv = Replica::start_local(slow()).await.unwrap();
    let b: Kv = Replica::start_local(slow()).await.unwrap();
    wire_pair(&a, &b);
    // Greeted both ways (deltas wait for that, and then leave only on ticks).
    until("greetings", || {
        a.stats().messages_received > 0 && b.stats().messages_received > 0
    })
    .await;
    b.put("k", "from b").await.unwrap();
    let err = a
        .until_caught_up(ReadConcern::All(Duration::from_millis(300)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ReplicaError::NotCaughtUp {
                included: 0,
                required: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(a.get("k"), None);

    let (a, b) = pair().await;
    b.put("k", "from b").await.unwrap();
    a.until_caught_up(ReadConcern::Majority(DEADLINE))
        .await
        .unwrap();
    assert_eq!(a.get("k").as_deref(), Some("from b"));
    // Nothing to ask: a replica without neighbours is caught up at once.
    let alone: Kv = Replica::start_local(options("kv")).await.unwrap();
    alone
        .until_caught_up(ReadConcern::All(DEADLINE))
        .await
        .unwrap();
}
