//! The nemesis suite, short form: `herd node` processes, each in its own Linux network
//! namespace on a bridge (tests/support/netns.rs), under partitions, kills, stops, wipes and
//! slow or lossy links, with a Jepsen-style set workload and checker.
//!
//! Clients add unique elements (keys `e<node>-<n>`) through every reachable node and remove
//! some of them (through the node that added them, which has seen the add), recording what was
//! acknowledged. After healing, the checker reads every node and counts
//! * **lost**: acknowledged adds, not removed, missing on some node;
//! * **resurrected**: acknowledged removes whose element is present on some node;
//! * **divergent**: nodes whose set differs from the first node's;
//!
//! and each scenario requires all three to be 0 within a deadline.
//!
//! Needs root and iproute2. Without them each test says why and passes, unless
//! `HERD_NEMESIS_REQUIRED` is set (`.ci/run` sets it), so CI cannot skip the suite silently.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::json;
use support::netns::{Link, Net};
use support::{Harness, Node, START, strings};

/// Every node listens on this port of its own address.
const PORT: u16 = 7000;
/// How long the cluster may take to converge after the last fault was healed.
const CONVERGE: Duration = Duration::from_secs(45);

/// N nodes in a namespaced network. Fields drop in order: the nodes, then their directory,
/// then the network.
struct Cluster {
    nodes: Vec<Node>,
    /// Which nodes take writes (not killed, not stopped).
    live: Vec<bool>,
    harness: Harness,
    net: Net,
    durable: bool,
}

impl Cluster {
    /// Starts `n` nodes, each seeded with every other, and waits until all are members of all.
    /// `None` (the test then returns) when namespaces are unavailable and not required.
    fn start(test: &str, n: usize, durable: bool) -> Option<Cluster> {
        let net = match Net::new(n) {
            Ok(net) => net,
            Err(why) => {
                assert!(
                    std::env::var_os("HERD_NEMESIS_REQUIRED").is_none(),
                    "{test}: network namespaces are required here but unavailable: {why}"
                );
                eprintln!("{test}: NOT RUN: network namespaces unavailable here: {why}");
                return None;
            }
        };
        eprintln!(
            "{test}: network namespaces, links shaped with {:?}",
            net.shaping()
        );
        let mut cluster = Cluster {
            nodes: Vec::new(),
            live: vec![true; n],
            harness: Harness::new(),
            net,
            durable,
        };
        for i in 0..n {
            let spec = cluster.spec(i);
            cluster.nodes.push(cluster.harness.spawn(spec));
        }
        for node in &mut cluster.nodes {
            node.await_members(n - 1);
        }
        Some(cluster)
    }

    fn name(i: usize) -> String {
        format!("n{i}")
    }

    fn spec(&self, i: usize) -> support::NodeSpec {
        let name = Self::name(i);
        let spec = if self.durable {
            self.harness.disk_spec(&name)
        } else {
            self.harness.spec(&name)
        };
        let mut spec = spec
            .netns(self.net.ns(i))
            .listen(format!("{}:{PORT}", self.net.ip(i)))
            .sync_interval_ms(50);
        for j in (0..self.live.len()).filter(|&j| j != i) {
            spec = spec.seed(self.addr(j));
        }
        spec
    }

    fn addr(&self, i: usize) -> String {
        format!("{}:{PORT}", self.net.ip(i))
    }

    fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
        self.live[i] = false;
    }

    /// Starts node `i` again from its data directory (or an empty one after `wipe`).
    fn restart(&mut self, i: usize) {
        let spec = self.spec(i);
        let name = Self::name(i);
        self.nodes[i]
            .process
            .restart_with(spec, START)
            .unwrap_or_else(|e| panic!("restarting {name}: {e}"));
        self.live[i] = true;
    }

    /// Kills node `i` and deletes its data directory.
    fn wipe(&mut self, i: usize) {
        self.kill(i);
        let dir = self.harness.data_dir(&Self::name(i));
        std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("wiping {dir:?}: {e}"));
    }

    fn stop(&mut self, i: usize) {
        self.nodes[i].signal("STOP");
        self.live[i] = false;
    }

    fn resume(&mut self, i: usize) {
        self.nodes[i].signal("CONT");
        self.live[i] = true;
    }

    /// Waits until node `at` sees node `of` Down (or Up): proof that a fault took effect.
    fn await_state(&mut self, at: usize, of: usize, up: bool) {
        self.nodes[at].await_state(&Self::name(of), up);
    }

    /// Cuts every link between `left` and `right`, and waits until the first node of each
    /// side reports the first of the other Down: proof the partition took effect.
    fn split(&mut self, left: &[usize], right: &[usize]) {
        self.net.split(left, right);
        self.await_state(left[0], right[0], false);
        self.await_state(right[0], left[0], false);
    }

    /// Heals every link and waits until every node sees all the others as members.
    fn heal(&mut self) {
        self.net.heal_all();
        let others = self.nodes.len() - 1;
        for node in &mut self.nodes {
            node.await_members(others);
        }
    }

    fn elements(&mut self, i: usize) -> BTreeSet<String> {
        strings(&self.nodes[i].ok("keys e")["keys"])
            .into_iter()
            .collect()
    }
}

/// What the clients were told.
#[derive(Default)]
struct History {
    added: BTreeSet<String>,
    removed: BTreeSet<String>,
    /// Per node, its acknowledged adds not yet removed, oldest first.
    pending: Vec<Vec<String>>,
    next: usize,
    /// Every how many adds a node removes its oldest pending element (0: never).
    remove_every: usize,
}

impl History {
    fn new(nodes: usize, remove_every: usize) -> Self {
        History {
            pending: vec![Vec::new(); nodes],
            remove_every,
            ..Default::default()
        }
    }

    /// One round: an add through every live node, and every `remove_every` rounds a remove of
    /// that node's oldest element.
    fn round(&mut self, cluster: &mut Cluster) {
        let n = self.next;
        self.next += 1;
        for i in 0..cluster.nodes.len() {
            if !cluster.live[i] {
                continue;
            }
            let element = format!("e{i}-{n}");
            cluster.nodes[i].put(&element, "1");
            self.added.insert(element.clone());
            self.pending[i].push(element);
            if self.remove_every > 0 && n % self.remove_every == self.remove_every - 1 {
                let oldest = self.pending[i].remove(0);
                cluster.nodes[i].del(&oldest);
                self.removed.insert(oldest);
            }
        }
    }

    fn rounds(&mut self, cluster: &mut Cluster, n: usize) {
        for _ in 0..n {
            self.round(cluster);
        }
    }

    /// Forgets node `i`'s pending elements as removal candidates (it was wiped: it has not
    /// seen its own adds until they come back from its peers).
    fn forget_pending(&mut self, i: usize) {
        self.pending[i].clear();
    }
}

/// The checker's counts.
#[derive(Debug, PartialEq, Eq)]
struct Verdict {
    lost: usize,
    resurrected: usize,
    divergent: usize,
}

