//! Driving `herd node` child processes over their line protocol: spawn, send a command, read
//! its one JSON answer with a deadline, kill -9, restart from the same data directory.
//!
//! Used by `herd demo` and, through `#[path]`, by the integration tests (tests/support), so
//! both exercise the same client. Plain std (threads and channels): no runtime needed to wait
//! on a child's stdout with a deadline.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How to start one `herd node`.
#[derive(Clone, Debug)]
pub(crate) struct NodeSpec {
    /// `--name`.
    pub(crate) name: String,
    /// `--listen`; `127.0.0.1:0` picks a free port (read back from the ready line).
    pub(crate) listen: String,
    /// `--seed`, each.
    pub(crate) seeds: Vec<String>,
    /// `--data-dir`; `None` keeps the replica in memory.
    pub(crate) data_dir: Option<PathBuf>,
    /// `--cookie`; `None` uses the node's default.
    pub(crate) cookie: Option<String>,
    /// `--sync-interval-ms`.
    pub(crate) sync_interval_ms: Option<u64>,
    /// `--max-sync-size`.
    pub(crate) max_sync_size: Option<usize>,
    /// `--write-behind`.
    pub(crate) write_behind: bool,
    /// Where the node's stderr (its logs) goes, appended across restarts; `None` discards it.
    pub(crate) log_file: Option<PathBuf>,
    /// `HERD_LOG` for the child; `None` inherits this process's environment.
    pub(crate) log_level: Option<String>,
    /// Extra environment variables for the child (`HERD_COOKIE`, ...).
    pub(crate) env: Vec<(String, String)>,
    /// A Linux network namespace to run the node in (`ip netns exec <ns> herd ...`, which
    /// execs the node itself, so signals reach it); `None` runs it in this one.
    pub(crate) netns: Option<String>,
}

impl NodeSpec {
    /// A node called `name` on a free loopback port, in memory, with default settings.
    pub(crate) fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            listen: "127.0.0.1:0".to_owned(),
            seeds: Vec::new(),
            data_dir: None,
            cookie: None,
            sync_interval_ms: None,
            max_sync_size: None,
            write_behind: false,
            log_file: None,
            log_level: None,
            env: Vec::new(),
            netns: None,
        }
    }

    /// Runs the node in network namespace `ns` (see [`NodeSpec::netns`]).
    pub(crate) fn netns(mut self, ns: impl Into<String>) -> Self {
        self.netns = Some(ns.into());
        self
    }

    /// Sets `--listen`.
    pub(crate) fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = addr.into();
        self
    }

    /// Sets an environment variable for the child.
    pub(crate) fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Adds a `--seed`.
    pub(crate) fn seed(mut self, addr: impl Into<String>) -> Self {
        self.seeds.push(addr.into());
        self
    }

    /// Sets `--data-dir`.
    pub(crate) fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Sets `--cookie`.
    pub(crate) fn cookie(mut self, cookie: impl Into<String>) -> Self {
        self.cookie = Some(cookie.into());
        self
    }

    /// Sets `--sync-interval-ms`.
    pub(crate) fn sync_interval_ms(mut self, ms: u64) -> Self {
        self.sync_interval_ms = Some(ms);
        self
    }

    /// Sets `--max-sync-size`.
    pub(crate) fn max_sync_size(mut self, bytes: usize) -> Self {
        self.max_sync_size = Some(bytes);
        self
    }

    /// Sets where stderr goes.
    pub(crate) fn log_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.log_file = Some(path.into());
        self
    }

    /// The command line after the program name.
    pub(crate) fn args(&self) -> Vec<String> {
        let mut args = vec![
            "node".to_owned(),
            "--name".to_owned(),
            self.name.clone(),
            "--listen".to_owned(),
            self.listen.clone(),
        ];
        for seed in &self.seeds {
            args.push("--seed".to_owned());
            args.push(seed.clone());
        }
        if let Some(dir) = &self.data_dir {
            args.push("--data-dir".to_owned());
            args.push(dir.display().to_string());
        }
        if let Some(cookie) = &self.cookie {
            args.push("--cookie".to_owned());
            args.push(cookie.clone());
        }
        if let Some(ms) = self.sync_interval_ms {
            args.push("--sync-interval-ms".to_owned());
            args.push(ms.to_string());
        }
        if let Some(bytes) = self.max_sync_size {
            args.push("--max-sync-size".to_owned());
            args.push(bytes.to_string());
        }
        if self.write_behind {
            args.push("--write-behind".to_owned());
        }
        args
    }
}

