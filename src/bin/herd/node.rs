//! `herd node`: one cluster node with a replicated key-value map, a replicated configuration
//! (an [`Agent`] of [`DemoConfig`]), a [`Registry`] of greeter actors, a [`Supervisor`] of
//! greeter children and a set, counters and a presence ([`Replicas`]), driven by line commands
//! on stdin (see [`protocol::HELP`]) and answering each with one JSON line on stdout.

use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use herd::agent::{Agent, AgentError};
use herd::cluster::{DetectorConfig, Node, NodeConfig};
use herd::registry::{Registry, RegistryOptions};
use herd::replica::{Ack, Kv, ReplicaOptions};
use herd::storage::{RedbConfig, RedbStorage};
use herd::supervisor::{ChildContext, ChildSpec, Supervisor, SupervisorOptions};
use ractor::{Actor, ActorRef};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::args::{NodeArgs, parse_node_args};
use crate::products::{self, DemoConfig, Greeter, GreeterMsg, Tally};
use crate::protocol::{self, Command, FaultKind, error, ok};
use crate::replicas::Replicas;

/// The name of the node's key-value replica (and of its file in the data directory).
const REPLICA: &str = "kv";
/// The name of the configuration Agent's replica (and of its file in the data directory).
const CONFIG: &str = "config";
/// The name of the registry (its claims describe live actors, so it is never on disk).
const NAMES: &str = "names";
/// The name of the node's distributed supervisor.
const JOBS: &str = "jobs";
/// How long `call` waits for a name to show and its actor to be reachable from this node:
/// the cluster layer's stand-in for a remote actor may arrive a little after the claim.
const LOOKUP_WAIT: Duration = Duration::from_secs(2);
/// How long `call` waits for the greeter's reply.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How often an `await-*` command re-checks its condition.
const POLL: Duration = Duration::from_millis(5);
/// How many puts `bulk-put` keeps in flight.
const BULK_IN_FLIGHT: usize = 256;

