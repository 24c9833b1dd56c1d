//! The state at a past instant, folded from the event store: the Admins Without MFA Required list
//! as of T and the daily MFA coverage series (SPEC §5 "Replay and as-of"). The read models keep
//! no history, so these read the events themselves.
//!
//! **Which events.** The history as of T is every event of the organisation whose time is at or
//! before T, to the millisecond of its envelope (`time`), applied in time order (position breaks
//! ties). Each answer is then a prefix of one sequence, so a coverage point at the end of a day
//! equals the as-of answer at that instant.
//!
//! **Fast on long histories.** Only the events that change an Admin object are read ([`STATE_CHANGING`],
//! any version), through the partial index `events_state_by_org_time` of
//! `migrations/V5__history.sql`: logins, the bulk of a history, are never touched.
//!
//! **One fold.** [`Replay`] applies events exactly as the `admins` read model does
//! ([`crate::admins`]): the as-of route, the coverage route and the Home chart all use it.

use std::collections::BTreeMap;

use anyhow::Context;
use chrono::{DateTime, Days, NaiveDate, TimeDelta, TimeZone, Utc};
use futures::TryStreamExt;
use gatehouse_events::{Envelope, Event, RequirementSource};
use gatehouse_store::Db;
use tokio_postgres::types::{Json, ToSql};
use uuid::Uuid;

use crate::query::AdminView;

/// The SQL predicate selecting the events that change an Admin object, whatever their version.
/// `migrations/V5__history.sql` indexes exactly these rows: the text must stay identical for
/// the planner to use that index. Global MFA on/off is absent on purpose: turning it on also
/// records `mfa_required` for every admin, turning it off changes no admin.
pub const STATE_CHANGING: &str = "event_type LIKE ANY (ARRAY[
        'gatehouse.admin.created.v%',
        'gatehouse.admin.removed.v%',
        'gatehouse.admin.mfa_required.v%',
        'gatehouse.admin.mfa_requirement_removed.v%',
        'gatehouse.admin.mfa_enrollment_completed.v%',
        'gatehouse.admin.mfa_locked.v%'
    ])";

/// At most this many days in one coverage series (ten years).
pub const MAX_DAYS: u32 = 3660;

/// How many admins there are, and of them how many are required and enrolled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub admins: i64,
    pub mfa_required: i64,
    pub mfa_enrolled: i64,
}

impl Counts {
    fn of(admin: &AdminView) -> Counts {
        Counts {
            admins: 1,
            mfa_required: i64::from(admin.mfa_required),
            mfa_enrolled: i64::from(admin.enrolled),
        }
    }

    fn add(&mut self, other: Counts, sign: i64) {
        self.admins += sign * other.admins;
        self.mfa_required += sign * other.mfa_required;
        self.mfa_enrolled += sign * other.mfa_enrolled;
    }
}

/// An organisation's admins as the events so far make them, with their counts kept in step.
#[derive(Debug, Clone)]
pub struct Replay {
    org: Uuid,
    /// Ordered by id: the widget's order (UUID v7, so creation order).
    admins: BTreeMap<Uuid, AdminView>,
    counts: Counts,
}

impl Replay {
    pub fn new(org: Uuid) -> Replay {
        Replay {
            org,
            admins: BTreeMap::new(),
            counts: Counts::default(),
        }
    }

    /// Applies one stored event (decoded with upcasting); events that change no admin are
    /// ignored, as are events about admins that do not exist (as in the read model).
    pub fn apply(&mut self, envelope: &Envelope) -> anyhow::Result<()> {
        let event = envelope
            .event()
            .with_context(|| format!("decoding the stored {}", envelope.event_type))?;
        let at = envelope.occurred_at().with_context(|| {
            format!(
                "envelope {} has an unreadable time {:?}",
                envelope.id, envelope.time
            )
        })?;
        self.apply_event(at, &event);
        Ok(())
    }

