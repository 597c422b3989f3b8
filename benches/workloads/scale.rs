//! `-- scale`: a replica with a million keys (64-byte values), the scale users meet first.
//!
//! Node A runs in this process; B (durable, a `herd node` child with a data directory) is
//! attached while A is written; C joins empty once A holds every key.
//!
//! * `put_many_rate`: A's `put_many` in batches of 1,000, against a `HashMap` insert of the
//!   same keys and values in the same run;
//! * `to_map`: A's `to_map`, against cloning an equal `HashMap`;
//! * `empty_peer_holds_all`: from C's process start until it holds every key (goal 5 s);
//! * `keys_repaired_for_c`: keys A sent C on the repair path, against the keys C needed;
//! * `messages_refused`: messages a receiver refused (for their size, or anything else) on
//!   A, B and C, and `entries_too_large`: entries a sender could not fit in a message (goal 0:
//!   every message within `max_sync_size`);
//! * `rss_per_key_on_c`: C's resident set (memory only, after handing freed pages back) less
//!   B's before any key was written (B's store caches pages in memory, so B is not measured
//!   full), per key (goal 160 B);
//! * `restart_serves_reads`: B SIGKILLed and started again on its data directory: how long its
//!   replica took to start (to load its keys; it serves reads from then on; goal 2 s), and
//!   `restart_to_first_read_answered`, from the process start until it answered a read (the
//!   node program also starts its other replicas and its registries, whose ready wait gives a
//!   member running none, as A here, 1 s each);
//! * `one_key_changed_bytes`: A changes one key: bytes through A's transport both ways until B
//!   has it, minus the idle traffic of the same window, against the changed entry encoded
//!   (goal 1.3x).
//!
//! `HERD_SCALE_KEYS` changes the number of keys (default 1,000,000).

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use herd::codec;
use herd::crdt::Embeddable;

use crate::cluster::{Data, Pair, Peer, put_batched, wait_acked, wire};
use crate::report::{Report, median_time};

const KEYS: usize = 1_000_000;
/// How long any one step may take.
const DEADLINE: Duration = Duration::from_secs(300);

