//! The result row, in the shape of the harness's `bench/src/report.rs` (which reads it back),
//! and the statistics it needs.

use serde::Serialize;

/// One scenario: ours against the peer (`ceiling` holds the peer's figure, `ratio` ours ÷ peer).
#[derive(Debug, Clone, Serialize)]
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
    pub fn new(scenario: String, ours: f64, peer: f64, p50_ms: f64, p99_ms: f64) -> Row {
        Row {
            scenario,
            unit: "cmds/s".to_owned(),
            ours: Some(round(ours)),
            ceiling: Some(round(peer)),
            ratio: (peer > 0.0).then(|| round(ours / peer)),
            p50_ms: Some(round(p50_ms)),
            p99_ms: Some(round(p99_ms)),
            peak_rss_mb: None,
        }
    }
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The `q` quantile (0..=1) of `samples` (sorted in place), by the nearest rank.
pub fn quantile(samples: &mut [f64], q: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(f64::total_cmp);
    let rank = ((samples.len() as f64 - 1.0) * q).round() as usize;
    samples[rank.min(samples.len() - 1)]
}

/// The median of `values` (sorted in place): the middle one, or the mean of the middle two.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_three_rounds_is_the_middle_one() {
        assert_eq!(median(&mut [4_100.0, 3_900.0, 4_300.0]), 4_100.0);
        assert_eq!(median(&mut [1.0, 3.0]), 2.0);
    }

    #[test]
    fn the_ratio_is_ours_over_the_peer() {
        let row = Row::new("x".to_owned(), 8_000.0, 4_000.0, 1.0, 2.0);
        assert_eq!(row.ratio, Some(2.0));
        assert_eq!(row.ceiling, Some(4_000.0));
    }
}
