//! A real network for the nemesis tests: each node in its own Linux network namespace, all
//! joined by veth pairs to one bridge (itself in a namespace of its own, so the host's network
//! is never touched), with faults applied per link.
//!
//! * **Black hole** (a partition): each side's neighbour entry for the other points at a MAC
//!   address nobody has, so frames leave and are dropped silently, as when a switch port dies:
//!   TCP sees no reset, only silence (the failure detector has to notice). Healing deletes the
//!   entries and ARP finds the real addresses again.
//! * **Slow / lossy link**: `netem` when the kernel has it; otherwise (this is checked, and
//!   [`Net::shaping`] says which ran) an `htb` class per peer with a low rate and a short
//!   `pfifo` queue, which delays by queueing and drops at the tail.
//!
//! Only `ip` and `tc` (iproute2) are needed, and root. [`Net::new`] says why when namespaces
//! are unavailable, so a test can report that it did not run instead of passing silently.

#![allow(dead_code)] // each test uses a subset

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

static NETS: AtomicUsize = AtomicUsize::new(0);

/// How [`Net::shape`] slows a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shaping {
    /// `tc netem` (delay, loss, reordering).
    Netem,
    /// No `netem` in this kernel: `htb` rate limit with a short tail-drop queue.
    Htb,
}

/// A link fault.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Link {
    /// Every frame delayed (netem: 200 ms `delay`; htb: a 64 kbit/s rate, so queueing delay).
    Slow,
    /// Frames lost and reordered (netem: 30% loss, 25% reordering; htb: 32 kbit/s with a
    /// 3-packet queue, so tail drops under load).
    Lossy,
}

