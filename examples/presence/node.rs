//! One node of the presence example: a cluster node with a `Presence<String>`, driven over
//! stdin and reporting on stdout, one line per event. Shared by the example, by
//! `tests/presence.rs` and by the `products-presence` workload.
//!
//! Commands (stdin, one per line), each answered by `OK`, `VALUE <json>` or `ERR <why>`:
//! * `track <topic> <prefix> <n> <meta>`: starts `n` actors here and tracks each under
//!   `<prefix><i>` (one actor per key, as one connection per user);
//! * `track-bulk <topic> <prefix> <n> <meta>`: tracks `n` keys all bound to one new actor
//!   (for large counts: the workload measures presence, not actors), answers the time taken;
//! * `stop <topic> <key>`: stops the actor tracked under `key` (its entry leaves);
//! * `list <topic>`: the keys shown, each with the nodes it is tracked from;
//! * `count <topic> <n> <ms>`: waits until `n` entries of `topic` show here, then answers
//!   their count (or an error after `ms`);
//! * `diffs`: how many joins and leaves this node's subscriber has seen, by key;
//! * `no-diffs`: stops counting them and forgets the counts (so that a memory figure taken
//!   on this node is the presence's, not the counter's);
//! * `stats`: the presence replica's counters;
//! * `heap`: bytes in use on the heap, after handing freed pages back to the system.
//!
//! Events: `READY <listen address>` once.

#[path = "../common/heap.rs"]
mod heap;

use herd::cluster::{Node, NodeConfig};
use herd::presence::{Presence, PresenceDiff};
use herd::replica::ReplicaOptions;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

/// An actor standing for a user's connection: it does nothing until stopped.
struct Connection;

impl Actor for Connection {
    type Msg = ();
    type State = ();
    type Arguments = ();
    async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Joins and leaves seen, by (topic, key).
type Counts = Arc<Mutex<HashMap<(String, String), (u64, u64)>>>;

/// Runs one node until stdin closes.
pub(crate) async fn run(name: &str, seed: Option<&str>) -> Result<(), String> {
    let mut config = NodeConfig::new(name).listen("127.0.0.1:0".parse().map_err(|_| "addr")?);
    if let Some(seed) = seed {
        config = config.seed(seed);
    }
    let node = Node::start(config).await.map_err(|e| e.to_string())?;
    let options = ReplicaOptions::new("presence").sync_interval(Duration::from_millis(20));
    let presence: Presence<String> = Presence::start(&node, options)
        .await
        .map_err(|e| e.to_string())?;
    let counts: Counts = Arc::default();
    let mut diffs = presence.subscribe(None);
    let counter = counts.clone();
    let counting = tokio::spawn(async move {
        while let Some(diff) = diffs.recv().await {
            let mut counts = counter.lock().unwrap_or_else(|e| e.into_inner());
            match diff {
                PresenceDiff::Join { topic, key, .. } => {
                    counts.entry((topic, key)).or_default().0 += 1
                }
                PresenceDiff::Leave { topic, key, .. } => {
                    counts.entry((topic, key)).or_default().1 += 1
                }
            }
        }
    });
    say(&format!("READY {}", node.listen_addr()));
    let mut actors: HashMap<(String, String), ActorRef<()>> = HashMap::new();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim() == "no-diffs" {
            counting.abort();
            *counts.lock().unwrap_or_else(|e| e.into_inner()) = HashMap::new();
            say("OK");
            continue;
        }
        let answer = command(&presence, &mut actors, &counts, &line).await;
        say(&answer);
    }
    for actor in actors.values() {
        actor.stop(None);
    }
    let _ = presence.stop().await;
    node.shutdown().await;
    Ok(())
}

async fn command(
    presence: &Presence<String>,
    actors: &mut HashMap<(String, String), ActorRef<()>>,
    counts: &Counts,
    line: &str,
) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["track", topic, prefix, n, meta] => {
            let Ok(n) = n.parse::<usize>() else {
                return "ERR n must be a number".into();
            };
            for i in 0..n {
                let key = format!("{prefix}{i}");
                let actor = match Actor::spawn(None, Connection, ()).await {
                    Ok((actor, _)) => actor,
                    Err(e) => return format!("ERR {e}"),
                };
                if let Err(e) = presence
                    .track(&actor.get_cell(), *topic, key.clone(), (*meta).to_owned())
                    .await
                {
                    return format!("ERR {e}");
                }
                actors.insert(((*topic).to_owned(), key), actor);
            }
            "OK".into()
        }
        ["track-bulk", topic, prefix, n, meta] => {
            let Ok(n) = n.parse::<usize>() else {
                return "ERR n must be a number".into();
            };
            let actor = match Actor::spawn(None, Connection, ()).await {
                Ok((actor, _)) => actor,
                Err(e) => return format!("ERR {e}"),
            };
            let started = Instant::now();
            for i in 0..n {
                if let Err(e) = presence
                    .track(
                        &actor.get_cell(),
                        *topic,
                        format!("{prefix}{i}"),
                        (*meta).to_owned(),
                    )
                    .await
                {
                    return format!("ERR {e}");
                }
            }
            let ms = started.elapsed().as_secs_f64() * 1e3;
            actors.insert(((*topic).to_owned(), format!("{prefix}*")), actor);
            format!("VALUE {ms}")
        }
        ["stop", topic, key] => match actors.remove(&((*topic).to_owned(), (*key).to_owned())) {
            Some(actor) => {
                actor.stop(None);
                "OK".into()
            }
            None => format!("ERR no actor tracked under {key}"),
        },
        ["list", topic] => {
            let list: BTreeMap<String, Vec<String>> = presence
                .list(topic)
                .into_iter()
                .map(|(key, places)| (key, places.into_iter().map(|p| p.node).collect()))
                .collect();
            format!("VALUE {}", json!(list))
        }
        ["count", topic, n, ms] => {
            let (Ok(n), Ok(ms)) = (n.parse::<usize>(), ms.parse::<u64>()) else {
                return "ERR usage: count <topic> <n> <ms>".into();
            };
            let end = Instant::now() + Duration::from_millis(ms);
            loop {
                let shown = presence.count(topic);
                if shown == n {
                    return format!("VALUE {shown}");
                }
                if Instant::now() >= end {
                    return format!("ERR {shown} shown, not {n}");
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        ["diffs"] => {
            // The counting task may still be draining: wait (bounded) until its joins minus
            // leaves match what shows.
            let end = Instant::now() + Duration::from_secs(30);
            loop {
                let net: i64 = {
                    let counts = counts.lock().unwrap_or_else(|e| e.into_inner());
                    counts.values().map(|(j, l)| *j as i64 - *l as i64).sum()
                };
                if net == presence.len() as i64 || Instant::now() >= end {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let counts = counts.lock().unwrap_or_else(|e| e.into_inner());
            let by_key: BTreeMap<String, (u64, u64)> = counts
                .iter()
                .map(|((topic, key), c)| (format!("{topic}/{key}"), *c))
                .collect();
            format!("VALUE {}", json!(by_key))
        }
        ["heap"] => heap::answer(),
        ["stats"] => format!(
            "VALUE {}",
            serde_json::to_string(&presence.replica().stats()).unwrap_or_default()
        ),
        _ => format!("ERR unknown command `{line}`"),
    }
}
