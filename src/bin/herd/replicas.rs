//! The node's other replicated types beside its key-value map: an OR-set, a map of counters
//! and a [`Presence`] of tiny actors. They are here so that the nemesis suite checks every
//! kind of state under its faults, not only maps; a user sees them through `sadd`, `incr`,
//! `track` and their readers.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use herd::cluster::Node;
use herd::presence::Presence;
use herd::replica::{CounterMap, Kv, ReplicaOptions, SetReplica};
use ractor::{Actor, ActorRef};
use serde_json::{Value, json};

use crate::products::{Greeter, GreeterMsg};
use crate::protocol::{Command, error, ok};

/// The set's name (and its file in the data directory).
const SET: &str = "set";
/// The counters' name (and their file in the data directory).
const COUNTERS: &str = "counters";
/// The presence's name (in memory: its tracks describe live actors).
const PRESENCE: &str = "presence";

/// The set, the counters and the presence of one node.
pub(crate) struct Replicas {
    node: String,
    set: SetReplica<String>,
    counters: CounterMap<String>,
    presence: Presence<String>,
    /// The actors `track` started, by topic and key: `untrack` stops them.
    tracked: Mutex<HashMap<(String, String), ActorRef<GreeterMsg>>>,
    /// Empty key-value replicas that take no commands (`--idle-replicas`): what idle
    /// replicas cost a node is measured with them.
    idle: Vec<Kv>,
}

impl Replicas {
    /// Starts the three on `node`; `options(name)` gives each replica's options. On an error,
    /// stops what it had started.
    pub(crate) async fn start(
        node: &Node,
        options: impl Fn(&str) -> Result<ReplicaOptions, String>,
        idle: usize,
    ) -> Result<Self, String> {
        let set = SetReplica::start(node, options(SET)?)
            .await
            .map_err(|e| format!("starting the set: {e}"))?;
        let counters = match options(COUNTERS) {
            Ok(o) => CounterMap::start(node, o)
                .await
                .map_err(|e| format!("starting the counters: {e}")),
            Err(e) => Err(e),
        };
        let counters = match counters {
            Ok(counters) => counters,
            Err(e) => {
                let _ = set.stop().await;
                return Err(e);
            }
        };
        let presence = match options(PRESENCE) {
            Ok(o) => Presence::start(node, o)
                .await
                .map_err(|e| format!("starting the presence: {e}")),
            Err(e) => Err(e),
        };
        let presence = match presence {
            Ok(presence) => presence,
            Err(e) => {
                let _ = counters.stop().await;
                let _ = set.stop().await;
                return Err(e);
            }
        };
        let mut replicas = Replicas {
            node: node.name().to_owned(),
            set,
            counters,
            presence,
            tracked: Mutex::new(HashMap::new()),
            idle: Vec::with_capacity(idle),
        };
        for i in 0..idle {
            let started = match options(&format!("idle-{i}")) {
                Ok(o) => Kv::start(node, o)
                    .await
                    .map_err(|e| format!("starting idle replica {i}: {e}")),
                Err(e) => Err(e),
            };
            match started {
                Ok(kv) => replicas.idle.push(kv),
                Err(e) => {
                    let _ = replicas.stop().await;
                    return Err(e);
                }
            }
        }
        Ok(replicas)
    }

    /// Executes one of their commands (the node hands them only theirs).
    pub(crate) async fn execute(&self, command: &Command) -> Value {
        match command {
            Command::SetAdd { element } => answer(self.set.add(element.clone()).await),
            Command::SetRemove { element } => answer(self.set.remove(element).await),
            Command::SetMembers { prefix } => {
                let mut members: Vec<String> = self
                    .set
                    .to_vec()
                    .into_iter()
                    .filter(|e| e.starts_with(prefix.as_str()))
                    .collect();
                members.sort_unstable();
                ok(json!({ "members": members }))
            }
            Command::Increment { counter, by } => {
                answer(self.counters.increment(counter.clone(), *by).await)
            }
            Command::Counters => {
                let counters: BTreeMap<String, i64> = self.counters.to_map().into_iter().collect();
                ok(json!({ "counters": counters }))
            }
            Command::Track { topic, key } => self.track(topic, key).await,
            Command::Untrack { topic, key } => {
                let actor = self
                    .tracked
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&(topic.clone(), key.clone()));
                match actor {
                    Some(actor) => {
                        actor.stop(None);
                        ok(json!({}))
                    }
                    None => error(format!("{topic}/{key} is not tracked here"), json!({})),
                }
            }
            Command::List { topic } => {
                let keys: BTreeMap<String, Vec<String>> = self
                    .presence
                    .list(topic)
                    .into_iter()
                    .map(|(key, places)| (key, places.into_iter().map(|p| p.node).collect()))
                    .collect();
                ok(json!({ "keys": keys }))
            }
            other => error(
                format!("not a set, counters or presence command: {other:?}"),
                json!({}),
            ),
        }
    }

    /// Starts an actor and tracks it under `topic`/`key`, with this node's name as its meta.
    async fn track(&self, topic: &str, key: &str) -> Value {
        let actor = match Actor::spawn(None, Greeter::new(&self.node), ()).await {
            Ok((actor, _)) => actor,
            Err(e) => return error(format!("starting an actor: {e}"), json!({})),
        };
        if let Err(e) = self
            .presence
            .track(&actor.get_cell(), topic, key, self.node.clone())
            .await
        {
            actor.stop(None);
            return error(e, json!({}));
        }
        let old = self
            .tracked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((topic.to_owned(), key.to_owned()), actor);
        // Tracked again under the same topic and key: the older actor (and its track) go.
        if let Some(old) = old {
            old.stop(None);
        }
        ok(json!({}))
    }

    /// Stops the tracked actors, then the three replicas; the first error, if any.
    pub(crate) async fn stop(self) -> Result<(), String> {
        for actor in self
            .tracked
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .into_values()
        {
            actor.stop(None);
        }
        for kv in self.idle {
            let _ = kv.stop().await;
        }
        let (presence, counters, set) =
            tokio::join!(self.presence.stop(), self.counters.stop(), self.set.stop());
        presence.map_err(|e| format!("stopping the presence: {e}"))?;
        counters.map_err(|e| format!("stopping the counters: {e}"))?;
        set.map_err(|e| format!("stopping the set: {e}"))
    }
}

fn answer<E: std::fmt::Display>(result: Result<(), E>) -> Value {
    match result {
        Ok(()) => ok(json!({})),
        Err(e) => error(e, json!({})),
    }
}
