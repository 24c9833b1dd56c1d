//! A long organisation history, written straight into the event store's tables.
//!
//! Going through the command service would take an hour for a million events; the benchmark
//! needs the history, not the commands. So the organisation and its owner are created by
//! `gatehouse org create` (credentials, API key, the first events), and this module appends
//! after them what the store would have appended: envelopes built by `gatehouse-events`, the
//! organisation's hash chain continued from its head, gapless positions from the store's head,
//! stream versions, `org_chains` and `store_head` advanced in the same transaction as each
//! batch. `gatehouse audit verify` accepts the result, which the benchmark checks.

use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use gatehouse_events::envelope::EnvelopeParts;
use gatehouse_events::types::{
    AdminCreated, AdminRef, LoginFailed, LoginSucceeded, MfaEnrollmentCompleted, MfaRequired,
};
use gatehouse_events::{Actor, Chain, Envelope, Event, RequirementSource, Role};
use tokio_postgres::Client;
use uuid::Uuid;

/// Rows inserted per transaction.
const BATCH: usize = 10_000;

/// What was generated.
pub struct History {
    /// The first and last generated event times.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// A small deterministic generator (xorshift64*): the same history every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Admin {
    id: Uuid,
    version: i64,
    required: bool,
    enrolled: bool,
}

/// Appends `events` events to `org` (owned by `owner`): first `admins` admin creations (two in
/// five without MFA required), then a mix that is mostly logins, with requirement changes and
/// enrollments among them. Times run evenly over the 400 days before now. `progress(done)` is
/// called after each batch.
pub async fn generate(
    client: &mut Client,
    org: Uuid,
    owner: Uuid,
    admins: usize,
    events: usize,
    progress: impl Fn(usize),
) -> anyhow::Result<History> {
    anyhow::ensure!(
        events >= admins,
        "the history must hold its admins' creations"
    );
    let row = client
        .query_one(
            "SELECT head, last_position FROM org_chains WHERE org_id = $1",
            &[&org],
        )
        .await
        .context("reading the organisation's chain head")?;
    let head: Vec<u8> = row.get(0);
    let mut chain = Chain::from_slice(&head).context("the stored chain head")?;

    let to = Utc::now() - Duration::minutes(1);
    let from = to - Duration::days(400);
    let step = (to - from) / i32::try_from(events.max(1)).context("too many events")?;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut people: Vec<Admin> = Vec::with_capacity(admins);
    let mut done = 0usize;

    while done < events {
        let n = BATCH.min(events - done);
        let tx = client.transaction().await.context("beginning a batch")?;
        let base: i64 = tx
            .query_one(
                "UPDATE store_head SET last_position = last_position + $1 RETURNING last_position",
                &[&i64::try_from(n).context("batch size")?],
            )
            .await
            .context("taking positions")?
            .get(0);
        let first = base - i64::try_from(n).context("batch size")? + 1;

        let mut positions = Vec::with_capacity(n);
        let mut streams = Vec::with_capacity(n);
        let mut versions = Vec::with_capacity(n);
        let mut ids = Vec::with_capacity(n);
        let mut types = Vec::with_capacity(n);
        let mut times = Vec::with_capacity(n);
        let mut envelopes = Vec::with_capacity(n);
        let mut chains = Vec::with_capacity(n);
        for k in 0..n {
            let i = done + k;
            let time = from + step * i32::try_from(i).context("index")?;
            let (event, actor, auth, index) = next_event(i, admins, owner, &mut people, &mut rng);
            let who = &mut people[index];
            who.version += 1;
            let parts = EnvelopeParts {
                id: Uuid::now_v7(),
                org_id: org,
                actor,
                correlation_id: Uuid::new_v4(),
                time,
                auth_method: auth,
            };
            let position = first + i64::try_from(k).context("index")?;
            let envelope = Envelope::new(&parts, &event, position, who.version);
            chain = chain.next(&envelope).context("chaining an event")?;
            positions.push(position);
            streams.push(who.id);
            versions.push(who.version);
            ids.push(parts.id);
            types.push(envelope.event_type.clone());
            times.push(time);
            envelopes.push(serde_json::to_value(&envelope).context("encoding an envelope")?);
            chains.push(chain.0.to_vec());
        }
        tx.execute(
            "INSERT INTO events (position, org_id, stream_id, stream_version, event_id, event_type, occurred_at, envelope, chain)
             SELECT p, $2, s, v, i, t, o, e, c
             FROM unnest($1::bigint[], $3::uuid[], $4::bigint[], $5::uuid[], $6::text[], $7::timestamptz[], $8::jsonb[], $9::bytea[])
                  AS x(p, s, v, i, t, o, e, c)",
            &[&positions, &org, &streams, &versions, &ids, &types, &times, &envelopes, &chains],
        )
        .await
        .context("inserting a batch of events")?;
        let stream_ids: Vec<Uuid> = people.iter().map(|a| a.id).collect();
        let stream_versions: Vec<i64> = people.iter().map(|a| a.version).collect();
        tx.execute(
            "INSERT INTO streams (stream_id, org_id, kind, version)
             SELECT s, $2, 'admin', v FROM unnest($1::uuid[], $3::bigint[]) AS x(s, v)
             ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version",
            &[&stream_ids, &org, &stream_versions],
        )
        .await
        .context("advancing the streams")?;
        tx.execute(
            "UPDATE org_chains SET head = $2, last_position = $3, events = events + $4 WHERE org_id = $1",
            &[&org, &chain.0.to_vec(), &base, &i64::try_from(n).context("batch size")?],
        )
        .await
        .context("advancing the chain head")?;
        tx.commit().await.context("committing a batch")?;
        done += n;
        progress(done);
    }
    Ok(History { from, to })
}

