//! The nemesis suite: `herd node` processes, each in its own Linux network namespace on a
//! bridge ([`super::netns`]), under partitions, kills, stops, wipes, slow or lossy links and
//! bad input, with a Jepsen-style workload and checker. Shared by the short form
//! (`tests/nemesis.rs`, in `cargo test`, `scale` 1) and the long form
//! (`cargo bench --bench workloads -- nemesis`, larger `scale`).
//!
//! Clients add unique elements (`e<node>-<n>` to the map, `s<node>-<n>` to the set) and count
//! (`incr c 1`) through every reachable node, and remove some elements (through the node that
//! added them, which has seen the add), recording what was acknowledged. The checker reads
//! every live node after every round, and after healing until all is well or
//! [`CONVERGE`] passed, and counts
//! * **lost**: acknowledged adds, not removed, missing on some node (and increments missing
//!   from a counter);
//! * **resurrected**: acknowledged removes whose element is present on some node (and
//!   increments counted twice);
//! * **divergent**: nodes whose state differs from the first node's;
//!
//! and the **stable latency** of each acknowledged add: from its acknowledgement until the
//! first read in which every node (a killed one once it is back) shows it. Its resolution is
//! one round of the workload (a few milliseconds), and it includes the faults: an add made
//! on one side of a split is stable only after the split heals.
//!
//! Needs root and iproute2. Without them [`Cluster::start`] says why and the scenario returns
//! `None`, unless `HERD_NEMESIS_REQUIRED` is set (`.ci/run` sets it), so CI cannot skip the
//! suite silently.

#![allow(dead_code)] // each form uses a subset

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::netns::{Link, Net};
use super::timeline::Timeline;
use super::{Harness, Node, NodeSpec, START, number, strings};

/// Every node listens on this port of its own address.
pub(crate) const PORT: u16 = 7000;
/// How long the cluster may take to converge after the last fault was healed.
pub(crate) const CONVERGE: Duration = Duration::from_secs(45);

