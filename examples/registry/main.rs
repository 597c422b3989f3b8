//! A cluster-wide registry with `herd::registry::Registry`: three node processes on loopback
//! register named actors, call them from other nodes, lose a node, and settle a conflict.
//!
//! ```sh
//! cargo run --release --example registry
//! ```
//!
//! Each node registers its own workers; every node finds every name and can call the actor
//! behind it, wherever it runs. Node c is killed with SIGKILL: its names leave every
//! survivor as soon as they see it go. Then a node `d` that registered `leader` before it
//! joined (as if on the other side of a partition) meets a's earlier `leader`: every node
//! picks a's (the earlier claim), and d's actor is told and stopped. The example runs its
//! nodes by re-executing itself and finishes by itself in a few seconds.

mod node;
#[path = "../common/proc.rs"]
#[allow(dead_code)]
mod proc;

use proc::Proc;
use std::time::{Duration, Instant};

/// The environment variable naming the node this process runs as, when it is a child.
const ROLE: &str = "HERD_EXAMPLE_NODE";
const WAIT: Duration = Duration::from_secs(20);

fn spawn(name: &str, seed: Option<&str>, early: Option<&str>) -> Proc {
    let mut cmd = proc::node_command(ROLE, name, seed);
    if let Some(early) = early {
        cmd.env("HERD_REGISTRY_EARLY", early);
    }
    Proc::spawn(name, cmd, WAIT)
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

    println!("== three nodes; each registers its workers, a also `leader`");
    let mut a = spawn("a", None, None);
    let mut b = spawn("b", Some(&a.listen), None);
    let mut c = spawn("c", Some(&a.listen), None);
    a.ask("register worker-a- 2");
    b.ask("register worker-b- 2");
    c.ask("register worker-c- 2");
    a.ask("register leader 1");
    b.value(&format!("count worker- 6 {ms}"));
    println!("{} b sees where each name lives: {}", t(), b.value("where"));
    println!(
        "{} b calls worker-c-0: {}",
        t(),
        b.value(&format!("call worker-c-0 {ms}"))
    );
    println!(
        "{} c calls leader: {}",
        t(),
        c.value(&format!("call leader {ms}"))
    );

    println!("\n== c is killed with SIGKILL");
    let killed = Instant::now();
    c.kill();
    a.value(&format!("count worker- 4 {ms}"));
    b.value(&format!("count worker- 4 {ms}"));
    println!(
        "{} a and b no longer list c's names, {:.0} ms after the kill",
        t(),
        killed.elapsed().as_secs_f64() * 1e3,
    );
    println!("{} b sees: {}", t(), b.value("where"));

    println!("\n== d registered `leader` before it joined; a's claim is older");
    let mut d = spawn("d", Some(&a.listen), Some("leader"));
    d.value(&format!("count worker- 4 {ms}"));
    let end = Instant::now() + WAIT;
    while d.value("alive leader") == serde_json::json!(true) {
        assert!(Instant::now() < end, "d's leader still runs");
        std::thread::sleep(Duration::from_millis(20));
    }
    for p in [&mut a, &mut b, &mut d] {
        let on = p.value("where leader")["leader"].clone();
        println!("{} {} says leader is on {on}", t(), p.name);
    }
    println!(
        "{} d's events (it lost the conflict, its actor stopped): {}",
        t(),
        d.value("events")
    );
    println!(
        "{} d calls leader: {}",
        t(),
        d.value(&format!("call leader {ms}"))
    );
    for p in [&mut a, &mut b, &mut d] {
        p.kill();
    }
    println!("\ndone in {:.1} s", start.elapsed().as_secs_f64());
}
