//! A distributed DynamicSupervisor with `herd::supervisor::Supervisor`: three node processes
//! on loopback share twelve children, lose one node to SIGKILL and take its children over,
//! then hand some to a node that joins.
//!
//! ```sh
//! cargo run --release --example supervisor
//! ```
//!
//! Node a asks for twelve `worker` children; each runs on the node that rendezvous hashing
//! picks among the live nodes, the same answer on every node. Node c is killed with SIGKILL:
//! its children run again on a and b as soon as they see c go. Then node d joins: the
//! children d now wins are stopped where they run and started on d (stop, then start). The
//! example runs its nodes by re-executing itself and finishes by itself in a few seconds.

mod node;
#[path = "../common/proc.rs"]
#[allow(dead_code)]
mod proc;

use proc::Proc;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The environment variable naming the node this process runs as, when it is a child.
const ROLE: &str = "HERD_EXAMPLE_NODE";
const WAIT: Duration = Duration::from_secs(20);
const N: usize = 12;

fn spawn(name: &str, seed: Option<&str>) -> Proc {
    let cmd = proc::node_command(ROLE, name, seed);
    Proc::spawn(name, cmd, WAIT)
}

/// Node -> the children it runs, from one node's `where`.
fn by_node(placed: &serde_json::Value) -> BTreeMap<String, Vec<String>> {
    let mut on: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, node) in placed.as_object().into_iter().flatten() {
        let node = node.as_str().unwrap_or("?").to_owned();
        on.entry(node).or_default().push(id.clone());
    }
    on
}

fn show(p: &mut Proc) {
    for (node, ids) in by_node(&p.value("where")) {
        println!("    {node}: {}", ids.join(" "));
    }
}

fn main() {
    let ran = proc::run_node_role(ROLE, |name, seed| async move {
        node::run(&name, seed.as_deref())
            .await
            .map_err(|e| format!("{name}: {e}"))
    });
    if let Some(result) = ran {
        proc::exit_with(result);
    }
    let start = Instant::now();
    let t = || format!("[{:5.2} s]", start.elapsed().as_secs_f64());
    let ms = WAIT.as_millis();

    println!("== three nodes; a asks for {N} workers");
    let mut a = spawn("a", None);
    let mut b = spawn("b", Some(&a.listen));
    let mut c = spawn("c", Some(&a.listen));
    a.value(&format!("start job- {N}"));
    for p in [&mut a, &mut b, &mut c] {
        p.value(&format!("settled {N} a,b,c {ms}"));
    }
    println!("{} every node sees the same placement; b's view:", t());
    show(&mut b);
    println!(
        "{} a calls job-0, which answers from {}",
        t(),
        a.value(&format!("call job-0 {ms}"))
    );
    println!(
        "{} b asks for job-0 again: {}",
        t(),
        b.value("start job-0 1")
    );

    println!("\n== c is killed with SIGKILL");
    let killed = Instant::now();
    c.kill();
    for p in [&mut a, &mut b] {
        p.value(&format!("settled {N} a,b {ms}"));
    }
    println!(
        "{} all {N} children run on a and b again, {:.0} ms after the kill:",
        t(),
        killed.elapsed().as_secs_f64() * 1e3,
    );
    show(&mut a);

    println!("\n== d joins; the children it now wins move to it");
    let mut d = spawn("d", Some(&a.listen));
    let joined = Instant::now();
    let end = Instant::now() + WAIT;
    while d.value("census").as_object().is_none_or(|m| m.is_empty()) {
        assert!(Instant::now() < end, "nothing moved to d");
        std::thread::sleep(Duration::from_millis(10));
    }
    for p in [&mut a, &mut b, &mut d] {
        p.value(&format!("wait {N} {ms}"));
    }
    println!(
        "{} handed over within {:.0} ms of d's start:",
        t(),
        joined.elapsed().as_secs_f64() * 1e3
    );
    show(&mut d);
    let mut copies = 0;
    for p in [&mut a, &mut b, &mut d] {
        let census = p.value("census");
        copies += census
            .as_object()
            .map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum::<u64>());
    }
    println!(
        "{} live worker actors counted by the workers themselves: {copies}",
        t()
    );
    for p in [&mut a, &mut b, &mut d] {
        p.kill();
    }
    println!("\ndone in {:.1} s", start.elapsed().as_secs_f64());
}