/// A scenario: its name, and its run at a scale (1: the short form).
pub(crate) type Scenario = (&'static str, fn(usize) -> Option<Outcome>);

/// Every scenario over the set workload and the products, for both forms.
pub(crate) const SCENARIOS: &[Scenario] = &[
    ("split-kill", split_with_a_kill),
    ("rolling-restart", rolling_restart),
    ("stop-resume", stopped_past_the_timeout),
    ("wipe-rejoin", wiped_node_rejoins),
    ("bad-links", slow_lossy_and_flapping_links),
    ("bad-input", bad_input_under_load),
    ("presence-split", presence_under_a_split),
    ("supervisor-split", supervisor_under_a_split),
    ("registry-split", registry_under_a_split),
    ("agent-split", agent_under_a_split),
];

/// N nodes in a namespaced network, and one namespace more for an intruder. Fields drop in
/// order: the nodes, then their directory, then the network.
pub(crate) struct Cluster {
    pub(crate) nodes: Vec<Node>,
    /// Which nodes answer (not killed, not stopped).
    pub(crate) live: Vec<bool>,
    pub(crate) harness: Harness,
    pub(crate) net: Net,
    durable: bool,
    pub(crate) timeline: Timeline,
}

impl Cluster {
    /// Starts `n` nodes, each seeded with every other, and waits until all are members of all.
    /// `None` (the scenario then returns) when namespaces are unavailable and not required.
    pub(crate) fn start(test: &str, n: usize, durable: bool) -> Option<Cluster> {
        let net = match Net::new(n + 1) {
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
            timeline: Timeline::default(),
        };
        for i in 0..n {
            let spec = cluster.spec(i);
            cluster.nodes.push(cluster.harness.spawn(spec));
        }
        for node in &mut cluster.nodes {
            node.await_members(n - 1);
        }
        // Time starts with the cluster up.
        cluster.timeline = Timeline::default();
        Some(cluster)
    }

    pub(crate) fn name(i: usize) -> String {
        format!("n{i}")
    }

    fn spec(&self, i: usize) -> NodeSpec {
        let name = Self::name(i);
        let spec = if self.durable {
            self.harness.disk_spec(&name)
        } else {
            self.harness.spec(&name)
        };
        let mut spec = spec
            .netns(self.net.ns(i))
            .listen(self.addr(i))
            .sync_interval_ms(50);
        for j in (0..self.live.len()).filter(|&j| j != i) {
            spec = spec.seed(self.addr(j));
        }
        spec
    }

    pub(crate) fn addr(&self, i: usize) -> String {
        format!("{}:{PORT}", self.net.ip(i))
    }

    /// The namespace outside the cluster, for an intruder.
    pub(crate) fn outside(&self) -> usize {
        self.nodes.len()
    }

    pub(crate) fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
        self.live[i] = false;
        self.timeline.open(format!("n{i} killed"));
    }

    /// Starts node `i` again from its data directory (or an empty one after `wipe`).
    pub(crate) fn restart(&mut self, i: usize) {
        let spec = self.spec(i);
        let name = Self::name(i);
        self.nodes[i]
            .process
            .restart_with(spec, START)
            .unwrap_or_else(|e| panic!("restarting {name}: {e}"));
        self.live[i] = true;
        self.timeline.close(&format!("n{i} killed"));
    }

    /// Kills node `i` and deletes its data directory.
    pub(crate) fn wipe(&mut self, i: usize) {
        self.kill(i);
        let dir = self.harness.data_dir(&Self::name(i));
        std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("wiping {dir:?}: {e}"));
        self.timeline.event(format!("n{i} wiped"));
    }

    pub(crate) fn stop(&mut self, i: usize) {
        self.nodes[i].signal("STOP");
        self.live[i] = false;
        self.timeline.open(format!("n{i} stopped"));
    }

    pub(crate) fn resume(&mut self, i: usize) {
        self.nodes[i].signal("CONT");
        self.live[i] = true;
        self.timeline.close(&format!("n{i} stopped"));
    }

    /// Waits until node `at` sees node `of` Down (or Up): proof that a fault took effect.
    pub(crate) fn await_state(&mut self, at: usize, of: usize, up: bool) {
        self.nodes[at].await_state(&Self::name(of), up);
    }

    /// Cuts every link between `left` and `right`, and waits until the first node of each
    /// side reports the first of the other Down: proof the partition took effect.
    pub(crate) fn split(&mut self, left: &[usize], right: &[usize]) {
        self.net.split(left, right);
        self.timeline.open("split");
        self.await_state(left[0], right[0], false);
        self.await_state(right[0], left[0], false);
    }

    pub(crate) fn cut(&mut self, i: usize, j: usize) {
        self.net.cut(i, j);
        self.timeline.open(format!("n{i}-n{j} cut"));
    }

    pub(crate) fn mend(&mut self, i: usize, j: usize) {
        self.net.heal(i, j);
        self.timeline.close(&format!("n{i}-n{j} cut"));
    }

    pub(crate) fn shape(&mut self, i: usize, j: usize, link: Link) {
        self.net.shape(i, j, link);
        self.timeline.open(format!("n{i}-n{j} {link:?}"));
    }

    pub(crate) fn unshape(&mut self, i: usize, j: usize, link: Link) {
        self.net.unshape(i, j);
        self.timeline.close(&format!("n{i}-n{j} {link:?}"));
    }

    /// Heals every link, marks every fault repaired and waits until every live node sees
    /// all the other live nodes as members.
    pub(crate) fn heal(&mut self) {
        self.net.heal_all();
        self.timeline.close_all();
        let others = self.live.iter().filter(|l| **l).count() - 1;
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if self.live[i] {
                node.await_members(others);
            }
        }
    }

    /// What node `i` shows: the map's `e` keys and the set's `s` elements, and counter `c`.
    fn read(&mut self, i: usize) -> Read {
        let node = &mut self.nodes[i];
        let mut shown: BTreeSet<String> = strings(&node.ok("keys e")["keys"]).into_iter().collect();
        shown.extend(strings(&node.ok("smembers s")["members"]));
        let counter = node.ok("counters")["counters"]["c"].as_i64().unwrap_or(0);
        (shown, counter)
    }

    /// Node `i`'s cluster and replica counters.
    pub(crate) fn stats(&mut self, i: usize) -> Value {
        self.nodes[i].stats()
    }
}

/// What one node shows: its elements (map keys and set members) and its counter.
type Read = (BTreeSet<String>, i64);

/// The checker's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Verdict {
    pub(crate) lost: usize,
    pub(crate) resurrected: usize,
    pub(crate) divergent: usize,
}

impl Verdict {
    pub(crate) fn clean(&self) -> bool {
        *self == Verdict::default()
    }
}

/// A scenario's result.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) name: &'static str,
    /// The last verdict: all 0 once converged, else what was still wrong at the deadline.
    pub(crate) verdict: Verdict,
    /// From healing until the first read in which every node showed everything
    /// acknowledged before the healing (the deadline if that never happened).
    pub(crate) converged_after: Duration,
    /// Acknowledged operations.
    pub(crate) ops: usize,
    /// Faults injected.
    pub(crate) faults: usize,
    /// Stable latency of each acknowledged add (empty for the product scenarios).
    pub(crate) stable: Vec<Duration>,
    /// Figures of the scenario's own (bad frames refused, ...): name, value, unit.
    pub(crate) extra: Vec<(&'static str, f64, &'static str)>,
    pub(crate) timeline: Timeline,
}

impl Outcome {
    fn new(name: &'static str, mut cluster: Cluster, verdict: Verdict, ops: usize) -> Self {
        let timeline = std::mem::take(&mut cluster.timeline);
        let converged_after = match (timeline.converged, timeline.healed) {
            (Some(c), Some(h)) => c.saturating_sub(h),
            (Some(c), None) => c,
            _ => CONVERGE,
        };
        Outcome {
            name,
            verdict,
            converged_after,
            ops,
            faults: timeline.faults.len(),
            stable: Vec::new(),
            extra: Vec::new(),
            timeline,
        }
    }

    /// The `q` quantile of the stable latencies (nearest rank), if any.
    pub(crate) fn stable_quantile(&self, q: f64) -> Option<Duration> {
        quantile(&self.stable, q)
    }

