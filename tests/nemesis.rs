//! The nemesis suite, short form: the scenarios of `tests/support/nemesis.rs` at scale 1
//! (real `herd node` processes, each in its own Linux network namespace, under partitions,
//! kills, stops, wipes, slow or lossy links and bad input, with a Jepsen-style checker), and
//! the registry and Agent under a split. The long form runs the same scenarios at a larger
//! scale: `cargo bench --bench workloads -- nemesis`.
//!
//! `HERD_NEMESIS_SVG=<dir>` writes each scenario's timeline there as `<scenario>.svg`.
//!
//! Needs root and iproute2. Without them each test says why and passes, unless
//! `HERD_NEMESIS_REQUIRED` is set (`.ci/run` sets it), so CI cannot skip the suite silently.

mod support;

use support::nemesis::{self, CONVERGE, Outcome};

/// Runs a scenario at scale 1 and requires lost, resurrected and divergent all 0.
fn short(scenario: fn(usize) -> Option<Outcome>) {
    let Some(outcome) = scenario(1) else {
        return;
    };
    eprintln!("{}", outcome.summary());
    if let Some(dir) = std::env::var_os("HERD_NEMESIS_SVG") {
        let path = std::path::Path::new(&dir).join(format!("{}.svg", outcome.name));
        let svg = outcome.timeline.svg(outcome.name, &outcome.summary());
        std::fs::write(&path, svg).unwrap_or_else(|e| panic!("writing {path:?}: {e}"));
    }
    assert!(
        outcome.verdict.clean(),
        "{}: not converged {CONVERGE:?} after healing: {:?}",
        outcome.name,
        outcome.verdict
    );
}

/// Akka's chaos spec shape: 5 nodes split 2|3 with map, set and counter writes on both sides,
/// a node of the larger side SIGKILLed during the split and restarted from disk, then healed.
#[test]
fn a_split_with_a_kill_on_the_larger_side_loses_nothing() {
    short(nemesis::split_with_a_kill);
}

/// Every node in turn SIGKILLed and restarted from its data directory under steady writes.
#[test]
fn a_rolling_kill_and_restart_of_every_node_loses_nothing() {
    short(nemesis::rolling_restart);
}

/// A node SIGSTOPped past the failure detector's timeout, then resumed.
#[test]
fn a_node_stopped_past_the_failure_timeout_resumes_and_converges() {
    short(nemesis::stopped_past_the_timeout);
}

/// A node killed, its data wiped, started again under the same name.
#[test]
fn a_wiped_node_rejoins_and_loses_nothing() {
    short(nemesis::wiped_node_rejoins);
}

/// A 200 ms link, a 30% lossy reordering link and a flapping link during writes.
#[test]
fn slow_lossy_and_flapping_links_lose_nothing() {
    short(nemesis::slow_lossy_and_flapping_links);
}

/// A wrong-cookie node dialling over and over, raw garbage, oversized and truncated frames,
/// and malformed sync messages from a peer, during writes: refused, counted, nothing lost.
#[test]
fn bad_input_under_load_is_refused_and_loses_nothing() {
    short(nemesis::bad_input_under_load);
}

/// Presence under a split, a kill and a restart: no ghosts, no duplicates, nothing lost.
#[test]
fn presence_after_a_split_lists_each_live_track_once() {
    short(nemesis::presence_under_a_split);
}

/// The distributed supervisor under a split and a kill: each child runs exactly once.
#[test]
fn supervised_children_run_exactly_once_after_a_split_and_a_kill() {
    short(nemesis::supervisor_under_a_split);
}

/// The Registry under a split: one holder per name everywhere after healing, calls reach it,
/// no flapping, names claimed on one side kept (on the lone node too).
#[test]
fn names_registered_on_both_sides_of_a_split_have_one_holder_after_healing() {
    short(nemesis::registry_under_a_split);
}

/// The Agent under a split: fields changed on both sides all kept, one field changed on both
/// sides resolved to the later write everywhere.
#[test]
fn agent_updates_on_both_sides_of_a_split_are_all_kept() {
    short(nemesis::agent_under_a_split);
}
