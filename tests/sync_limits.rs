//! Sync message limits across real processes (issue 10's three defects, each failing before
//! its fix): neighbours with different `--max-sync-size`, a value at the largest size `put`
//! accepts reaching a late joiner when the causal context names many replica ids, and a
//! small limit that no longer caps throughput at one message per tick.
//!
//! Every wait is on a condition the nodes report, with a deadline.

mod support;

use support::{Harness, Node, WAIT, await_same_root, eventually, number};

/// Waits until `a` and `b` are each other's neighbours.
fn pair(a: &mut Node, b: &mut Node) {
    for node in [a, b] {
        node.await_members(1);
        node.await_neighbours(1);
    }
}

/// Defect 1: node A takes 2,000-byte messages, B the 1 MiB default, B writes 2,000 keys.
/// Before agreed limits A refused every message and B resent them forever.
#[test]
fn neighbours_with_different_limits_converge() {
    let h = Harness::new();
    let mut a = h.spawn(h.spec("a").max_sync_size(2_000));
    let mut b = h.spawn(h.spec("b").seed(a.listen()));
    pair(&mut a, &mut b);
    b.bulk_put("k/", 2_000, 16);
    a.await_count(2_000);
    await_same_root(&mut [&mut a, &mut b]);
    // The small side refused at most what B sent before it learnt A's limit.
    let refused = number(&a.stats(), "/replica/rejected_messages");
    assert!(refused <= 3, "A refused {refused} messages");

    // And the other way round: the small side's writes reach the large side.
    a.bulk_put("from-a/", 500, 16);
    b.await_count(2_500);
    await_same_root(&mut [&mut a, &mut b]);
}

/// Defect 2: with many replica ids in the causal context, a value just under the limit was
/// accepted by `put` but could never be repaired to a node that joined later (the entry and
/// the context did not fit one message together).
#[test]
fn a_value_at_the_largest_size_reaches_a_late_joiner() {
    const LIMIT: usize = 16_384;
    let h = Harness::new();
    let mut a = h.spawn(h.spec("a").max_sync_size(LIMIT));
    // 64 replica ids in A's context: nodes without a data directory take a fresh id at
    // every start; each writes one key, which A waits for, and goes.
    let mut written = 0;
    for batch in 0..8 {
        let mut nodes: Vec<Node> = (0..8)
            .map(|i| {
                h.spawn(
                    h.spec(&format!("w{batch}-{i}"))
                        .max_sync_size(LIMIT)
                        .seed(a.listen()),
                )
            })
            .collect();
        for (i, node) in nodes.iter_mut().enumerate() {
            node.put(&format!("id/{batch}-{i}"), "x");
        }
        written += nodes.len();
        a.await_count(written);
        for node in &mut nodes {
            node.kill();
        }
    }
    // The largest value `put` accepts at this limit: the first length it does not refuse.
    let mut len = LIMIT;
    let value = loop {
        let value = "v".repeat(len);
        if a.request(&format!("put big {value}"))["ok"] == true {
            break value;
        }
        len -= 1;
        assert!(len > LIMIT - 400, "put refuses every value near the limit");
    };
    a.put("small", "1");

    let mut late = h.spawn(h.spec("late").max_sync_size(LIMIT).seed(a.listen()));
    late.await_count(written + 2);
    late.await_key("big", &value);
    await_same_root(&mut [&mut a, &mut late]);
    let too_large = number(&a.stats(), "/replica/entries_too_large_for_peer");
    assert_eq!(too_large, 0);
}

/// Defect 3: a small limit capped throughput at one message per neighbour per tick. With a
/// 2 s tick and 16 KB messages, 20,000 keys (about 100 messages) took over a hundred ticks;
/// now the window sends them as fast as acknowledgements return, on the delta path and on
/// the repair path (a late joiner).
#[test]
fn a_small_limit_does_not_cap_throughput() {
    const LIMIT: usize = 16_384;
    let h = Harness::new();
    let spec = |name: &str| h.spec(name).max_sync_size(LIMIT).sync_interval_ms(2_000);
    let mut a = h.spawn(spec("a"));
    let mut b = h.spawn(spec("b").seed(a.listen()));
    pair(&mut a, &mut b);
    a.bulk_put("k/", 20_000, 64);
    // WAIT (15 s) is about 7 ticks: one message per tick would need over 100.
    b.await_count(20_000);
    let mut late = h.spawn(spec("late").seed(a.listen()));
    late.await_count(20_000);
    let sent = eventually(WAIT, "stats", || {
        Some(number(&a.stats(), "/replica/messages_sent"))
    });
    assert!(sent >= 100, "{sent} messages: the limit was not in force");
}
