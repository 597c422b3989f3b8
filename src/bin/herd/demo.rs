//! `herd demo`: three `herd node` processes on loopback, with their replicas on disk.
//!
//! Shows what herd is for, one product at a time: a key-value write arriving on the other
//! nodes; a configuration change (an Agent) arriving, with its time; a name registered on one
//! node (a Registry) resolved and called from the others. Then it kills one node with SIGKILL:
//! the survivors drop it and its name; it writes during the outage, restarts the killed node
//! from its data directory, shows it catching up and taking its name again. Every wait has a
//! deadline; a missed deadline ends the demo with a non-zero exit code. Children are killed on every exit path (the [`NodeProcess`] drop, and
//! a child whose parent dies sees end of input and quits).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::client::{NodeProcess, NodeSpec};

/// The supervised children the demo starts (six: with three nodes, some land on c).
const CHILDREN: [&str; 6] = ["job-1", "job-2", "job-3", "job-4", "job-5", "job-6"];
/// How long a node may take to start.
const START: Duration = Duration::from_secs(10);
/// How long a change may take to reach a node.
const PROPAGATE: Duration = Duration::from_secs(5);
/// Slack on top of a node-side timeout before the client gives up on the answer.
const SLACK: Duration = Duration::from_secs(2);
/// Keys written during the outage, beyond the configuration.
const OUTAGE_KEYS: usize = 500;

const USAGE: &str = "herd demo [--keep]   (--keep: keep the data directory and node logs)";

type Result<T> = std::result::Result<T, String>;