/// The `i`th generated event, its actor, how the actor authenticated, and the index of the
/// admin whose stream it belongs to.
fn next_event(
    i: usize,
    admins: usize,
    owner: Uuid,
    people: &mut Vec<Admin>,
    rng: &mut Rng,
) -> (Event, Actor, Option<&'static str>, usize) {
    if i < admins {
        let id = Uuid::now_v7();
        let required = i % 5 >= 2;
        people.push(Admin {
            id,
            version: 0,
            required,
            enrolled: false,
        });
        let event = Event::AdminCreated(AdminCreated {
            admin_id: id,
            email: format!("admin.{i}@bench.example"),
            first_name: "Bench".to_owned(),
            last_name: format!("Admin {i}"),
            role: Role::Administrator,
            mfa_required: required,
        });
        return (
            event,
            Actor::Admin(owner),
            Some("api-key"),
            people.len() - 1,
        );
    }
    let who = usize::try_from(rng.below(people.len() as u64)).unwrap_or(0);
    let admin = &mut people[who];
    let roll = rng.below(1000);
    if roll < 10 {
        admin.required = !admin.required;
        let event = if admin.required {
            Event::MfaRequired(MfaRequired {
                admin_id: admin.id,
                source: RequirementSource::Admin,
            })
        } else {
            Event::MfaRequirementRemoved(AdminRef { admin_id: admin.id })
        };
        return (event, Actor::Admin(owner), Some("session"), who);
    }
    if roll < 13 && !admin.enrolled {
        admin.enrolled = true;
        let event = Event::MfaEnrollmentCompleted(MfaEnrollmentCompleted {
            admin_id: admin.id,
            method: "totp".to_owned(),
            replaced_previous: false,
        });
        return (event, Actor::Admin(admin.id), None, who);
    }
    let event = if roll < 60 {
        Event::LoginFailed(LoginFailed {
            admin_id: admin.id,
            reason: "invalid_password".to_owned(),
            client_ip: "127.0.0.1".to_owned(),
            user_agent: "gatehouse-bench".to_owned(),
        })
    } else {
        Event::LoginSucceeded(LoginSucceeded {
            admin_id: admin.id,
            mfa: admin.enrolled,
            mfa_type: if admin.enrolled { "totp" } else { "none" }.to_owned(),
            auth_method: "session".to_owned(),
            client_ip: "127.0.0.1".to_owned(),
            user_agent: "gatehouse-bench".to_owned(),
        })
    };
    (event, Actor::Admin(admin.id), Some("session"), who)
}
