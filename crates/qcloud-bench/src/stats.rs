//! Percentiles and the result table.

use hdrhistogram::Histogram;
use std::fmt::Write as _;

/// Durations in microseconds; percentiles come back in milliseconds.
pub struct Micros {
    h: Histogram<u64>,
}

impl Default for Micros {
    fn default() -> Self {
        // 1 µs .. 1 h, 3 significant digits.
        Micros { h: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds") }
    }
}

impl Micros {
    pub fn record_ms(&mut self, ms: f64) {
        let us = (ms * 1000.0).round().max(0.0) as u64;
        self.h.saturating_record(us.max(1));
    }

    pub fn len(&self) -> u64 {
        self.h.len()
    }

    pub fn pct_ms(&self, q: f64) -> Option<f64> {
        (!self.h.is_empty()).then(|| self.h.value_at_quantile(q) as f64 / 1000.0)
    }

    pub fn max_ms(&self) -> Option<f64> {
        (!self.h.is_empty()).then(|| self.h.max() as f64 / 1000.0)
    }
}

/// One line of the result table.
#[derive(Default, Clone)]
pub struct Row {
    pub scenario: String,
    pub devices: String,
    pub jobs: u64,
    pub clients: usize,
    pub wall_s: Option<f64>,
    pub jobs_per_s: Option<f64>,
    pub metric: String,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub note: String,
}

impl Row {
    pub fn latency(mut self, h: &Micros) -> Row {
        self.p50_ms = h.pct_ms(0.50);
        self.p99_ms = h.pct_ms(0.99);
        self.max_ms = h.max_ms();
        self
    }
}

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map(|v| format!("{v:.prec$}")).unwrap_or_else(|| "-".into())
}

pub fn table(rows: &[Row]) -> String {
    let header =
        ["scenario", "devices", "jobs", "clients", "wall s", "jobs/s", "metric", "p50 ms", "p99 ms", "max ms", "note"];
    let cells: Vec<[String; 11]> = rows
        .iter()
        .map(|r| {
            [
                r.scenario.clone(),
                r.devices.clone(),
                r.jobs.to_string(),
                r.clients.to_string(),
                opt(r.wall_s, 2),
                opt(r.jobs_per_s, 0),
                r.metric.clone(),
                opt(r.p50_ms, 2),
                opt(r.p99_ms, 2),
                opt(r.max_ms, 2),
                r.note.clone(),
            ]
        })
        .collect();
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for c in &cells {
        for (i, v) in c.iter().enumerate() {
            width[i] = width[i].max(v.len());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, vals: &[String]| {
        let mut s = String::new();
        for (i, v) in vals.iter().enumerate() {
            // Text columns left-aligned, numbers right-aligned; the note is not padded.
            if i == vals.len() - 1 {
                let _ = write!(s, "{v}");
            } else if matches!(i, 0 | 1 | 6) {
                let _ = write!(s, "{v:<w$}  ", w = width[i]);
            } else {
                let _ = write!(s, "{v:>w$}  ", w = width[i]);
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(&mut out, &header.map(String::from));
    line(&mut out, &width.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>());
    for c in &cells {
        line(&mut out, c);
    }
    out
}

impl Micros {
    pub fn merge(&mut self, other: &Micros) {
        let _ = self.h.add(&other.h);
    }
}
