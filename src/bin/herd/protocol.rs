//! The node's line protocol: one command per stdin line, one JSON answer per command.
//!
//! Parsing is pure (no I/O, no replica) so it is unit-tested here; `node.rs` executes the
//! parsed [`Command`]s.

use std::time::Duration;

use serde_json::{Map, Value, json};

/// The longest an `await-*` command may wait.
const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// The most keys one `bulk-put` may write.
const MAX_BULK: usize = 1_000_000;
/// The largest value `bulk-put` generates.
const MAX_VALUE_LEN: usize = 1 << 20;

/// The commands, with the syntax shown in [`HELP`].
pub(crate) const HELP: &str = "\
commands (one per line, each answered by one JSON line):
  put <key> <value>                    value = rest of the line; answers once the put returned
  get <key>                            {\"ok\":true,\"value\":\"..\"|null}
  del <key>
  keys [<prefix>]                      {\"ok\":true,\"keys\":[..]}: every key (with that prefix), sorted
  members                              members, each peer's state (up|suspected|down) and the
                                       failure detector's figures, the replica's neighbours
  events                               membership events since start, with unix times in ms
  await-state <node> up|down <ms>      until <node> is (or is not) a member
  stats                                replica and cluster counters
  trim                                 give freed heap memory back to the OS (glibc)
  bulk-put <prefix> <n> <value_len>    puts <prefix>0 .. <prefix>{n-1}
  await-key <key> <value|-|*> <ms>     until key = value (- absent, * any value)
  await-count <n> <ms>                 until the replica holds exactly n keys
  await-members <n> <ms>               until exactly n other nodes are members
  await-neighbours <n> <ms>            until the replica has exactly n neighbours
  inject <peer> garbage|oversized|future|unframed
the replicated configuration (an Agent; <field>: max_conns, maintenance, features.<flag>,
or a JSON pointer such as /features/beta):
  config-get                           {\"ok\":true,\"config\":{..}}
  config-set <field> <json>            changes one field; answers the new config
  await-config <field> <json> <ms>     until the field holds that value here
names (a Registry of greeter actors):
  register <name>                      starts a greeter here and registers it as <name>
  whereis <name>                       {\"ok\":true,\"node\":\"..\"|null}: the node holding it
  await-name <name> <node|*|-> <ms>    until <name> is held by <node> (* any node, - none)
  call <name> <text>                   looks the name up (waiting up to 2 s for it) and calls
                                       its greeter; answers the reply and the node it ran on
supervised children (a distributed DynamicSupervisor of greeters, placed by rendezvous hashing):
  start-child <id>                     starts greeter child <id> somewhere in the cluster;
                                       answers the node that owns it
  where-child <id>                     {\"ok\":true,\"node\":\"..\"|null,\"owner\":\"..\"}: where it runs
  await-child <id> <node|*|-> <ms>     until child <id> runs on <node> (* anywhere, - nowhere)
  children                             {\"ok\":true,\"running\":{<id>:<n>}}: the children running
                                       on this node, each with how many copies (1 unless a bug)
a replicated set, counters and presence:
  sadd <element> / srem <element>      adds to (removes from) the set
  smembers [<prefix>]                  {\"ok\":true,\"members\":[..]}: sorted
  incr <counter> <by>                  adds <by> to <counter>
  counters                             {\"ok\":true,\"counters\":{<name>:<value>}}
  track <topic> <key>                  starts an actor here and tracks it under <topic>/<key>
  untrack <topic> <key>                stops that actor (its track leaves with it)
  list <topic>                         {\"ok\":true,\"keys\":{<key>:[<node>..]}}: who is there
  help
  quit                                 (end of input quits too)";

/// What `await-key` waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Expect {
    /// The key is absent (`-`).
    Absent,
    /// The key has some value (`*`).
    Any,
    /// The key has exactly this value.
    Value(String),
}

impl Expect {
    /// Whether `value` (the key's current value) satisfies it.
    pub(crate) fn holds(&self, value: Option<&str>) -> bool {
        match (self, value) {
            (Self::Absent, None) | (Self::Any, Some(_)) => true,
            (Self::Value(want), Some(have)) => want == have,
            _ => false,
        }
    }
}

/// A bad frame `inject` sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FaultKind {
    /// Bytes that are not a sync message.
    Garbage,
    /// A message over the size limit.
    Oversized,
    /// A message of a newer wire-format version.
    Future,
    /// Bytes without herd's envelope.
    Unframed,
}

/// One parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    Put {
        key: String,
        value: String,
    },
    Get {
        key: String,
    },
    /// Every key with `prefix`, sorted.
    Keys {
        prefix: String,
    },
    Del {
        key: String,
    },
    Members,
    Events,
    AwaitState {
        node: String,
        up: bool,
        timeout: Duration,
    },
    Stats,
    BulkPut {
        prefix: String,
        n: usize,
        value_len: usize,
    },
    AwaitKey {
        key: String,
        expect: Expect,
        timeout: Duration,
    },
    AwaitCount {
        n: usize,
        timeout: Duration,
    },
    AwaitMembers {
        n: usize,
        timeout: Duration,
    },
    AwaitNeighbours {
        n: usize,
        timeout: Duration,
    },
    Inject {
        peer: String,
        fault: FaultKind,
    },
    ConfigGet,
    ConfigSet {
        field: String,
        value: Value,
    },
    AwaitConfig {
        field: String,
        value: Value,
        timeout: Duration,
    },
    Register {
        name: String,
    },
    Whereis {
        name: String,
    },
    /// `expect` is about the node holding the name.
    AwaitName {
        name: String,
        expect: Expect,
        timeout: Duration,
    },
    Call {
        name: String,
        text: String,
    },
    StartChild {
        id: String,
    },
    WhereChild {
        id: String,
    },
    /// `expect` is about the node running the child.
    AwaitChild {
        id: String,
        expect: Expect,
        timeout: Duration,
    },
    /// The supervised children running on this node.
    Children,
    SetAdd {
        element: String,
    },
    SetRemove {
        element: String,
    },
    SetMembers {
        prefix: String,
    },
    Increment {
        counter: String,
        by: u64,
    },
    Counters,
    Track {
        topic: String,
        key: String,
    },
    Untrack {
        topic: String,
        key: String,
    },
    List {
        topic: String,
    },
    Trim,
    Help,
    Quit,
}

/// Parses one line. The error is the message for `{"ok":false,"error":..}`.
pub(crate) fn parse(line: &str) -> Result<Command, String> {
    let line = line.trim();
    let (verb, rest) = split_word(line);
    let words: Vec<&str> = rest.split_whitespace().collect();
    let arity = |n: usize, usage: &str| {
        if words.len() == n {
            Ok(())
        } else {
            Err(format!("usage: {usage}"))
        }
    };
    match verb {
        "" => Err("empty command (try `help`)".to_owned()),
        "put" => {
            let (key, value) = split_word(rest);
            if key.is_empty() || value.is_empty() {
                return Err("usage: put <key> <value>".to_owned());
            }
            Ok(Command::Put {
                key: key.to_owned(),
                value: value.to_owned(),
            })
        }
        "get" => {
            arity(1, "get <key>")?;
            Ok(Command::Get {
                key: words[0].to_owned(),
            })
        }
        "del" | "delete" => {
            arity(1, "del <key>")?;
            Ok(Command::Del {
                key: words[0].to_owned(),
            })
        }
        "keys" => optional_prefix(&words, "keys").map(|prefix| Command::Keys { prefix }),
        "members" => arity(0, "members").map(|()| Command::Members),
        "events" => arity(0, "events").map(|()| Command::Events),
        "await-state" => {
            arity(3, "await-state <node> up|down <timeout_ms>")?;
            let up = match words[1] {
                "up" => true,
                "down" => false,
                other => return Err(format!("state must be up or down, got `{other}`")),
            };
            Ok(Command::AwaitState {
                node: words[0].to_owned(),
                up,
                timeout: timeout(words[2])?,
            })
        }
        "stats" => arity(0, "stats").map(|()| Command::Stats),
        "trim" => arity(0, "trim").map(|()| Command::Trim),
        "help" => Ok(Command::Help),
        "quit" | "exit" => Ok(Command::Quit),
        "bulk-put" => {
            arity(3, "bulk-put <prefix> <n> <value_len>")?;
            Ok(Command::BulkPut {
                prefix: words[0].to_owned(),
                n: number(words[1], "n", MAX_BULK)?,
                value_len: number(words[2], "value_len", MAX_VALUE_LEN)?,
            })
        }
        "await-key" => {
            arity(3, "await-key <key> <value|-|*> <timeout_ms>")?;
            Ok(Command::AwaitKey {
                key: words[0].to_owned(),
                expect: expect(words[1]),
                timeout: timeout(words[2])?,
            })
        }
        "await-count" | "await-members" | "await-neighbours" => {
            arity(2, &format!("{verb} <n> <timeout_ms>"))?;
            let n = number(words[0], "n", usize::MAX)?;
            let timeout = timeout(words[1])?;
            Ok(match verb {
                "await-count" => Command::AwaitCount { n, timeout },
                "await-members" => Command::AwaitMembers { n, timeout },
                _ => Command::AwaitNeighbours { n, timeout },
            })
        }
        "inject" => {
            arity(2, "inject <peer> garbage|oversized|future|unframed")?;
            let fault = match words[1] {
                "garbage" => FaultKind::Garbage,
                "oversized" => FaultKind::Oversized,
                "future" => FaultKind::Future,
                "unframed" => FaultKind::Unframed,
                other => return Err(format!("unknown fault `{other}`")),
            };
            Ok(Command::Inject {
                peer: words[0].to_owned(),
                fault,
            })
        }
        "config-get" => arity(0, "config-get").map(|()| Command::ConfigGet),
        "config-set" => {
            let (field, value) = split_word(rest);
            if field.is_empty() || value.is_empty() {
                return Err("usage: config-set <field> <json>".to_owned());
            }
            Ok(Command::ConfigSet {
                field: field.to_owned(),
                value: json_value(value)?,
            })
        }
        "await-config" => {
            arity(3, "await-config <field> <json> <timeout_ms>")?;
            Ok(Command::AwaitConfig {
                field: words[0].to_owned(),
                value: json_value(words[1])?,
                timeout: timeout(words[2])?,
            })
        }
        "register" => {
            arity(1, "register <name>")?;
            Ok(Command::Register {
                name: words[0].to_owned(),
            })
        }
        "whereis" => {
            arity(1, "whereis <name>")?;
            Ok(Command::Whereis {
                name: words[0].to_owned(),
            })
        }
        "await-name" => {
            arity(3, "await-name <name> <node|*|-> <timeout_ms>")?;
            Ok(Command::AwaitName {
                name: words[0].to_owned(),
                expect: expect(words[1]),
                timeout: timeout(words[2])?,
            })
        }
        "start-child" => {
            arity(1, "start-child <id>")?;
            Ok(Command::StartChild {
                id: words[0].to_owned(),
            })
        }
        "where-child" => {
            arity(1, "where-child <id>")?;
            Ok(Command::WhereChild {
                id: words[0].to_owned(),
            })
        }
        "await-child" => {
            arity(3, "await-child <id> <node|*|-> <timeout_ms>")?;
            Ok(Command::AwaitChild {
                id: words[0].to_owned(),
                expect: expect(words[1]),
                timeout: timeout(words[2])?,
            })
        }
        "call" => {
            let (name, text) = split_word(rest);
            if name.is_empty() {
                return Err("usage: call <name> <text>".to_owned());
            }
            Ok(Command::Call {
                name: name.to_owned(),
                text: text.to_owned(),
            })
        }
        "children" => arity(0, "children").map(|()| Command::Children),
        "sadd" | "srem" => {
            arity(1, "sadd|srem <element>")?;
            let element = words[0].to_owned();
            Ok(if verb == "sadd" {
                Command::SetAdd { element }
            } else {
                Command::SetRemove { element }
            })
        }
        "smembers" => {
            optional_prefix(&words, "smembers").map(|prefix| Command::SetMembers { prefix })
        }
        "incr" => {
            arity(2, "incr <counter> <by>")?;
            let by = words[1]
                .parse()
                .map_err(|_| format!("<by> must be a non-negative integer, got `{}`", words[1]))?;
            Ok(Command::Increment {
                counter: words[0].to_owned(),
                by,
            })
        }
        "counters" => arity(0, "counters").map(|()| Command::Counters),
        "track" | "untrack" => {
            arity(2, "track|untrack <topic> <key>")?;
            let (topic, key) = (words[0].to_owned(), words[1].to_owned());
            Ok(if verb == "track" {
                Command::Track { topic, key }
            } else {
                Command::Untrack { topic, key }
            })
        }
        "list" => {
            arity(1, "list <topic>")?;
            Ok(Command::List {
                topic: words[0].to_owned(),
            })
        }
        other => Err(format!("unknown command `{other}` (try `help`)")),
    }
}

/// The first whitespace-separated word and the rest (trimmed).
fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, ""),
    }
}

/// `-` absent, `*` any value, anything else that value.
fn expect(word: &str) -> Expect {
    match word {
        "-" => Expect::Absent,
        "*" => Expect::Any,
        value => Expect::Value(value.to_owned()),
    }
}

fn json_value(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("not JSON (`{text}`): {e}"))
}

/// The one optional `<prefix>` argument of `verb` (empty when absent).
fn optional_prefix(words: &[&str], verb: &str) -> Result<String, String> {
    match words {
        [] => Ok(String::new()),
        [prefix] => Ok((*prefix).to_owned()),
        _ => Err(format!("usage: {verb} [<prefix>]")),
    }
}

fn number(word: &str, what: &str, max: usize) -> Result<usize, String> {
    let n: usize = word
        .parse()
        .map_err(|_| format!("{what} must be a non-negative integer, got `{word}`"))?;
    if n > max {
        return Err(format!("{what} must be at most {max}, got {n}"));
    }
    Ok(n)
}

fn timeout(word: &str) -> Result<Duration, String> {
    let ms: u64 = word
        .parse()
        .map_err(|_| format!("timeout_ms must be a non-negative integer, got `{word}`"))?;
    let timeout = Duration::from_millis(ms);
    if timeout > MAX_TIMEOUT {
        return Err(format!(
            "timeout_ms must be at most {}",
            MAX_TIMEOUT.as_millis()
        ));
    }
    Ok(timeout)
}

/// `{"ok":true}` plus the fields of `fields` (an object; anything else is ignored).
pub(crate) fn ok(fields: Value) -> Value {
    let mut map = Map::new();
    map.insert("ok".to_owned(), Value::Bool(true));
    if let Value::Object(fields) = fields {
        map.extend(fields);
    }
    Value::Object(map)
}

/// `{"ok":false,"error":error}` plus the fields of `fields`.
pub(crate) fn error(error: impl std::fmt::Display, fields: Value) -> Value {
    let mut answer = json!({"ok": false, "error": error.to_string()});
    if let (Value::Object(map), Value::Object(fields)) = (&mut answer, fields) {
        map.extend(fields);
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_command() {
        assert_eq!(
            parse("put a hello world"),
            Ok(Command::Put {
                key: "a".into(),
                value: "hello world".into()
            })
        );
        assert_eq!(parse("  get  a "), Ok(Command::Get { key: "a".into() }));
        assert_eq!(parse("del a"), Ok(Command::Del { key: "a".into() }));
        assert_eq!(parse("members"), Ok(Command::Members));
        assert_eq!(parse("events"), Ok(Command::Events));
        assert_eq!(
            parse("await-state b down 50"),
            Ok(Command::AwaitState {
                node: "b".into(),
                up: false,
                timeout: Duration::from_millis(50)
            })
        );
        assert!(parse("await-state b sideways 50").is_err());
        assert_eq!(parse("stats"), Ok(Command::Stats));
        assert_eq!(
            parse("keys e-"),
            Ok(Command::Keys {
                prefix: "e-".into()
            })
        );
        assert_eq!(
            parse("keys"),
            Ok(Command::Keys {
                prefix: String::new()
            })
        );
        assert!(parse("keys a b").is_err());
        assert_eq!(parse("trim"), Ok(Command::Trim));
        assert_eq!(
            parse("bulk-put k 10 8"),
            Ok(Command::BulkPut {
                prefix: "k".into(),
                n: 10,
                value_len: 8
            })
        );
        assert_eq!(
            parse("await-key a - 100"),
            Ok(Command::AwaitKey {
                key: "a".into(),
                expect: Expect::Absent,
                timeout: Duration::from_millis(100)
            })
        );
        assert_eq!(
            parse("await-members 2 5"),
            Ok(Command::AwaitMembers {
                n: 2,
                timeout: Duration::from_millis(5)
            })
        );
        assert_eq!(
            parse("inject b future"),
            Ok(Command::Inject {
                peer: "b".into(),
                fault: FaultKind::Future
            })
        );
        assert_eq!(parse("quit"), Ok(Command::Quit));
        assert_eq!(parse("children"), Ok(Command::Children));
        assert_eq!(
            parse("sadd x"),
            Ok(Command::SetAdd {
                element: "x".into()
            })
        );
        assert_eq!(
            parse("srem x"),
            Ok(Command::SetRemove {
                element: "x".into()
            })
        );
        assert_eq!(
            parse("smembers"),
            Ok(Command::SetMembers {
                prefix: String::new()
            })
        );
        assert_eq!(
            parse("incr hits 3"),
            Ok(Command::Increment {
                counter: "hits".into(),
                by: 3
            })
        );
        assert!(parse("incr hits -3").is_err());
        assert_eq!(parse("counters"), Ok(Command::Counters));
        assert_eq!(
            parse("track room alice"),
            Ok(Command::Track {
                topic: "room".into(),
                key: "alice".into()
            })
        );
        assert_eq!(
            parse("untrack room alice"),
            Ok(Command::Untrack {
                topic: "room".into(),
                key: "alice".into()
            })
        );
        assert_eq!(
            parse("list room"),
            Ok(Command::List {
                topic: "room".into()
            })
        );
        assert_eq!(parse("config-get"), Ok(Command::ConfigGet));
        assert_eq!(
            parse("config-set features.beta true"),
            Ok(Command::ConfigSet {
                field: "features.beta".into(),
                value: json!(true)
            })
        );
        assert_eq!(
            parse("config-set /max_conns  512 "),
            Ok(Command::ConfigSet {
                field: "/max_conns".into(),
                value: json!(512)
            })
        );
        assert_eq!(
            parse("await-config max_conns 512 100"),
            Ok(Command::AwaitConfig {
                field: "max_conns".into(),
                value: json!(512),
                timeout: Duration::from_millis(100)
            })
        );
        assert_eq!(
            parse("register greeter"),
            Ok(Command::Register {
                name: "greeter".into()
            })
        );
        assert_eq!(
            parse("whereis greeter"),
            Ok(Command::Whereis {
                name: "greeter".into()
            })
        );
        assert_eq!(
            parse("await-name greeter - 10"),
            Ok(Command::AwaitName {
                name: "greeter".into(),
                expect: Expect::Absent,
                timeout: Duration::from_millis(10)
            })
        );
        assert_eq!(
            parse("await-child job1 * 10"),
            Ok(Command::AwaitChild {
                id: "job1".into(),
                expect: Expect::Any,
                timeout: Duration::from_millis(10)
            })
        );
        assert_eq!(
            parse("start-child job1"),
            Ok(Command::StartChild { id: "job1".into() })
        );
        assert_eq!(
            parse("call greeter from a"),
            Ok(Command::Call {
                name: "greeter".into(),
                text: "from a".into()
            })
        );
    }

    #[test]
    fn rejects_malformed_commands_with_a_message() {
        for line in [
            "",
            "   ",
            "frobnicate",
            "put",
            "put a",
            "get",
            "get a b",
            "bulk-put k x 1",
            "bulk-put k 1",
            "bulk-put k 99999999999 1",
            "await-key a b",
            "await-count -1 10",
            "await-count 1 9999999999",
            "inject b meteor",
            "stats now",
            "config-set max_conns",
            "config-set max_conns {",
            "await-config max_conns 1",
            "await-config max_conns nope 10",
            "register",
            "register a b",
            "whereis",
            "await-name greeter 10",
            "call",
        ] {
            let err = parse(line).expect_err(line);
            assert!(!err.is_empty(), "{line}");
        }
    }

    #[test]
    fn expectations() {
        assert!(Expect::Absent.holds(None));
        assert!(!Expect::Absent.holds(Some("x")));
        assert!(Expect::Any.holds(Some("x")));
        assert!(!Expect::Any.holds(None));
        assert!(Expect::Value("x".into()).holds(Some("x")));
        assert!(!Expect::Value("x".into()).holds(Some("y")));
        assert!(!Expect::Value("x".into()).holds(None));
    }

    #[test]
    fn answers() {
        assert_eq!(ok(json!({"value": 1})), json!({"ok": true, "value": 1}));
        assert_eq!(
            error("boom", json!({"after_ms": 3})),
            json!({"ok": false, "error": "boom", "after_ms": 3})
        );
    }
}