    /// Applies one event that happened at `at` (the creation time of a created admin).
    pub fn apply_event(&mut self, at: DateTime<Utc>, event: &Event) {
        if let Event::AdminCreated(e) = event {
            if self.admins.contains_key(&e.admin_id) {
                return;
            }
            let admin = AdminView {
                id: e.admin_id,
                org_id: self.org,
                email: e.email.clone(),
                first_name: e.first_name.clone(),
                last_name: e.last_name.clone(),
                role: e.role.as_str().to_owned(),
                created_at: at,
                mfa_required: e.mfa_required,
                requirement_source: e
                    .mfa_required
                    .then(|| RequirementSource::Default.as_str().to_owned()),
                enrolled: false,
                locked: false,
            };
            self.counts.add(Counts::of(&admin), 1);
            self.admins.insert(admin.id, admin);
            return;
        }
        let id = match event {
            Event::AdminRemoved(e) => e.admin_id,
            Event::MfaRequired(e) => e.admin_id,
            Event::MfaRequirementRemoved(e) => e.admin_id,
            Event::MfaEnrollmentCompleted(e) => e.admin_id,
            Event::MfaLocked(e) => e.admin_id,
            _ => return,
        };
        let Some(admin) = self.admins.get_mut(&id) else {
            return;
        };
        self.counts.add(Counts::of(admin), -1);
        match event {
            Event::AdminRemoved(_) => {
                self.admins.remove(&id);
                return;
            }
            Event::MfaRequired(e) => {
                admin.mfa_required = true;
                admin.requirement_source = Some(e.source.as_str().to_owned());
            }
            Event::MfaRequirementRemoved(_) => {
                admin.mfa_required = false;
                admin.requirement_source = None;
            }
            Event::MfaEnrollmentCompleted(_) => {
                admin.enrolled = true;
                admin.locked = false;
            }
            Event::MfaLocked(_) => admin.locked = true,
            _ => {}
        }
        self.counts.add(Counts::of(admin), 1);
    }

    /// The live admins, in id order.
    pub fn admins(&self) -> impl Iterator<Item = &AdminView> {
        self.admins.values()
    }

    /// The Admins Without MFA Required widget's list, in its order (by id).
    pub fn without_mfa_required(&self) -> Vec<AdminView> {
        self.admins().filter(|a| !a.mfa_required).cloned().collect()
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }
}

/// The smallest stored time after every event whose envelope time (milliseconds) is at or
/// before `t`: events are kept with microseconds, their envelopes say milliseconds.
fn bound_after(t: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    let millis = t.timestamp_millis();
    Utc.timestamp_millis_opt(millis)
        .single()
        .and_then(|t| t.checked_add_signed(TimeDelta::milliseconds(1)))
        .context("a time out of range")
}

/// `t` to the millisecond, as envelopes and answers say times.
pub fn to_millis(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(t.timestamp_millis())
        .single()
        .unwrap_or(t)
}

/// Streams the organisation's state-changing events stored before `before`, in the fold's
/// order, into `each`.
async fn fold_before(
    db: &Db,
    org: Uuid,
    before: DateTime<Utc>,
    mut each: impl FnMut(DateTime<Utc>, &Envelope) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let client = db.client().await?;
    let sql = format!(
        "SELECT occurred_at, envelope FROM events
         WHERE org_id = $1 AND occurred_at < $2 AND {STATE_CHANGING}
         ORDER BY occurred_at, position"
    );
    let statement = client
        .prepare_cached(&sql)
        .await
        .context("preparing the replay's read")?;
    let params: [&(dyn ToSql + Sync); 2] = [&org, &before];
    let rows = client
        .query_raw(&statement, params)
        .await
        .context("reading the organisation's admin events")?;
    futures::pin_mut!(rows);
    while let Some(row) = rows.try_next().await.context("reading an admin event")? {
        let at: DateTime<Utc> = row.try_get(0).context("reading an event's time")?;
        let Json(envelope): Json<Envelope> = row.try_get(1).context("reading an envelope")?;
        each(at, &envelope)?;
    }
    Ok(())
}

/// The Admins Without MFA Required widget as it stood at `as_of`: the events up to that
/// instant (to the millisecond) folded into the admins.
pub async fn admins_as_of(db: &Db, org: Uuid, as_of: DateTime<Utc>) -> anyhow::Result<Replay> {
    let mut replay = Replay::new(org);
    fold_before(db, org, bound_after(as_of)?, |_, envelope| {
        replay.apply(envelope)
    })
    .await?;
    Ok(replay)
}

/// One day of an organisation's MFA coverage, as it stood at the end of that day (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoveragePoint {
    pub day: NaiveDate,
    /// Live administrators.
    pub admins: i64,
    /// Of them, those with MFA required.
    pub mfa_required: i64,
    /// Of them, those who completed enrollment.
    pub mfa_enrolled: i64,
}

impl CoveragePoint {
    /// The last instant of the day (to the millisecond): the point is the state then.
    pub fn end(&self) -> Option<DateTime<Utc>> {
        end_of(self.day).map(|t| t - TimeDelta::milliseconds(1))
    }
}

/// Midnight after `day`, UTC.
fn end_of(day: NaiveDate) -> Option<DateTime<Utc>> {
    day.checked_add_days(Days::new(1))?
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
}

