//! A value's serde shape as a flat document: one leaf per field, addressed by a JSON pointer.
//!
//! Objects (structs, maps) with at least one field become their fields, recursively; every
//! other value (numbers, strings, booleans, null, sequences, and empty objects) is one leaf,
//! held as its JSON text. So two nodes that change different fields touch different leaves,
//! and a sequence changes as a whole. Pure functions, no I/O: the Agent stores the leaves in a
//! replicated map and rebuilds values from them.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

use super::AgentError;

/// A leaf as the replicated map holds it: the field's JSON text, or a tombstone for a field
/// removed (a map entry deleted, an enum variant left), so the removal wins over the initial
/// value and, by last-writer-wins, over older writes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Leaf {
    /// The field's value, as JSON text.
    Value(String),
    /// The field was removed.
    Removed,
}

/// Leaves by JSON pointer (`""` is the whole value when it is not an object).
pub(crate) type Leaves = BTreeMap<String, String>;

/// The leaves of `value`.
pub(crate) fn flatten<T: Serialize>(value: &T) -> Result<Leaves, AgentError> {
    let tree = serde_json::to_value(value).map_err(AgentError::Encode)?;
    let mut leaves = Leaves::new();
    walk(&tree, &mut String::new(), &mut leaves);
    Ok(leaves)
}

fn walk(value: &Value, path: &mut String, leaves: &mut Leaves) {
    match value {
        Value::Object(fields) if !fields.is_empty() => {
            for (name, field) in fields {
                let len = path.len();
                path.push('/');
                path.push_str(&escape(name));
                walk(field, path, leaves);
                path.truncate(len);
            }
        }
        other => {
            leaves.insert(path.clone(), other.to_string());
        }
    }
}

/// RFC 6901: `~` and `/` inside a field name.
fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

fn unescape(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

/// The changes that turn `old` into `new`: every leaf that is new or different, and a
/// tombstone for every leaf of `old` that `new` lacks. Leaves of neither (fields of a newer
/// version of the type, unknown here) are not touched.
pub(crate) fn diff(old: &Leaves, new: &Leaves) -> Vec<(String, Leaf)> {
    let mut changes = Vec::new();
    for (path, json) in new {
        if old.get(path) != Some(json) {
            changes.push((path.clone(), Leaf::Value(json.clone())));
        }
    }
    for path in old.keys() {
        if !new.contains_key(path) {
            changes.push((path.clone(), Leaf::Removed));
        }
    }
    changes
}

/// `base` (the initial value's leaves) with the replicated leaves applied over it: values
/// replace, tombstones remove.
pub(crate) fn overlay<'a>(
    mut base: Leaves,
    replicated: impl IntoIterator<Item = (&'a String, &'a Leaf)>,
) -> Leaves {
    for (path, leaf) in replicated {
        match leaf {
            Leaf::Value(json) => {
                base.insert(path.clone(), json.clone());
            }
            Leaf::Removed => {
                base.remove(path);
            }
        }
    }
    base
}

/// Rebuilds a value from its leaves.
///
/// Concurrent changes can leave a leaf and a leaf below it (one node set `/a` to a number
/// while another set `/a/b`): objects win, so `/a/b` is kept and the scalar at `/a` is
/// ignored, the same on every node. A leaf that is not valid JSON (written by something other
/// than an Agent) is a decode error.
pub(crate) fn rebuild<T: DeserializeOwned>(leaves: &Leaves) -> Result<T, AgentError> {
    let mut root = Value::Null;
    let mut root_set = false;
    for (path, json) in leaves {
        let leaf: Value = serde_json::from_str(json).map_err(AgentError::Decode)?;
        if path.is_empty() {
            if !root_set || !matches!(root, Value::Object(ref m) if !m.is_empty()) {
                root = leaf;
                root_set = true;
            }
            continue;
        }
        root_set = true;
        insert(&mut root, path, leaf);
    }
    serde_json::from_value(root).map_err(AgentError::Decode)
}

