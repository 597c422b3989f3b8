//! What happened during a nemesis scenario, in time: the faults (each from injection to
//! repair), the acknowledged operations and how many acknowledged elements were not yet shown
//! by every node; drawn as an SVG for a person to look at.

#![allow(dead_code)] // the short form does not draw

use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// One fault: injected at `from`, repaired at `to` (`None`: still on, or a one-off event).
#[derive(Debug, Clone)]
pub(crate) struct Fault {
    pub(crate) label: String,
    pub(crate) from: Duration,
    pub(crate) to: Option<Duration>,
}

/// One observation of the cluster.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) at: Duration,
    /// Acknowledged operations so far.
    pub(crate) acked: usize,
    /// Acknowledged elements (not removed) some node did not show yet.
    pub(crate) unstable: usize,
}

/// A scenario's record, from its start.
#[derive(Debug)]
pub(crate) struct Timeline {
    start: Instant,
    pub(crate) faults: Vec<Fault>,
    pub(crate) samples: Vec<Sample>,
    /// When the last fault was repaired (the checker's clock starts here).
    pub(crate) healed: Option<Duration>,
    /// When the checker found every node showing the same, expected state.
    pub(crate) converged: Option<Duration>,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline {
            start: Instant::now(),
            faults: Vec::new(),
            samples: Vec::new(),
            healed: None,
            converged: None,
        }
    }
}

impl Timeline {
    pub(crate) fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// A fault starts.
    pub(crate) fn open(&mut self, label: impl Into<String>) {
        let from = self.now();
        self.faults.push(Fault {
            label: label.into(),
            from,
            to: None,
        });
    }

    /// The latest fault labelled `label` that is still on ends.
    pub(crate) fn close(&mut self, label: &str) {
        let now = self.now();
        if let Some(fault) = self
            .faults
            .iter_mut()
            .rev()
            .find(|f| f.label == label && f.to.is_none())
        {
            fault.to = Some(now);
        }
    }

    /// A fault with no duration (a bad frame sent, a connection refused).
    pub(crate) fn event(&mut self, label: impl Into<String>) {
        let at = self.now();
        self.faults.push(Fault {
            label: label.into(),
            from: at,
            to: Some(at),
        });
    }

    /// Every fault still on ends now (healing).
    pub(crate) fn close_all(&mut self) {
        let now = self.now();
        for fault in &mut self.faults {
            fault.to.get_or_insert(now);
        }
        self.healed = Some(now);
    }

    pub(crate) fn sample(&mut self, acked: usize, unstable: usize) {
        let at = self.now();
        self.samples.push(Sample {
            at,
            acked,
            unstable,
        });
    }

