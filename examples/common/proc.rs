//! A child process driven over its stdin and stdout, one line per command and event: what
//! the examples, the tests across processes and the product workloads use to run nodes.
//! Plain std (threads and channels); every wait has a deadline.

use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The arguments that make a test binary run only its `child_node_role` test: how a test
/// re-executes itself as a node (ractor's registries are global to a process).
pub(crate) const TEST_ROLE_ARGS: [&str; 4] = [
    "child_node_role",
    "--exact",
    "--nocapture",
    "--test-threads=1",
];

/// A command re-executing this binary as node `name` of `role`: the environment variable
/// `role` holds the name and `{role}_SEED` the seed's address. See [`run_node_role`].
pub(crate) fn node_command(role: &str, name: &str, seed: Option<&str>) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("own path"));
    cmd.env(role, name);
    if let Some(seed) = seed {
        cmd.env(format!("{role}_SEED"), seed);
    }
    cmd
}

/// When this process was started by [`node_command`] for `role`, runs `node(name, seed)` on a
/// fresh tokio runtime and returns its result; `None` otherwise (the process is the driver).
pub(crate) fn run_node_role<F>(
    role: &str,
    node: impl FnOnce(String, Option<String>) -> F,
) -> Option<Result<(), String>>
where
    F: Future<Output = Result<(), String>>,
{
    let name = std::env::var(role).ok()?;
    let seed = std::env::var(format!("{role}_SEED")).ok();
    if let Some(level) = log_level() {
        // Diagnosis: the node's logs on its stderr, which `Proc::spawn` then keeps.
        let _ = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_thread_names(true)
            .with_writer(std::io::stderr)
            .try_init();
    }
    // Threads named after the node, so that its logs (`HERD_NODE_LOG`) say whose they are.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(format!("node-{name}"))
        .build()
        .expect("runtime");
    Some(rt.block_on(node(name, seed)))
}

/// The level of node logs asked for with `HERD_NODE_LOG` (`warn`, `info`, `debug`…), if any.
/// Node processes are silent otherwise: their stderr is discarded.
fn log_level() -> Option<tracing::Level> {
    std::env::var("HERD_NODE_LOG").ok()?.parse().ok()
}

/// Ends a node process with its role's result: exit code 0, or 1 with the error on stderr.
pub(crate) fn exit_with(result: Result<(), String>) -> ! {
    if let Err(e) = &result {
        eprintln!("{e}");
    }
    std::process::exit(i32::from(result.is_err()))
}

/// A node process and its output lines (with the instant each arrived).
pub(crate) struct Proc {
    pub(crate) name: String,
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<(Instant, String)>,
    /// The address it listens on, from its `READY <address>` line.
    pub(crate) listen: String,
    wait: Duration,
}

impl Proc {
    /// Runs `command` (stdout piped, stderr discarded unless `HERD_NODE_LOG` asks for logs)
    /// and waits up to `wait` for a line containing `READY <address>`.
    pub(crate) fn spawn(name: &str, mut command: Command, wait: Duration) -> Proc {
        let stderr = if log_level().is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        };
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = command.spawn().expect("start a node process");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send((Instant::now(), line)).is_err() {
                    return;
                }
            }
        });
        let mut p = Proc {
            name: name.to_owned(),
            child,
            stdin,
            lines,
            listen: String::new(),
            wait,
        };
        // A test harness may print `test ... ` before it on the same line.
        let (_, ready) = p.next(|l| l.contains("READY "));
        let at = ready.find("READY ").map_or(0, |i| i + "READY ".len());
        p.listen = ready[at..].to_owned();
        p
    }

    /// The next line `want` accepts (others are skipped), with its arrival time.
    pub(crate) fn next(&mut self, want: impl Fn(&str) -> bool) -> (Instant, String) {
        let end = Instant::now() + self.wait;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((at, line)) if want(&line) => return (at, line),
                Ok(_) => {}
                Err(_) => panic!("{}: no answer within {:?}", self.name, self.wait),
            }
        }
    }

    /// Every line received so far, without waiting.
    pub(crate) fn drain(&mut self) -> Vec<(Instant, String)> {
        std::iter::from_fn(|| self.lines.try_recv().ok()).collect()
    }

    /// Sends one command line.
    pub(crate) fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").expect("write to a node");
        self.stdin.flush().expect("flush");
    }

    /// The next answer: `OK`, `VALUE <json>` or `ERR <why>`.
    pub(crate) fn answer(&mut self) -> String {
        self.next(|l| l == "OK" || l.starts_with("VALUE ") || l.starts_with("ERR "))
            .1
    }

    /// Sends `command` and returns its answer.
    pub(crate) fn ask(&mut self, command: &str) -> String {
        self.send(command);
        self.answer()
    }

    /// Sends `command` and returns the JSON of its `VALUE` answer; panics on anything else.
    pub(crate) fn value(&mut self, command: &str) -> serde_json::Value {
        let answer = self.ask(command);
        let Some(json) = answer.strip_prefix("VALUE ") else {
            panic!("{}: {command}: {answer}", self.name);
        };
        serde_json::from_str(json).expect("a JSON value")
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its resident set in bytes (Linux `/proc`; 0 where unavailable).
    pub(crate) fn resident_bytes(&self) -> f64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb * 1024.0)
    }

    /// Kills it with SIGKILL and reaps it.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}