/// What went wrong talking to a node.
#[derive(Debug)]
pub(crate) enum ClientError {
    /// The process could not be started or written to.
    Io {
        node: String,
        what: String,
        source: std::io::Error,
    },
    /// No line came before the deadline.
    Timeout {
        node: String,
        waiting_for: String,
        after: Duration,
    },
    /// The node's stdout closed (it exited or was killed).
    Exited { node: String, waiting_for: String },
    /// A line that is not the expected JSON.
    BadLine { node: String, line: String },
    /// The node answered `{"ok":false,...}` where success was required.
    Refused {
        node: String,
        command: String,
        answer: Value,
    },
    /// The node is not running (it was killed and not restarted).
    NotRunning { node: String },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { node, what, source } => write!(f, "node {node}: {what}: {source}"),
            Self::Timeout {
                node,
                waiting_for,
                after,
            } => write!(
                f,
                "node {node}: no answer to `{waiting_for}` within {:.1} s",
                after.as_secs_f64()
            ),
            Self::Exited { node, waiting_for } => {
                write!(f, "node {node} exited while waiting for `{waiting_for}`")
            }
            Self::BadLine { node, line } => write!(f, "node {node} printed a bad line: {line}"),
            Self::Refused {
                node,
                command,
                answer,
            } => write!(f, "node {node} refused `{command}`: {answer}"),
            Self::NotRunning { node } => write!(f, "node {node} is not running"),
        }
    }
}

impl std::error::Error for ClientError {}

/// A running (or killed) `herd node` child process.
pub(crate) struct NodeProcess {
    exe: PathBuf,
    spec: NodeSpec,
    running: Option<Running>,
    ready: Value,
    listen: String,
}

struct Running {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl NodeProcess {
    /// Starts `exe node ...` from `spec` and waits up to `timeout` for its ready line.
    pub(crate) fn spawn(
        exe: &Path,
        spec: NodeSpec,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let mut node = Self {
            exe: exe.to_owned(),
            listen: spec.listen.clone(),
            spec,
            running: None,
            ready: Value::Null,
        };
        node.start(timeout)?;
        Ok(node)
    }

