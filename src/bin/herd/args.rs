//! Command-line arguments of `herd node`, through clap (derive).
//!
//! Every flag can also come from an environment variable (`HERD_*`, shown by `--help`), so a
//! deployment can keep the cookie out of `ps` (`HERD_COOKIE`) and configure a container with
//! its environment alone. A flag on the command line wins over its variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// `herd node`: run one cluster node with a replicated key-value map, a replicated
/// configuration (an Agent) and a registry of named greeter actors; commands on stdin, one
/// JSON answer per line on stdout (type `help`). SIGTERM or end of input shuts it down
/// gracefully: the replica hands over to its neighbours, storage is flushed, and the leave is
/// announced so that peers report the node down at once.
#[derive(Parser, Clone, Debug, PartialEq, Eq)]
#[command(name = "herd node", version)]
pub(crate) struct NodeArgs {
    /// This node's name, unique in the cluster (one word).
    #[arg(long, env = "HERD_NAME", value_parser = parse_name)]
    pub(crate) name: String,

    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "HERD_LISTEN", default_value = "127.0.0.1:0")]
    pub(crate) listen: SocketAddr,

    /// A node to join through (`host:port`); repeat the flag, or separate with commas in the
    /// variable.
    #[arg(long = "seed", env = "HERD_SEEDS", value_delimiter = ',')]
    pub(crate) seeds: Vec<String>,

    /// Keep the key-value map and the configuration on disk in `<dir>/kv.redb` and
    /// `<dir>/config.redb` (default: memory only; registered names are never on disk).
    #[arg(long, env = "HERD_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,

    /// The cluster's shared secret. Prefer the variable: a flag shows in `ps`.
    #[arg(long, env = "HERD_COOKIE", hide_env_values = true)]
    pub(crate) cookie: Option<String>,

    /// How often the replica syncs with its neighbours, in milliseconds.
    #[arg(long = "sync-interval-ms", env = "HERD_SYNC_INTERVAL_MS", value_parser = parse_ms)]
    pub(crate) sync_interval: Option<Duration>,

    /// The largest sync message the replica sends or accepts, in bytes (at least 256;
    /// default 1 MiB).
    #[arg(long, env = "HERD_MAX_SYNC_SIZE", value_parser = parse_sync_size)]
    pub(crate) max_sync_size: Option<usize>,

    /// Acknowledge puts once applied in memory and write them to disk behind.
    #[arg(long, env = "HERD_WRITE_BEHIND")]
    pub(crate) write_behind: bool,

    /// How often a node sends a heartbeat to each peer watching it, in milliseconds (default
    /// 200).
    #[arg(long = "heartbeat-interval-ms", env = "HERD_HEARTBEAT_INTERVAL_MS", value_parser = parse_ms)]
    pub(crate) heartbeat_interval: Option<Duration>,

    /// Silence after which a peer is declared down, in milliseconds (default 1500).
    #[arg(long = "down-after-ms", env = "HERD_DOWN_AFTER_MS", value_parser = parse_ms)]
    pub(crate) down_after: Option<Duration>,

    /// How many peers watch each node for heartbeats (default 3). Every node of a cluster
    /// should use the same value.
    #[arg(long, env = "HERD_MONITORS")]
    pub(crate) monitors: Option<usize>,

    /// How long a graceful shutdown may spend handing data over, in milliseconds (default
    /// 5000).
    #[arg(long = "handover-timeout-ms", env = "HERD_HANDOVER_TIMEOUT_MS", value_parser = parse_ms)]
    pub(crate) handover_timeout: Option<Duration>,

    /// Serve the replicas' counters in Prometheus' text format on this address (any path;
    /// port 0 picks a free port, reported in the ready event as `metrics`). Off by default.
    #[arg(long = "metrics-listen", env = "HERD_METRICS_LISTEN")]
    pub(crate) metrics_listen: Option<SocketAddr>,

    /// Start this many more key-value replicas, `idle-0`, `idle-1`..., that take no commands:
    /// to measure what idle replicas cost a node (the workload runner's `-- scale-nodes`).
    #[arg(
        long = "idle-replicas",
        env = "HERD_IDLE_REPLICAS",
        default_value_t = 0
    )]
    pub(crate) idle_replicas: usize,
}

fn parse_name(v: &str) -> Result<String, String> {
    if v.is_empty() || v.chars().any(char::is_whitespace) {
        return Err(format!("must be one word, got `{v}`"));
    }
    Ok(v.to_owned())
}

fn parse_sync_size(v: &str) -> Result<usize, String> {
    v.parse::<usize>()
        .ok()
        .filter(|&b| b >= 256)
        .ok_or_else(|| format!("takes a number of bytes (at least 256), got `{v}`"))
}

fn parse_ms(v: &str) -> Result<Duration, String> {
    v.parse::<u64>()
        .ok()
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("takes a positive integer (milliseconds), got `{v}`"))
}

/// Parses the arguments after `node`. `Err` carries clap's error, which knows how to print
/// itself (and exits 0 for `--help` and `--version`).
pub(crate) fn parse_node_args(args: &[String]) -> Result<NodeArgs, clap::Error> {
    NodeArgs::try_parse_from(std::iter::once("herd node".to_owned()).chain(args.iter().cloned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parses_all_flags() {
        let parsed = parse_node_args(&args(
            "--name a --listen 127.0.0.1:4000 --seed 127.0.0.1:1 --seed=127.0.0.1:2 \
             --data-dir /tmp/x --cookie secret --sync-interval-ms 20 --write-behind \
             --max-sync-size 65536 --heartbeat-interval-ms 100 --down-after-ms 900 \
             --handover-timeout-ms 50 --idle-replicas 3",
        ))
        .unwrap();
        assert_eq!(
            parsed,
            NodeArgs {
                name: "a".into(),
                listen: "127.0.0.1:4000".parse().unwrap(),
                seeds: vec!["127.0.0.1:1".into(), "127.0.0.1:2".into()],
                data_dir: Some("/tmp/x".into()),
                cookie: Some("secret".into()),
                sync_interval: Some(Duration::from_millis(20)),
                max_sync_size: Some(65536),
                write_behind: true,
                heartbeat_interval: Some(Duration::from_millis(100)),
                down_after: Some(Duration::from_millis(900)),
                monitors: None,
                handover_timeout: Some(Duration::from_millis(50)),
                metrics_listen: None,
                idle_replicas: 3,
            }
        );
    }

    #[test]
    fn defaults() {
        let parsed = parse_node_args(&args("--name=a")).unwrap();
        assert_eq!(parsed.listen, "127.0.0.1:0".parse().unwrap());
        assert!(parsed.seeds.is_empty() && parsed.data_dir.is_none() && !parsed.write_behind);
    }

    #[test]
    fn errors() {
        for bad in [
            "",
            "--listen 127.0.0.1:0",
            "--name",
            "--name a --listen nowhere",
            "--name a --sync-interval-ms 0",
            "--name a --max-sync-size 10",
            "--name a --max-sync-size lots",
            "--name a --bogus",
            "--name a extra",
        ] {
            assert!(parse_node_args(&args(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn help_mentions_the_cookie_variable() {
        let e = parse_node_args(&args("--help")).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
        let help = e.to_string();
        assert!(help.contains("HERD_COOKIE"), "{help}");
        assert!(help.contains("--max-sync-size"), "{help}");
    }
}