/// Folds events, in the fold's order, into one [`CoveragePoint`] per day from `first` to `last`:
/// events before the window set the starting state; events after `last` must not be pushed.
/// A day costs O(1) to close.
#[derive(Debug)]
pub struct CoverageFold {
    replay: Replay,
    first: NaiveDate,
    days: usize,
    points: Vec<CoveragePoint>,
}

impl CoverageFold {
    /// `first..=last`; an empty window when `last` is before `first`.
    pub fn new(org: Uuid, first: NaiveDate, last: NaiveDate) -> CoverageFold {
        let days = usize::try_from((last - first).num_days() + 1).unwrap_or(0);
        CoverageFold {
            replay: Replay::new(org),
            first,
            days,
            points: Vec::with_capacity(days),
        }
    }

    /// The next day still to be closed, if the window has one.
    fn open_day(&self) -> Option<NaiveDate> {
        if self.points.len() >= self.days {
            return None;
        }
        self.first
            .checked_add_days(Days::new(self.points.len() as u64))
    }

    /// Closes every day of the window before `day` with the state as it stands.
    fn close_days_before(&mut self, day: NaiveDate) {
        while let Some(open) = self.open_day() {
            if open >= day {
                break;
            }
            let counts = self.replay.counts();
            self.points.push(CoveragePoint {
                day: open,
                admins: counts.admins,
                mfa_required: counts.mfa_required,
                mfa_enrolled: counts.mfa_enrolled,
            });
        }
    }

    /// Applies one event that happened at `at`.
    pub fn push_event(&mut self, at: DateTime<Utc>, event: &Event) {
        self.close_days_before(at.date_naive());
        self.replay.apply_event(at, event);
    }

    /// Applies one stored event, stored at `at` (its day is the day of the envelope's time).
    fn push(&mut self, at: DateTime<Utc>, envelope: &Envelope) -> anyhow::Result<()> {
        self.close_days_before(at.date_naive());
        self.replay.apply(envelope)
    }

    /// The window's points, the days after the last event carrying the final state.
    pub fn finish(mut self) -> Vec<CoveragePoint> {
        if let Some(after) = self.first.checked_add_days(Days::new(self.days as u64)) {
            self.close_days_before(after);
        }
        self.points
    }
}