/// Reads every node until lost, resurrected and divergent are all 0, or `CONVERGE` passed;
/// asserts they are, and returns how long it took.
fn check(test: &str, cluster: &mut Cluster, history: &History) -> Duration {
    let started = Instant::now();
    let expected: BTreeSet<&String> = history.added.difference(&history.removed).collect();
    loop {
        let sets: Vec<BTreeSet<String>> = (0..cluster.nodes.len())
            .map(|i| cluster.elements(i))
            .collect();
        let lost = expected
            .iter()
            .filter(|e| sets.iter().any(|s| !s.contains(**e)))
            .count();
        let resurrected = history
            .removed
            .iter()
            .filter(|e| sets.iter().any(|s| s.contains(*e)))
            .count();
        let divergent = sets.iter().filter(|s| **s != sets[0]).count();
        let verdict = Verdict {
            lost,
            resurrected,
            divergent,
        };
        let took = started.elapsed();
        if verdict
            == (Verdict {
                lost: 0,
                resurrected: 0,
                divergent: 0,
            })
        {
            eprintln!(
                "{test}: {} adds, {} removes acknowledged; converged {took:?} after healing; \
                 lost 0, resurrected 0, divergent 0",
                history.added.len(),
                history.removed.len()
            );
            return took;
        }
        assert!(
            took < CONVERGE,
            "{test}: not converged {CONVERGE:?} after healing: {verdict:?} \
             ({} adds, {} removes acknowledged; set sizes {:?})",
            history.added.len(),
            history.removed.len(),
            sets.iter().map(BTreeSet::len).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Akka's chaos spec shape: 5 nodes split 2|3 with writes on both sides, a node of the larger
/// side SIGKILLed during the split and restarted from its data directory, then healed.
#[test]
fn a_split_with_a_kill_on_the_larger_side_loses_nothing() {
    let test = "split 2|3 + kill";
    let Some(mut c) = Cluster::start(test, 5, true) else {
        return;
    };
    let mut h = History::new(5, 4);
    h.rounds(&mut c, 4);
    c.split(&[0, 1], &[2, 3, 4]);
    h.rounds(&mut c, 8);
    c.kill(4);
    h.rounds(&mut c, 8);
    c.restart(4);
    c.await_state(4, 2, true);
    h.rounds(&mut c, 8);
    c.heal();
    h.rounds(&mut c, 4);
    check(test, &mut c, &h);
}

/// A node SIGSTOPped for longer than the failure detector's timeout (its peers report it
/// Down) and resumed: it is a member again and nothing written meanwhile is lost.
#[test]
fn a_node_stopped_past_the_failure_timeout_resumes_and_converges() {
    let test = "SIGSTOP past the timeout";
    let Some(mut c) = Cluster::start(test, 3, false) else {
        return;
    };
    let mut h = History::new(3, 3);
    h.rounds(&mut c, 4);
    c.stop(2);
    c.await_state(0, 2, false);
    h.rounds(&mut c, 10);
    c.resume(2);
    c.await_state(0, 2, true);
    h.rounds(&mut c, 4);
    check(test, &mut c, &h);
}

/// A node killed, its data directory wiped, started again under the same name: it gets
/// everything back from its peers, and what was written meanwhile arrives everywhere.
#[test]
fn a_wiped_node_rejoins_and_loses_nothing() {
    let test = "wiped node rejoins";
    let Some(mut c) = Cluster::start(test, 3, true) else {
        return;
    };
    let mut h = History::new(3, 0);
    h.rounds(&mut c, 6);
    // Its own writes must have reached the others before it loses its disk.
    check(test, &mut c, &h);
    c.wipe(1);
    h.forget_pending(1);
    h.rounds(&mut c, 6);
    c.restart(1);
    h.rounds(&mut c, 6);
    check(test, &mut c, &h);
}

/// A slow link, a lossy link and a flapping link (cut and healed every 700 ms) during writes.
#[test]
fn slow_lossy_and_flapping_links_lose_nothing() {
    let test = "slow, lossy and flapping links";
    let Some(mut c) = Cluster::start(test, 3, false) else {
        return;
    };
    let mut h = History::new(3, 3);
    c.net.shape(0, 1, Link::Slow);
    c.net.shape(1, 2, Link::Lossy);
    h.rounds(&mut c, 10);
    for _ in 0..4 {
        c.net.cut(0, 2);
        h.rounds(&mut c, 2);
        std::thread::sleep(Duration::from_millis(700));
        c.net.heal(0, 2);
        h.rounds(&mut c, 2);
        std::thread::sleep(Duration::from_millis(700));
    }
    let dropped = c.net.drops(1, 2) + c.net.drops(2, 1);
    eprintln!("{test}: the lossy link dropped {dropped} frames");
    assert!(
        dropped > 0,
        "the lossy link lost nothing: the fault did not take"
    );
    c.net.unshape(0, 1);
    c.net.unshape(1, 2);
    check(test, &mut c, &h);
}

/// Horde #186/#258/#291 and issue 12: a name registered on both sides of a split has one
/// winner everywhere after healing, calls from every node reach it, and the names registered
/// on one side only are all kept.
#[test]
fn a_name_registered_on_both_sides_of_a_split_has_one_winner_after_healing() {
    let test = "registry split";
    let Some(mut c) = Cluster::start(test, 3, false) else {
        return;
    };
    c.split(&[0], &[1, 2]);
    c.nodes[0].ok("register leader");
    c.nodes[2].ok("register leader");
    for (i, name) in [(0, "left-only"), (1, "right-only")] {
        c.nodes[i].ok(&format!("register {name}"));
    }
    // Each side sees its own claim.
    c.nodes[0].wait("await-name leader n0");
    c.nodes[1].wait("await-name leader n2");
    c.heal();
    let winner = support::eventually(CONVERGE, "one holder of leader everywhere", || {
        let held: Vec<_> = (0..3)
            .map(|i| c.nodes[i].ok("whereis leader")["node"].clone())
            .collect();
        (held.iter().all(|h| *h == held[0]) && held[0].is_string()).then(|| held[0].clone())
    });
    assert!(winner == json!("n0") || winner == json!("n2"), "{winner}");
    for i in 0..3 {
        let answer = c.nodes[i].ok("call leader hi");
        assert_eq!(answer["node"], winner, "n{i} reached {answer}");
        c.nodes[i].wait("await-name left-only n0");
        if i != 0 {
            // n0 (the minority side) showing the majority side's name is checked by the
            // ignored test below: it failed once in CI and is not understood yet.
            c.nodes[i].wait("await-name right-only n1");
        }
    }
    // Still one holder a little later (no flapping between the two claims).
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..3 {
        assert_eq!(c.nodes[i].ok("whereis leader")["node"], winner);
    }
}

/// The Agent under a split: different fields changed on both sides are all kept after
/// healing, and one field changed on both sides has one winner everywhere: the later write
/// by hybrid clock (the nodes share this machine's clock, so the later one in real time).
#[test]
fn agent_updates_on_both_sides_of_a_split_are_all_kept() {
    let test = "agent split";
    let Some(mut c) = Cluster::start(test, 3, false) else {
        return;
    };
    c.split(&[0], &[1, 2]);
    // Different fields on each side, and one field on both (n2's write is the later one).
    c.nodes[0].ok("config-set maintenance true");
    c.nodes[1].ok("config-set features.left true");
    c.nodes[2].ok("config-set features.right true");
    c.nodes[0].ok("config-set max_conns 700");
    // Apart by more than the clocks' resolution, so which write is later is not a tie.
    std::thread::sleep(Duration::from_millis(20));
    c.nodes[2].ok("config-set max_conns 900");
    // The split is real: the right side has not seen the left side's change.
    assert_ne!(c.nodes[1].ok("config-get")["config"]["maintenance"], true);
    c.heal();
    support::eventually(CONVERGE, "every change, the same everywhere", || {
        let all: Vec<_> = (0..3)
            .map(|i| c.nodes[i].ok("config-get")["config"].clone())
            .collect();
        let want = |v: &serde_json::Value| {
            v["maintenance"] == true
                && v["features"]["left"] == true
                && v["features"]["right"] == true
                && v["max_conns"] == 900
        };
        all.iter().all(want).then_some(())
    });
    eprintln!("{test}: every change kept, max_conns resolved to the later write (900) everywhere");
}

/// Horde #291: after a 1|2 split heals, the lone node shows the names the other side
/// registered during the split. It once failed in `.ci/run`: n0 hid n1's names after the
/// heal, waiting for n1 to confirm its incarnation, which n1 wrote only when it saw a node
/// join — and when both ends dial at once and one of two sessions is closed, one end can see
/// the other leave and return while the other sees nothing. Nodes now answer a peer that
/// announces itself (`registry::tests::names_come_back_when_only_one_side_saw_the_other_leave`
/// is the deterministic form).
#[test]
fn the_lone_node_shows_the_other_sides_names_after_healing() {
    let test = "registry split, lone node";
    let Some(mut c) = Cluster::start(test, 3, false) else {
        return;
    };
    c.split(&[0], &[1, 2]);
    c.nodes[0].ok("register leader");
    c.nodes[2].ok("register leader");
    c.nodes[1].ok("register right-only");
    c.heal();
    for i in 0..3 {
        c.nodes[i].wait("await-name right-only n1");
    }
}
