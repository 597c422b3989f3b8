//! Harness for the multi-process tests: `herd node` children on loopback, driven over their
//! line protocol, every wait bounded by a deadline.
//!
//! The process client is the one `herd demo` uses (`src/bin/herd/client.rs`), included by
//! path; this module adds panicking helpers, a temporary directory for data and logs, and
//! prints the nodes' logs when a test fails.

#![allow(dead_code)] // each test uses a subset

#[path = "../../src/bin/herd/client.rs"]
mod client;
pub(crate) mod nemesis;
pub(crate) mod netns;
pub(crate) mod timeline;

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub(crate) use client::{NodeProcess, NodeSpec};
use serde_json::Value;

/// How long a node may take to print its ready line (2 shared cores, several tests at once).
pub(crate) const START: Duration = Duration::from_secs(20);
/// How long a change may take to reach every node.
pub(crate) const WAIT: Duration = Duration::from_secs(15);
/// Extra time the client gives a node-side `await-*` to answer.
const SLACK: Duration = Duration::from_secs(5);
/// Deadline for a plain command (put/get/stats...).
const COMMAND: Duration = Duration::from_secs(10);

/// One test's nodes share a temporary directory (data directories and logs).
pub(crate) struct Harness {
    dir: tempfile::TempDir,
}

impl Harness {
    pub(crate) fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    /// A node spec: free loopback port, logs to `<dir>/<name>.log` at `HERD_TEST_LOG`
    /// (default `info`), memory only.
    pub(crate) fn spec(&self, name: &str) -> NodeSpec {
        let mut spec = NodeSpec::new(name).log_file(self.dir.path().join(format!("{name}.log")));
        spec.log_level = Some(std::env::var("HERD_TEST_LOG").unwrap_or_else(|_| "info".into()));
        spec
    }

    /// [`spec`](Self::spec) with a data directory `<dir>/<name>`.
    pub(crate) fn disk_spec(&self, name: &str) -> NodeSpec {
        let data = self.data_dir(name);
        self.spec(name).data_dir(data)
    }

    /// The data directory [`disk_spec`](Self::disk_spec) uses for `name`.
    pub(crate) fn data_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts a node and waits for its ready line.
    pub(crate) fn spawn(&self, spec: NodeSpec) -> Node {
        let name = spec.name.clone();
        let process = NodeProcess::spawn(
            std::path::Path::new(env!("CARGO_BIN_EXE_herd")),
            spec,
            START,
        )
        .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Node { process }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        // The test failed: show what the nodes logged (the test runner shows captured stderr
        // of failed tests only).
        let mut logs: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
            .collect();
        logs.sort();
        for log in &logs {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!("---- {} (last {} lines) ----", log.display(), tail.len());
            for line in tail {
                eprintln!("{line}");
            }
        }
    }
}

/// A `herd node` child with panicking helpers. Killed when dropped.
pub(crate) struct Node {
    pub(crate) process: NodeProcess,
}

impl Node {
    pub(crate) fn name(&self) -> &str {
        self.process.name()
    }

    pub(crate) fn listen(&self) -> String {
        self.process.listen().to_owned()
    }

    pub(crate) fn replica_id(&self) -> u64 {
        self.process.replica_id()
    }

    pub(crate) fn ready(&self) -> &Value {
        self.process.ready()
    }

