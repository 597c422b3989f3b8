//! Subscriptions: bounded memory under a stalled subscriber, and snapshot + diffs that lose
//! nothing and double nothing under concurrent local and remote writes.

use super::*;
use proptest::prelude::*;
use std::collections::HashMap;

/// A subscriber that never reads cannot grow memory: at most `capacity` batches are queued
/// through a million writes, and on its next read it gets the state now instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_holds_at_most_its_capacity_through_a_million_puts() {
    const CAPACITY: usize = 64;
    const PUTS: u64 = 1_000_000;
    let kv = Kv::start_local(options("kv").subscription_capacity(CAPACITY))
        .await
        .unwrap();
    let mut stalled = kv.subscribe();
    let mut most_queued = 0;
    for i in 0..PUTS {
        kv.put(format!("k{}", i % 1000), format!("v{i}"))
            .await
            .unwrap();
        if i % 10_000 == 0 {
            most_queued = most_queued.max(stalled.queued());
        }
    }
    most_queued = most_queued.max(stalled.queued());
    assert!(most_queued <= CAPACITY, "{most_queued} batches queued");
    assert_eq!(stalled.queued(), CAPACITY, "it filled up, then lagged");
    assert!(stalled.lagged());
    // It reads what was queued, then the state now in place of what it missed...
    for _ in 0..CAPACITY {
        assert!(matches!(stalled.recv().await, Some(Update::Diffs(_))));
    }
    match timeout(DEADLINE, stalled.recv()).await.unwrap() {
        Some(Update::Lagged(now)) => assert_eq!(now, kv.to_map()),
        other => panic!("expected a lag with the state, got {other:?}"),
    }
    // ...and diffs continue from there.
    kv.put("after", "lag").await.unwrap();
    assert_eq!(
        next_diffs(&mut stalled).await,
        vec![Diff::Added {
            key: s("after"),
            value: s("lag")
        }]
    );
    assert!(!stalled.lagged());
}

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8),
    Delete(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..8u8, 0..4u8).prop_map(|(k, v)| Op::Put(k, v)),
        1 => (0..8u8).prop_map(Op::Delete),
    ]
}

async fn run(kv: &Kv, ops: &[Op]) {
    for op in ops {
        match op {
            Op::Put(k, v) => kv.put(format!("k{k}"), format!("v{v}")).await.unwrap(),
            Op::Delete(k) => kv.delete(&format!("k{k}")).await.unwrap(),
        }
        tokio::task::yield_now().await;
    }
}

/// Applies `diffs` to `state`, checking each against it: an add of an absent key, an
/// update of a present key to another value, a removal of a present key. A lost diff or one
/// seen twice breaks one of these, or the final comparison.
fn apply_checked(state: &mut HashMap<String, String>, diffs: Vec<Diff<String, String>>) {
    for d in diffs {
        match &d {
            Diff::Added { key, .. } => assert!(!state.contains_key(key), "{d:?} over {state:?}"),
            Diff::Updated { key, value } => {
                let was = state.get(key);
                assert!(was.is_some_and(|w| w != value), "{d:?} over {was:?}");
            }
            Diff::Removed { key } => assert!(state.contains_key(key), "{d:?} of absent key"),
        }
        d.apply_to(state);
    }
}

async fn snapshot_then_diffs_case(before: Vec<Op>, writers: [Vec<Op>; 3], delay: usize) {
    let (a, b) = pair().await;
    run(&a, &before).await;
    let [w1, w2, remote] = writers;
    let tasks = [(a.clone(), w1), (a.clone(), w2), (b.clone(), remote)]
        .map(|(kv, ops)| tokio::spawn(async move { run(&kv, &ops).await }));
    for _ in 0..delay {
        tokio::task::yield_now().await;
    }
    let (mut state, mut updates) = a.subscribe_with_snapshot();
    for t in tasks {
        t.await.unwrap();
    }
    until("convergence", || a.stats().root == b.stats().root).await;
    // Every change is published under the lock that applies it, so by now every diff after
    // the snapshot is queued (the state may pass through its final value more than once on
    // the way: read them all).
    while let Some(update) = updates.try_recv() {
        match update {
            Update::Diffs(diffs) => apply_checked(&mut state, diffs),
            lag => panic!("the queue is large enough not to lag: {lag:?}"),
        }
    }
    assert_eq!(state, a.to_map());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn a_snapshot_and_the_diffs_after_it_lose_and_double_nothing(
        before in proptest::collection::vec(op(), 0..10),
        w1 in proptest::collection::vec(op(), 0..30),
        w2 in proptest::collection::vec(op(), 0..30),
        remote in proptest::collection::vec(op(), 0..30),
        delay in 0..20usize,
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(snapshot_then_diffs_case(before, [w1, w2, remote], delay));
    }
}
