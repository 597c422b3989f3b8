//! Presence with `herd::presence::Presence`: three node processes on loopback track users in
//! a lobby.
//!
//! ```sh
//! cargo run --release --example presence
//! ```
//!
//! Each node tracks its own users (each user an actor); every node lists them all, with the
//! node each is on. A user whose actor stops leaves everywhere. A node killed with SIGKILL
//! takes its users out of every survivor's list as soon as the survivors see it go; restarted,
//! it comes back as a new incarnation: its new users show, the old ones never come back. The
//! example runs its nodes by re-executing itself and finishes by itself in a few seconds.

mod node;
#[path = "../common/proc.rs"]
#[allow(dead_code)]
mod proc;

use proc::Proc;
use std::time::{Duration, Instant};

/// The environment variable naming the node this process runs as, when it is a child.
const ROLE: &str = "HERD_EXAMPLE_NODE";
const WAIT: Duration = Duration::from_secs(20);

fn spawn(name: &str, seed: Option<&str>) -> Proc {
    let cmd = proc::node_command(ROLE, name, seed);
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

    println!("== three nodes; each tracks its users in `lobby`");
    let mut a = spawn("a", None);
    let mut b = spawn("b", Some(&a.listen));
    let mut c = spawn("c", Some(&a.listen));
    a.ask("track lobby ann- 2 online");
    b.ask("track lobby bob- 1 online");
    c.ask("track lobby cat- 3 away");
    let shown = a.value(&format!("count lobby 6 {ms}"));
    println!("{} a lists {shown} users:", t());
    println!("         {}", a.value("list lobby"));

    println!("\n== cat-0's connection ends (its actor stops)");
    c.ask("stop lobby cat-0");
    a.value(&format!("count lobby 5 {ms}"));
    println!("{} a lists 5: {}", t(), a.value("list lobby"));

    println!("\n== c is killed with SIGKILL");
    let killed = Instant::now();
    c.kill();
    a.value(&format!("count lobby 3 {ms}"));
    b.value(&format!("count lobby 3 {ms}"));
    println!(
        "{} a and b no longer list c's users, {:.0} ms after the kill: {}",
        t(),
        killed.elapsed().as_secs_f64() * 1e3,
        a.value("list lobby")
    );

    println!("\n== c restarts (a new incarnation) with one new user");
    let mut c = spawn("c", Some(&a.listen));
    c.ask("track lobby cy- 1 online");
    a.value(&format!("count lobby 4 {ms}"));
    println!(
        "{} a lists the new user, none of c's old ones: {}",
        t(),
        a.value("list lobby")
    );
    println!(
        "{} joins and leaves a's subscriber saw, per user: {}",
        t(),
        a.value("diffs")
    );
    for p in [&mut a, &mut b, &mut c] {
        p.kill();
    }
    println!("\ndone in {:.1} s", start.elapsed().as_secs_f64());
}
