//! Command-line arguments of `herd node`.
//!
//! Parsed by hand: a handful of flags do not earn clap's compile time (and the binary is a
//! test and demo driver, not a product CLI).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `herd node` flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NodeArgs {
    pub(crate) name: String,
    pub(crate) listen: SocketAddr,
    pub(crate) seeds: Vec<String>,
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) cookie: Option<String>,
    pub(crate) sync_interval: Option<Duration>,
    pub(crate) max_sync_size: Option<usize>,
    pub(crate) write_behind: bool,
}

/// Usage of `herd node`.
pub(crate) const NODE_USAGE: &str = "\
herd node --name <name> [--listen <ip:port>] [--seed <ip:port>]... [--data-dir <dir>]
          [--cookie <cookie>] [--sync-interval-ms <ms>] [--max-sync-size <bytes>]
          [--write-behind]

  --name              this node's name, unique in the cluster (required)
  --listen            address to listen on (default 127.0.0.1:0: a free port)
  --seed              a node to join through; repeat for several
  --data-dir          keep the replica on disk in <dir>/kv.redb (default: memory only)
  --cookie            the cluster's shared secret
  --sync-interval-ms  how often the replica syncs with its neighbours
  --max-sync-size     the largest sync message the replica sends or accepts (default 1 MiB)
  --write-behind      acknowledge puts once applied in memory, write them to disk behind";

/// Parses the arguments after `node`.
pub(crate) fn parse_node_args(args: &[String]) -> Result<NodeArgs, String> {
    let mut name = None;
    let mut listen: SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut seeds = Vec::new();
    let mut data_dir = None;
    let mut cookie = None;
    let mut sync_interval = None;
    let mut max_sync_size = None;
    let mut write_behind = false;

    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        // Both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| iter.next().cloned())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag {
            "--name" => {
                let v = value()?;
                if v.is_empty() || v.chars().any(char::is_whitespace) {
                    return Err(format!("--name must be one word, got `{v}`"));
                }
                name = Some(v);
            }
            "--listen" => {
                let v = value()?;
                listen = v
                    .parse()
                    .map_err(|_| format!("--listen takes ip:port, got `{v}`"))?;
            }
            "--seed" => seeds.push(value()?),
            "--data-dir" => data_dir = Some(PathBuf::from(value()?)),
            "--cookie" => cookie = Some(value()?),
            "--sync-interval-ms" => {
                let v = value()?;
                let ms: u64 = v.parse().ok().filter(|&ms| ms > 0).ok_or_else(|| {
                    format!("--sync-interval-ms takes a positive integer, got `{v}`")
                })?;
                sync_interval = Some(Duration::from_millis(ms));
            }
            "--max-sync-size" => {
                let v = value()?;
                let bytes: usize = v.parse().ok().filter(|&b| b >= 256).ok_or_else(|| {
                    format!("--max-sync-size takes a number of bytes (at least 256), got `{v}`")
                })?;
                max_sync_size = Some(bytes);
            }
            "--write-behind" if inline.is_none() => write_behind = true,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(NodeArgs {
        name: name.ok_or("--name is required")?,
        listen,
        seeds,
        data_dir,
        cookie,
        sync_interval,
        max_sync_size,
        write_behind,
    })
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
             --data-dir /tmp/x --cookie secret --sync-interval-ms 20 --max-sync-size 2000 \
             --write-behind",
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
                max_sync_size: Some(2_000),
                write_behind: true,
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
            "--name a --bogus",
            "--name a extra",
        ] {
            assert!(parse_node_args(&args(bad)).is_err(), "{bad}");
        }
    }
}
