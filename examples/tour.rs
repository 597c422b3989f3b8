//! A tour of herd's CRDT core: three replicas of an `AwLwwMap` take concurrent writes and
//! removes, then exchange their deltas shuffled and duplicated, and converge.
//!
//! `cargo run --example tour` (optionally `-- <seed>` to replay one shuffle).

use herd::clock::Hlc;
use herd::crdt::{AwLwwMap, Crdt, ReplicaId};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};

fn main() {
    let seed: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    let mut rng = StdRng::seed_from_u64(seed);
    println!("herd tour (seed {seed}): three replicas, concurrent writes, shuffled delivery\n");

    let names = ["paris", "tokyo", "lima"];
    let ids = [ReplicaId::new(1), ReplicaId::new(2), ReplicaId::new(3)];
    let mut replicas: Vec<AwLwwMap<String, String>> = vec![AwLwwMap::new(); 3];
    let mut clocks = vec![Hlc::default(); 3];
    let mut deltas = Vec::new();

    // Each replica writes without talking to the others. The wall clocks disagree a little.
    let script: [(usize, &str, Option<&str>); 9] = [
        (0, "feature.dark_mode", Some("on")),
        (1, "feature.dark_mode", Some("off")),
        (2, "feature.beta", Some("on")),
        (0, "limits.rate", Some("100/s")),
        (1, "limits.rate", Some("250/s")),
        (2, "owner", Some("ops-team")),
        (0, "feature.beta", None),
        (1, "region", Some("eu-west")),
        (2, "limits.rate", Some("500/s")),
    ];
    for (step, (r, key, value)) in script.into_iter().enumerate() {
        let wall = 1_700_000_000_000 + step as u64 * 10 + rng.random_range(0..5);
        let delta = match value {
            Some(v) => {
                let ts = clocks[r].now(wall);
                println!("  {:<5} put {key} = {v}  (at {ts})", names[r]);
                replicas[r].put(ids[r], ts, key.to_string(), v.to_string())
            }
            None => {
                let note = if replicas[r].contains_key(key) {
                    ""
                } else {
                    "  (has not seen any write of it: a concurrent write wins)"
                };
                println!("  {:<5} del {key}{note}", names[r]);
                replicas[r].remove(key)
            }
        };
        deltas.push((r, delta));
    }

    // Every replica receives every other replica's deltas, in a random order, some twice.
    let mut sent = 0;
    for (r, replica) in replicas.iter_mut().enumerate() {
        let mut inbox: Vec<_> = deltas.iter().filter(|(from, _)| *from != r).collect();
        let dups: Vec<_> = inbox.choose_multiple(&mut rng, 3).copied().collect();
        inbox.extend(dups);
        inbox.shuffle(&mut rng);
        for (_, delta) in inbox {
            replica.join(delta);
            sent += 1;
        }
    }
    println!("\ndelivered {sent} deltas (shuffled, with duplicates)\n");

    let converged = replicas.windows(2).all(|w| w[0] == w[1]);
    for (name, replica) in names.iter().zip(&replicas) {
        let mut entries: Vec<_> = replica.iter().collect();
        entries.sort();
        let shown: Vec<String> = entries.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("  {name:<5} {}", shown.join(", "));
    }
    if converged {
        println!("\nconverged: all three replicas hold the same state");
    } else {
        println!("\nNOT converged (seed {seed}): please report this");
        std::process::exit(1);
    }
}
