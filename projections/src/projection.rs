//! The registry of read models: their names, schemas, DDL, locks, and the dispatch of an event
//! to the model's pure `change` and its SQL (`statement`, or the audit model's `write`).

use anyhow::Context;
use gatehouse_events::{DecodeError, Envelope, Event};
use gatehouse_store::Statement;

use crate::{admins, audit, batch, home_widgets};

/// One read model. Each owns the Postgres schema `proj_<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Projection {
    Admins,
    HomeWidgets,
    Audit,
}

impl Projection {
    pub const ALL: [Projection; 3] = [
        Projection::Admins,
        Projection::HomeWidgets,
        Projection::Audit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Projection::Admins => "admins",
            Projection::HomeWidgets => "home_widgets",
            Projection::Audit => "audit",
        }
    }

    pub fn parse(name: &str) -> Option<Projection> {
        Projection::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The schema the live model is read from.
    pub fn schema(self) -> String {
        format!("proj_{}", self.name())
    }

    /// The schema a rebuild fills before it replaces the live one.
    pub fn next_schema(self) -> String {
        format!("proj_{}_next", self.name())
    }

    pub(crate) fn ddl(self) -> &'static str {
        match self {
            Projection::Admins => admins::DDL,
            Projection::HomeWidgets => home_widgets::DDL,
            Projection::Audit => audit::DDL,
        }
    }

    /// The transaction-scoped advisory lock that serialises writers of the live model: the
    /// runtime takes it per batch (so two processes never apply the same batch twice) and a
    /// rebuild takes it to swap the schemas.
    pub(crate) fn lock_key(self) -> i64 {
        match self {
            Projection::Admins => 7_231_101,
            Projection::HomeWidgets => 7_231_102,
            Projection::Audit => 7_231_103,
        }
    }

    /// Applies a run of consecutive events in the transaction (whose `search_path` names the
    /// model's schema). Database failures are errors (the batch is retried); an unreadable event
    /// is skipped and logged, since retrying could never succeed and would stall every event
    /// after it.
    pub(crate) async fn apply(
        self,
        tx: &deadpool_postgres::Transaction<'_>,
        envelopes: &[Envelope],
    ) -> anyhow::Result<()> {
        let events: Vec<(&Envelope, Event)> = envelopes
            .iter()
            .filter_map(|envelope| Some((envelope, decode(envelope, self.name())?)))
            .collect();
        let events: Vec<(&Envelope, &Event)> = events.iter().map(|(e, ev)| (*e, ev)).collect();
        self.apply_decoded(tx, &events, audit::Insert::Upsert).await
    }

    /// [`Projection::apply`] for events already decoded (the unreadable ones left out): a
    /// rebuild decodes each event once for every model it fills, and copies the audit records
    /// into its shadow (`records` says how the audit model inserts them).
    pub(crate) async fn apply_decoded(
        self,
        tx: &deadpool_postgres::Transaction<'_>,
        events: &[(&Envelope, &Event)],
        records: audit::Insert,
    ) -> anyhow::Result<()> {
        match self {
            // A statement per change, sent pipelined (see `batch::pipeline`).
            Projection::Admins => {
                let statements = self.statements(events, admins::change, admins::statement);
                batch::pipeline(tx, &statements)
                    .await
                    .context("writing to the admins read model")?;
            }
            Projection::HomeWidgets => {
                let statements =
                    self.statements(events, home_widgets::change, home_widgets::statement);
                batch::pipeline(tx, &statements)
                    .await
                    .context("writing to the home_widgets read model")?;
            }
            // The audit model writes a record per event: one set of statements for the run.
            Projection::Audit => {
                let mut changes = Vec::with_capacity(events.len());
                for (envelope, event) in events {
                    match audit::change(envelope, event) {
                        Ok(change) => changes.push(change),
                        Err(e) => self.skip(envelope, &e),
                    }
                }
                audit::write(tx, &changes, records).await?;
            }
        }
        Ok(())
    }

    /// The statements applying the events' changes, in order; an event whose change cannot be
    /// made is skipped (logged).
    fn statements<C>(
        self,
        events: &[(&Envelope, &Event)],
        change: fn(&Envelope, &Event) -> anyhow::Result<Option<C>>,
        statement: fn(&C) -> Statement,
    ) -> Vec<Statement> {
        let mut statements = Vec::with_capacity(events.len());
        for (envelope, event) in events {
            match change(envelope, event) {
                Ok(Some(change)) => statements.push(statement(&change)),
                Ok(None) => {}
                Err(e) => self.skip(envelope, &e),
            }
        }
        statements
    }

    fn skip(self, envelope: &Envelope, error: &anyhow::Error) {
        tracing::error!(projection = self.name(), position = envelope.position, error = %format!("{error:#}"), "skipping an event that cannot be applied");
    }
}

/// The event of an envelope, or `None` (logged, naming `reader`) when this version cannot read
/// it.
pub(crate) fn decode(envelope: &Envelope, reader: &str) -> Option<Event> {
    match envelope.event() {
        Ok(event) => Some(event),
        Err(DecodeError::UnknownType(event_type)) => {
            tracing::debug!(projection = reader, position = envelope.position, %event_type, "skipping an event type this version does not know");
            None
        }
        Err(e @ DecodeError::Malformed { .. }) => {
            tracing::error!(projection = reader, position = envelope.position, error = %e, "skipping an event whose data cannot be read");
            None
        }
    }
}

/// The projections named, all of them when `names` is empty.
pub fn select(names: &[String]) -> anyhow::Result<Vec<Projection>> {
    if names.is_empty() {
        return Ok(Projection::ALL.to_vec());
    }
    let mut selected = Vec::with_capacity(names.len());
    for name in names {
        let Some(projection) = Projection::parse(name) else {
            let valid: Vec<&str> = Projection::ALL.iter().map(|p| p.name()).collect();
            anyhow::bail!(
                "unknown projection {name:?}: choose from {}",
                valid.join(", ")
            );
        };
        if !selected.contains(&projection) {
            selected.push(projection);
        }
    }
    Ok(selected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_schemas_follow_them() {
        for p in Projection::ALL {
            assert_eq!(Projection::parse(p.name()), Some(p));
            assert_eq!(p.schema(), format!("proj_{}", p.name()));
        }
    }

    #[test]
    fn every_projection_has_a_lock_and_a_schema_of_its_own() {
        let locks: std::collections::HashSet<i64> =
            Projection::ALL.iter().map(|p| p.lock_key()).collect();
        let schemas: std::collections::HashSet<String> =
            Projection::ALL.iter().map(|p| p.schema()).collect();
        assert_eq!(locks.len(), Projection::ALL.len());
        assert_eq!(schemas.len(), Projection::ALL.len());
        assert_eq!(Projection::parse("audit"), Some(Projection::Audit));
        assert_eq!(Projection::Audit.schema(), "proj_audit");
    }

    #[test]
    fn an_unknown_name_is_refused_with_the_valid_ones() {
        let err = select(&["admins".into(), "nope".into()]).expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "unknown projection \"nope\": choose from admins, home_widgets, audit"
        );
        assert_eq!(select(&[]).expect("all"), Projection::ALL.to_vec());
    }
}
