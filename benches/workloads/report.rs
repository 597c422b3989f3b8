//! The runner's reusable parts: [`Report`] collects figures, prints them as a markdown table
//! and writes each one as a JSON line to `target/workloads/<workload>.jsonl`.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::PathBuf;

/// A workload: its name (what the command-line filter matches) and the function that runs it.
pub(crate) type Workload = (&'static str, fn(&mut Report));

/// One figure of one workload; also the shape of a JSON line (fields in this order).
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Row {
    workload: &'static str,
    metric: String,
    value: f64,
    unit: String,
    limit: Option<f64>,
}

/// Collects the figures of a run. [`Report::begin`] starts a workload (and truncates its
/// JSON-lines file); [`Report::record`] adds a figure to the table and appends it to the file.
pub(crate) struct Report {
    dir: PathBuf,
    current: Option<(&'static str, BufWriter<File>)>,
    rows: Vec<Row>,
}

impl Report {
    /// A report writing its JSON lines under `dir` (created if missing).
    pub(crate) fn new(dir: PathBuf) -> Self {
        Report {
            dir,
            current: None,
            rows: Vec::new(),
        }
    }

    /// `target/workloads`, where `target/` is `CARGO_TARGET_DIR` if set, else
    /// `<CARGO_MANIFEST_DIR>/target`.
    pub(crate) fn default_dir() -> PathBuf {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
        target.join("workloads")
    }

    /// Where the JSON lines go (and anything a workload writes beside them).
    pub(crate) fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Starts `workload`: later [`record`](Report::record)s belong to it, and its file
    /// `<dir>/<workload>.jsonl` is truncated now.
    pub(crate) fn begin(&mut self, workload: &'static str) {
        self.finish();
        fs::create_dir_all(&self.dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", self.dir.display()));
        let path = self.dir.join(format!("{workload}.jsonl"));
        let file =
            File::create(&path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        self.current = Some((workload, BufWriter::new(file)));
    }

    /// Flushes the current workload's file.
    pub(crate) fn finish(&mut self) {
        if let Some((name, mut out)) = self.current.take() {
            out.flush()
                .unwrap_or_else(|e| panic!("cannot write {name}.jsonl: {e}"));
        }
    }

    /// Records one figure of the current workload. `limit` is the physical limit or the
    /// same-run baseline, in the same unit as `value`; `None` if there is none.
    ///
    /// # Panics
    ///
    /// If no workload has been [`begin`](Report::begin)ned, or the file cannot be written.
    pub(crate) fn record(&mut self, metric: &str, value: f64, unit: &str, limit: Option<f64>) {
        let (workload, out) = self
            .current
            .as_mut()
            .expect("Report::record called before Report::begin");
        let row = Row {
            workload,
            metric: metric.to_owned(),
            value,
            unit: unit.to_owned(),
            limit,
        };
        let line = serde_json::to_string(&row).expect("a row is plain data");
        writeln!(out, "{line}").unwrap_or_else(|e| panic!("cannot write {workload}.jsonl: {e}"));
        self.rows.push(row);
    }

    /// The figures recorded so far, as a markdown table.
    pub(crate) fn table(&self) -> String {
        let mut s = String::from(
            "| workload | metric | value | unit | limit/baseline | ratio |\n\
             |---|---|---:|---|---:|---:|\n",
        );
        for r in &self.rows {
            let (limit, ratio) = match r.limit {
                Some(l) => (number(l), format!("{:.2}", r.value / l)),
                None => (String::new(), String::new()),
            };
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                r.workload,
                r.metric,
                number(r.value),
                r.unit,
                limit,
                ratio
            ));
        }
        s
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        // Best effort: a panicking workload still leaves the lines it recorded on disk.
        if let Some((_, out)) = self.current.as_mut() {
            let _ = out.flush();
        }
    }
}

/// Whole numbers and numbers of 1000 or more without decimals, others with at most three.
fn number(v: f64) -> String {
    if v.fract() == 0.0 || v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// Which workloads to run: command-line arguments not starting with `--` are filters (cargo
/// passes `--bench`); a workload runs if its name contains any filter, or if there is none.
pub(crate) fn selected(registry: &[Workload], args: &[String]) -> Vec<Workload> {
    let filters: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with("--"))
        .collect();
    // A filter that names a workload exactly runs that one (`scale`, not `scale-nodes` too);
    // any other runs every workload whose name contains it (`nemesis`, `sync`).
    let exact = |f: &str| registry.iter().any(|(name, _)| *name == f);
    let matches = |name: &str, f: &str| {
        if exact(f) {
            name == f
        } else {
            name.contains(f)
        }
    };
    registry
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| matches(name, f)))
        .copied()
        .collect()
}

/// Runs `f` `runs` times and returns the median wall time of one run.
pub(crate) fn median_time(runs: usize, mut f: impl FnMut()) -> std::time::Duration {
    assert!(runs > 0, "median of zero runs");
    let mut times: Vec<_> = (0..runs)
        .map(|_| {
            let start = std::time::Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort_unstable();
    times[runs / 2]
}
