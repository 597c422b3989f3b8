//! What `herd node` hosts beside its key-value replica, to show the products built on it: a
//! replicated configuration ([`DemoConfig`] in an [`Agent`](herd::agent::Agent)) and a
//! greeter actor that a [`Registry`](herd::registry::Registry) makes reachable by name from
//! every node.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The configuration the nodes share through their Agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DemoConfig {
    /// Refuse new work while set.
    pub(crate) maintenance: bool,
    /// Connections at most.
    pub(crate) max_conns: u32,
    /// Feature flags by name.
    pub(crate) features: BTreeMap<String, bool>,
}

impl Default for DemoConfig {
    /// What every node starts from; the Agent shows it wherever no node has written.
    fn default() -> Self {
        DemoConfig {
            maintenance: false,
            max_conns: 100,
            features: BTreeMap::new(),
        }
    }
}

/// `features.beta` or `/features/beta` as a JSON pointer (`/features/beta`).
pub(crate) fn pointer(field: &str) -> String {
    if field.starts_with('/') {
        field.to_owned()
    } else {
        // A dotted path: escape what a pointer treats specially, then split on the dots.
        let escaped = field.replace('~', "~0").replace('/', "~1");
        format!("/{}", escaped.replace('.', "/"))
    }
}

/// Sets the field at `field` (dotted path or JSON pointer) of `config` to `value`, through
/// serde. A new entry of a map (`features.x`) is created; a field the struct does not have,
/// or a value of the wrong type, is an error and leaves `config` as it was.
pub(crate) fn set_field(config: &mut DemoConfig, field: &str, value: Value) -> Result<(), String> {
    let pointer = pointer(field);
    let mut tree = serde_json::to_value(&*config).map_err(|e| e.to_string())?;
    match tree.pointer_mut(&pointer) {
        Some(slot) => *slot = value.clone(),
        None => {
            let Some((parent, name)) = pointer.rsplit_once('/') else {
                return Err(format!("no field `{field}`"));
            };
            let Some(Value::Object(fields)) = tree.pointer_mut(parent) else {
                return Err(format!("no field `{field}`"));
            };
            let name = name.replace("~1", "/").replace("~0", "~");
            fields.insert(name, value.clone());
        }
    }
    let updated: DemoConfig =
        serde_json::from_value(tree).map_err(|e| format!("`{field}`: {e}"))?;
    // serde drops fields a struct does not have: without this check `config-set typo 1`
    // would answer ok and change nothing.
    if field_value(&updated, field).as_ref() != Some(&value) {
        return Err(format!("no field `{field}` that takes {value}"));
    }
    *config = updated;
    Ok(())
}

/// The value at `field` of `config`, if it has one.
pub(crate) fn field_value(config: &DemoConfig, field: &str) -> Option<Value> {
    serde_json::to_value(config)
        .ok()?
        .pointer(&pointer(field))
        .cloned()
}

/// The greeter's messages. Serializable by ractor_cluster, so that a node that looked the
/// greeter up in the registry can call it on another node.
#[derive(RactorClusterMessage)]
pub(crate) enum GreeterMsg {
    /// Answers a JSON object `{"node": <where the greeter runs>, "reply": <greeting>}`.
    #[rpc]
    Greet(String, RpcReplyPort<String>),
}

/// A tiny actor that says which node it runs on: the thing `register` puts under a name, and
/// the child the supervisor starts.
pub(crate) struct Greeter {
    /// The node it runs on.
    pub(crate) node: String,
    /// A supervised child counts itself here, under its id, while it runs.
    pub(crate) tally: Option<(Tally, String)>,
}

impl Greeter {
    /// A greeter that is no supervised child.
    pub(crate) fn new(node: &str) -> Self {
        Greeter {
            node: node.to_owned(),
            tally: None,
        }
    }
}

impl Actor for Greeter {
    type Msg = GreeterMsg;
    /// Held from start to stop: dropping it uncounts the child.
    type State = Option<Running>;
    type Arguments = ();

    async fn pre_start(
        &self,
        _: ActorRef<GreeterMsg>,
        _: (),
    ) -> Result<Option<Running>, ActorProcessingErr> {
        Ok(self.tally.as_ref().map(|(tally, id)| tally.enter(id)))
    }

    async fn handle(
        &self,
        _: ActorRef<GreeterMsg>,
        msg: GreeterMsg,
        _: &mut Option<Running>,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            GreeterMsg::Greet(text, reply) => {
                let answer = json!({"node": self.node, "reply": format!("hello, {text}")});
                // The caller may have given up waiting; nothing to do then.
                let _ = reply.send(answer.to_string());
            }
        }
        Ok(())
    }
}

/// How many copies of each supervised child run on this node, counted by the children
/// themselves from start to stop (not read from the supervisor's registry, which shows one
/// holder per id even if a bug ran two): what `children` answers and the nemesis suite checks.
#[derive(Clone, Default)]
pub(crate) struct Tally(Arc<Mutex<BTreeMap<String, usize>>>);

impl Tally {
    fn enter(&self, id: &str) -> Running {
        *self.lock().entry(id.to_owned()).or_default() += 1;
        Running {
            tally: self.clone(),
            id: id.to_owned(),
        }
    }

    /// The children running now, with their copies.
    pub(crate) fn running(&self) -> BTreeMap<String, usize> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, usize>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One running copy of a child in a [`Tally`]; uncounted when dropped.
pub(crate) struct Running {
    tally: Tally,
    id: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut running = self.tally.lock();
        if let Some(n) = running.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                running.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_set_by_path_or_pointer() {
        let mut c = DemoConfig::default();
        set_field(&mut c, "max_conns", json!(512)).unwrap();
        set_field(&mut c, "features.beta_ui", json!(true)).unwrap();
        set_field(&mut c, "/maintenance", json!(true)).unwrap();
        assert_eq!(c.max_conns, 512);
        assert_eq!(c.features.get("beta_ui"), Some(&true));
        assert!(c.maintenance);
        assert_eq!(field_value(&c, "features.beta_ui"), Some(json!(true)));
        assert_eq!(field_value(&c, "nothing"), None);
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_refused() {
        let mut c = DemoConfig::default();
        for (field, value) in [
            ("max_cons", json!(1)),
            ("max_conns", json!("many")),
            ("max_conns", json!(-1)),
            ("features.x", json!(3)),
            ("maintenance.deep", json!(true)),
        ] {
            assert!(set_field(&mut c, field, value).is_err(), "{field}");
        }
        assert_eq!(c, DemoConfig::default());
    }

    #[test]
    fn a_tally_counts_copies_until_they_stop() {
        let tally = Tally::default();
        let a = tally.enter("a");
        let a2 = tally.enter("a");
        let b = tally.enter("b");
        assert_eq!(
            tally.running(),
            BTreeMap::from([("a".into(), 2), ("b".into(), 1)])
        );
        drop((a, b));
        assert_eq!(tally.running(), BTreeMap::from([("a".into(), 1)]));
        drop(a2);
        assert!(tally.running().is_empty());
    }
}
