//! One node of the registry example: a cluster node with a [`Registry`], driven over stdin
//! and reporting on stdout. Shared by the example, by `tests/registry.rs` and by the
//! `products-registry` workload.
//!
//! Commands (stdin, one per line), each answered by `OK`, `VALUE <json>` or `ERR <why>`:
//! * `register <prefix> <n>`: starts `n` echo actors here and registers each under
//!   `<prefix><i>` (`<prefix>` alone when `n` is 1); answers how many were registered and
//!   how many names were already held;
//! * `register-bulk <prefix> <n>`: registers `<prefix><i>` for `i` in `0..n`, all bound to
//!   one new echo actor (for memory figures: the workload measures names, not actors);
//! * `heap`: bytes in use on the heap, after handing freed pages back to the system;
//! * `call <name> <ms>`: looks the name up (waiting up to `ms`) and calls the actor;
//!   answers its reply, which names the node it runs on;
//! * `where [<prefix>]`: each name starting with `prefix` (every name without one) and the
//!   node holding it;
//! * `count <prefix> <n> <ms>`: waits until exactly `n` names with `prefix` show here, then
//!   answers the count (or an error after `ms`);
//! * `lookups <prefix>`: looks up every name with `prefix` once; answers the count and the
//!   p50 and p99 of one lookup, in ns;
//! * `calls <prefix> <n>`: looks up and calls the first `n` names with `prefix`; the same
//!   figures for one lookup and call;
//! * `alive <name>`: whether this node's actor registered under `name` still runs;
//! * `cast <name> <text>`: looks the name up (waiting up to 5 s) and casts `text` to it;
//! * `heard <name>`: what this node's actor under `name` was cast, in order;
//! * `stop <name>`: stops this node's actor under `name` (its name goes with it);
//! * `keep <name> <ms>`: looks the name up and keeps what it found; `call-kept <name> <ms>`
//!   calls that, however the name moved since (a claim no longer held answers an error);
//! * `events`: how many registrations, removals and conflicts this node's subscriber saw.
//!
//! Events: `READY <listen address>` once. With `HERD_REGISTRY_EARLY=<name>` the node
//! registers `<name>` before it has synced with anyone (a claim made "on the other side of a
//! partition", to show a conflict).

// The workloads bench includes this file and the presence node, each with its copy.
#[allow(clippy::duplicate_mod)]
#[path = "../common/heap.rs"]
mod heap;

use herd::cluster::{Node, NodeConfig};
use herd::registry::{NamedActor, Registry, RegistryError, RegistryEvent, RegistryOptions};
use herd::replica::ReplicaOptions;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The registered actors' messages: serializable by ractor_cluster, with a call.
#[derive(RactorClusterMessage)]
pub(crate) enum EchoMsg {
    /// Answers with the text and the node's name.
    #[rpc]
    Echo(String, RpcReplyPort<String>),
    /// Remembers the text (a cast).
    Remember(String),
    /// Answers what it remembered, in order, as a JSON array.
    #[rpc]
    Heard(RpcReplyPort<String>),
}

struct Echo {
    node: String,
}

impl Actor for Echo {
    type Msg = EchoMsg;
    type State = Vec<String>;
    type Arguments = ();

    async fn pre_start(
        &self,
        _: ActorRef<EchoMsg>,
        _: (),
    ) -> Result<Vec<String>, ActorProcessingErr> {
        Ok(Vec::new())
    }

    async fn handle(
        &self,
        _: ActorRef<EchoMsg>,
        msg: EchoMsg,
        heard: &mut Vec<String>,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            EchoMsg::Echo(text, reply) => {
                let _ = reply.send(format!("{text} from {}", self.node));
            }
            EchoMsg::Remember(text) => heard.push(text),
            EchoMsg::Heard(reply) => {
                let _ = reply.send(json!(heard).to_string());
            }
        }
        Ok(())
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Registrations, removals and conflicts seen.
type Counts = Arc<Mutex<(u64, u64, u64)>>;

/// Membership downs seen by this node, by reason (for the `cluster` command).
static DOWNS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

/// Runs one node until stdin closes.
pub(crate) async fn run(name: &str, seed: Option<&str>) -> Result<(), String> {
    let mut config = NodeConfig::new(name).listen("127.0.0.1:0".parse().map_err(|_| "addr")?);
    if let Some(seed) = seed {
        config = config.seed(seed);
    }
    let node = Node::start(config).await.map_err(|e| e.to_string())?;
    let early = std::env::var("HERD_REGISTRY_EARLY").ok();
    let options = RegistryOptions::new("names")
        .replica(ReplicaOptions::new("names").sync_interval(Duration::from_millis(20)))
        .ready_timeout(if early.is_some() {
            Duration::ZERO
        } else {
            Duration::from_secs(5)
        });
    let registry = Registry::start(&node, options)
        .await
        .map_err(|e| e.to_string())?;
    let mut membership = node.subscribe();
    tokio::spawn(async move {
        while let Ok(event) = membership.events.recv().await {
            if let herd::cluster::MemberEvent::Down { reason, .. } = event {
                *DOWNS
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(format!("{reason:?}"))
                    .or_default() += 1;
            }
        }
    });
    let counts: Counts = Arc::default();
    let mut events = registry.subscribe();
    let counter = counts.clone();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            let mut c = counter.lock().unwrap_or_else(|e| e.into_inner());
            match event {
                RegistryEvent::Registered(_) => c.0 += 1,
                RegistryEvent::Unregistered(_) => c.1 += 1,
                RegistryEvent::Conflict { .. } => c.2 += 1,
            }
        }
    });
    let mut actors: HashMap<String, ActorRef<EchoMsg>> = HashMap::new();
    let mut kept: HashMap<String, NamedActor<EchoMsg>> = HashMap::new();
    if let Some(name) = early {
        let answer = register(&node, &registry, &mut actors, &name, 1).await;
        if answer.starts_with("ERR") {
            return Err(answer);
        }
    }
    say(&format!("READY {}", node.listen_addr()));
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let answer = command(&node, &registry, &mut actors, &mut kept, &counts, &line).await;
        say(&answer);
    }
    for actor in actors.values() {
        actor.stop(None);
    }
    let _ = registry.stop().await;
    node.shutdown().await;
    Ok(())
}