    /// One line for a person.
    pub(crate) fn summary(&self) -> String {
        let ms = |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{}", d.as_millis()));
        format!(
            "{}: ops {}, faults {}, lost {}, resurrected {}, divergent {}, converged {} ms after \
             healing, stable latency p50/p99/max {}/{}/{} ms{}",
            self.name,
            self.ops,
            self.faults,
            self.verdict.lost,
            self.verdict.resurrected,
            self.verdict.divergent,
            self.converged_after.as_millis(),
            ms(self.stable_quantile(0.5)),
            ms(self.stable_quantile(0.99)),
            ms(self.stable_quantile(1.0)),
            self.extra
                .iter()
                .map(|(k, v, unit)| format!(", {k} {v} {unit}"))
                .collect::<String>()
        )
    }
}

/// Judges the cluster every `every` until the verdict is clean (then marks the convergence)
/// or [`CONVERGE`] passed; the last verdict. What is still wrong is sampled on the timeline.
fn await_verdict(
    c: &mut Cluster,
    ops: usize,
    every: Duration,
    mut judge: impl FnMut(&mut Cluster) -> Verdict,
) -> Verdict {
    let started = Instant::now();
    loop {
        let verdict = judge(c);
        if verdict.clean() {
            c.timeline.converged = Some(c.timeline.now());
            return verdict;
        }
        if started.elapsed() >= CONVERGE {
            return verdict;
        }
        let wrong = verdict.lost + verdict.resurrected + verdict.divergent;
        c.timeline.sample(ops, wrong);
        std::thread::sleep(every);
    }
}

/// The `q` quantile of `samples` (nearest rank), if any.
fn quantile(samples: &[Duration], q: f64) -> Option<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
    sorted.get(rank).copied()
}

/// What the clients were told, and what the checker has seen of it.
pub(crate) struct Workload {
    /// Acknowledged adds (map and set elements) with their acknowledgement time.
    added: HashMap<String, Duration>,
    removed: BTreeSet<String>,
    /// Acknowledged increments of counter `c`.
    counted: i64,
    /// Of those, the ones acknowledged before the last fault was repaired.
    counted_before_healing: i64,
    /// Per node, its acknowledged adds not yet removed, oldest first: map, then set.
    pending: Vec<(VecDeque<String>, VecDeque<String>)>,
    /// Acknowledged adds, not removed, that some node has not shown yet: which nodes have
    /// (a bit per node).
    unstable: HashMap<String, u64>,
    stable: Vec<Duration>,
    next: usize,
    /// Every how many rounds a node removes its oldest pending elements (0: never).
    remove_every: usize,
    /// Whether rounds also add to the set and count.
    all_types: bool,
    ops: usize,
}

impl Workload {
    /// A workload on `nodes` nodes; `all_types`: the set and the counter as well as the map.
    pub(crate) fn new(nodes: usize, remove_every: usize, all_types: bool) -> Self {
        Workload {
            added: HashMap::new(),
            removed: BTreeSet::new(),
            counted: 0,
            counted_before_healing: 0,
            pending: vec![Default::default(); nodes],
            unstable: HashMap::new(),
            stable: Vec::new(),
            next: 0,
            remove_every,
            all_types,
            ops: 0,
        }
    }

    fn ack_add(&mut self, element: String, at: Duration) {
        self.added.insert(element.clone(), at);
        self.unstable.insert(element, 0);
        self.ops += 1;
    }

    fn ack_remove(&mut self, element: String) {
        self.unstable.remove(&element);
        self.removed.insert(element);
        self.ops += 1;
    }

    /// One round: through every live node an add (to the map, and with `all_types` to the
    /// set and the counter), every `remove_every` rounds a remove of that node's oldest
    /// element(s); then a read of every live node.
    pub(crate) fn round(&mut self, c: &mut Cluster) {
        let n = self.next;
        self.next += 1;
        let remove = self.remove_every > 0 && n % self.remove_every == self.remove_every - 1;
        for i in 0..c.nodes.len() {
            if !c.live[i] {
                continue;
            }
            let element = format!("e{i}-{n}");
            c.nodes[i].put(&element, "1");
            self.ack_add(element.clone(), c.timeline.now());
            self.pending[i].0.push_back(element);
            if self.all_types {
                let element = format!("s{i}-{n}");
                c.nodes[i].ok(&format!("sadd {element}"));
                self.ack_add(element.clone(), c.timeline.now());
                self.pending[i].1.push_back(element);
                c.nodes[i].ok("incr c 1");
                self.counted += 1;
                if c.timeline.healed.is_none() {
                    self.counted_before_healing += 1;
                }
                self.ops += 1;
            }
            if remove {
                if let Some(oldest) = self.pending[i].0.pop_front() {
                    c.nodes[i].del(&oldest);
                    self.ack_remove(oldest);
                }
                if let Some(oldest) = self.pending[i].1.pop_front() {
                    c.nodes[i].ok(&format!("srem {oldest}"));
                    self.ack_remove(oldest);
                }
            }
        }
        self.observe(c);
    }

    pub(crate) fn rounds(&mut self, c: &mut Cluster, n: usize) {
        for _ in 0..n {
            self.round(c);
        }
    }