/// Runs the demo.
pub(crate) fn main(args: &[String]) -> ExitCode {
    let mut keep = false;
    for arg in args {
        match arg.as_str() {
            "--keep" => keep = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument `{other}`\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("herd demo: cannot find my own executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    let dir = temp_dir();
    let mut demo = Demo {
        exe,
        dir: dir.clone(),
        start: Instant::now(),
        nodes: Vec::new(),
    };
    let outcome = demo.run();
    // Stop the children before touching their data directories.
    for node in &mut demo.nodes {
        node.quit(Duration::from_secs(2));
    }
    drop(demo);
    match outcome {
        Ok(()) => {
            if keep {
                println!("data and node logs kept in {}", dir.display());
            } else {
                let _ = std::fs::remove_dir_all(&dir);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("\nherd demo FAILED: {e}");
            eprintln!("data and node logs kept in {}", dir.display());
            ExitCode::FAILURE
        }
    }
}

fn temp_dir() -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    std::env::temp_dir().join(format!("herd-demo-{}-{nanos:x}", std::process::id()))
}

struct Demo {
    exe: PathBuf,
    dir: PathBuf,
    start: Instant,
    nodes: Vec<NodeProcess>,
}

impl Demo {
    fn say(&self, msg: impl AsRef<str>) {
        println!(
            "[{:6.2} s] {}",
            self.start.elapsed().as_secs_f64(),
            msg.as_ref()
        );
    }

    fn section(&self, title: &str) {
        println!("\n== {title}");
    }

    fn spec(&self, name: &str) -> NodeSpec {
        NodeSpec::new(name)
            .data_dir(self.dir.join(name))
            .log_file(self.dir.join(format!("{name}.log")))
    }

    fn node(&mut self, name: &str) -> &mut NodeProcess {
        // The demo only asks for the three names it started.
        self.nodes
            .iter_mut()
            .find(|n| n.name() == name)
            .expect("a node the demo started")
    }

    fn run(&mut self) -> Result<()> {
        println!(
            "herd demo: three nodes on loopback, each replica on disk under {}",
            self.dir.display()
        );
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("create {}: {e}", self.dir.display()))?;

        self.section("1. start three nodes");
        let a = NodeProcess::spawn(&self.exe, self.spec("a"), START).map_err(|e| e.to_string())?;
        let seed = a.listen().to_owned();
        self.say(describe_ready(&a, ""));
        self.nodes.push(a);
        for name in ["b", "c"] {
            let spec = self.spec(name).seed(seed.clone());
            let node = NodeProcess::spawn(&self.exe, spec, START).map_err(|e| e.to_string())?;
            self.say(describe_ready(
                &node,
                &format!(", joining through a at {seed}"),
            ));
            self.nodes.push(node);
        }
        let t = Instant::now();
        for name in ["a", "b", "c"] {
            await_ok(self.node(name), "await-neighbours 2", PROPAGATE)?;
        }
        self.say(format!(
            "cluster formed: every replica has the two others as neighbours ({})",
            ms(t.elapsed())
        ));

        self.section("2. a replicated key-value map: write on a, watch it arrive on b and c");
        let config = [
            ("config/max_conns", "512"),
            ("config/log_level", "info"),
            ("feature/beta_ui", "on"),
        ];
        let t = Instant::now();
        for (key, value) in config {
            let started = Instant::now();
            self.node("a")
                .ok(&format!("put {key} {value}"), PROPAGATE)
                .map_err(|e| e.to_string())?;
            self.say(format!(
                "a: put {key} = {value}  (acknowledged, on disk, in {})",
                ms(started.elapsed())
            ));
        }
        let mut awaits: Vec<String> = config
            .iter()
            .map(|(key, value)| format!("await-key {key} {value}"))
            .collect();
        awaits.push(format!("await-count {}", config.len()));
        self.report_arrival(&["b", "c"], &awaits, t, "has every key", "the first put")?;

        self.section("3. replicated configuration (Agent): change it on a, see it on b and c");
        self.show_config_change("a", "max_conns", "512", &["b", "c"])?;

        self.section("4. a name (Registry): register `greeter` on c, call it from a and b");
        let t = Instant::now();
        self.node("c")
            .ok("register greeter", PROPAGATE)
            .map_err(|e| e.to_string())?;
        self.say(format!(
            "c: started a greeter actor and registered it as `greeter` ({})",
            ms(t.elapsed())
        ));
        let seen = ["await-name greeter c".to_owned()];
        self.report_arrival(
            &["a", "b"],
            &seen,
            t,
            "resolves greeter to c",
            "the register",
        )?;
        for name in ["a", "b"] {
            self.show_call(name, "greeter")?;
        }

        self.section(
            "4b. supervised children (DynamicSupervisor): six greeters, placed by hashing",
        );
        let t = Instant::now();
        for id in CHILDREN {
            self.node("a")
                .ok(&format!("start-child {id}"), PROPAGATE)
                .map_err(|e| e.to_string())?;
        }
        let mut placed = Vec::new();
        for id in CHILDREN {
            let answer = await_ok(self.node("a"), &format!("await-child {id} *"), PROPAGATE)?;
            let node = answer.get("node").and_then(Value::as_str).unwrap_or("?");
            placed.push(format!("{id} on {node}"));
        }
        self.say(format!(
            "a: started {} children, all running after {}: {}",
            CHILDREN.len(),
            ms(t.elapsed()),
            placed.join(", ")
        ));
        let on_c: Vec<&str> = CHILDREN
            .iter()
            .zip(&placed)
            .filter(|(_, at)| at.ends_with(" on c"))
            .map(|(id, _)| *id)
            .collect();

        self.section("5. kill c with SIGKILL");
        let t = Instant::now();
        self.node("c").kill();
        self.say("c killed (no shutdown, nothing flushed)");
        let timeout_ms = PROPAGATE.as_millis();
        for name in ["a", "b"] {
            self.node(name)
                .send(&format!("await-neighbours 1 {timeout_ms}"))
                .map_err(|e| e.to_string())?;
        }
        for name in ["a", "b"] {
            let answer = self
                .node(name)
                .recv("await-neighbours 1", PROPAGATE + SLACK)
                .map_err(|e| e.to_string())?;
            if answer.get("ok").and_then(Value::as_bool) != Some(true) {
                return Err(format!("{name} still counts c as a neighbour: {answer}"));
            }
            self.say(format!(
                "{name} dropped c from its neighbours within {}",
                ms(t.elapsed())
            ));
        }
        // c's claim on `greeter` shows only while c is live: the survivors drop the name by
        // themselves (nobody writes on behalf of a dead node).
        for name in ["a", "b"] {
            await_ok(self.node(name), "await-name greeter -", PROPAGATE)?;
            self.say(format!(
                "{name}: whereis greeter -> none, {} after the kill",
                ms(t.elapsed())
            ));
        }
        // c's children: the survivors see c's claims go and start them on the nodes the
        // hashing now picks (after the member list held still for a moment).
        for id in &on_c {
            let deadline = Instant::now() + PROPAGATE;
            let node = loop {
                let answer = self
                    .node("a")
                    .ok(&format!("where-child {id}"), PROPAGATE)
                    .map_err(|e| e.to_string())?;
                match answer.get("node").and_then(Value::as_str) {
                    Some(node) if node != "c" => break node.to_owned(),
                    _ if Instant::now() > deadline => {
                        return Err(format!("{id} did not fail over from c: {answer}"));
                    }
                    _ => std::thread::sleep(Duration::from_millis(10)),
                }
            };
            self.say(format!(
                "child {id} failed over from c to {node}, {} after the kill",
                ms(t.elapsed())
            ));
        }
        if on_c.is_empty() {
            self.say("(no child was placed on c this time: nothing to fail over)");
        }

        self.section("6. write while c is down");
        let t = Instant::now();
        self.node("a")
            .ok("put config/max_conns 1024", PROPAGATE)
            .map_err(|e| e.to_string())?;
        self.say("a: put config/max_conns = 1024");
        self.node("a")
            .ok("del feature/beta_ui", PROPAGATE)
            .map_err(|e| e.to_string())?;
        self.say("a: del feature/beta_ui");
        let started = Instant::now();
        self.node("b")
            .ok(
                &format!("bulk-put session/ {OUTAGE_KEYS} 64"),
                Duration::from_secs(20),
            )
            .map_err(|e| e.to_string())?;
        self.say(format!(
            "b: put session/0 .. session/{} ({} bytes each) in {}",
            OUTAGE_KEYS - 1,
            64,
            ms(started.elapsed())
        ));
        self.show_config_change("b", "features.beta_ui", "true", &["a"])?;
        let total = config.len() - 1 + OUTAGE_KEYS;
        let after_outage = vec![
            "await-key config/max_conns 1024".to_owned(),
            "await-key feature/beta_ui -".to_owned(),
            format!("await-key session/{} *", OUTAGE_KEYS - 1),
            format!("await-count {total}"),
        ];
        self.report_arrival(
            &["a", "b"],
            &after_outage,
            t,
            "has every key",
            "the first put",
        )?;

        self.section("7. restart c from its data directory");
        let before = self.node("c").replica_id();
        let t = Instant::now();
        self.node("c").restart(START).map_err(|e| e.to_string())?;
        let c = self.node("c");
        let (after, restored, keys) = (
            c.replica_id(),
            c.ready().get("restored").and_then(Value::as_bool) == Some(true),
            c.ready()
                .get("keys")
                .and_then(Value::as_u64)
                .unwrap_or_default(),
        );
        let listen = c.listen().to_owned();
        self.say(format!(
            "c ready again on {listen} after {}: {} {keys} keys from disk, replica id {}",
            ms(t.elapsed()),
            if restored {
                "restored"
            } else {
                "did NOT restore"
            },
            if after == before {
                "unchanged"
            } else {
                "CHANGED"
            },
        ));
        if !restored || after != before || keys != config.len() as u64 {
            return Err(format!(
                "c should come back with its {} keys and replica id {before:x}; got {keys} keys, \
                 restored={restored}, id {after:x}",
                config.len()
            ));
        }
        self.report_arrival(
            &["c"],
            &after_outage,
            t,
            "has every key",
            "the restart began",
        )?;
        let changed = ["await-config features.beta_ui true".to_owned()];
        let what = "has the config change made while it was down";
        self.report_arrival(&["c"], &changed, t, what, "the restart began")?;
        // The restarted c is a new incarnation: its old claim never shows again, and the name
        // is free to take.
        let t = Instant::now();
        self.node("c")
            .ok("register greeter", PROPAGATE)
            .map_err(|e| e.to_string())?;
        self.say(format!(
            "c: registered `greeter` again ({})",
            ms(t.elapsed())
        ));
        self.show_call("a", "greeter")?;

        self.section("8. check");
        let t = Instant::now();
        let deadline = t + PROPAGATE;
        loop {
            let mut roots = Vec::new();
            for name in ["a", "b", "c"] {
                let stats = self
                    .node(name)
                    .ok("stats", PROPAGATE)
                    .map_err(|e| e.to_string())?;
                roots.push(
                    stats
                        .pointer("/replica/root")
                        .cloned()
                        .unwrap_or(Value::Null),
                );
            }
            if roots.iter().all(|r| *r == roots[0]) && !roots[0].is_null() {
                self.say(format!(
                    "a, b and c all hold {total} keys with the same Merkle root {}",
                    root_hex(&roots[0])
                ));
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "roots still differ after {}: {roots:?}",
                    ms(PROPAGATE)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        println!(
            "\nherd demo finished in {:.1} s",
            self.start.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Sets `field` of the replicated configuration to `json` on `on`, and reports when each
    /// of `watchers` sees it.
    fn show_config_change(
        &mut self,
        on: &str,
        field: &str,
        json: &str,
        watchers: &[&str],
    ) -> Result<()> {
        let t = Instant::now();
        self.node(on)
            .ok(&format!("config-set {field} {json}"), PROPAGATE)
            .map_err(|e| e.to_string())?;
        self.say(format!(
            "{on}: config-set {field} = {json}  (acknowledged, on disk, in {})",
            ms(t.elapsed())
        ));
        let awaits = [format!("await-config {field} {json}")];
        let what = format!("sees {field} = {json}");
        self.report_arrival(watchers, &awaits, t, &what, "the change")
    }

    /// Calls the greeter registered as `registered` from node `from`, and says who answered.
    fn show_call(&mut self, from: &str, registered: &str) -> Result<()> {
        let answer = self
            .node(from)
            .ok(
                &format!("call {registered} from {from}"),
                Duration::from_secs(10),
            )
            .map_err(|e| e.to_string())?;
        let field = |key: &str| answer.get(key).and_then(Value::as_str).unwrap_or("?");
        let took = Duration::from_secs_f64(
            answer
                .get("ms")
                .and_then(Value::as_f64)
                .unwrap_or(0.0)
                .max(0.0)
                / 1000.0,
        );
        self.say(format!(
            "{from}: call {registered} -> \"{}\", answered by node {} ({}, lookup included)",
            field("reply"),
            field("node"),
            ms(took)
        ));
        Ok(())
    }

    /// Sends `awaits` to each of `names` (pipelined, so the nodes wait in parallel), then
    /// reads the answers and reports when each node had it all (`what`), counted from
    /// `since`.
    fn report_arrival(
        &mut self,
        names: &[&str],
        awaits: &[String],
        since: Instant,
        what: &str,
        since_what: &str,
    ) -> Result<()> {
        let timeout_ms = PROPAGATE.as_millis();
        let sent = since.elapsed();
        for &name in names {
            for cmd in awaits {
                self.node(name)
                    .send(&format!("{cmd} {timeout_ms}"))
                    .map_err(|e| e.to_string())?;
            }
        }
        for &name in names {
            // The node handles one command at a time, so its waits add up.
            let mut total = Duration::ZERO;
            for cmd in awaits {
                let answer = self
                    .node(name)
                    .recv(cmd, PROPAGATE + SLACK)
                    .map_err(|e| e.to_string())?;
                if answer.get("ok").and_then(Value::as_bool) != Some(true) {
                    return Err(format!("{name}: `{cmd}` failed: {answer}"));
                }
                total += waited(&answer);
            }
            self.say(format!(
                "{name} {what}, {} after {since_what}",
                ms(sent + total)
            ));
        }
        Ok(())
    }
}

/// Sends `<cmd> <timeout_ms>` and requires `ok`.
fn await_ok(node: &mut NodeProcess, cmd: &str, timeout: Duration) -> Result<Value> {
    node.ok(&format!("{cmd} {}", timeout.as_millis()), timeout + SLACK)
        .map_err(|e| e.to_string())
}

fn waited(answer: &Value) -> Duration {
    let ms = answer
        .get("waited_ms")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    Duration::from_secs_f64(ms.max(0.0) / 1000.0)
}

fn describe_ready(node: &NodeProcess, extra: &str) -> String {
    format!(
        "{} ready on {}{extra}  (replica id {:x})",
        node.name(),
        node.listen(),
        node.replica_id()
    )
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn root_hex(root: &Value) -> String {
    root.as_u64()
        .map_or_else(|| root.to_string(), |r| format!("{r:016x}"))
}
