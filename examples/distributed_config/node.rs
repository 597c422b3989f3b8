//! One node of the distributed-config example: a cluster node with an `Agent<Config>`, driven
//! over stdin and reporting on stdout, one line per event. Shared by the example (which runs
//! three of these as child processes) and by `tests/agent.rs` (which runs them to test the
//! Agent across real processes).
//!
//! Commands (stdin, one per line):
//! * `set <field> <json>`: updates one field (`limits.max_conns`, `region`), answers `OK` or
//!   `ERR <why>`;
//! * `get`: answers `VALUE <json>`;
//! * `wait <field> <json> <ms>`: waits until the field holds that value, answers `VALUE <json>`
//!   or `ERR <why>`.
//!
//! Events: `READY <listen address>` once, then `CHANGED <fields> <json>` after every change.

use herd::agent::Agent;
use herd::cluster::{Node, NodeConfig};
use herd::replica::ReplicaOptions;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The limits a service is configured with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Limits {
    /// Connections at most.
    pub(crate) max_conns: u32,
    /// Request timeout.
    pub(crate) timeout_ms: u32,
}

/// The configuration the nodes share (version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Config {
    /// Limits.
    pub(crate) limits: Limits,
    /// Maintenance mode.
    pub(crate) maintenance: bool,
    /// Feature flags.
    pub(crate) features: BTreeMap<String, bool>,
}

/// Version 2 of the configuration: one more field, with a serde default, as in a rolling
/// upgrade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ConfigV2 {
    /// Limits.
    pub(crate) limits: Limits,
    /// Maintenance mode.
    pub(crate) maintenance: bool,
    /// Feature flags.
    pub(crate) features: BTreeMap<String, bool>,
    /// The new field.
    #[serde(default)]
    pub(crate) region: Option<String>,
}

/// The value every node starts from.
pub(crate) fn initial() -> Config {
    Config {
        limits: Limits {
            max_conns: 100,
            timeout_ms: 1_000,
        },
        maintenance: false,
        features: BTreeMap::new(),
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Sets the field at `path` (dotted) of `value` to `json`, through serde.
fn set_field<T: Serialize + serde::de::DeserializeOwned>(
    value: &mut T,
    path: &str,
    json: Value,
) -> Result<(), String> {
    let mut tree = serde_json::to_value(&*value).map_err(|e| e.to_string())?;
    let pointer = format!("/{}", path.replace('.', "/"));
    match tree.pointer_mut(&pointer) {
        Some(slot) => *slot = json,
        None => {
            // A new map entry: its parent must exist.
            let (parent, name) = pointer.rsplit_once('/').ok_or("bad field")?;
            let Some(Value::Object(fields)) = tree.pointer_mut(parent) else {
                return Err(format!("no field {path}"));
            };
            fields.insert(name.to_owned(), json);
        }
    }
    *value = serde_json::from_value(tree).map_err(|e| e.to_string())?;
    Ok(())
}

fn field_is<T: Serialize>(value: &T, path: &str, json: &Value) -> bool {
    serde_json::to_value(value)
        .ok()
        .and_then(|tree| {
            tree.pointer(&format!("/{}", path.replace('.', "/")))
                .cloned()
        })
        .is_some_and(|v| &v == json)
}

/// Runs one node until stdin closes. `v2` runs it with [`ConfigV2`].
pub(crate) async fn run(name: &str, seed: Option<&str>, v2: bool) -> Result<(), String> {
    let mut config = NodeConfig::new(name).listen("127.0.0.1:0".parse().map_err(|_| "addr")?);
    if let Some(seed) = seed {
        config = config.seed(seed);
    }
    let node = Node::start(config).await.map_err(|e| e.to_string())?;
    let options = ReplicaOptions::new("config").sync_interval(Duration::from_millis(20));
    let result = if v2 {
        let i = initial();
        let initial = ConfigV2 {
            limits: i.limits,
            maintenance: i.maintenance,
            features: i.features,
            region: None,
        };
        serve(&node, Agent::start(&node, options, initial).await).await
    } else {
        serve(&node, Agent::start(&node, options, initial()).await).await
    };
    node.shutdown().await;
    result
}

async fn serve<T>(
    node: &Node,
    agent: Result<Agent<T>, herd::agent::AgentError>,
) -> Result<(), String>
where
    T: Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    let agent = agent.map_err(|e| e.to_string())?;
    say(&format!("READY {}", node.listen_addr()));
    let mut changes = agent.subscribe();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            change = changes.recv() => match change {
                Some(Ok(c)) => say(&format!(
                    "CHANGED {} {}",
                    c.fields.join(","),
                    serde_json::to_string(&c.value).unwrap_or_default()
                )),
                Some(Err(e)) => say(&format!("ERR {e}")),
                None => break,
            },
            line = lines.next_line() => {
                let Ok(Some(line)) = line else { break };
                say(&command(&agent, &line).await);
            }
        }
    }
    agent.stop().await.map_err(|e| e.to_string())
}

async fn command<T>(agent: &Agent<T>, line: &str) -> String
where
    T: Serialize + serde::de::DeserializeOwned,
{
    let words: Vec<&str> = line.splitn(4, ' ').collect();
    let value = |json: &str| serde_json::from_str::<Value>(json).map_err(|e| e.to_string());
    let answer = match words.as_slice() {
        ["get"] => agent.get().map_err(|e| e.to_string()),
        ["set", field, json] => match value(json) {
            Ok(json) => {
                let mut failed = None;
                let result = agent
                    .update(|c| {
                        if let Err(e) = set_field(c, field, json) {
                            failed = Some(e);
                        }
                    })
                    .await;
                match (result, failed) {
                    (Err(e), _) => Err(e.to_string()),
                    (_, Some(e)) => Err(e),
                    (Ok(()), None) => return "OK".into(),
                }
            }
            Err(e) => Err(e),
        },
        ["wait", field, json, ms] => match (value(json), ms.parse::<u64>()) {
            (Ok(json), Ok(ms)) => agent
                .wait_until(|c| field_is(c, field, &json), Duration::from_millis(ms))
                .await
                .map_err(|e| e.to_string()),
            _ => Err("usage: wait <field> <json> <ms>".into()),
        },
        _ => Err(format!("unknown command `{line}`")),
    };
    match answer {
        Ok(v) => format!("VALUE {}", serde_json::to_string(&v).unwrap_or_default()),
        Err(e) => format!("ERR {e}"),
    }
}
