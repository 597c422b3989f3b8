//! `herd`: the node program, and a demo that runs three of them.
//!
//! * `herd node --name <n> ...` runs one cluster node with a replicated key-value map, a
//!   replicated configuration (an Agent) and a registry of named actors, and takes line
//!   commands on stdin (the integration tests drive it this way);
//! * `herd demo` starts three nodes as child processes and shows replication, a config change
//!   arriving, a name resolved and called on another node, a crash and a recovery.

use std::io::IsTerminal;
use std::process::ExitCode;

use tracing::level_filters::LevelFilter;

mod args;
// Shared with the integration tests (tests/support includes it by path); the demo uses a subset.
#[allow(dead_code)]
mod client;
mod demo;
mod metrics_http;
mod node;
mod products;
mod protocol;
mod replicas;
mod trim;

const USAGE: &str = "\
herd: replicated, coordination-free state for ractor clusters

usage:
  herd node --name <name> [--listen <ip:port>] [--seed <ip:port>]... [options]
      run one node; commands on stdin, one JSON answer per line on stdout (type `help`);
      every option also reads an environment variable (HERD_COOKIE, ...): herd node --help
  herd demo [--keep]
      three nodes on loopback: replicate, change config, call a name on another node,
      kill one, write, restart it, watch it catch up
  herd help

logs go to stderr; set the level with HERD_LOG=error|warn|info|debug|trace (default warn)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("node") => {
            init_logging();
            node::main(&args[1..])
        }
        Some("demo") => demo::main(&args[1..]),
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("herd: unknown command `{other}`\n\n{USAGE}");
            ExitCode::from(2)
        }
        None => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Logs to stderr (stdout carries the protocol), at the level in `HERD_LOG`.
fn init_logging() {
    let var = std::env::var("HERD_LOG").ok();
    let level = var
        .as_deref()
        .map(|v| v.trim().parse::<LevelFilter>())
        .transpose();
    let (level, bad) = match level {
        Ok(level) => (level.unwrap_or(LevelFilter::WARN), false),
        Err(_) => (LevelFilter::WARN, true),
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if bad {
        tracing::warn!(HERD_LOG = ?var, "unknown log level; using warn");
    }
}