    /// Sends `command`, returns its answer whatever `ok` says.
    pub(crate) fn request(&mut self, command: &str) -> Value {
        let name = self.name().to_owned();
        self.process
            .request(command, COMMAND)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// Sends `command` and requires `"ok":true`.
    pub(crate) fn ok(&mut self, command: &str) -> Value {
        self.ok_within(command, COMMAND)
    }

    fn ok_within(&mut self, command: &str, timeout: Duration) -> Value {
        self.process
            .ok(command, timeout)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub(crate) fn put(&mut self, key: &str, value: &str) {
        self.ok(&format!("put {key} {value}"));
    }

    pub(crate) fn del(&mut self, key: &str) {
        self.ok(&format!("del {key}"));
    }

    pub(crate) fn get(&mut self, key: &str) -> Option<String> {
        self.ok(&format!("get {key}"))["value"]
            .as_str()
            .map(str::to_owned)
    }

    /// Writes all `pairs` pipelined (every command sent before the first answer is read)
    /// and returns once every put was acknowledged.
    pub(crate) fn put_pipelined(&mut self, pairs: &[(String, String)]) {
        for (key, value) in pairs {
            self.process
                .send(&format!("put {key} {value}"))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        for (key, _) in pairs {
            let answer = self
                .process
                .recv(&format!("put {key}"), COMMAND)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(answer["ok"], true, "put {key}: {answer}");
        }
    }

    pub(crate) fn bulk_put(&mut self, prefix: &str, n: usize, value_len: usize) {
        self.ok_within(
            &format!("bulk-put {prefix} {n} {value_len}"),
            WAIT + COMMAND,
        );
    }

    /// `stats`: `{"replica":{..},"cluster":{..},"keys":..}`.
    pub(crate) fn stats(&mut self) -> Value {
        self.ok("stats")
    }

    /// The other live members, sorted.
    pub(crate) fn members(&mut self) -> Vec<String> {
        strings(&self.ok("members")["members"])
    }

    /// The replica's neighbours, sorted.
    pub(crate) fn neighbours(&mut self) -> Vec<String> {
        strings(&self.ok("members")["neighbours"])
    }

    /// Runs `<command> <WAIT in ms>` on the node and panics if the condition did not hold by then.
    pub(crate) fn wait(&mut self, command: &str) -> Value {
        self.ok_within(&format!("{command} {}", WAIT.as_millis()), WAIT + SLACK)
    }

    pub(crate) fn await_key(&mut self, key: &str, value: &str) -> Value {
        self.wait(&format!("await-key {key} {value}"))
    }

    pub(crate) fn await_count(&mut self, n: usize) -> Value {
        self.wait(&format!("await-count {n}"))
    }

    pub(crate) fn await_neighbours(&mut self, n: usize) -> Value {
        self.wait(&format!("await-neighbours {n}"))
    }

    pub(crate) fn await_members(&mut self, n: usize) -> Value {
        self.wait(&format!("await-members {n}"))
    }

    pub(crate) fn kill(&mut self) {
        self.process.kill();
    }

    /// Sends a signal (`"STOP"`, `"CONT"`, `"TERM"`) to the process with `kill(1)`.
    pub(crate) fn signal(&self, sig: &str) {
        let pid = self.process.pid().expect("the node is running");
        let status = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{sig} {pid}");
    }

    /// Waits until `node` is (`up`) or is not a member here.
    pub(crate) fn await_state(&mut self, node: &str, up: bool) -> Value {
        let state = if up { "up" } else { "down" };
        self.wait(&format!("await-state {node} {state}"))
    }

    /// The membership events this node recorded: `(event, node, reason, at_ms)`.
    pub(crate) fn events(&mut self) -> Vec<(String, String, Option<String>, u64)> {
        let answer = self.ok("events");
        answer["events"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        (
                            e["event"].as_str().unwrap_or("").to_owned(),
                            e["node"].as_str().unwrap_or("").to_owned(),
                            e["reason"].as_str().map(str::to_owned),
                            e["at_ms"].as_u64().unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(crate) fn quit(&mut self) {
        assert!(
            self.process.quit(COMMAND),
            "{} did not quit cleanly",
            self.name()
        );
    }

    /// Closes stdin (end of input) and requires a clean exit.
    pub(crate) fn close_input(&mut self) {
        assert!(
            self.process.close_input(COMMAND),
            "{} did not exit cleanly at end of input",
            self.name()
        );
    }

    /// Restarts with the same spec and data directory, on the same port.
    pub(crate) fn restart(&mut self) {
        let name = self.name().to_owned();
        self.process
            .restart(START)
            .unwrap_or_else(|e| panic!("restarting {name}: {e}"));
    }

    /// Restarts with another spec (same port unless the spec says otherwise).
    pub(crate) fn restart_with(&mut self, spec: NodeSpec) {
        let name = self.name().to_owned();
        self.process
            .restart_with(spec, START)
            .unwrap_or_else(|e| panic!("restarting {name}: {e}"));
    }
}

/// A JSON array of strings.
pub(crate) fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A number at `pointer` in `value` (0 if absent).
pub(crate) fn number(value: &Value, pointer: &str) -> u64 {
    value.pointer(pointer).and_then(Value::as_u64).unwrap_or(0)
}

/// Polls `check` every 20 ms until it returns `Some`, panicking with `what` after `timeout`.
pub(crate) fn eventually<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until every node reports the same Merkle root and key count; returns them.
pub(crate) fn await_same_root(nodes: &mut [&mut Node]) -> (u64, u64) {
    eventually(WAIT, "equal roots on every node", || {
        let last = nodes
            .iter_mut()
            .map(|n| {
                let stats = n.stats();
                (number(&stats, "/replica/root"), number(&stats, "/keys"))
            })
            .collect::<Vec<_>>();
        last.iter().all(|r| *r == last[0]).then_some(last[0])
    })
}