/// Puts `leaf` at `path` (a JSON pointer), making objects on the way; a scalar in the way is
/// replaced by an object (objects win), and a scalar arriving where an object with fields is
/// stays out.
fn insert(root: &mut Value, path: &str, leaf: Value) {
    let segments: Vec<String> = path.split('/').skip(1).map(unescape).collect();
    let mut node = root;
    for (i, segment) in segments.iter().enumerate() {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let Value::Object(fields) = node else {
            return;
        };
        if i + 1 == segments.len() {
            match fields.get_mut(segment) {
                Some(Value::Object(existing)) if !existing.is_empty() => {
                    // Objects win: keep the fields; an empty-object leaf adds nothing.
                }
                Some(slot) => *slot = leaf,
                None => {
                    fields.insert(segment.clone(), leaf);
                }
            }
            return;
        }
        node = fields
            .entry(segment.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;
    use std::collections::HashMap;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Limits {
        max_conns: u32,
        burst: Option<u32>,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Config {
        name: String,
        limits: Limits,
        tags: Vec<String>,
        per_tenant: HashMap<String, Limits>,
        empty: HashMap<String, u8>,
    }

    fn config() -> Config {
        Config {
            name: "svc/a~b".into(),
            limits: Limits {
                max_conns: 10,
                burst: None,
            },
            tags: vec!["x".into()],
            per_tenant: HashMap::from([(
                "t/1".into(),
                Limits {
                    max_conns: 1,
                    burst: Some(2),
                },
            )]),
            empty: HashMap::new(),
        }
    }

    #[test]
    fn fields_become_leaves_and_back() {
        let leaves = flatten(&config()).unwrap();
        let paths: Vec<&str> = leaves.keys().map(String::as_str).collect();
        assert_eq!(
            paths,
            [
                "/empty",
                "/limits/burst",
                "/limits/max_conns",
                "/name",
                "/per_tenant/t~11/burst",
                "/per_tenant/t~11/max_conns",
                "/tags",
            ]
        );
        assert_eq!(leaves["/tags"], r#"["x"]"#);
        assert_eq!(leaves["/empty"], "{}");
        assert_eq!(rebuild::<Config>(&leaves).unwrap(), config());
    }

    #[test]
    fn a_change_of_one_field_is_one_leaf() {
        let old = flatten(&config()).unwrap();
        let mut changed = config();
        changed.limits.max_conns = 11;
        changed.per_tenant.clear();
        let changes = diff(&old, &flatten(&changed).unwrap());
        assert_eq!(
            changes,
            [
                ("/limits/max_conns".to_string(), Leaf::Value("11".into())),
                ("/per_tenant".to_string(), Leaf::Value("{}".into())),
                ("/per_tenant/t~11/burst".to_string(), Leaf::Removed),
                ("/per_tenant/t~11/max_conns".to_string(), Leaf::Removed),
            ]
        );
    }

    #[test]
    fn objects_win_over_a_scalar_at_their_path() {
        let mut leaves = Leaves::new();
        leaves.insert("/a".into(), "3".into());
        leaves.insert("/a/b".into(), "4".into());
        let v: Value = rebuild(&leaves).unwrap();
        assert_eq!(v, serde_json::json!({"a": {"b": 4}}));
    }

    #[test]
    fn a_scalar_value_is_one_leaf_at_the_root() {
        let leaves = flatten(&42u32).unwrap();
        assert_eq!(leaves, Leaves::from([(String::new(), "42".to_string())]));
        assert_eq!(rebuild::<u32>(&leaves).unwrap(), 42);
    }

    #[test]
    fn non_string_map_keys_are_an_encode_error() {
        let map: HashMap<(u8, u8), u8> = HashMap::from([((1, 2), 3)]);
        assert!(matches!(flatten(&map), Err(AgentError::Encode(_))));
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i32>().prop_map(Value::from),
            "[a-z/~]{0,4}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
                prop::collection::btree_map("[a-z/~]{0,3}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Any JSON value survives flatten + rebuild, and applying the diff between two
        /// values' leaves to the first gives the second.
        #[test]
        fn round_trip_and_diff(a in json_value(), b in json_value()) {
            let la = flatten(&a).unwrap();
            prop_assert_eq!(rebuild::<Value>(&la).unwrap(), a.clone());
            let lb = flatten(&b).unwrap();
            let changes = diff(&la, &lb);
            let applied = overlay(la, changes.iter().map(|(p, l)| (p, l)));
            prop_assert_eq!(rebuild::<Value>(&applied).unwrap(), b);
        }
    }
}