async fn register(
    node: &Node,
    registry: &Registry,
    actors: &mut HashMap<String, ActorRef<EchoMsg>>,
    prefix: &str,
    n: usize,
) -> String {
    let (mut done, mut held) = (0, 0);
    for i in 0..n {
        let name = if n == 1 {
            prefix.to_owned()
        } else {
            format!("{prefix}{i}")
        };
        let echo = Echo {
            node: node.name().to_owned(),
        };
        let actor = match Actor::spawn(None, echo, ()).await {
            Ok((actor, _)) => actor,
            Err(e) => return format!("ERR {e}"),
        };
        match registry.register(name.clone(), &actor).await {
            Ok(_) => {
                done += 1;
                actors.insert(name, actor);
            }
            Err(RegistryError::AlreadyRegistered { .. }) => {
                held += 1;
                actor.stop(None);
            }
            Err(e) => return format!("ERR {e}"),
        }
    }
    format!("VALUE {}", json!({"registered": done, "already": held}))
}

/// `{"n", "p50_ns", "p99_ns"}` of some durations in nanoseconds.
fn quantiles(mut ns: Vec<u64>) -> serde_json::Value {
    ns.sort_unstable();
    let at = |q: f64| {
        ns.get(((ns.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    json!({"n": ns.len(), "p50_ns": at(0.5), "p99_ns": at(0.99)})
}

async fn command(
    node: &Node,
    registry: &Registry,
    actors: &mut HashMap<String, ActorRef<EchoMsg>>,
    kept: &mut HashMap<String, NamedActor<EchoMsg>>,
    counts: &Counts,
    line: &str,
) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["register", prefix, n] => match n.parse::<usize>() {
            Ok(n) => register(node, registry, actors, prefix, n).await,
            Err(_) => "ERR n must be a number".into(),
        },
        ["register-bulk", prefix, n] => {
            let Ok(n) = n.parse::<usize>() else {
                return "ERR n must be a number".into();
            };
            let echo = Echo {
                node: node.name().to_owned(),
            };
            let actor = match Actor::spawn(None, echo, ()).await {
                Ok((actor, _)) => actor,
                Err(e) => return format!("ERR {e}"),
            };
            for i in 0..n {
                if let Err(e) = registry.register(format!("{prefix}{i}"), &actor).await {
                    return format!("ERR {e}");
                }
            }
            actors.insert(format!("{prefix}*"), actor);
            "OK".into()
        }
        ["heap"] => heap::answer(),
        ["call", name, ms] => {
            let Ok(ms) = ms.parse::<u64>() else {
                return "ERR ms must be a number".into();
            };
            let wait = Duration::from_millis(ms);
            let Some(actor) = registry.lookup_within::<EchoMsg>(name, wait).await else {
                return format!("ERR {name} not found");
            };
            match ractor::call_t!(actor, EchoMsg::Echo, ms, "hello".to_owned()) {
                Ok(reply) => format!("VALUE {}", json!(reply)),
                Err(e) => format!("ERR {e}"),
            }
        }
        ["where"] | ["where", _] => {
            let prefix = words.get(1).copied().unwrap_or("");
            let at: BTreeMap<String, String> = registry
                .select(prefix)
                .into_iter()
                .map(|e| (e.name.to_string(), e.node.to_string()))
                .collect();
            format!("VALUE {}", json!(at))
        }
        ["count", prefix, n, ms] => {
            let (Ok(n), Ok(ms)) = (n.parse::<usize>(), ms.parse::<u64>()) else {
                return "ERR usage: count <prefix> <n> <ms>".into();
            };
            let end = Instant::now() + Duration::from_millis(ms);
            // Count again only after the subscriber saw a change: a count is a scan, and
            // scanning 100,000 names every 5 ms costs the node a core's tenth.
            let generation = || {
                let c = *counts.lock().unwrap_or_else(|e| e.into_inner());
                c.0 + c.1 + c.2
            };
            let mut counted = None;
            let mut shown = 0;
            loop {
                let now = generation();
                if counted != Some(now) {
                    counted = Some(now);
                    shown = registry.count_prefix(prefix);
                }
                if shown == n {
                    return format!("VALUE {shown}");
                }
                if Instant::now() >= end {
                    return format!("ERR {shown} shown, not {n}");
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        ["lookups", prefix] => {
            // Local lookup latency: every name with `prefix`, looked up once each.
            let names: Vec<String> = registry
                .select(prefix)
                .into_iter()
                .map(|e| e.name.to_string())
                .collect();
            let mut ns: Vec<u64> = Vec::with_capacity(names.len());
            for name in &names {
                let t = Instant::now();
                let found = registry.lookup::<EchoMsg>(name);
                ns.push(t.elapsed().as_nanos() as u64);
                if found.is_none() {
                    return format!("ERR {name} not found");
                }
            }
            format!("VALUE {}", json!(quantiles(ns)))
        }
        ["calls", prefix, n] => {
            // Call latency: the first `n` names with `prefix`, called once each.
            let Ok(n) = n.parse::<usize>() else {
                return "ERR n must be a number".into();
            };
            let names: Vec<String> = registry
                .select(prefix)
                .into_iter()
                .take(n)
                .map(|e| e.name.to_string())
                .collect();
            let mut ns: Vec<u64> = Vec::with_capacity(names.len());
            for name in &names {
                let t = Instant::now();
                let Some(actor) = registry.lookup::<EchoMsg>(name) else {
                    return format!("ERR {name} not found");
                };
                if let Err(e) = ractor::call_t!(actor, EchoMsg::Echo, 5000, String::new()) {
                    return format!("ERR {e}");
                }
                ns.push(t.elapsed().as_nanos() as u64);
            }
            format!("VALUE {}", json!(quantiles(ns)))
        }
        ["alive", name] => {
            let alive = actors
                .get(*name)
                .is_some_and(|a| a.get_status() == ractor::ActorStatus::Running);
            format!("VALUE {alive}")
        }
        ["cast", name, text] => {
            let Some(actor) = registry
                .lookup_within::<EchoMsg>(name, Duration::from_secs(5))
                .await
            else {
                return format!("ERR {name} not found");
            };
            match actor.cast(EchoMsg::Remember((*text).to_owned())) {
                Ok(()) => "OK".into(),
                Err(e) => format!("ERR {e}"),
            }
        }
        ["heard", name] => {
            let Some(actor) = actors.get(*name) else {
                return format!("ERR no actor of this node under {name}");
            };
            match ractor::call_t!(actor, EchoMsg::Heard, 5000) {
                Ok(heard) => format!("VALUE {heard}"),
                Err(e) => format!("ERR {e}"),
            }
        }
        ["stop", name] => match actors.remove(*name) {
            Some(actor) => match actor
                .stop_and_wait(None, Some(Duration::from_secs(5)))
                .await
            {
                Ok(()) => "OK".into(),
                Err(e) => format!("ERR {e}"),
            },
            None => format!("ERR no actor of this node under {name}"),
        },
        ["keep", name, ms] => {
            let Ok(ms) = ms.parse::<u64>() else {
                return "ERR ms must be a number".into();
            };
            let wait = Duration::from_millis(ms);
            match registry.lookup_within::<EchoMsg>(name, wait).await {
                Some(actor) => {
                    kept.insert((*name).to_owned(), actor);
                    "OK".into()
                }
                None => format!("ERR {name} not found"),
            }
        }
        ["call-kept", name, ms] => {
            let Ok(ms) = ms.parse::<u64>() else {
                return "ERR ms must be a number".into();
            };
            let Some(actor) = kept.get(*name) else {
                return format!("ERR nothing kept for {name}");
            };
            match ractor::call_t!(actor, EchoMsg::Echo, ms, "hello".to_owned()) {
                Ok(reply) => format!("VALUE {}", json!(reply)),
                Err(e) => format!("ERR {e}"),
            }
        }
        ["cluster"] => {
            let mut stats = serde_json::to_value(node.stats()).unwrap_or_default();
            stats["downs"] = json!(*DOWNS.lock().unwrap_or_else(|e| e.into_inner()));
            format!("VALUE {stats}")
        }
        ["events"] => {
            let c = *counts.lock().unwrap_or_else(|e| e.into_inner());
            format!(
                "VALUE {}",
                json!({"registered": c.0, "unregistered": c.1, "conflicts": c.2})
            )
        }
        _ => format!("ERR unknown command `{line}`"),
    }
}
