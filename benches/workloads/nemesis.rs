//! The nemesis suite's long form: the scenarios of `tests/support/nemesis.rs` (real
//! `herd node` processes in Linux network namespaces under partitions, kills, stops, wipes,
//! bad links and bad input, with a Jepsen-style checker) at a larger scale, thousands of
//! operations each. Per scenario, the figures go to `nemesis-<scenario>.jsonl` and a timeline
//! of faults, operations and convergence to `nemesis-<scenario>.svg`, side by side.
//!
//! `HERD_NEMESIS_SCALE` sets the scale (default 8; the short form in `cargo test` is 1).
//! Needs root and iproute2, like the short form.

// The tests' harness as it is: it brings its own copy of the node client, which the runner
// also loads for its other workloads.
#[path = "../../tests/support/mod.rs"]
#[allow(unused_imports, clippy::duplicate_mod)]
mod support;

use support::nemesis::SCENARIOS;

use crate::report::Report;

/// The scale when `HERD_NEMESIS_SCALE` is not set.
const SCALE: usize = 8;

/// Runs scenario `I` of [`SCENARIOS`] and records its figures.
pub(crate) fn run<const I: usize>(r: &mut Report) {
    let (name, scenario) = SCENARIOS[I];
    let scale = std::env::var("HERD_NEMESIS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SCALE);
    let Some(outcome) = scenario(scale) else {
        eprintln!("nemesis-{name}: not run (no network namespaces here)");
        return;
    };
    let v = outcome.verdict;
    // The goal of these three is 0: no baseline to divide by.
    r.record("lost", v.lost as f64, "count", None);
    r.record("resurrected", v.resurrected as f64, "count", None);
    r.record("divergent", v.divergent as f64, "nodes", None);
    r.record("ops", outcome.ops as f64, "acknowledged", None);
    r.record("faults", outcome.faults as f64, "injected", None);
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    for (metric, q) in [
        ("stable_p50", 0.5),
        ("stable_p99", 0.99),
        ("stable_max", 1.0),
    ] {
        if let Some(latency) = outcome.stable_quantile(q) {
            r.record(metric, ms(latency).round(), "ms", None);
        }
    }
    r.record(
        "converged_after_healing",
        ms(outcome.converged_after).round(),
        "ms",
        None,
    );
    for (metric, value, unit) in &outcome.extra {
        r.record(metric, *value, unit, None);
    }
    let summary = outcome.summary();
    let path = r.dir().join(format!("nemesis-{name}.svg"));
    let svg = outcome
        .timeline
        .svg(&format!("nemesis-{name}, scale {scale}"), &summary);
    std::fs::write(&path, svg).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    eprintln!("{summary}\n  timeline: {}", path.display());
    if !v.clean() {
        eprintln!("nemesis-{name}: NOT CONVERGED: {v:?}");
    }
}

/// Panics unless the `nemesis-*` workloads name the scenarios in [`SCENARIOS`]' order (the
/// runner's list says `run::<I>` by index).
pub(crate) fn names_match(workloads: &[crate::report::Workload]) {
    let listed: Vec<&str> = workloads
        .iter()
        .filter_map(|(name, _)| name.strip_prefix("nemesis-"))
        .collect();
    let scenarios: Vec<&str> = SCENARIOS.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        listed, scenarios,
        "the runner's nemesis workloads and SCENARIOS differ"
    );
}