/// N namespaces `<prefix>n<i>` with address `10.201.0.<i+1>`, bridged. Deleted when dropped.
pub(crate) struct Net {
    prefix: String,
    n: usize,
    shaping: Shaping,
    /// Nodes whose `eth0` already has the per-peer classes.
    shaped: std::sync::Mutex<std::collections::BTreeSet<usize>>,
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn must(args: &[&str]) {
    if let Err(e) = run(args) {
        panic!("network setup: {e}");
    }
}

impl Net {
    /// Builds the network, or says why it cannot be built here.
    pub(crate) fn new(n: usize) -> Result<Net, String> {
        let prefix = format!(
            "hd{}x{}",
            std::process::id() % 100_000,
            NETS.fetch_add(1, Ordering::Relaxed)
        );
        // Probe: a namespace of our own (root, iproute2, kernel support).
        let bridge = format!("{prefix}br");
        run(&["ip", "netns", "add", &bridge])?;
        let mut net = Net {
            prefix,
            n,
            shaping: Shaping::Htb,
            shaped: Default::default(),
        };
        run(&["ip", "-n", &bridge, "link", "add", "br0", "type", "bridge"])?;
        run(&["ip", "-n", &bridge, "link", "set", "br0", "up"])?;
        for i in 0..n {
            let ns = net.ns(i);
            let (a, b) = (
                format!("{}v{i}a", net.prefix),
                format!("{}v{i}b", net.prefix),
            );
            run(&["ip", "netns", "add", &ns])?;
            run(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b])?;
            run(&["ip", "link", "set", &a, "netns", &ns])?;
            run(&["ip", "link", "set", &b, "netns", &bridge])?;
            run(&["ip", "-n", &ns, "link", "set", &a, "name", "eth0"])?;
            run(&["ip", "-n", &bridge, "link", "set", &b, "master", "br0"])?;
            run(&["ip", "-n", &bridge, "link", "set", &b, "up"])?;
            let addr = format!("{}/24", net.ip(i));
            run(&["ip", "-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            run(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
            run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
        }
        let probe = net.ns(0);
        let shaping = match run(&[
            "ip", "netns", "exec", &probe, "tc", "qdisc", "add", "dev", "lo", "root", "netem",
            "delay", "1ms",
        ]) {
            Ok(()) => {
                let _ = run(&[
                    "ip", "netns", "exec", &probe, "tc", "qdisc", "del", "dev", "lo", "root",
                ]);
                Shaping::Netem
            }
            Err(_) => Shaping::Htb,
        };
        net.shaping = shaping;
        Ok(net)
    }

    /// Node `i`'s namespace.
    pub(crate) fn ns(&self, i: usize) -> String {
        format!("{}n{i}", self.prefix)
    }

    /// Node `i`'s address.
    pub(crate) fn ip(&self, i: usize) -> String {
        format!("10.201.0.{}", i + 1)
    }

    /// How links are slowed here.
    pub(crate) fn shaping(&self) -> Shaping {
        self.shaping
    }

    /// Drops every frame between `i` and `j`, both ways, silently.
    pub(crate) fn cut(&self, i: usize, j: usize) {
        for (from, to) in [(i, j), (j, i)] {
            let (ns, ip) = (self.ns(from), self.ip(to));
            let mac = format!("02:00:00:de:ad:{to:02x}");
            must(&[
                "ip",
                "-n",
                &ns,
                "neigh",
                "replace",
                &ip,
                "lladdr",
                &mac,
                "nud",
                "permanent",
                "dev",
                "eth0",
            ]);
        }
    }

    /// Undoes [`cut`](Self::cut) between `i` and `j`.
    pub(crate) fn heal(&self, i: usize, j: usize) {
        for (from, to) in [(i, j), (j, i)] {
            // Absent when the link was not cut: fine.
            let _ = run(&[
                "ip",
                "-n",
                &self.ns(from),
                "neigh",
                "del",
                &self.ip(to),
                "dev",
                "eth0",
            ]);
        }
    }

    /// Cuts every link between a node of `left` and a node of `right`.
    pub(crate) fn split(&self, left: &[usize], right: &[usize]) {
        for &i in left {
            for &j in right {
                self.cut(i, j);
            }
        }
    }

    /// Heals every link.
    pub(crate) fn heal_all(&self) {
        for i in 0..self.n {
            for j in i + 1..self.n {
                self.heal(i, j);
            }
        }
    }

    /// Slows or makes lossy the link between `i` and `j`, both ways.
    pub(crate) fn shape(&self, i: usize, j: usize, link: Link) {
        for (from, to) in [(i, j), (j, i)] {
            self.shape_one(from, to, Some(link));
        }
    }

    /// Undoes [`shape`](Self::shape) between `i` and `j`.
    pub(crate) fn unshape(&self, i: usize, j: usize) {
        for (from, to) in [(i, j), (j, i)] {
            self.shape_one(from, to, None);
        }
    }

    /// Frames dropped so far on the shaped link from `from` to `to` (its leaf queue's count).
    pub(crate) fn drops(&self, from: usize, to: usize) -> u64 {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns(from),
                "tc",
                "-s",
                "qdisc",
                "show",
                "dev",
                "eth0",
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        // "qdisc pfifo 102: parent 1:12 limit 3p\n Sent 1234 bytes 20 pkt (dropped 5, ..."
        let leaf = format!(" {}: parent", 100 + to);
        out.split("qdisc ")
            .find(|block| block.contains(&leaf))
            .and_then(|block| block.split("dropped ").nth(1))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    fn shape_one(&self, from: usize, to: usize, link: Option<Link>) {
        let ns = self.ns(from);
        let tc = |args: &[&str]| {
            let mut all = vec!["ip", "netns", "exec", &ns, "tc"];
            all.extend_from_slice(args);
            must(&all);
        };
        let class = format!("1:{}", 10 + to);
        let leaf = format!("{}:", 100 + to);
        let first = self
            .shaped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(from);
        if first {
            // Every peer its own class (so one link is shaped, not the node's whole traffic);
            // unshaped classes run at 10 Gbit/s.
            tc(&[
                "qdisc", "add", "dev", "eth0", "root", "handle", "1:", "htb", "default", "1",
            ]);
            tc(&[
                "class", "add", "dev", "eth0", "parent", "1:", "classid", "1:1", "htb", "rate",
                "10gbit",
            ]);
            for peer in (0..self.n).filter(|&p| p != from) {
                let (class, leaf, dst) = (
                    format!("1:{}", 10 + peer),
                    format!("{}:", 100 + peer),
                    format!("{}/32", self.ip(peer)),
                );
                tc(&[
                    "class", "add", "dev", "eth0", "parent", "1:", "classid", &class, "htb",
                    "rate", "10gbit",
                ]);
                tc(&[
                    "qdisc", "add", "dev", "eth0", "parent", &class, "handle", &leaf, "pfifo",
                    "limit", "1000",
                ]);
                tc(&[
                    "filter", "add", "dev", "eth0", "parent", "1:", "protocol", "ip", "prio", "1",
                    "u32", "match", "ip", "dst", &dst, "flowid", &class,
                ]);
            }
        }
        let (rate, leaf_args): (&str, Vec<&str>) = match (self.shaping, link) {
            (_, None) => ("10gbit", vec!["pfifo", "limit", "1000"]),
            (Shaping::Netem, Some(Link::Slow)) => ("10gbit", vec!["netem", "delay", "200ms"]),
            (Shaping::Netem, Some(Link::Lossy)) => (
                "10gbit",
                vec!["netem", "delay", "5ms", "loss", "30%", "reorder", "25%"],
            ),
            (Shaping::Htb, Some(Link::Slow)) => ("64kbit", vec!["pfifo", "limit", "1000"]),
            (Shaping::Htb, Some(Link::Lossy)) => ("32kbit", vec!["pfifo", "limit", "3"]),
        };
        tc(&[
            "class", "change", "dev", "eth0", "parent", "1:", "classid", &class, "htb", "rate",
            rate, "ceil", rate,
        ]);
        let mut replace = vec![
            "qdisc", "replace", "dev", "eth0", "parent", &class, "handle", &leaf,
        ];
        replace.extend(leaf_args);
        tc(&replace);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 0..self.n {
            let _ = run(&["ip", "netns", "del", &self.ns(i)]);
        }
        let _ = run(&["ip", "netns", "del", &format!("{}br", self.prefix)]);
    }
}
