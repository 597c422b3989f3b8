//! The typed handles of sets, counters, multi-value registers and documents: each converges
//! between two replicas and reports exact diffs; `mutate` reports exact diffs too.

use super::*;
use crate::crdt::{AwLwwMap, Counter, Crdt as _, OrMap, OrSet, Path};

/// Drains `sub` until `done` holds for the diffs gathered so far.
async fn gather<C: MapView>(
    sub: &mut Subscription<C>,
    mut done: impl FnMut(&[Diff<C::Item, C::View>]) -> bool,
) -> Vec<Diff<C::Item, C::View>> {
    let mut got = Vec::new();
    while !done(&got) {
        got.extend(next_diffs(sub).await);
    }
    got
}

#[tokio::test]
async fn a_set_adds_removes_and_converges_with_exact_diffs() {
    let (a, b) = pair_of::<OrSet<String>>().await;
    let mut at_b = b.subscribe();
    a.add("alice").await.unwrap();
    a.add("bob").await.unwrap();
    b.add("carol").await.unwrap();
    until("bob at b", || b.contains("bob")).await;
    a.remove("alice").await.unwrap();
    a.remove("nobody").await.unwrap();
    until("convergence", || {
        a.stats().root == b.stats().root && !b.contains("alice")
    })
    .await;
    let mut members = b.to_vec();
    members.sort();
    assert_eq!(members, vec![s("bob"), s("carol")]);
    assert_eq!(a.len(), 2);
    let mut got = gather(&mut at_b, |d| d.len() >= 4).await;
    // Adds arrive in whatever order ticks cut them; the removal comes after alice's add.
    assert_eq!(got.pop(), Some(Diff::Removed { key: s("alice") }));
    let mut added: Vec<_> = got.iter().map(|d| (d.key().clone(), d.value())).collect();
    added.sort();
    assert_eq!(
        added,
        vec![
            (s("alice"), Some(&())),
            (s("bob"), Some(&())),
            (s("carol"), Some(&()))
        ]
    );
}

#[tokio::test]
async fn counters_from_two_replicas_add_up_and_reset() {
    let (a, b) = pair_of::<OrMap<String, Counter>>().await;
    let mut at_a = a.subscribe();
    a.increment("hits", 5).await.unwrap();
    b.increment("hits", 3).await.unwrap();
    b.decrement("hits", 1).await.unwrap();
    a.increment("single", 1).await.unwrap();
    until("sum at both", || {
        a.value("hits") == 7 && b.value("hits") == 7
    })
    .await;
    assert_eq!(
        b.to_map(),
        [(s("hits"), 7), (s("single"), 1)].into_iter().collect()
    );
    a.reset("hits").await.unwrap();
    until("reset at b", || b.value("hits") == 0).await;
    assert_eq!(b.to_map(), [(s("single"), 1)].into_iter().collect());
    let got = gather(&mut at_a, |d| {
        d.last() == Some(&Diff::Removed { key: s("hits") })
    })
    .await;
    assert_eq!(
        got.first(),
        Some(&Diff::Added {
            key: s("hits"),
            value: 5
        })
    );
    assert!(got.contains(&Diff::Added {
        key: s("single"),
        value: 1
    }));
    let last_value = got.iter().rev().find_map(|d| match d {
        Diff::Updated { key, value } if key == "hits" => Some(*value),
        _ => None,
    });
    assert_eq!(last_value, Some(7), "{got:?}");
}

#[tokio::test]
async fn concurrent_register_writes_are_all_kept_until_one_has_seen_them() {
    let a = MvMap::<String, u32>::start_local(options("kv"))
        .await
        .unwrap();
    let b = MvMap::<String, u32>::start_local(options("kv"))
        .await
        .unwrap();
    // Concurrent: neither has seen the other's write.
    a.write("owner", 1u32).await.unwrap();
    b.write("owner", 2u32).await.unwrap();
    let mut at_a = a.subscribe();
    wire_pair(&a, &b);
    until("both values at both", || {
        a.values("owner").len() == 2 && b.values("owner").len() == 2
    })
    .await;
    let mut both = a.values("owner");
    both.sort();
    assert_eq!(both, vec![1, 2]);
    assert_eq!(
        a.values("owner"),
        b.values("owner"),
        "the same order everywhere"
    );
    let got = next_diffs(&mut at_a).await;
    assert!(
        matches!(&got[..], [Diff::Updated { value, .. }] if value.len() == 2),
        "{got:?}"
    );
    // A write that has seen both replaces both.
    b.write("owner", 3u32).await.unwrap();
    until("resolved at a", || a.values("owner") == vec![3]).await;
    b.remove("owner").await.unwrap();
    until("removed at a", || a.values("owner").is_empty()).await;
}

