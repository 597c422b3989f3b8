//! One node of the supervisor example: a cluster node with a [`Supervisor`], driven over
//! stdin and reporting on stdout. Shared by the example, by `tests/supervisor.rs` and by the
//! `products-supervisor` workload.
//!
//! Two child kinds: `worker` (an actor that answers where it runs) and `crash` (panics as it
//! starts). Every worker adds itself to this process's **census** when it starts and
//! removes itself when it stops: a count of live child actors kept by the actors
//! themselves, independent of the supervisor's and the registry's views.
//!
//! Commands (stdin, one per line), each answered by `OK`, `VALUE <json>` or `ERR <why>`:
//! * `start <prefix> <n> [<kind>]`: `start_child` for `<prefix>0` .. `<prefix><n-1>` (kind
//!   `worker` by default); answers how many were started and how many already existed;
//! * `wait <n> <ms>`: waits until this node sees exactly `n` children running and none
//!   pending; answers the counts (or an error with them after `ms`);
//! * `settled <n> <node,node,..> <ms>`: like `wait`, and every child runs on one of the
//!   listed nodes (after a kill: none shows on the dead node any more);
//! * `counts`: `count_children` now;
//! * `where [<prefix>]`: each child (with `prefix`) and its node, `"pending"` or `"failed"`;
//! * `census`: the ids of the workers alive in this process, with how many copies of each;
//! * `call <id> <ms>`: looks the child up and calls it; answers its reply (its node);
//! * `terminate <id>`: `terminate_child`;
//! * `leave`: `Supervisor::shutdown` then `Node::shutdown`; answers how many children were
//!   not seen running elsewhere in time. The process exits after it.
//!
//! Events: `READY <listen address>` once. With `HERD_SUP_QUORUM=<n>` the supervisor uses
//! [`Quorum::count`]`(n)`.

use herd::cluster::{Node, NodeConfig};
use herd::supervisor::{
    ChildContext, ChildSpec, ChildStatus, Quorum, Supervisor, SupervisorError, SupervisorOptions,
};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The workers' messages: serializable by ractor_cluster, with a call.
#[derive(RactorClusterMessage)]
pub(crate) enum WorkerMsg {
    /// Answers with the node's name.
    #[rpc]
    Where(RpcReplyPort<String>),
}

/// Live workers in this process: id -> copies.
fn census() -> &'static Mutex<HashMap<String, usize>> {
    static CENSUS: OnceLock<Mutex<HashMap<String, usize>>> = OnceLock::new();
    CENSUS.get_or_init(Mutex::default)
}

fn tally(id: &str, delta: isize) {
    let mut c = census().lock().unwrap_or_else(|e| e.into_inner());
    let n = c.entry(id.to_owned()).or_insert(0);
    *n = n.saturating_add_signed(delta);
    if *n == 0 {
        c.remove(id);
    }
}

struct Worker {
    node: String,
}

/// A worker's place in the census, held in its state: dropped however the actor ends
/// (stopped, failed or killed), so a dead worker is never counted.
pub(crate) struct Counted(String);

impl Counted {
    fn new(id: String) -> Self {
        tally(&id, 1);
        Counted(id)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        tally(&self.0, -1);
    }
}

impl Actor for Worker {
    type Msg = WorkerMsg;
    type State = Counted;
    type Arguments = String;

    async fn pre_start(
        &self,
        _: ActorRef<WorkerMsg>,
        id: String,
    ) -> Result<Counted, ActorProcessingErr> {
        Ok(Counted::new(id))
    }

    async fn handle(
        &self,
        _: ActorRef<WorkerMsg>,
        msg: WorkerMsg,
        _: &mut Counted,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WorkerMsg::Where(reply) => {
                let _ = reply.send(self.node.clone());
            }
        }
        Ok(())
    }
}

/// A child that cannot start.
struct Crash;

impl Actor for Crash {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        Err("crash: fails on every start".into())
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The supervisor's options, the same on every node.
fn options(node: &str) -> SupervisorOptions {
    let node = node.to_owned();
    let mut options = SupervisorOptions::new("jobs")
        .sync_interval(Duration::from_millis(20))
        .reconcile_interval(Duration::from_millis(200))
        .kind("worker", move |ctx: ChildContext| {
            let worker = Worker { node: node.clone() };
            async move {
                let (actor, _) = Actor::spawn(None, worker, ctx.id).await?;
                Ok(actor.get_cell())
            }
        })
        .kind("crash", |_ctx: ChildContext| async {
            let (actor, _) = Actor::spawn(None, Crash, ()).await?;
            Ok(actor.get_cell())
        });
    if let Some(n) = std::env::var("HERD_SUP_QUORUM")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        options = options.strategy(Quorum::count(n));
    }
    options
}

