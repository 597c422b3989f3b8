//! Distributed configuration with `herd::agent::Agent`: three node processes on loopback
//! share one `Config` value.
//!
//! ```sh
//! cargo run --release --example distributed_config
//! ```
//!
//! It shows a change arriving on the other nodes, two nodes changing different fields at the
//! same moment (both changes kept: storing the whole value under one key, as `Aviato.Agent`
//! over DeltaCrdt does, keeps only one), a node killed with SIGKILL while the others keep
//! changing the config, and a node with a newer version of the type whose new field the old
//! nodes never erase. The example runs its nodes by re-executing itself; it finishes by itself
//! in a few seconds.

mod node;

#[path = "../common/proc.rs"]
#[allow(dead_code)]
mod proc;

use proc::Proc;
use std::time::{Duration, Instant};

/// The environment variable naming the node this process runs as, when it is a child.
const ROLE: &str = "HERD_EXAMPLE_NODE";
const WAIT: Duration = Duration::from_secs(20);

/// Starts one node: this example re-executed in the node role.
fn spawn(name: &str, seed: Option<&str>, v2: bool) -> Proc {
    let mut cmd = proc::node_command(ROLE, name, seed);
    if v2 {
        cmd.env("HERD_EXAMPLE_V2", "1");
    }
    Proc::spawn(name, cmd, WAIT)
}

fn main() {
    let v2 = std::env::var("HERD_EXAMPLE_V2").is_ok();
    let ran = proc::run_node_role(ROLE, |name, seed| async move {
        node::run(&name, seed.as_deref(), v2)
            .await
            .map_err(|e| format!("{name}: {e}"))
    });
    if let Some(result) = ran {
        proc::exit_with(result);
    }
    let start = Instant::now();
    let t = || format!("[{:5.2} s]", start.elapsed().as_secs_f64());

    println!("== three nodes share a Config (limits, maintenance, features)");
    let mut a = spawn("a", None, false);
    let mut b = spawn("b", Some(&a.listen), false);
    let mut c = spawn("c", Some(&a.listen), false);
    println!("{} a, b, c up; each reads {}", t(), a.ask("get"));

    println!("\n== a raises limits.max_conns; the others see it arrive");
    let sent = Instant::now();
    println!("{} a: {}", t(), a.ask("set limits.max_conns 512"));
    for p in [&mut b, &mut c] {
        let v = p.ask("wait limits.max_conns 512 20000");
        println!(
            "{} {} has max_conns = 512, {:.0} ms after the update: {}",
            t(),
            p.name,
            sent.elapsed().as_secs_f64() * 1e3,
            &v["VALUE ".len()..]
        );
    }

    println!("\n== b and c change different fields at the same moment");
    b.send("set maintenance true");
    c.send("set limits.timeout_ms 250");
    b.answer();
    c.answer();
    for p in [&mut a, &mut b, &mut c] {
        p.ask("wait maintenance true 20000");
        let v = p.ask("wait limits.timeout_ms 250 20000");
        println!(
            "{} {} keeps both changes: {}",
            t(),
            p.name,
            &v["VALUE ".len()..]
        );
    }

    println!("\n== c is killed with SIGKILL; a and b keep changing the config");
    c.kill();
    println!("{} c killed", t());
    a.ask(r#"set features.new_checkout true"#);
    let v = b.ask("wait features.new_checkout true 20000");
    println!(
        "{} b sees a's change without c: {}",
        t(),
        &v["VALUE ".len()..]
    );
    let mut c = spawn("c", Some(&a.listen), false);
    let v = c.ask("wait features.new_checkout true 20000");
    println!(
        "{} c restarted empty and caught up: {}",
        t(),
        &v["VALUE ".len()..]
    );

    println!("\n== d runs a newer Config with a `region` field (a rolling upgrade)");
    let mut d = spawn("d", Some(&a.listen), true);
    d.ask("wait features.new_checkout true 20000"); // caught up with the cluster
    println!("{} d: {}", t(), d.ask(r#"set region "eu-west""#));
    a.ask("set limits.max_conns 1024");
    let v = d.ask("wait limits.max_conns 1024 20000");
    println!(
        "{} d sees the old nodes' change and keeps its field: {}",
        t(),
        &v["VALUE ".len()..]
    );
    let v = b.ask("wait limits.max_conns 1024 20000");
    println!(
        "{} b (old version) reads the value without the field it does not know: {}",
        t(),
        &v["VALUE ".len()..]
    );
    for p in [&mut a, &mut b, &mut c, &mut d] {
        p.kill();
    }
    println!("\ndone in {:.1} s", start.elapsed().as_secs_f64());
}