    /// Waits `wait` without writing, reading every live node every 20 ms (so that the
    /// stable latency is measured during the wait too).
    pub(crate) fn idle(&mut self, c: &mut Cluster, wait: Duration) {
        let until = Instant::now() + wait;
        while Instant::now() < until {
            self.observe(c);
            std::thread::sleep(Duration::from_millis(20).min(until - Instant::now()));
        }
    }

    /// Reads until every acknowledged add is shown by every node, or [`CONVERGE`] passed.
    pub(crate) fn settle(&mut self, c: &mut Cluster) {
        let deadline = Instant::now() + CONVERGE;
        while !self.unstable.is_empty() && Instant::now() < deadline {
            self.observe(c);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Node `i` lost its disk: it has not seen its own adds until they come back from its
    /// peers (so they are no removal candidates), nor anything not yet stable.
    pub(crate) fn wiped(&mut self, i: usize) {
        self.pending[i] = Default::default();
        for seen in self.unstable.values_mut() {
            *seen &= !(1 << i);
        }
    }

    /// Reads every live node, records which unstable adds each shows (and when the cluster
    /// converged after healing), and returns the reads: `(node, (shown, counter))`.
    fn observe(&mut self, c: &mut Cluster) -> Vec<(usize, Read)> {
        let everyone = (1u64 << c.nodes.len()) - 1;
        let mut reads = Vec::new();
        for i in 0..c.nodes.len() {
            if c.live[i] {
                reads.push((i, c.read(i)));
            }
        }
        let now = c.timeline.now();
        for (i, (shown, _)) in &reads {
            for (element, seen) in &mut self.unstable {
                if shown.contains(element) {
                    *seen |= 1 << i;
                }
            }
        }
        let added = &self.added;
        let stable = &mut self.stable;
        self.unstable.retain(|element, seen| {
            if *seen == everyone {
                stable.push(now.saturating_sub(added[element]));
                false
            } else {
                true
            }
        });
        c.timeline.sample(self.ops, self.unstable.len());
        // Converged: the first read after healing in which every node has shown every add
        // acknowledged before the healing (later adds are still on their way, as always).
        if let Some(healed) = c.timeline.healed
            && c.timeline.converged.is_none()
            && reads.len() == c.nodes.len()
            && self.unstable.keys().all(|e| self.added[e] > healed)
            && reads
                .iter()
                .all(|(_, (_, counter))| *counter >= self.counted_before_healing)
        {
            c.timeline.converged = Some(now);
        }
        reads
    }

    /// The checker's counts over `reads` (only the checker needs them: a round reads to
    /// measure the stable latency, and counting every element there made rounds slower as
    /// the run grew).
    fn verdict(&self, reads: &[(usize, Read)]) -> Verdict {
        let mut verdict = Verdict::default();
        let expected = self.added.keys().filter(|e| !self.removed.contains(*e));
        verdict.lost = expected
            .filter(|e| reads.iter().any(|(_, (shown, _))| !shown.contains(*e)))
            .count();
        verdict.resurrected = self
            .removed
            .iter()
            .filter(|e| reads.iter().any(|(_, (shown, _))| shown.contains(*e)))
            .count();
        for (_, (_, counter)) in reads {
            // Increments missing from a node's counter are lost; increments beyond the
            // acknowledged ones were counted twice.
            let (counter, counted) = (*counter, self.counted);
            verdict.lost += usize::try_from(counted - counter).unwrap_or(0);
            verdict.resurrected += usize::try_from(counter - counted).unwrap_or(0);
        }
        if let Some((_, first)) = reads.first() {
            verdict.divergent = reads.iter().filter(|(_, read)| read != first).count();
        }
        verdict
    }

    /// Reads every node until the verdict is clean or [`CONVERGE`] passed since healing.
    pub(crate) fn check(mut self, name: &'static str, mut c: Cluster) -> Outcome {
        assert!(
            c.live.iter().all(|l| *l),
            "{name}: the checker reads every node"
        );
        let started = Instant::now();
        let verdict = loop {
            let reads = self.observe(&mut c);
            let verdict = self.verdict(&reads);
            if verdict.clean() || started.elapsed() >= CONVERGE {
                break verdict;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if !verdict.clean() {
            c.timeline.converged = None;
        }
        let ops = self.ops;
        let mut outcome = Outcome::new(name, c, verdict, ops);
        outcome.stable = self.stable;
        outcome
    }
}

/// Akka's chaos spec shape: 5 nodes split 2|3 with map, set and counter writes on both
/// sides, a node of the larger side SIGKILLed during the split and restarted from its data
/// directory, then healed.
pub(crate) fn split_with_a_kill(scale: usize) -> Option<Outcome> {
    let name = "split-kill";
    let mut c = Cluster::start(name, 5, true)?;
    let mut w = Workload::new(5, 4, true);
    w.rounds(&mut c, 4 * scale);
    c.split(&[0, 1], &[2, 3, 4]);
    w.rounds(&mut c, 8 * scale);
    c.kill(4);
    w.rounds(&mut c, 8 * scale);
    c.restart(4);
    c.await_state(4, 2, true);
    w.rounds(&mut c, 8 * scale);
    c.heal();
    w.rounds(&mut c, 4 * scale);
    Some(w.check(name, c))
}

/// Every node in turn SIGKILLed and restarted from its data directory under a steady write
/// load through the others.
pub(crate) fn rolling_restart(scale: usize) -> Option<Outcome> {
    let name = "rolling-restart";
    let mut c = Cluster::start(name, 3, true)?;
    let mut w = Workload::new(3, 3, true);
    w.rounds(&mut c, 3 * scale);
    for i in 0..3 {
        c.kill(i);
        w.rounds(&mut c, 4 * scale);
        c.restart(i);
        c.nodes[i].await_members(2);
        w.rounds(&mut c, 4 * scale);
    }
    c.timeline.close_all();
    Some(w.check(name, c))
}

/// A node SIGSTOPped for longer than the failure detector's timeout (its peers report it
/// Down) while the others write, and resumed: it is a member again, catches up, and nothing
/// written meanwhile is lost.
pub(crate) fn stopped_past_the_timeout(scale: usize) -> Option<Outcome> {
    let name = "stop-resume";
    let mut c = Cluster::start(name, 3, false)?;
    let mut w = Workload::new(3, 3, false);
    w.rounds(&mut c, 4 * scale);
    let stopped = Instant::now();
    c.stop(2);
    c.await_state(0, 2, false);
    let down = stopped.elapsed();
    w.rounds(&mut c, 10 * scale);
    let resumed = Instant::now();
    c.resume(2);
    c.await_state(0, 2, true);
    let up = resumed.elapsed();
    w.rounds(&mut c, 4 * scale);
    c.timeline.close_all();
    let mut outcome = w.check(name, c);
    let ms = |d: Duration| (d.as_secs_f64() * 1e3).round();
    outcome.extra.push(("stopped_to_down", ms(down), "ms"));
    outcome.extra.push(("resumed_to_up", ms(up), "ms"));
    Some(outcome)
}

/// A node killed, its data directory wiped, started again under the same name: it gets
/// everything back from its peers, and what was written meanwhile arrives everywhere.
pub(crate) fn wiped_node_rejoins(scale: usize) -> Option<Outcome> {
    let name = "wipe-rejoin";
    let mut c = Cluster::start(name, 3, true)?;
    let mut w = Workload::new(3, 0, false);
    for _ in 0..scale {
        w.rounds(&mut c, 6);
        // Its own writes must have reached the others before it loses its disk.
        w.settle(&mut c);
        c.wipe(1);
        w.wiped(1);
        w.rounds(&mut c, 6);
        c.restart(1);
        w.rounds(&mut c, 6);
    }
    c.timeline.close_all();
    Some(w.check(name, c))
}

/// A slow link, a lossy reordering link and a flapping link (cut and mended every 700 ms)
/// during writes.
pub(crate) fn slow_lossy_and_flapping_links(scale: usize) -> Option<Outcome> {
    let name = "bad-links";
    let mut c = Cluster::start(name, 3, false)?;
    let mut w = Workload::new(3, 3, false);
    c.shape(0, 1, Link::Slow);
    c.shape(1, 2, Link::Lossy);
    w.rounds(&mut c, 10);
    for _ in 0..4 * scale {
        c.cut(0, 2);
        w.rounds(&mut c, 2);
        w.idle(&mut c, Duration::from_millis(700));
        c.mend(0, 2);
        w.rounds(&mut c, 2);
        w.idle(&mut c, Duration::from_millis(700));
    }
    let dropped = c.net.drops(1, 2) + c.net.drops(2, 1);
    assert!(
        dropped > 0,
        "{name}: the lossy link lost nothing: the fault did not take"
    );
    c.unshape(0, 1, Link::Slow);
    c.unshape(1, 2, Link::Lossy);
    c.timeline.close_all();
    let mut outcome = w.check(name, c);
    outcome
        .extra
        .push(("frames_dropped", dropped as f64, "frames"));
    Some(outcome)
}

/// Bad input at a live node while the workload runs: a node with the wrong cookie connecting
/// over and over, raw connections sending garbage, an oversized frame announcement and a
/// truncated frame, and an authenticated peer sending malformed sync messages. Each is
/// refused and counted, and the workload's figures are as without them.
pub(crate) fn bad_input_under_load(scale: usize) -> Option<Outcome> {
    let name = "bad-input";
    let mut c = Cluster::start(name, 3, false)?;
    let mut w = Workload::new(3, 3, true);
    // The same workload without bad input first: the figures to compare with.
    w.rounds(&mut c, 4 * scale);
    w.settle(&mut c);
    let quiet = std::mem::take(&mut w.stable);
    let (refused_before, rejected_before) = bad_input_counters(&mut c);
    let peer_faults = ["garbage", "oversized", "future", "unframed"];
    let raw_frames = ["garbage", "oversized", "truncated"];
    // An intruder with the wrong cookie dials n0 over and over (its seed loop redials after
    // each refusal) during the whole workload.
    let intruder = Intruder::start(&mut c);
    let (mut raw, mut injected) = (0, 0);
    for k in 0..4 * scale {
        w.rounds(&mut c, 1);
        let frame = raw_frames[k % raw_frames.len()];
        let mut sender = send_raw(&mut c, frame);
        w.rounds(&mut c, 1);
        while !sender.done() {
            w.idle(&mut c, Duration::from_millis(20));
        }
        raw += 1;
        let fault = peer_faults[k % peer_faults.len()];
        c.nodes[1].ok(&format!("inject n0 {fault}"));
        c.timeline.event(format!("n1 sends n0 {fault} sync"));
        injected += 1;
        w.rounds(&mut c, 1);
    }
    drop(intruder);
    c.timeline.close("intruder with the wrong cookie");
    c.timeline.close_all();
    let (refused_after, rejected_after) = bad_input_counters(&mut c);
    let (refused, rejected) = (
        refused_after - refused_before,
        rejected_after - rejected_before,
    );
    assert!(
        refused > raw,
        "{name}: n0 refused {refused} connections: the intruder's and the {raw} raw ones \
         were not all refused"
    );
    assert!(
        rejected >= injected,
        "{name}: n0 rejected {rejected} malformed messages of the {injected} sent"
    );
    let mut outcome = w.check(name, c);
    for (figure, q) in [("quiet_stable_p50", 0.5), ("quiet_stable_p99", 0.99)] {
        let ms = quantile(&quiet, q).map_or(0.0, |d| d.as_secs_f64() * 1e3);
        outcome.extra.push((figure, ms.round(), "ms"));
    }
    outcome
        .extra
        .push(("connections_refused", refused as f64, "connections"));
    outcome
        .extra
        .push(("malformed_messages_rejected", rejected as f64, "messages"));
    Some(outcome)
}

/// n0's count of connections it refused (before authentication) and of malformed sync
/// messages and frames it rejected.
fn bad_input_counters(c: &mut Cluster) -> (usize, usize) {
    let stats = c.stats(0);
    let sum = |pointers: &[&str]| -> usize {
        pointers
            .iter()
            .map(|p| usize::try_from(number(&stats, p)).unwrap_or(usize::MAX))
            .sum()
    };
    (
        sum(&["/cluster/sessions_refused", "/cluster/closed_before_auth"]),
        sum(&["/replica/rejected_messages", "/replica/frames_rejected"]),
    )
}

/// A `herd node` with the wrong cookie outside the cluster, seeded with n0, running until
/// dropped. Not driven: it only dials.
struct Intruder(std::process::Child);

impl Intruder {
    fn start(c: &mut Cluster) -> Self {
        let outside = c.outside();
        let spec = c
            .harness
            .spec("intruder")
            .netns(c.net.ns(outside))
            .listen(format!("{}:{PORT}", c.net.ip(outside)))
            .cookie("wrong")
            .seed(c.addr(0));
        let child = std::process::Command::new("ip")
            .args(["netns", "exec", &c.net.ns(outside)])
            .arg(env!("CARGO_BIN_EXE_herd"))
            .args(spec.args())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting the intruder");
        c.timeline.open("intruder with the wrong cookie");
        Intruder(child)
    }
}

impl Drop for Intruder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Opens a TCP connection to n0 from outside the cluster and sends `kind`: random bytes,
/// a frame announcing 2^63 bytes, or a frame cut short; then closes it. Runs beside the
/// workload: see [`RawSender::done`].
fn send_raw(c: &mut Cluster, kind: &str) -> RawSender {
    let (ip, port) = (c.net.ip(0), PORT);
    let payload = match kind {
        "garbage" => "head -c 4096 /dev/urandom",
        "oversized" => r"printf '\x7f\xff\xff\xff\xff\xff\xff\xff\x0a\x03abc'",
        _ => r"printf '\x00\x00\x00\x00\x00\x00\x01\x00\x0a\x05herd'",
    };
    let script = format!("exec 3<>/dev/tcp/{ip}/{port} && {payload} >&3; sleep 0.2");
    let ns = c.net.ns(c.outside());
    let child = std::process::Command::new("ip")
        .args(["netns", "exec", &ns, "timeout", "10", "bash", "-c", &script])
        .spawn()
        .expect("running ip netns exec bash");
    c.timeline.event(format!("raw {kind} frame"));
    RawSender {
        child,
        kind: kind.to_owned(),
    }
}

/// A raw connection's sender (see [`send_raw`]).
struct RawSender {
    child: std::process::Child,
    kind: String,
}

impl RawSender {
    /// Whether it sent and closed; panics if it could not connect or send.
    fn done(&mut self) -> bool {
        let status = self.child.try_wait().expect("waiting for the raw sender");
        if let Some(status) = status {
            assert!(status.success(), "sending {} to n0: {status}", self.kind);
        }
        status.is_some()
    }
}

/// Presence under a split with a kill and a restart (Phoenix.Tracker's promises): after
/// healing every node lists exactly the live tracks, each once, from the node that tracks
/// it; nothing of the killed node's first life comes back (no ghosts).
pub(crate) fn presence_under_a_split(scale: usize) -> Option<Outcome> {
    let name = "presence-split";
    let mut c = Cluster::start(name, 3, false)?;
    // key -> the node that tracks it, for what must be listed after healing.
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    let mut ops = 0;
    let mut track =
        |c: &mut Cluster, expected: &mut BTreeMap<String, String>, i: usize, key: String| {
            c.nodes[i].ok(&format!("track room {key}"));
            expected.insert(key, Cluster::name(i));
            ops += 1;
        };
    for i in 0..3 {
        for j in 0..4 * scale {
            track(&mut c, &mut expected, i, format!("p{i}-{j}"));
        }
    }
    c.split(&[0], &[1, 2]);
    for j in 0..2 * scale {
        // Both sides track more and untrack some of their own.
        track(&mut c, &mut expected, 0, format!("p0-split-{j}"));
        track(&mut c, &mut expected, 1, format!("p1-split-{j}"));
        for i in [0, 1] {
            let key = format!("p{i}-{j}");
            c.nodes[i].ok(&format!("untrack room {key}"));
            expected.remove(&key);
        }
    }
    // n2 dies: its tracks must go from every list (n0 does not even see it die).
    c.kill(2);
    expected.retain(|_, node| node != "n2");
    c.restart(2);
    c.nodes[2].await_members(1);
    for j in 0..2 * scale {
        track(&mut c, &mut expected, 2, format!("p2-again-{j}"));
    }
    c.heal();
    let ops = ops + 4 * scale;
    let verdict = await_verdict(&mut c, ops, Duration::from_millis(50), |c| {
        let lists: Vec<BTreeMap<String, Vec<String>>> = (0..3)
            .map(|i| {
                let keys = &c.nodes[i].ok("list room")["keys"];
                serde_json::from_value(keys.clone()).unwrap_or_default()
            })
            .collect();
        let mut verdict = Verdict::default();
        for list in &lists {
            verdict.lost += expected
                .iter()
                .filter(|(key, node)| !list.get(*key).is_some_and(|nodes| nodes.contains(node)))
                .count();
            // Ghosts (a key not tracked any more, or tracked from a node that no longer
            // tracks it) and duplicates.
            verdict.resurrected += list
                .iter()
                .map(|(key, nodes)| {
                    nodes
                        .iter()
                        .filter(|node| expected.get(key) != Some(*node))
                        .count()
                        + nodes.len().saturating_sub(1)
                })
                .sum::<usize>();
        }
        verdict.divergent = lists.iter().filter(|l| **l != lists[0]).count();
        verdict
    });
    let tracked = expected.len();
    let mut outcome = Outcome::new(name, c, verdict, ops);
    outcome
        .extra
        .push(("tracks_listed", tracked as f64, "tracks"));
    Some(outcome)
}

/// The distributed supervisor under a split and a kill: children started before and on
/// both sides of the split, the node of the larger side that runs some of them SIGKILLed;
/// after healing each child runs exactly once (counted by the children themselves), and
/// every node says the same about where.
pub(crate) fn supervisor_under_a_split(scale: usize) -> Option<Outcome> {
    let name = "supervisor-split";
    let mut c = Cluster::start(name, 3, false)?;
    let mut children = Vec::new();
    for j in 0..6 * scale {
        let id = format!("job{j}");
        c.nodes[j % 3].ok(&format!("start-child {id}"));
        children.push(id);
    }
    for id in &children {
        c.nodes[0].wait(&format!("await-child {id} *"));
    }
    c.split(&[0], &[1, 2]);
    for j in 0..2 * scale {
        for i in [0, 1] {
            let id = format!("job-n{i}-split-{j}");
            c.nodes[i].ok(&format!("start-child {id}"));
            children.push(id);
        }
    }
    c.kill(2);
    c.await_state(1, 2, false);
    c.heal();
    let ops = children.len();
    let live = [0, 1];
    let verdict = await_verdict(&mut c, ops, Duration::from_millis(100), |c| {
        // How many copies run, summed over the live nodes, and where each node says.
        let mut copies: BTreeMap<String, usize> = BTreeMap::new();
        let mut views = Vec::new();
        for &i in &live {
            let running = &c.nodes[i].ok("children")["running"];
            if let Some(running) = running.as_object() {
                for (id, n) in running {
                    *copies.entry(id.clone()).or_default() +=
                        usize::try_from(n.as_u64().unwrap_or(0)).unwrap_or(0);
                }
            }
            let view: Vec<Value> = children
                .iter()
                .map(|id| c.nodes[i].ok(&format!("where-child {id}"))["node"].clone())
                .collect();
            views.push(view);
        }
        let mut verdict = Verdict::default();
        for id in &children {
            match copies.get(id).copied().unwrap_or(0) {
                0 => verdict.lost += 1,
                n => verdict.resurrected += n - 1,
            }
        }
        verdict.divergent = views.iter().filter(|v| **v != views[0]).count();
        verdict
    });
    let mut outcome = Outcome::new(name, c, verdict, ops);
    outcome.extra.push(("children", ops as f64, "children"));
    Some(outcome)
}

/// The Registry under a split (Horde #186/#258/#291): names claimed on both sides, and names
/// claimed on one side only. After healing every node shows one holder per name, the same
/// everywhere, a name claimed on one side held by its claimant (the lone node included: it
/// once hid the other side's names for good), calls from every node reach the holder, and the
/// holders stay put.
pub(crate) fn registry_under_a_split(scale: usize) -> Option<Outcome> {
    let name = "registry-split";
    let mut c = Cluster::start(name, 3, false)?;
    c.split(&[0], &[1, 2]);
    // name -> the nodes that claimed it.
    let mut claims: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for k in 0..4 * scale {
        for (i, claimed) in [
            (0, format!("leader{k}")),
            (2, format!("leader{k}")),
            (0, format!("left{k}")),
            (1, format!("right{k}")),
        ] {
            c.nodes[i].ok(&format!("register {claimed}"));
            claims
                .entry(claimed)
                .or_default()
                .push(["n0", "n1", "n2"][i]);
        }
    }
    // Each side sees its own claim.
    c.nodes[0].wait("await-name leader0 n0");
    c.nodes[1].wait("await-name leader0 n2");
    c.heal();
    let ops = claims.values().map(Vec::len).sum();
    let holders = |c: &mut Cluster| -> Vec<BTreeMap<String, Option<String>>> {
        (0..3)
            .map(|i| {
                claims
                    .keys()
                    .map(|n| {
                        let held = c.nodes[i].ok(&format!("whereis {n}"))["node"].clone();
                        (n.clone(), held.as_str().map(str::to_owned))
                    })
                    .collect()
            })
            .collect()
    };
    // Each node's holder of every name, as last read.
    let mut views = Vec::new();
    let verdict = await_verdict(&mut c, ops, Duration::from_millis(50), |c| {
        views = holders(c);
        let mut verdict = Verdict::default();
        for view in &views {
            for (n, held) in view {
                match held {
                    None => verdict.lost += 1,
                    // Held by a node that never claimed it.
                    Some(node) if !claims[n].contains(&node.as_str()) => {
                        verdict.resurrected += 1;
                    }
                    Some(_) => {}
                }
            }
        }
        verdict.divergent = views.iter().filter(|v| **v != views[0]).count();
        verdict
    });
    if !verdict.clean() {
        return Some(Outcome::new(name, c, verdict, ops));
    }
    let agreed = views.swap_remove(0);
    // Calls from every node reach the holder of a contested name.
    for k in 0..scale.min(4) {
        let contested = format!("leader{k}");
        for i in 0..3 {
            let answer = c.nodes[i].ok(&format!("call {contested} hi"));
            assert_eq!(
                answer["node"].as_str(),
                agreed[&contested].as_deref(),
                "{name}: a call from n{i} to {contested} reached {answer}"
            );
        }
    }
    // Still the same holders a little later: no flapping between the claims.
    std::thread::sleep(Duration::from_millis(500));
    let later = holders(&mut c);
    let flapped = later.iter().filter(|v| **v != agreed).count();
    let verdict = Verdict {
        divergent: flapped,
        ..verdict
    };
    Some(Outcome::new(name, c, verdict, ops))
}

/// The Agent under a split: different fields changed on both sides are all kept after
/// healing, and one field changed on both sides has one winner everywhere: the later write by
/// hybrid clock (the nodes share this machine's clock, so the later one in real time).
pub(crate) fn agent_under_a_split(scale: usize) -> Option<Outcome> {
    let name = "agent-split";
    let mut c = Cluster::start(name, 3, false)?;
    c.split(&[0], &[1, 2]);
    // field (a JSON pointer, as `config-set` takes it) -> the value every node must show
    // after healing.
    let mut expected: BTreeMap<String, Value> = BTreeMap::new();
    let mut ops = 0;
    let mut set = |c: &mut Cluster, i: usize, field: &str, value: Value| {
        c.nodes[i].ok(&format!("config-set {field} {value}"));
        expected.insert(field.to_owned(), value);
        ops += 1;
    };
    set(&mut c, 0, "/maintenance", Value::Bool(true));
    for k in 0..4 * scale {
        set(&mut c, 0, &format!("/features/left{k}"), Value::Bool(true));
        set(&mut c, 1, &format!("/features/right{k}"), Value::Bool(true));
    }
    set(&mut c, 0, "/max_conns", Value::from(700));
    // Apart by more than the clocks' resolution, so which write is later is not a tie.
    std::thread::sleep(Duration::from_millis(20));
    set(&mut c, 2, "/max_conns", Value::from(900));
    // The split is real: the right side has not seen the left side's change.
    assert_ne!(
        c.nodes[1].ok("config-get")["config"]["maintenance"],
        Value::Bool(true),
        "{name}: the split did not take"
    );
    c.heal();
    let verdict = await_verdict(&mut c, ops, Duration::from_millis(50), |c| {
        let configs: Vec<Value> = (0..3)
            .map(|i| c.nodes[i].ok("config-get")["config"].clone())
            .collect();
        let mut verdict = Verdict::default();
        for config in &configs {
            verdict.lost += expected
                .iter()
                .filter(|(field, value)| config.pointer(field) != Some(*value))
                .count();
        }
        verdict.divergent = configs.iter().filter(|v| **v != configs[0]).count();
        verdict
    });
    Some(Outcome::new(name, c, verdict, ops))
}