/// Runs one node until stdin closes or `leave`.
pub(crate) async fn run(name: &str, seed: Option<&str>) -> Result<(), String> {
    let mut config = NodeConfig::new(name).listen("127.0.0.1:0".parse().map_err(|_| "addr")?);
    if let Some(seed) = seed {
        config = config.seed(seed);
    }
    let node = Node::start(config).await.map_err(|e| e.to_string())?;
    let sup = Supervisor::start(&node, options(name))
        .await
        .map_err(|e| e.to_string())?;
    say(&format!("READY {}", node.listen_addr()));
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim() == "leave" {
            break;
        }
        let answer = command(&sup, &line).await;
        say(&answer);
    }
    let stragglers = sup.shutdown().await.map_err(|e| e.to_string())?;
    node.shutdown().await;
    say(&format!(
        "VALUE {}",
        json!({"stragglers": stragglers.len()})
    ));
    Ok(())
}

fn counts_json(sup: &Supervisor) -> serde_json::Value {
    let c = sup.count_children();
    json!({"specs": c.specs, "running": c.running, "failed": c.failed, "pending": c.pending})
}

async fn command(sup: &Supervisor, line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["start", prefix, n] | ["start", prefix, n, _] => {
            let Ok(n) = n.parse::<usize>() else {
                return "ERR n must be a number".into();
            };
            let kind = words.get(3).copied().unwrap_or("worker");
            let (mut started, mut already) = (0, 0);
            for i in 0..n {
                let id = if n == 1 {
                    (*prefix).to_owned()
                } else {
                    format!("{prefix}{i}")
                };
                match sup.start_child(ChildSpec::new(id, kind, Vec::new())).await {
                    Ok(()) => started += 1,
                    Err(SupervisorError::AlreadyPresent { .. }) => already += 1,
                    Err(e) => return format!("ERR {e}"),
                }
            }
            format!("VALUE {}", json!({"started": started, "already": already}))
        }
        ["wait", n, ms] => {
            let (Ok(n), Ok(ms)) = (n.parse::<usize>(), ms.parse::<u64>()) else {
                return "ERR usage: wait <n> <ms>".into();
            };
            let end = Instant::now() + Duration::from_millis(ms);
            loop {
                let c = sup.count_children();
                if c.running == n && c.pending == 0 {
                    return format!("VALUE {}", counts_json(sup));
                }
                if Instant::now() >= end {
                    return format!("ERR {}", counts_json(sup));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        ["settled", n, nodes, ms] => {
            let (Ok(n), Ok(ms)) = (n.parse::<usize>(), ms.parse::<u64>()) else {
                return "ERR usage: settled <n> <nodes> <ms>".into();
            };
            let nodes: Vec<&str> = nodes.split(',').collect();
            let end = Instant::now() + Duration::from_millis(ms);
            loop {
                let children = sup.which_children();
                let on_listed = children.iter().filter(|c| {
                    matches!(&c.status, ChildStatus::Running { node } if nodes.contains(&node.as_str()))
                });
                if children.len() == n && on_listed.count() == n {
                    return format!("VALUE {}", counts_json(sup));
                }
                if Instant::now() >= end {
                    return format!("ERR {}", counts_json(sup));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        ["counts"] => format!("VALUE {}", counts_json(sup)),
        ["where"] | ["where", _] => {
            let prefix = words.get(1).copied().unwrap_or("");
            let at: BTreeMap<String, String> = sup
                .which_children()
                .into_iter()
                .filter(|c| c.id.starts_with(prefix))
                .map(|c| {
                    let on = match c.status {
                        ChildStatus::Running { node } => node,
                        ChildStatus::Failed { .. } => "failed".to_owned(),
                        ChildStatus::Pending => "pending".to_owned(),
                    };
                    (c.id, on)
                })
                .collect();
            format!("VALUE {}", json!(at))
        }
        ["census"] => {
            let c = census().lock().unwrap_or_else(|e| e.into_inner()).clone();
            let sorted: BTreeMap<String, usize> = c.into_iter().collect();
            format!("VALUE {}", json!(sorted))
        }
        ["call", id, ms] => {
            let Ok(ms) = ms.parse::<u64>() else {
                return "ERR ms must be a number".into();
            };
            let wait = Duration::from_millis(ms);
            let Some(actor) = sup.registry().lookup_within::<WorkerMsg>(id, wait).await else {
                return format!("ERR {id} not found");
            };
            match ractor::call_t!(actor, WorkerMsg::Where, ms) {
                Ok(reply) => format!("VALUE {}", json!(reply)),
                Err(e) => format!("ERR {e}"),
            }
        }
        ["terminate", id] => match sup.terminate_child(id).await {
            Ok(()) => "OK".into(),
            Err(e) => format!("ERR {e}"),
        },
        _ => format!("ERR unknown command `{line}`"),
    }
}
