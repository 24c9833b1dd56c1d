//! One row per measurement, printed as a table and written as `bench-results.json`.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// A measured scenario. `ratio` is `ours / ceiling` for rates (higher is better) and for
/// bounds such as memory (lower is better: at most 1.0 meets the bound); the table says which.
/// `gatehouse-peer-bench` prints one as JSON, read back with `Deserialize`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub scenario: String,
    pub unit: String,
    pub ours: Option<f64>,
    pub ceiling: Option<f64>,
    pub ratio: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub peak_rss_mb: Option<f64>,
}

impl Row {
    pub fn new(scenario: &str, unit: &str) -> Row {
        Row {
            scenario: scenario.to_owned(),
            unit: unit.to_owned(),
            ours: None,
            ceiling: None,
            ratio: None,
            p50_ms: None,
            p99_ms: None,
            peak_rss_mb: None,
        }
    }

    /// Ours against a ceiling, with their ratio.
    pub fn against(mut self, ours: f64, ceiling: f64) -> Row {
        self.ours = Some(round(ours));
        self.ceiling = Some(round(ceiling));
        self.ratio = (ceiling > 0.0).then(|| round(ours / ceiling));
        self
    }

    /// A measurement with no ceiling to set it against.
    pub fn value(mut self, ours: f64) -> Row {
        self.ours = Some(round(ours));
        self
    }

    pub fn latency(mut self, p50_ms: f64, p99_ms: f64) -> Row {
        self.p50_ms = Some(round(p50_ms));
        self.p99_ms = Some(round(p99_ms));
        self
    }

    pub fn rss(mut self, mb: f64) -> Row {
        self.peak_rss_mb = Some(round(mb));
        self
    }
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn cell(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_owned(), |x| format!("{x}"))
}

/// The rows as a Markdown table (docs/benchmarks.md holds the latest one).
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | unit | ours | ceiling | ratio | p50 ms | p99 ms | peak RSS MB |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.scenario,
            r.unit,
            cell(r.ours),
            cell(r.ceiling),
            cell(r.ratio),
            cell(r.p50_ms),
            cell(r.p99_ms),
            cell(r.peak_rss_mb)
        ));
    }
    out
}

/// Writes the rows as a JSON list.
pub fn write(path: &Path, rows: &[Row]) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(rows).context("encoding the results")?;
    std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))
}

/// The `q` quantile (0..=1) of `samples` in milliseconds (sorted in place).
pub fn quantile(samples: &mut [f64], q: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(f64::total_cmp);
    let rank = ((samples.len() as f64 - 1.0) * q).round() as usize;
    samples[rank.min(samples.len() - 1)]
}
