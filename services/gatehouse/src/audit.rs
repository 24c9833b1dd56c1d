//! `gatehouse audit export` and `gatehouse audit verify`.
//!
//! They run as the operator, straight against the database (and, for `verify --file`, against
//! an export alone): unlike the API's audit routes, they are not recorded as an administrator's
//! access to the history.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use chrono::{DateTime, TimeDelta, Utc};
use clap::{Subcommand, ValueEnum};
use gatehouse_events::verify::{Report, Start, verify_export};
use gatehouse_projections::audit_query;
use gatehouse_store::Db;
use gatehouse_store::audit::TimeRange;
use uuid::Uuid;

use crate::Config;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Writes the organisation's history to stdout, in position order.
    Export {
        /// The organisation's id.
        #[arg(long)]
        org: Uuid,
        /// `ndjson`: `{"chain", "event"}` lines; `csv`: one row per AuditRecord (needs the
        /// audit read model, kept by the projections role).
        #[arg(long, value_enum, default_value_t = Format::Ndjson)]
        format: Format,
        /// Only events that occurred at or before this RFC 3339 time.
        #[arg(long, value_parser = parse_time)]
        until: Option<DateTime<Utc>>,
        /// Only events that occurred at or after this RFC 3339 time.
        #[arg(long, value_parser = parse_time)]
        start_time: Option<DateTime<Utc>>,
        /// Only events that occurred before this RFC 3339 time.
        #[arg(long, value_parser = parse_time)]
        end_time: Option<DateTime<Utc>>,
    },
    /// Checks the hash chain: against the database (`--org`) or offline against an NDJSON
    /// export (`--file`, `-` for stdin). Exits 1 when it does not verify.
    Verify {
        /// Recompute the organisation's chain from the stored events.
        #[arg(long, required_unless_present = "file", conflicts_with = "file")]
        org: Option<Uuid>,
        /// An NDJSON export (`-` reads stdin); needs no database.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Require the export to begin at the organisation's first event (by default an export
        /// that starts later is anchored at its first line, and the report says so).
        #[arg(long, requires = "file")]
        from_genesis: bool,
        /// Print the report as one JSON object instead of a line of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Ndjson,
    Csv,
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("{s:?} is not an RFC 3339 time such as 2026-11-28T10:00:00Z"))
}

/// Runs the command; answers whether it succeeded (false: the chain does not verify).
pub async fn run(config: &Config, command: AuditCommand) -> anyhow::Result<bool> {
    match command {
        AuditCommand::Export {
            org,
            format,
            until,
            start_time,
            end_time,
        } => {
            let range = range(start_time, end_time, until)?;
            let db = Db::connect(&config.db_config()).await?;
            export(&db, org, format, range).await?;
            Ok(true)
        }
        AuditCommand::Verify {
            org: Some(org),
            json,
            ..
        } => {
            let db = Db::connect(&config.db_config()).await?;
            let report = db.verify_org(org).await?;
            if report.events == 0 {
                bail!("organisation {org} has no events in this database: is the id right?");
            }
            print_report(&report, json)
        }
        AuditCommand::Verify {
            file: Some(file),
            from_genesis,
            json,
            ..
        } => {
            let start = if from_genesis {
                Start::Genesis
            } else {
                Start::Auto
            };
            let report = tokio::task::spawn_blocking(move || verify_file(&file, start))
                .await
                .context("verifying the export")??;
            print_report(&report, json)
        }
        AuditCommand::Verify { .. } => bail!("give --org ID or --file F"),
    }
}

/// `--until T` keeps the events at or before T. Event times are milliseconds (the envelope's
/// `time`), so as an exclusive `end` it is the millisecond after T's.
fn range(
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> anyhow::Result<TimeRange> {
    let until = until.map(|t| {
        let millis = t.timestamp_subsec_nanos() % 1_000_000;
        t - TimeDelta::nanoseconds(i64::from(millis)) + TimeDelta::milliseconds(1)
    });
    let end = match (end, until) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    if let (Some(start), Some(end)) = (start, end)
        && start > end
    {
        bail!("--start-time must not be after --end-time or --until");
    }
    Ok(TimeRange { start, end })
}

async fn export(db: &Db, org: Uuid, format: Format, range: TimeRange) -> anyhow::Result<()> {
    let mut cursor = db.history(org, range).await?;
    if cursor.until_position() == 0 {
        bail!("organisation {org} has no events in this database: is the id right?");
    }
    let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout());
    match format {
        Format::Ndjson => {
            let mut buf = Vec::with_capacity(1 << 20);
            loop {
                let batch = cursor.next_batch().await?;
                if batch.is_empty() {
                    break;
                }
                buf.clear();
                for row in &batch {
                    row.write_ndjson(&mut buf)?;
                }
                out.write_all(&buf).context("writing the export")?;
            }
        }
        Format::Csv => {
            audit_query::for_each_csv_chunk(
                db.clone(),
                org,
                range.start,
                range.end,
                cursor.until_position(),
                |chunk| {
                    out.write_all(chunk.as_bytes())
                        .context("writing the export")
                },
            )
            .await
            .context(
                "the CSV export reads the audit read model, which the projections role keeps \
                 (`gatehouse serve`) or `gatehouse projections rebuild` builds",
            )?;
        }
    }
    out.flush().context("writing the export")?;
    Ok(())
}

fn verify_file(file: &PathBuf, start: Start) -> anyhow::Result<Report> {
    let input: Box<dyn BufRead> = if file.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
        Box::new(BufReader::with_capacity(1 << 16, f))
    };
    verify_export(input, start).with_context(|| format!("reading {}", file.display()))
}

fn print_report(report: &Report, json: bool) -> anyhow::Result<bool> {
    if json {
        println!(
            "{}",
            serde_json::to_string(report).context("encoding the report")?
        );
    } else {
        println!("{}", report.summary());
    }
    Ok(report.verified)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_keeps_the_events_at_that_instant_and_narrows_end_time() {
        let t = parse_time("2026-01-01T00:00:00Z").expect("a time");
        let later = parse_time("2026-02-01T00:00:00Z").expect("a time");
        let r = range(None, Some(later), Some(t)).expect("valid");
        assert_eq!(r.end, Some(t + TimeDelta::milliseconds(1)));
        let within = parse_time("2026-01-01T00:00:00.123456Z").expect("a time");
        let r = range(None, None, Some(within)).expect("valid");
        assert_eq!(r.end, parse_time("2026-01-01T00:00:00.124Z").ok());
        assert!(range(Some(later), None, Some(t)).is_err());
        assert!(parse_time("yesterday").is_err());
    }
}