/// The organisation's MFA coverage at the end of each UTC day from `first` to `last`, folded
/// from its events in the store. Memory holds one entry per admin, not the history.
pub async fn coverage(
    db: &Db,
    org: Uuid,
    first: NaiveDate,
    last: NaiveDate,
) -> anyhow::Result<Vec<CoveragePoint>> {
    let days = (last - first).num_days() + 1;
    anyhow::ensure!(
        (1..=i64::from(MAX_DAYS)).contains(&days),
        "a coverage series holds 1 to {MAX_DAYS} days, not {days}"
    );
    let end = end_of(last).context("the end of the coverage window")?;
    let mut fold = CoverageFold::new(org, first, last);
    fold_before(db, org, end, |at, envelope| fold.push(at, envelope)).await?;
    Ok(fold.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_events::Role;
    use gatehouse_events::types::{
        AdminCreated, AdminRef, MfaEnrollmentCompleted, MfaLocked, MfaRequired,
    };

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0)
            .single()
            .expect("a valid time")
    }

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).expect("a valid day")
    }

    fn created(id: Uuid, mfa_required: bool) -> Event {
        Event::AdminCreated(AdminCreated {
            admin_id: id,
            email: format!("{id}@example.com"),
            first_name: "Ada".to_owned(),
            last_name: "Lovelace".to_owned(),
            role: Role::Administrator,
            mfa_required,
        })
    }

    fn required(id: Uuid, source: RequirementSource) -> Event {
        Event::MfaRequired(MfaRequired {
            admin_id: id,
            source,
        })
    }

    fn enrolled(id: Uuid) -> Event {
        Event::MfaEnrollmentCompleted(MfaEnrollmentCompleted {
            admin_id: id,
            method: "totp".to_owned(),
            replaced_previous: false,
        })
    }

    fn point(d: u32, admins: i64, mfa_required: i64, mfa_enrolled: i64) -> CoveragePoint {
        CoveragePoint {
            day: day(d),
            admins,
            mfa_required,
            mfa_enrolled,
        }
    }

    #[test]
    fn the_replay_keeps_the_admin_object_as_the_read_model_does() {
        let org = Uuid::now_v7();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let mut replay = Replay::new(org);
        replay.apply_event(at(1, 9), &created(a, true));
        replay.apply_event(at(1, 10), &created(b, false));
        replay.apply_event(at(1, 10), &created(b, true)); // a replayed creation changes nothing
        let first = &replay.admins().next().expect("a").clone();
        assert_eq!(first.requirement_source.as_deref(), Some("default"));
        assert_eq!((first.created_at, first.org_id), (at(1, 9), org));
        assert_eq!(
            replay
                .without_mfa_required()
                .iter()
                .map(|v| v.id)
                .collect::<Vec<_>>(),
            vec![b]
        );

        // Locked, then a completed enrollment (a reset) clears the lockout.
        replay.apply_event(
            at(2, 9),
            &Event::MfaLocked(MfaLocked {
                admin_id: b,
                failed_attempts: 5,
            }),
        );
        assert!(replay.without_mfa_required()[0].locked);
        replay.apply_event(at(2, 10), &enrolled(b));
        let b_now = &replay.without_mfa_required()[0];
        assert!(b_now.enrolled && !b_now.locked);

        replay.apply_event(at(3, 9), &required(b, RequirementSource::Global));
        assert!(replay.without_mfa_required().is_empty());
        let b_now = replay.admins().find(|v| v.id == b).expect("b");
        assert_eq!(b_now.requirement_source.as_deref(), Some("global"));
        assert_eq!(
            replay.counts(),
            Counts {
                admins: 2,
                mfa_required: 2,
                mfa_enrolled: 1
            }
        );

        replay.apply_event(
            at(4, 9),
            &Event::MfaRequirementRemoved(AdminRef { admin_id: a }),
        );
        replay.apply_event(at(4, 10), &Event::AdminRemoved(AdminRef { admin_id: b }));
        let left = replay.without_mfa_required();
        assert_eq!(left.len(), 1);
        assert_eq!((left[0].id, left[0].requirement_source.clone()), (a, None));
        assert_eq!(
            replay.counts(),
            Counts {
                admins: 1,
                mfa_required: 0,
                mfa_enrolled: 0
            }
        );
    }

    #[test]
    fn coverage_is_the_state_at_the_end_of_each_day_of_the_window() {
        let org = Uuid::now_v7();
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let mut fold = CoverageFold::new(org, day(6), day(10));
        // Before the window: the starting state.
        fold.push_event(at(1, 9), &created(a, true));
        fold.push_event(at(2, 9), &created(b, false));
        // Day 7: b becomes required, then the requirement is removed again the same day.
        fold.push_event(at(7, 9), &required(b, RequirementSource::Admin));
        fold.push_event(
            at(7, 10),
            &Event::MfaRequirementRemoved(AdminRef { admin_id: b }),
        );
        // Day 8: a enrolls (twice: a reset counts once), c arrives required.
        fold.push_event(at(8, 9), &enrolled(a));
        fold.push_event(at(8, 10), &enrolled(a));
        fold.push_event(at(8, 11), &created(c, true));
        fold.push_event(at(8, 12), &required(c, RequirementSource::Admin));
        // Day 9: a leaves, taking their requirement and enrollment with them.
        fold.push_event(at(9, 23), &Event::AdminRemoved(AdminRef { admin_id: a }));
        assert_eq!(
            fold.finish(),
            vec![
                point(6, 2, 1, 0),
                point(7, 2, 1, 0),
                point(8, 3, 2, 1),
                point(9, 2, 1, 0),
                point(10, 2, 1, 0),
            ]
        );
    }

    #[test]
    fn an_empty_history_gives_a_window_of_zeroes_and_unknown_admins_are_ignored() {
        let mut fold = CoverageFold::new(Uuid::now_v7(), day(1), day(3));
        fold.push_event(
            at(2, 0),
            &required(Uuid::now_v7(), RequirementSource::Admin),
        );
        fold.push_event(at(2, 0), &enrolled(Uuid::now_v7()));
        assert_eq!(
            fold.finish(),
            vec![point(1, 0, 0, 0), point(2, 0, 0, 0), point(3, 0, 0, 0)]
        );
    }

    #[test]
    fn as_of_includes_every_event_of_the_same_millisecond() {
        let t = Utc
            .timestamp_micros(1_790_000_000_123_456)
            .single()
            .expect("a time");
        let bound = bound_after(t).expect("in range");
        assert_eq!(bound.timestamp_micros(), 1_790_000_000_124_000);
        assert_eq!(to_millis(t).timestamp_micros(), 1_790_000_000_123_000);
        assert_eq!(
            point(10, 0, 0, 0).end().map(|t| t.to_rfc3339()),
            Some("2026-11-10T23:59:59.999+00:00".to_owned())
        );
    }
}