fn keys() -> usize {
    std::env::var("HERD_SCALE_KEYS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(KEYS)
}

/// Sends an `await-*` command with [`DEADLINE`]; whether it held, and the answer.
fn wait(peer: &mut Peer, command: &str) -> (bool, serde_json::Value) {
    peer.send(&format!("{command} {}", DEADLINE.as_millis()));
    let answer = peer.answer_within(DEADLINE + Duration::from_secs(10));
    (answer["ok"] == true, answer)
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

pub(crate) fn scale(r: &mut Report) {
    let n = keys();
    let pair = Pair::new();
    let seed = pair.node.listen_addr().to_string();
    let kv = pair.replica();
    let dir = tempfile::tempdir().expect("temporary directory");
    let data_dir = dir.path().to_str().expect("a UTF-8 path").to_owned();
    // `HERD_SCALE_B_MEMORY`: B without a data directory (and no restart figure).
    let memory_only = std::env::var_os("HERD_SCALE_B_MEMORY").is_some();
    let durable: &[&str] = if memory_only {
        &[]
    } else {
        &["--data-dir", data_dir.as_str()]
    };
    let mut b = Peer::start_with("scale-b", &seed, durable);
    b.ask("await-members 1 30000");
    let empty = b.rss();

    // The baseline first, on the same keys and values.
    let data = Data::new("k", n);
    let started = Instant::now();
    let mut map = HashMap::new();
    for i in 0..n {
        map.insert(data.keys[i].clone(), data.values[i].clone());
    }
    let insert = started.elapsed();
    drop(data);
    let put = put_batched(&pair.rt, &kv, "k", n);
    r.record(
        "put_many_rate",
        n as f64 / put.as_secs_f64(),
        "keys/s",
        Some(n as f64 / insert.as_secs_f64()),
    );
    let to_map = median_time(3, || {
        black_box(kv.to_map());
    });
    let clone = median_time(3, || {
        black_box(map.clone());
    });
    r.record("to_map", ms(to_map), "ms", Some(ms(clone)));
    drop(map);

    let t = Instant::now();
    let (held, answer) = wait(&mut b, &format!("await-count {n}"));
    if !held {
        // Recorded, not asserted: the figure is what this workload is for.
        let keys = answer["keys"].as_f64().unwrap_or(0.0);
        r.record(
            "b_attached_keys_held_at_deadline",
            keys,
            "keys",
            Some(n as f64),
        );
        eprintln!("scale: B held {keys} of {n} keys {DEADLINE:?} after the last put: {answer}");
        return;
    }
    wait_acked(&kv);
    r.record(
        "b_attached_holds_all_after_last_put",
        ms(t.elapsed()),
        "ms",
        None,
    );

    // C joins empty.
    let repaired_before = kv.stats().repair_keys_sent;
    let started = Instant::now();
    let mut c = Peer::start("scale-c", &seed);
    let (held, answer) = wait(&mut c, &format!("await-count {n}"));
    // Keys A sent C on the repair path, against the keys C needed: above 1, some were sent
    // more than once.
    r.record(
        "keys_repaired_for_c",
        (kv.stats().repair_keys_sent - repaired_before) as f64,
        "keys",
        Some(n as f64),
    );
    if !held {
        let keys = answer["keys"].as_f64().unwrap_or(0.0);
        r.record("c_keys_held_at_deadline", keys, "keys", Some(n as f64));
        return;
    }
    r.record(
        "empty_peer_holds_all",
        ms(started.elapsed()),
        "ms",
        Some(5000.0),
    );
    let full = c.rss();
    r.record(
        "rss_per_key_on_c",
        (full - empty) / n as f64,
        "bytes",
        Some(160.0),
    );
    let replica_stat = |peer: &mut Peer, field: &str| {
        peer.ask("stats")["replica"][field]
            .as_u64()
            .unwrap_or_default() as f64
    };
    let a_stats = kv.stats();
    let messages_refused = a_stats.rejected_messages as f64
        + replica_stat(&mut b, "rejected_messages")
        + replica_stat(&mut c, "rejected_messages");
    let too_large = a_stats.entries_too_large_for_peer as f64
        + replica_stat(&mut b, "entries_too_large_for_peer")
        + replica_stat(&mut c, "entries_too_large_for_peer");
    r.record("messages_refused", messages_refused, "messages", None);
    r.record("entries_too_large", too_large, "entries", None);
    drop(c);

    if memory_only {
        return;
    }
    // B restarts from its data directory.
    drop(b);
    let started = Instant::now();
    let (mut b, ready) = Peer::start_with_ready("scale-b", &seed, durable);
    let first = b.ask("get k0");
    let answered = started.elapsed();
    assert!(first["value"].is_string(), "B lost k0: {first}");
    let loaded = ready["kv_start_ms"].as_f64().unwrap_or(f64::NAN);
    r.record("restart_serves_reads", loaded, "ms", Some(2000.0));
    r.record("restart_to_first_read_answered", ms(answered), "ms", None);
    let (held, answer) = wait(&mut b, &format!("await-count {n}"));
    assert!(held, "B lost keys in its restart: {answer}");
    b.ask("await-members 1 30000");

    // One key changed, once both are idle.
    let end = Instant::now() + DEADLINE;
    while kv.stats().root != b.ask("stats")["replica"]["root"].as_u64().unwrap_or(0) {
        assert!(Instant::now() < end, "A and B never converged");
        std::thread::sleep(Duration::from_millis(10));
    }
    let window = Duration::from_secs(2);
    let idle0 = wire(&kv);
    std::thread::sleep(window);
    let idle_per_sec = (wire(&kv) - idle0) as f64 / window.as_secs_f64();
    let changed = "changed-value".to_owned();
    b.send(&format!("await-key k0 {changed} {}", DEADLINE.as_millis()));
    let before = wire(&kv);
    let started = Instant::now();
    pair.rt
        .block_on(kv.put("k0".to_owned(), changed))
        .expect("put");
    let seen = b.answer();
    assert_eq!(seen["ok"], true, "{seen}");
    wait_acked(&kv);
    let bytes = (wire(&kv) - before) as f64 - idle_per_sec * started.elapsed().as_secs_f64();
    let entry = kv.read(|m| {
        let k = "k0".to_owned();
        let store = m.as_causal().store().get(&k).expect("k0");
        codec::encoded_len(&(&k, store)).expect("encode")
    });
    r.record(
        "one_key_changed_bytes",
        bytes.max(0.0),
        "bytes",
        Some(entry as f64 * 1.3),
    );
    drop(b);
    pair.rt.block_on(kv.stop()).expect("stop replica A");
}
