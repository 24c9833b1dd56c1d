//! The Home page's MFA coverage chart: three lines (administrators, MFA required, MFA
//! enrolled) per day, drawn as a server-side SVG with a text alternative.

use gatehouse_projections::query::CoveragePoint;

/// How many days the chart shows, today included.
pub const DAYS: u32 = 30;

/// The drawing area, in SVG user units (the SVG scales to its container).
const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 40.0;
const RIGHT: f64 = 630.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 190.0;

/// One line of the chart.
#[derive(Debug, Clone)]
pub struct Line {
    /// Its CSS class (the colour) and legend entry.
    pub class: &'static str,
    pub label: &'static str,
    /// The `points` attribute of its `<polyline>`.
    pub points: String,
    /// Where its last point is, for a dot on today.
    pub last_x: String,
    pub last_y: String,
}

/// A horizontal grid line with its value.
#[derive(Debug, Clone)]
pub struct Tick {
    pub y: String,
    pub label: i64,
}

/// Everything the template draws.
#[derive(Debug, Clone)]
pub struct Chart {
    pub view_box: String,
    pub left: String,
    pub right: String,
    pub bottom: String,
    pub label_y: String,
    pub lines: Vec<Line>,
    pub ticks: Vec<Tick>,
    pub first_day: String,
    pub last_day: String,
    /// `<desc>`: the trend in words.
    pub description: String,
    /// The caption: today's numbers.
    pub caption: String,
}

fn percent(part: i64, whole: i64) -> i64 {
    if whole == 0 { 0 } else { part * 100 / whole }
}

fn coordinate(v: f64) -> String {
    format!("{v:.1}")
}

impl Chart {
    /// Lays out `points` (one a day, oldest first). An empty series gives an empty chart.
    pub fn new(points: &[CoveragePoint]) -> Chart {
        let y_max = points.iter().map(|p| p.admins).max().unwrap_or(0).max(1);
        let step = if points.len() > 1 {
            (RIGHT - LEFT) / (points.len() - 1) as f64
        } else {
            0.0
        };
        let x = |i: usize| LEFT + step * i as f64;
        let y = |v: i64| BOTTOM - (BOTTOM - TOP) * (v as f64) / (y_max as f64);
        let line = |class, label, value: fn(&CoveragePoint) -> i64| {
            let coordinates: Vec<(f64, f64)> = points
                .iter()
                .enumerate()
                .map(|(i, p)| (x(i), y(value(p))))
                .collect();
            let (last_x, last_y) = coordinates.last().copied().unwrap_or((LEFT, BOTTOM));
            Line {
                class,
                label,
                points: coordinates
                    .iter()
                    .map(|(x, y)| format!("{},{}", coordinate(*x), coordinate(*y)))
                    .collect::<Vec<_>>()
                    .join(" "),
                last_x: coordinate(last_x),
                last_y: coordinate(last_y),
            }
        };
        let lines = vec![
            line("line-admins", "Administrators", |p| p.admins),
            line("line-required", "MFA required", |p| p.mfa_required),
            line("line-enrolled", "MFA enrolled", |p| p.mfa_enrolled),
        ];
        let mut ticks = vec![Tick {
            y: coordinate(y(0)),
            label: 0,
        }];
        if y_max >= 2 {
            ticks.push(Tick {
                y: coordinate(y(y_max / 2)),
                label: y_max / 2,
            });
        }
        ticks.push(Tick {
            y: coordinate(y(y_max)),
            label: y_max,
        });
        let day = |p: Option<&CoveragePoint>| p.map(|p| p.day.format("%b %-d").to_string());
        let (first, last) = (points.first(), points.last());
        let today = last.copied().unwrap_or(CoveragePoint {
            day: chrono::Utc::now().date_naive(),
            admins: 0,
            mfa_required: 0,
            mfa_enrolled: 0,
        });
        let description = match (first, last) {
            (Some(first), Some(last)) => format!(
                "Line chart of the last {} days, from {} to {}. Administrators went from {} to {}; \
                 with MFA required from {} to {}; enrolled in MFA from {} to {}.",
                points.len(),
                first.day,
                last.day,
                first.admins,
                last.admins,
                first.mfa_required,
                last.mfa_required,
                first.mfa_enrolled,
                last.mfa_enrolled,
            ),
            _ => "No history yet.".to_owned(),
        };
        let caption = format!(
            "Today: {} administrators; {} with MFA required ({}%); {} enrolled in MFA ({}%).",
            today.admins,
            today.mfa_required,
            percent(today.mfa_required, today.admins),
            today.mfa_enrolled,
            percent(today.mfa_enrolled, today.admins),
        );
        Chart {
            view_box: format!("0 0 {WIDTH} {HEIGHT}"),
            left: coordinate(LEFT),
            right: coordinate(RIGHT),
            bottom: coordinate(BOTTOM),
            label_y: coordinate(BOTTOM + 20.0),
            lines,
            ticks,
            first_day: day(first).unwrap_or_default(),
            last_day: day(last).unwrap_or_default(),
            description,
            caption,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn point(d: u32, admins: i64, required: i64, enrolled: i64) -> CoveragePoint {
        CoveragePoint {
            day: NaiveDate::from_ymd_opt(2026, 11, d).expect("a day"),
            admins,
            mfa_required: required,
            mfa_enrolled: enrolled,
        }
    }

    #[test]
    fn lines_span_the_width_and_scale_to_the_most_admins() {
        let chart = Chart::new(&[point(1, 2, 1, 0), point(2, 4, 2, 1), point(3, 4, 4, 2)]);
        assert_eq!(chart.lines[0].points, "40.0,101.0 335.0,12.0 630.0,12.0");
        assert_eq!(chart.lines[1].points, "40.0,145.5 335.0,101.0 630.0,12.0");
        assert_eq!(
            chart.ticks.iter().map(|t| t.label).collect::<Vec<_>>(),
            [0, 2, 4]
        );
        assert_eq!(chart.first_day, "Nov 1");
        assert_eq!(chart.last_day, "Nov 3");
        assert_eq!(
            chart.caption,
            "Today: 4 administrators; 4 with MFA required (100%); 2 enrolled in MFA (50%)."
        );
        assert!(chart.description.contains("from 2026-11-01 to 2026-11-03"));
    }

    #[test]
    fn an_empty_organisation_draws_flat_lines_without_dividing_by_zero() {
        let chart = Chart::new(&[point(1, 0, 0, 0), point(2, 0, 0, 0)]);
        assert_eq!(chart.lines[2].points, "40.0,190.0 630.0,190.0");
        assert!(chart.caption.contains("(0%)"));
    }
}