    /// The timeline as a standalone SVG: fault lanes on top, then acknowledged operations
    /// (blue) and acknowledged elements not yet everywhere (orange), each scaled to its
    /// maximum, with the healing and convergence marked.
    pub(crate) fn svg(&self, title: &str, subtitle: &str) -> String {
        const WIDTH: f64 = 1000.0;
        const LEFT: f64 = 240.0;
        const RIGHT: f64 = 20.0;
        const LANE: f64 = 16.0;
        const PLOT: f64 = 180.0;
        let end = self
            .samples
            .last()
            .map(|s| s.at)
            .into_iter()
            .chain(self.converged)
            .chain(self.faults.iter().filter_map(|f| f.to))
            .max()
            .unwrap_or_default()
            .as_secs_f64()
            .max(0.001);
        let x = |d: Duration| LEFT + d.as_secs_f64() / end * (WIDTH - LEFT - RIGHT);
        // One lane per distinct label, in order of first appearance.
        let mut lanes: Vec<&str> = Vec::new();
        for fault in &self.faults {
            if !lanes.contains(&fault.label.as_str()) {
                lanes.push(&fault.label);
            }
        }
        let top = 56.0;
        let plot_top = top + LANE * lanes.len() as f64 + 20.0;
        let height = plot_top + PLOT + 56.0;
        let mut svg = String::new();
        let _ = write!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11">"#
        );
        let _ = write!(
            svg,
            r#"<rect width="100%" height="100%" fill="white"/><text x="10" y="20" font-size="14" font-weight="bold">{}</text><text x="10" y="38">{}</text>"#,
            escape(title),
            escape(subtitle)
        );
        for (lane, label) in lanes.iter().enumerate() {
            let y = top + LANE * lane as f64;
            let _ = write!(
                svg,
                r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
                LEFT - 6.0,
                y + 11.0,
                escape(label)
            );
            for fault in self.faults.iter().filter(|f| f.label == *label) {
                let (x0, x1) = (x(fault.from), x(fault.to.unwrap_or(fault.from)));
                let w = (x1 - x0).max(2.0);
                let _ = write!(
                    svg,
                    r##"<rect x="{x0:.1}" y="{:.1}" width="{w:.1}" height="{:.1}" fill="#c0392b" opacity="0.75"/>"##,
                    y + 2.0,
                    LANE - 4.0
                );
            }
        }
        // The plot: frame, two series, marks.
        let _ = write!(
            svg,
            r##"<rect x="{LEFT}" y="{plot_top}" width="{}" height="{PLOT}" fill="none" stroke="#999"/>"##,
            WIDTH - LEFT - RIGHT
        );
        let max_of = |value: fn(&Sample) -> usize| {
            self.samples.iter().map(value).max().unwrap_or(0).max(1) as f64
        };
        let (max_acked, max_unstable) = (max_of(|s| s.acked), max_of(|s| s.unstable));
        for (colour, value, max) in [
            (
                "#2e86c1",
                (|s: &Sample| s.acked) as fn(&Sample) -> usize,
                max_acked,
            ),
            ("#e67e22", |s: &Sample| s.unstable, max_unstable),
        ] {
            let points: Vec<String> = self
                .samples
                .iter()
                .map(|s| {
                    let y = plot_top + PLOT - value(s) as f64 / max * PLOT;
                    format!("{:.1},{y:.1}", x(s.at))
                })
                .collect();
            let _ = write!(
                svg,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
                points.join(" ")
            );
        }
        let _ = write!(
            svg,
            r##"<text x="{}" y="{}" text-anchor="end" fill="#2e86c1">ops acknowledged (max {max_acked})</text><text x="{}" y="{}" text-anchor="end" fill="#e67e22">not yet on every node (max {max_unstable})</text>"##,
            LEFT - 6.0,
            plot_top + 12.0,
            LEFT - 6.0,
            plot_top + 26.0
        );
        for (mark, label, colour, below) in [
            (self.healed, "healed", "#555", 28.0),
            (self.converged, "converged", "#27ae60", 42.0),
        ] {
            if let Some(at) = mark {
                // Near the right edge the label ends at the mark.
                let anchor = if x(at) > WIDTH - 80.0 {
                    "end"
                } else {
                    "middle"
                };
                let _ = write!(
                    svg,
                    r#"<line x1="{0:.1}" x2="{0:.1}" y1="{top}" y2="{1}" stroke="{colour}" stroke-dasharray="4 3"/><text x="{0:.1}" y="{2}" fill="{colour}" text-anchor="{anchor}">{label} {3:.1} s</text>"#,
                    x(at),
                    plot_top + PLOT,
                    plot_top + PLOT + below,
                    at.as_secs_f64()
                );
            }
        }
        // Time axis: about ten ticks.
        let step = nice_step(end / 10.0);
        let mut t = 0.0;
        while t <= end + 1e-9 {
            let tx = x(Duration::from_secs_f64(t));
            let _ = write!(
                svg,
                r##"<line x1="{tx:.1}" x2="{tx:.1}" y1="{0}" y2="{1}" stroke="#999"/><text x="{tx:.1}" y="{2}" text-anchor="middle">{t:.0} s</text>"##,
                plot_top + PLOT,
                plot_top + PLOT + 4.0,
                plot_top + PLOT + 15.0
            );
            t += step;
        }
        svg.push_str("</svg>\n");
        svg
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw` (and at least a second).
fn nice_step(raw: f64) -> f64 {
    let raw = raw.max(1.0);
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * power)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