    fn start(&mut self, timeout: Duration) -> Result<(), ClientError> {
        let name = self.spec.name.clone();
        let io = |what: &str, source| ClientError::Io {
            node: name.clone(),
            what: what.to_owned(),
            source,
        };
        let stderr = match &self.spec.log_file {
            Some(path) => Stdio::from(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| io("open log file", e))?,
            ),
            None => Stdio::null(),
        };
        let mut command = match &self.spec.netns {
            None => Command::new(&self.exe),
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.exe);
                c
            }
        };
        command
            .args(self.spec.args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr);
        if let Some(level) = &self.spec.log_level {
            command.env("HERD_LOG", level);
        }
        command.envs(self.spec.env.iter().map(|(k, v)| (k, v)));
        let mut child = command.spawn().map_err(|e| io("spawn", e))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io("pipes", std::io::Error::other("missing stdio pipe")));
        };
        let (tx, lines) = mpsc::channel();
        thread::Builder::new()
            .name(format!("herd-node-{name}-stdout"))
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| io("reader thread", e))?;
        self.running = Some(Running {
            child,
            stdin,
            lines,
        });

        let ready = self.recv("ready line", timeout)?;
        if ready.get("event").and_then(Value::as_str) != Some("ready") {
            self.kill();
            return Err(ClientError::BadLine {
                node: name,
                line: ready.to_string(),
            });
        }
        if let Some(listen) = ready.get("listen").and_then(Value::as_str) {
            self.listen = listen.to_owned();
        }
        self.ready = ready;
        Ok(())
    }

    /// The node's name.
    pub(crate) fn name(&self) -> &str {
        &self.spec.name
    }

    /// The address it listens on, from its last ready line.
    pub(crate) fn listen(&self) -> &str {
        &self.listen
    }

    /// Its last ready line.
    pub(crate) fn ready(&self) -> &Value {
        &self.ready
    }

    /// `replica_id` from the last ready line.
    pub(crate) fn replica_id(&self) -> u64 {
        self.ready
            .get("replica_id")
            .and_then(Value::as_u64)
            .unwrap_or_default()
    }

    /// The spec it was started from.
    pub(crate) fn spec(&self) -> &NodeSpec {
        &self.spec
    }

    /// Whether the process is (believed) running.
    pub(crate) fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// The process id, while running.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.running.as_ref().map(|r| r.child.id())
    }

    /// Writes one command line without waiting for its answer (see [`recv`](Self::recv)).
    pub(crate) fn send(&mut self, command: &str) -> Result<(), ClientError> {
        let node = self.spec.name.clone();
        let running = self
            .running
            .as_mut()
            .ok_or(ClientError::NotRunning { node: node.clone() })?;
        let result = writeln!(running.stdin, "{command}").and_then(|()| running.stdin.flush());
        result.map_err(|source| ClientError::Io {
            node,
            what: format!("write `{command}`"),
            source,
        })
    }

    /// Writes raw bytes to the node's stdin (a line that is not UTF-8, say).
    pub(crate) fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let node = self.spec.name.clone();
        let running = self
            .running
            .as_mut()
            .ok_or(ClientError::NotRunning { node: node.clone() })?;
        let result = running
            .stdin
            .write_all(bytes)
            .and_then(|()| running.stdin.flush());
        result.map_err(|source| ClientError::Io {
            node,
            what: "write raw bytes".to_owned(),
            source,
        })
    }

    /// Reads the next JSON line, waiting at most `timeout`.
    pub(crate) fn recv(
        &mut self,
        waiting_for: &str,
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        let node = self.spec.name.clone();
        let running = self
            .running
            .as_mut()
            .ok_or(ClientError::NotRunning { node: node.clone() })?;
        let line = match running.lines.recv_timeout(timeout) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                return Err(ClientError::Timeout {
                    node,
                    waiting_for: waiting_for.to_owned(),
                    after: timeout,
                });
            }
            Err(RecvTimeoutError::Disconnected) => {
                // Reap it, so that a later restart starts from a clean slate.
                self.kill();
                return Err(ClientError::Exited {
                    node,
                    waiting_for: waiting_for.to_owned(),
                });
            }
        };
        serde_json::from_str(&line).map_err(|_| ClientError::BadLine { node, line })
    }

    /// Sends `command` and returns its answer, whatever `ok` says.
    pub(crate) fn request(
        &mut self,
        command: &str,
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        self.send(command)?;
        self.recv(command, timeout)
    }

    /// Sends `command` and returns its answer, or [`ClientError::Refused`] unless `ok` is true.
    pub(crate) fn ok(&mut self, command: &str, timeout: Duration) -> Result<Value, ClientError> {
        let answer = self.request(command, timeout)?;
        if answer.get("ok").and_then(Value::as_bool) == Some(true) {
            Ok(answer)
        } else {
            Err(ClientError::Refused {
                node: self.spec.name.clone(),
                command: command.to_owned(),
                answer,
            })
        }
    }

    /// Kills the process with SIGKILL (no chance to flush anything) and reaps it.
    pub(crate) fn kill(&mut self) {
        if let Some(mut running) = self.running.take() {
            let _ = running.child.kill();
            let _ = running.child.wait();
        }
    }

    /// Asks the node to `quit` and waits up to `timeout` for it to exit; kills it after that.
    /// Returns whether it exited by itself, successfully.
    pub(crate) fn quit(&mut self, timeout: Duration) -> bool {
        let Some(mut running) = self.running.take() else {
            return true;
        };
        let _ = writeln!(running.stdin, "quit").and_then(|()| running.stdin.flush());
        Self::await_exit(running, timeout)
    }

    /// Closes the node's stdin (end of input) and waits up to `timeout` for it to exit; kills
    /// it after that. Returns whether it exited by itself, successfully.
    pub(crate) fn close_input(&mut self, timeout: Duration) -> bool {
        match self.running.take() {
            Some(running) => Self::await_exit(running, timeout),
            None => true,
        }
    }

    /// Closes stdin and waits for the child to exit (killing it at the deadline).
    fn await_exit(running: Running, timeout: Duration) -> bool {
        let Running {
            mut child, stdin, ..
        } = running;
        drop(stdin);
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return false;
                }
            }
        }
    }

    /// Starts the node again with the same spec (same data directory), on the port it last
    /// listened on so that peers dialling the old address find it; waits for its ready line.
    /// Kills it first if it is still running.
    pub(crate) fn restart(&mut self, timeout: Duration) -> Result<(), ClientError> {
        self.kill();
        self.spec.listen = self.listen.clone();
        self.start(timeout)
    }

    /// Like [`restart`](Self::restart), but with another spec (e.g. an emptied data directory).
    pub(crate) fn restart_with(
        &mut self,
        spec: NodeSpec,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        self.kill();
        self.spec = spec;
        self.start(timeout)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