/// Runs `herd node <args>`.
pub(crate) fn main(args: &[String]) -> ExitCode {
    let args = match parse_node_args(args) {
        Ok(args) => args,
        Err(e) => {
            // clap formats usage errors, --help and --version; only errors go to stderr.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            emit(&json!({"event": "error", "error": format!("tokio runtime: {e}")}));
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(args));
    // A read of stdin may still be parked on the blocking pool: do not wait for it.
    runtime.shutdown_background();
    code
}

/// Writes one JSON line to stdout. A closed stdout (the driver is gone) is not an error
/// here: end of input on stdin ends the node.
fn emit(value: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

async fn run(args: NodeArgs) -> ExitCode {
    // Before the replicas start, so their first counters are recorded.
    let metrics = match args.metrics_listen {
        Some(addr) => match crate::metrics_http::serve(addr).await {
            Ok(bound) => Some(bound.to_string()),
            Err(e) => {
                emit(&json!({"event": "error", "node": args.name, "error": e}));
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let Started {
        node,
        kv,
        config,
        names,
        keys,
        kv_start,
        jobs,
        tally,
        replicas,
    } = match start(&args).await {
        Ok(started) => started,
        Err(e) => {
            tracing::error!(error = %e, "node failed to start");
            emit(&json!({"event": "error", "node": args.name, "error": e}));
            return ExitCode::FAILURE;
        }
    };
    emit(&json!({
        "event": "ready",
        "node": node.name(),
        "listen": node.listen_addr().to_string(),
        "replica_id": kv.id().as_u64(),
        "keys": keys,
        "restored": kv.restored(),
        "kv_start_ms": millis(kv_start),
        "names_ready": names.ready(),
        "metrics": metrics,
    }));

    let trimmer = tokio::spawn(async {
        let mut every = tokio::time::interval(crate::trim::PERIOD);
        loop {
            every.tick().await;
            let _ = tokio::task::spawn_blocking(crate::trim::trim).await;
        }
    });
    let events = record_events(&node);
    let server = Server {
        node,
        kv,
        config,
        names,
        jobs,
        tally,
        replicas,
        greeters: Mutex::new(HashMap::new()),
        events,
    };
    let mut input = BufReader::new(tokio::io::stdin());
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot catch SIGTERM; it will kill the node abruptly");
            None
        }
    };
    let mut raw = Vec::new();
    let mut refused = false;
    loop {
        raw.clear();
        let read = tokio::select! {
            read = input.read_until(b'\n', &mut raw) => read,
            () = term(&mut terminate) => {
                tracing::info!("SIGTERM: shutting down gracefully");
                break;
            }
            e = server.node.refused() => {
                // Another live node has this name: running on would isolate one of the two.
                tracing::error!(error = %e, "refused by the cluster; shutting down");
                emit(&json!({"event": "error", "error": e.to_string()}));
                refused = true;
                break;
            }
        };
        match read {
            Ok(0) => break, // end of input: graceful quit
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "reading stdin failed; quitting");
                break;
            }
        }
        // A line that is not UTF-8 is one bad command, not the end of the session.
        let Ok(line) = std::str::from_utf8(&raw) else {
            emit(&error("the line is not valid UTF-8", json!({})));
            continue;
        };
        let line = line.trim_end_matches(['\n', '\r']);
        match protocol::parse(line) {
            Ok(Command::Quit) => break,
            Ok(command) => emit(&server.execute(command).await),
            Err(e) => emit(&error(e, json!({}))),
        }
    }

    trimmer.abort();
    let Server {
        node,
        kv,
        config,
        names,
        jobs,
        replicas,
        greeters,
        ..
    } = server;
    let mut code = if refused {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    };
    let quitting = std::time::Instant::now();
    // The registry leaves the greeters running when it stops: stop them first.
    for greeter in greeters
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
        .values()
    {
        greeter.stop(None);
    }
    // All side by side: the supervisor hands its children over to the other nodes while the
    // replicas hand their data over; the peers hear that this node leaves only after the
    // last of them.
    let (jobs, names, config, kv, replicas) = tokio::join!(
        jobs.shutdown(),
        names.stop(),
        config.stop(),
        kv.stop(),
        replicas.stop()
    );
    match jobs {
        Ok(stragglers) if !stragglers.is_empty() => {
            tracing::warn!(
                ?stragglers,
                "children not yet running elsewhere at shutdown"
            );
        }
        Ok(_) => {}
        Err(e) => {
            tracing::error!(error = %e, "stopping the supervisor failed");
            code = ExitCode::FAILURE;
        }
    }
    let stopped = quitting.elapsed();
    if let Err(e) = names {
        tracing::error!(error = %e, "stopping the registry failed");
        code = ExitCode::FAILURE;
    }
    if let Err(e) = config {
        tracing::error!(error = %e, "stopping the configuration failed");
        code = ExitCode::FAILURE;
    }
    if let Err(e) = kv {
        tracing::error!(error = %e, "stopping the replica failed");
        code = ExitCode::FAILURE;
    }
    if let Err(e) = replicas {
        tracing::error!(error = %e, "stopping the set, counters or presence failed");
        code = ExitCode::FAILURE;
    }
    node.shutdown().await;
    tracing::info!(
        handed_over_ms = stopped.as_millis() as u64,
        left_ms = quitting.elapsed().as_millis() as u64,
        "shut down"
    );
    emit(&json!({"event": "stopped", "ok": code == ExitCode::SUCCESS}));
    code
}

/// What [`start`] starts.
struct Started {
    node: Node,
    kv: Kv,
    config: Agent<DemoConfig>,
    names: Registry,
    /// The keys the key-value replica held once started: those restored from disk. Counted
    /// before the registry's start-up wait, during which the replica already syncs.
    keys: usize,
    /// How long the key-value replica took to start (to load its keys, on a restart): from
    /// then on it serves reads.
    kv_start: Duration,
    jobs: Supervisor,
    /// The supervised children running here, counted by themselves.
    tally: Tally,
    replicas: Replicas,
}

async fn start(args: &NodeArgs) -> Result<Started, String> {
    let mut config = NodeConfig::new(args.name.clone()).listen(args.listen);
    for seed in &args.seeds {
        config = config.seed(seed.clone());
    }
    if let Some(cookie) = &args.cookie {
        config = config.cookie(cookie.clone());
    }
    let mut detector = DetectorConfig::default();
    if let Some(d) = args.heartbeat_interval {
        detector.heartbeat_interval = d;
        detector.suspect_after = d * 3;
    }
    if let Some(d) = args.down_after {
        detector.down_after = d;
    }
    if let Some(k) = args.monitors {
        detector.monitors = k;
    }
    config = config.detector(detector);
    if let Some(t) = args.handover_timeout {
        config = config.handover_timeout(t);
    }
    let node = Node::start(config)
        .await
        .map_err(|e| format!("starting the cluster node: {e}"))?;

    let (kv, (keys, kv_start), config, names) = match start_products(&node, args).await {
        Ok(products) => products,
        Err(e) => {
            node.shutdown().await;
            return Err(e);
        }
    };
    let tally = Tally::default();
    let jobs = match Supervisor::start(&node, jobs_options(node.name(), args, &tally)).await {
        Ok(jobs) => jobs,
        Err(e) => {
            let _ = names.stop().await;
            let _ = config.stop().await;
            let _ = kv.stop().await;
            node.shutdown().await;
            return Err(format!("starting the supervisor: {e}"));
        }
    };
    match Replicas::start(
        &node,
        |name| replica_options(args, name),
        args.idle_replicas,
    )
    .await
    {
        Ok(replicas) => Ok(Started {
            node,
            kv,
            config,
            names,
            keys,
            kv_start,
            jobs,
            tally,
            replicas,
        }),
        Err(e) => {
            let _ = jobs.shutdown().await;
            let _ = names.stop().await;
            let _ = config.stop().await;
            let _ = kv.stop().await;
            node.shutdown().await;
            Err(e)
        }
    }
}

/// The supervisor's options: one kind of child, `greeter`, the same actor `register` starts,
/// so a supervised child answers `call` with the node it runs on; each counts itself in
/// `tally` while it runs.
fn jobs_options(node: &str, args: &NodeArgs, tally: &Tally) -> SupervisorOptions {
    let node = node.to_owned();
    let tally = tally.clone();
    let mut options = SupervisorOptions::new(JOBS).kind("greeter", move |child: ChildContext| {
        let greeter = Greeter {
            node: node.clone(),
            tally: Some((tally.clone(), child.id.to_string())),
        };
        async move {
            let (actor, _) = Actor::spawn(None, greeter, ()).await?;
            Ok(actor.get_cell())
        }
    });
    if let Some(interval) = args.sync_interval {
        options = options.sync_interval(interval);
    }
    options
}

/// Starts the key-value replica, the configuration Agent and the registry on `node`; on an
/// error, stops what it had started.
async fn start_products(
    node: &Node,
    args: &NodeArgs,
) -> Result<(Kv, (usize, Duration), Agent<DemoConfig>, Registry), String> {
    let options = |name: &str| replica_options(args, name);
    let kv_started = Instant::now();
    let kv = Kv::start(node, options(REPLICA)?)
        .await
        .map_err(|e| format!("starting the replica: {e}"))?;
    let keys = (kv.len(), kv_started.elapsed());
    let config = match options(CONFIG) {
        Ok(o) => Agent::start(node, o, DemoConfig::default())
            .await
            .map_err(|e| format!("starting the configuration: {e}")),
        Err(e) => Err(e),
    };
    let config = match config {
        Ok(config) => config,
        Err(e) => {
            let _ = kv.stop().await;
            return Err(e);
        }
    };
    // The registry ignores storage (its claims describe live actors); only its sync
    // settings are passed on.
    let mut names = ReplicaOptions::new(NAMES);
    if let Some(interval) = args.sync_interval {
        names = names.sync_interval(interval);
    }
    match Registry::start(node, RegistryOptions::new(NAMES).replica(names)).await {
        Ok(names) => Ok((kv, keys, config, names)),
        Err(e) => {
            let _ = config.stop().await;
            let _ = kv.stop().await;
            Err(format!("starting the registry: {e}"))
        }
    }
}

/// The options of the replica `name` from the node's arguments: sync settings, and storage
/// in the data directory if there is one.
fn replica_options(args: &NodeArgs, name: &str) -> Result<ReplicaOptions, String> {
    let mut options = ReplicaOptions::new(name);
    if let Some(interval) = args.sync_interval {
        options = options.sync_interval(interval);
    }
    if let Some(bytes) = args.max_sync_size {
        options = options.max_sync_size(bytes);
    }
    if args.write_behind {
        options = options.ack(Ack::Applied);
    }
    if let Some(dir) = &args.data_dir {
        let storage = RedbStorage::open(dir, name, RedbConfig::durable())
            .map_err(|e| format!("opening storage in {}: {e}", dir.display()))?;
        options = options.storage(storage);
    }
    Ok(options)
}

struct Server {
    node: Node,
    kv: Kv,
    config: Agent<DemoConfig>,
    names: Registry,
    /// The distributed supervisor of greeter children.
    jobs: Supervisor,
    /// The supervised children running here, counted by themselves.
    tally: Tally,
    /// The set, counters and presence.
    replicas: Replicas,
    /// The greeters this node started with `register`, by name.
    greeters: Mutex<HashMap<String, ActorRef<GreeterMsg>>>,
    /// Membership events since start, as JSON with `at_ms` (Unix time in ms) added.
    events: Arc<Mutex<Vec<Value>>>,
}

/// Resolves when SIGTERM arrives; never, if it cannot be caught.
async fn term(sig: &mut Option<Signal>) {
    match sig {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// Records the node's membership events with their wall-clock time, for `events` (the
/// workload runner compares them with the time it stopped or killed a process).
fn record_events(node: &Node) -> Arc<Mutex<Vec<Value>>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut sub = node.subscribe();
    let into = Arc::clone(&log);
    tokio::spawn(async move {
        loop {
            match sub.events.recv().await {
                Ok(event) => {
                    let mut v = to_json(&event);
                    v["at_ms"] = json!(unix_ms());
                    into.lock().unwrap_or_else(PoisonError::into_inner).push(v);
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "membership event log lagged");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    log
}

/// Milliseconds since the Unix epoch.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Server {
    async fn execute(&self, command: Command) -> Value {
        match command {
            Command::Put { key, value } => match self.kv.put(key, value).await {
                Ok(()) => ok(json!({})),
                Err(e) => error(e, json!({})),
            },
            Command::Get { key } => ok(json!({"value": self.kv.get(&key)})),
            Command::Keys { prefix } => {
                let mut keys: Vec<String> = self
                    .kv
                    .to_map()
                    .into_keys()
                    .filter(|k| k.starts_with(&prefix))
                    .collect();
                keys.sort_unstable();
                ok(json!({ "keys": keys }))
            }
            Command::Del { key } => match self.kv.delete(&key).await {
                Ok(()) => ok(json!({})),
                Err(e) => error(e, json!({})),
            },
            Command::Members => {
                let members = self.others().await;
                ok(json!({
                    "node": self.node.name(),
                    "members": members,
                    "cluster_members": self.node.cluster_members(),
                    "peers": to_json(&self.node.peers()),
                    "neighbours": self.neighbours(),
                }))
            }
            Command::Events => {
                let events = self
                    .events
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                ok(json!({ "events": events, "now_ms": unix_ms() }))
            }
            Command::AwaitState { node, up, timeout } => {
                let check = || async {
                    let members = self.others().await;
                    (members.contains(&node) == up, json!({"members": members}))
                };
                await_condition(timeout, check).await
            }
            Command::Trim => {
                let released = tokio::task::spawn_blocking(crate::trim::trim)
                    .await
                    .unwrap_or(false);
                ok(json!({ "released": released }))
            }
            Command::Stats => ok(json!({
                "node": self.node.name(),
                "keys": self.kv.len(),
                "replica": to_json(&self.kv.stats()),
                "cluster": to_json(&self.node.stats()),
            })),
            Command::BulkPut {
                prefix,
                n,
                value_len,
            } => self.bulk_put(&prefix, n, value_len).await,
            Command::AwaitKey {
                key,
                expect,
                timeout,
            } => {
                let check = || async {
                    let value = self.kv.get(&key);
                    (expect.holds(value.as_deref()), json!({"value": value}))
                };
                await_condition(timeout, check).await
            }
            Command::AwaitCount { n, timeout } => {
                let check = || async {
                    let keys = self.kv.len();
                    (keys == n, json!({"keys": keys}))
                };
                await_condition(timeout, check).await
            }
            Command::AwaitMembers { n, timeout } => {
                let check = || async {
                    let members = self.others().await;
                    (members.len() == n, json!({"members": members}))
                };
                await_condition(timeout, check).await
            }
            Command::AwaitNeighbours { n, timeout } => {
                let check = || async {
                    let neighbours = self.neighbours();
                    (neighbours.len() == n, json!({"neighbours": neighbours}))
                };
                await_condition(timeout, check).await
            }
            Command::Inject { peer, fault } => inject(&self.kv, &peer, fault),
            Command::ConfigGet => match self.config.get() {
                Ok(config) => ok(json!({"config": to_json(&config)})),
                Err(e) => error(e, json!({})),
            },
            Command::ConfigSet { field, value } => self.config_set(&field, value).await,
            Command::AwaitConfig {
                field,
                value,
                timeout,
            } => self.await_config(&field, &value, timeout).await,
            Command::Register { name } => self.register(name).await,
            Command::Whereis { name } => {
                let entry = self.names.whereis(&name);
                ok(json!({"node": entry.map(|e| e.node)}))
            }
            Command::AwaitName {
                name,
                expect,
                timeout,
            } => {
                let check = || async {
                    let node = self.names.whereis(&name).map(|e| e.node);
                    (expect.holds(node.as_deref()), json!({"node": node}))
                };
                await_condition(timeout, check).await
            }
            Command::Call { name, text } => self.call(&name, text).await,
            Command::StartChild { id } => {
                match self
                    .jobs
                    .start_child(ChildSpec::new(id.clone(), "greeter", Vec::new()))
                    .await
                {
                    Ok(()) => ok(json!({"owner": self.jobs.owner_of(&id)})),
                    Err(e) => error(e, json!({})),
                }
            }
            Command::WhereChild { id } => ok(json!({
                "node": self.jobs.whereis(&id),
                "owner": self.jobs.owner_of(&id),
            })),
            Command::AwaitChild {
                id,
                expect,
                timeout,
            } => {
                let check = || async {
                    let node = self.jobs.whereis(&id);
                    (expect.holds(node.as_deref()), json!({"node": node}))
                };
                await_condition(timeout, check).await
            }
            Command::Children => ok(json!({"running": self.tally.running()})),
            Command::Help => ok(json!({"help": protocol::HELP})),
            Command::SetAdd { .. }
            | Command::SetRemove { .. }
            | Command::SetMembers { .. }
            | Command::Increment { .. }
            | Command::Counters
            | Command::Track { .. }
            | Command::Untrack { .. }
            | Command::List { .. } => self.replicas.execute(&command).await,
            // Handled by the read loop; answered here only for completeness.
            Command::Quit => ok(json!({})),
        }
    }

    /// Sets one field of the configuration; answers the new value.
    async fn config_set(&self, field: &str, value: Value) -> Value {
        let mut refused = None;
        let updated = self
            .config
            .get_and_update(|c| match products::set_field(c, field, value) {
                Ok(()) => Some(c.clone()),
                Err(e) => {
                    refused = Some(e);
                    None
                }
            })
            .await;
        match (updated, refused) {
            (Err(e), _) => error(e, json!({})),
            (_, Some(e)) => error(e, json!({})),
            (Ok(config), None) => ok(json!({"config": to_json(&config)})),
        }
    }

    /// Waits until `field` of the configuration is `value` on this node (woken by each
    /// change rather than polling, so `waited_ms` is when the change arrived).
    async fn await_config(&self, field: &str, value: &Value, timeout: Duration) -> Value {
        let started = Instant::now();
        let holds = |c: &DemoConfig| products::field_value(c, field).as_ref() == Some(value);
        let outcome = self.config.wait_until(holds, timeout).await;
        let waited = json!(millis(started.elapsed()));
        match outcome {
            Ok(config) => ok(json!({"config": to_json(&config), "waited_ms": waited})),
            Err(e @ AgentError::Timeout(_)) => {
                let seen = self
                    .config
                    .get()
                    .map(|c| to_json(&c))
                    .unwrap_or(Value::Null);
                error(
                    "timeout",
                    json!({"config": seen, "waited_ms": waited, "why": e.to_string()}),
                )
            }
            Err(e) => error(e, json!({"waited_ms": waited})),
        }
    }

    /// Starts a greeter on this node and registers it as `name`. A name already held (here
    /// or, as far as this node has seen, elsewhere) is refused and the greeter stopped.
    async fn register(&self, name: String) -> Value {
        let greeter = Greeter::new(self.node.name());
        let actor = match Actor::spawn(None, greeter, ()).await {
            Ok((actor, _)) => actor,
            Err(e) => return error(format!("starting a greeter: {e}"), json!({})),
        };
        match self.names.register(name.clone(), &actor).await {
            Ok(_) => {
                let node = self.node.name().to_owned();
                let old = self
                    .greeters
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(name.clone(), actor);
                // A greeter left under this name lost it (its claim was removed): retire it.
                if let Some(old) = old {
                    old.stop(None);
                }
                ok(json!({"name": name, "node": node}))
            }
            Err(e) => {
                actor.stop(None);
                error(
                    e,
                    json!({"node": self.names.whereis(&name).map(|e| e.node)}),
                )
            }
        }
    }

    /// Looks `name` up and calls its greeter, wherever it runs; answers the greeting and
    /// the node that answered (as the greeter itself reports it).
    async fn call(&self, name: &str, text: String) -> Value {
        let started = Instant::now();
        let Some(actor) = self
            .names
            .lookup_within::<GreeterMsg>(name, LOOKUP_WAIT)
            .await
        else {
            let holder = self.names.whereis(name).map(|e| e.node);
            let why = match &holder {
                None => format!("{name} is not registered"),
                Some(node) => format!("{name} is held by {node}, not reachable from here yet"),
            };
            return error(why, json!({"node": holder}));
        };
        let looked_up = started.elapsed();
        let timeout_ms = u64::try_from(CALL_TIMEOUT.as_millis()).unwrap_or(u64::MAX);
        let reply = match ractor::call_t!(actor, GreeterMsg::Greet, timeout_ms, text) {
            Ok(reply) => reply,
            Err(e) => return error(format!("calling {name}: {e}"), json!({})),
        };
        // The reply crossed the network: a malformed one is an error answer, not a panic.
        let reply: Value = match serde_json::from_str(&reply) {
            Ok(reply @ Value::Object(_)) => reply,
            Ok(other) => {
                return error(
                    "the greeter's reply is not an object",
                    json!({"reply": other}),
                );
            }
            Err(e) => return error(format!("the greeter's reply is not JSON: {e}"), json!({})),
        };
        ok(json!({
            "node": reply.get("node").cloned().unwrap_or(Value::Null),
            "reply": reply.get("reply").cloned().unwrap_or(Value::Null),
            "lookup_ms": millis(looked_up),
            "ms": millis(started.elapsed()),
        }))
    }

    /// The other live members, sorted.
    async fn others(&self) -> Vec<String> {
        let me = self.node.name();
        let mut members: Vec<String> = self
            .node
            .members()
            .into_iter()
            .filter(|m| m != me)
            .collect();
        members.sort();
        members.dedup();
        members
    }

    fn neighbours(&self) -> Vec<String> {
        let mut neighbours = self.kv.neighbours();
        neighbours.sort();
        neighbours
    }

    /// Puts `<prefix>0 .. <prefix>{n-1}`, up to [`BULK_IN_FLIGHT`] at a time so that durable
    /// writes share commits (the replica group-commits concurrent writers).
    async fn bulk_put(&self, prefix: &str, n: usize, value_len: usize) -> Value {
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        let mut failure = None;
        for i in 0..n {
            if tasks.len() >= BULK_IN_FLIGHT
                && let Some(Err(e)) = tasks.join_next().await.map(flatten)
            {
                failure.get_or_insert(e);
                break;
            }
            let kv = self.kv.clone();
            let key = format!("{prefix}{i}");
            tasks.spawn(async move {
                kv.put(key, filler(i, value_len))
                    .await
                    .map_err(|e| e.to_string())
            });
        }
        while let Some(result) = tasks.join_next().await {
            if let Err(e) = flatten(result) {
                failure.get_or_insert(e);
            }
        }
        match failure {
            Some(e) => error(e, json!({})),
            None => ok(json!({"written": n, "ms": millis(started.elapsed())})),
        }
    }
}

fn flatten(joined: Result<Result<(), String>, tokio::task::JoinError>) -> Result<(), String> {
    joined.map_err(|e| format!("put task failed: {e}"))?
}

/// A value of exactly `len` ASCII bytes that differs from key to key.
fn filler(i: usize, len: usize) -> String {
    let seed = format!("{i:x}-");
    seed.chars().cycle().take(len).collect()
}

/// Re-checks `check` every [`POLL`] until it holds or `timeout` passes. The answer carries
/// `waited_ms` and what `check` observed last.
async fn await_condition<F, Fut>(timeout: Duration, mut check: F) -> Value
where
    F: FnMut() -> Fut,
    Fut: Future<Output = (bool, Value)>,
{
    let started = Instant::now();
    loop {
        let (holds, seen) = check().await;
        let waited = started.elapsed();
        if holds {
            let mut answer = ok(seen);
            answer["waited_ms"] = json!(millis(waited));
            return answer;
        }
        if waited >= timeout {
            return error("timeout", with(seen, "waited_ms", json!(millis(waited))));
        }
        tokio::time::sleep(POLL.min(timeout - waited)).await;
    }
}

fn with(mut object: Value, key: &str, value: Value) -> Value {
    if let Value::Object(map) = &mut object {
        map.insert(key.to_owned(), value);
    }
    object
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn to_json(value: &impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or_else(|e| json!({"error": e.to_string()}))
}

/// Sends a malformed frame to `peer` (the tests' fault injection; needs the `test-hooks`
/// feature, which herd's tests turn on).
#[cfg(feature = "test-hooks")]
fn inject(kv: &Kv, peer: &str, fault: FaultKind) -> Value {
    use herd::replica::Fault;
    let fault = match fault {
        FaultKind::Garbage => Fault::Garbage,
        FaultKind::Oversized => Fault::Oversized,
        FaultKind::Future => Fault::FutureVersion,
        FaultKind::Unframed => Fault::Unframed,
    };
    match kv.inject(peer, fault) {
        Ok(()) => ok(json!({})),
        Err(e) => error(e, json!({})),
    }
}

/// Without the `test-hooks` feature there is nothing to inject with.
#[cfg(not(feature = "test-hooks"))]
fn inject(_: &Kv, _: &str, _: FaultKind) -> Value {
    error("built without the test-hooks feature", json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filler_has_the_asked_length() {
        assert_eq!(filler(255, 0), "");
        assert_eq!(filler(255, 7), "ff-ff-f");
        assert_eq!(filler(3, 64).len(), 64);
    }
}