#[tokio::test]
async fn document_fields_merge_one_by_one_and_diffs_name_their_paths() {
    let a = DocReplica::<String>::start_local(options("kv"))
        .await
        .unwrap();
    let b = DocReplica::<String>::start_local(options("kv"))
        .await
        .unwrap();
    a.set("server.host", "a.example").await.unwrap();
    a.set("server.port", "80").await.unwrap();
    wire_pair(&a, &b);
    until("b has the server", || b.get("server.port").is_some()).await;
    let (mut state, mut at_b) = b.subscribe_with_snapshot();
    assert_eq!(state.len(), 2);
    // Concurrent edits of two fields of one object: both survive.
    a.set("server.port", "8080").await.unwrap();
    b.set("server.workers", "4").await.unwrap();
    until("convergence", || {
        a.stats().root == b.stats().root && a.leaves().len() == 3
    })
    .await;
    assert_eq!(a.leaves(), b.leaves());
    assert_eq!(b.get("server.port").as_deref(), Some("8080"));
    // A removed object stays removed; its diffs name each leaf.
    a.remove("server").await.unwrap();
    until("removed at b", || b.leaves().is_empty()).await;
    let got = gather(&mut at_b, |d| {
        d.iter().filter(|d| d.value().is_none()).count() == 3
    })
    .await;
    assert!(got.contains(&Diff::Added {
        key: Path::from("server.workers"),
        value: s("4")
    }));
    assert!(got.contains(&Diff::Updated {
        key: Path::from("server.port"),
        value: s("8080")
    }));
    for d in got {
        d.apply_to(&mut state);
    }
    assert!(state.is_empty());
}

#[tokio::test]
async fn mutate_reports_exact_diffs_for_every_key_it_touches() {
    let kv: Replica<AwLwwMap<String, String>> = Kv::start_local(options("kv")).await.unwrap();
    kv.put_many([("same", "1"), ("changed", "2"), ("gone", "3")])
        .await
        .unwrap();
    let mut diffs = kv.subscribe();
    kv.mutate(|m, id, ts| {
        let mut d = m.put(id, ts, s("same"), s("1"));
        d.join(&m.put(id, ts, s("changed"), s("two")));
        d.join(&m.remove("gone"));
        d.join(&m.put(id, ts, s("new"), s("4")));
        d
    })
    .await
    .unwrap();
    let mut got = next_diffs(&mut diffs).await;
    got.sort_by(|x, y| x.key().cmp(y.key()));
    assert_eq!(
        got,
        vec![
            Diff::Updated {
                key: s("changed"),
                value: s("two")
            },
            Diff::Removed { key: s("gone") },
            Diff::Added {
                key: s("new"),
                value: s("4")
            },
        ]
    );
}

#[tokio::test]
async fn a_map_of_sets_reports_each_key_as_its_set_of_elements() {
    use std::collections::HashSet;
    let rooms = Replica::<OrMap<String, OrSet<String>>>::start_local(options("kv"))
        .await
        .unwrap();
    let mut diffs = rooms.subscribe();
    for who in ["alice", "bob"] {
        rooms
            .mutate(|m, id, _| m.update(s("lobby"), |set| set.add(id, s(who))))
            .await
            .unwrap();
    }
    rooms
        .mutate(|m, _, _| m.update(s("lobby"), |set| set.remove("alice")))
        .await
        .unwrap();
    let set = |names: &[&str]| names.iter().map(|n| s(n)).collect::<HashSet<_>>();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.extend(next_diffs(&mut diffs).await);
    }
    assert_eq!(
        got,
        vec![
            Diff::Added {
                key: s("lobby"),
                value: set(&["alice"])
            },
            Diff::Updated {
                key: s("lobby"),
                value: set(&["alice", "bob"])
            },
            Diff::Updated {
                key: s("lobby"),
                value: set(&["bob"])
            },
        ]
    );
}
