//! The state at a past instant (issue 5, item 4): `GET /audit/admins-without-mfa-required?as_of=T`
//! and `GET /audit/mfa-coverage` must equal an independent replay of the events up to T.
//!
//! A seeded random history is made through the real API (admins created with and without MFA
//! required, requirements set and removed, admins removed, the Global MFA Requirement on and
//! off, enrollments by the Set Up MFA link, lockouts by wrong codes); every event is read back
//! over `GET /events`, and the answers at many instants are compared with a fold written here,
//! from the events' JSON alone. The daily series is checked over a history spread across days
//! (events appended to the store with past times).

#[allow(dead_code)]
#[path = "api/support.rs"]
mod support;

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use gatehouse_auth::link_token;
use gatehouse_domain::Role;
use gatehouse_events::types::{AdminCreated, AdminRef, MfaEnrollmentCompleted, MfaRequired};
use gatehouse_events::{Actor, Event, RequirementSource};
use gatehouse_store::append::{AppendRequest, Expected};
use serde_json::{Value, json};
use support::{Answer, Api, PASSWORD};
use uuid::Uuid;

const AS_OF: &str = "/api/v1/audit/admins-without-mfa-required";
const COVERAGE: &str = "/api/v1/audit/mfa-coverage";

/// A small seeded generator (SplitMix64): the same seed makes the same history.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        (!items.is_empty()).then(|| &items[self.below(items.len())])
    }
}

/// What the independent replay knows of an admin.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Facts {
    required: bool,
    source: Option<String>,
    enrolled: bool,
    locked: bool,
}

fn time_of(event: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(event["time"].as_str().expect("a time"))
        .expect("an RFC 3339 time")
        .with_timezone(&Utc)
}

fn admin_of(event: &Value) -> Uuid {
    event["data"]["admin_id"]
        .as_str()
        .expect("an admin id")
        .parse()
        .expect("a UUID")
}

/// The admins as the events up to `t` (inclusive) make them, written from the SPEC's event
/// catalogue alone: the events' JSON, in position order.
fn replay(events: &[Value], t: DateTime<Utc>) -> BTreeMap<Uuid, Facts> {
    let mut admins = BTreeMap::new();
    for event in events.iter().filter(|e| time_of(e) <= t) {
        let kind = event["type"].as_str().expect("a type");
        let kind = kind.rsplit_once(".v").map_or(kind, |(name, _)| name);
        let data = &event["data"];
        match kind {
            "gatehouse.admin.created" => {
                let required = data["mfa_required"].as_bool().expect("mfa_required");
                admins.entry(admin_of(event)).or_insert(Facts {
                    required,
                    source: required.then(|| "default".to_owned()),
                    enrolled: false,
                    locked: false,
                });
            }
            "gatehouse.admin.removed" => {
                admins.remove(&admin_of(event));
            }
            _ => {
                let Some(facts) = admins.get_mut(&admin_of_any(event)) else {
                    continue;
                };
                match kind {
                    "gatehouse.admin.mfa_required" => {
                        facts.required = true;
                        facts.source = data["source"].as_str().map(str::to_owned);
                    }
                    "gatehouse.admin.mfa_requirement_removed" => {
                        facts.required = false;
                        facts.source = None;
                    }
                    "gatehouse.admin.mfa_enrollment_completed" => {
                        facts.enrolled = true;
                        facts.locked = false;
                    }
                    "gatehouse.admin.mfa_locked" => facts.locked = true,
                    _ => {}
                }
            }
        }
    }
    admins
}

/// The admin an event is about, or nil for organisation events.
fn admin_of_any(event: &Value) -> Uuid {
    event["data"]["admin_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(Uuid::nil())
}

/// Every event of the organisation, in position order, over `GET /events`.
async fn all_events(api: &Api, key: &str) -> Vec<Value> {
    let mut events: Vec<Value> = Vec::new();
    loop {
        let after = events
            .last()
            .map_or(0, |e| e["position"].as_i64().expect("position"));
        let page = api
            .get(&format!("/api/v1/events?after={after}&limit=1000"), key)
            .await;
        page.expect(StatusCode::OK);
        let batch = page.json.as_array().expect("a batch").clone();
        if batch.is_empty() {
            return events;
        }
        events.extend(batch);
    }
}

fn millis(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Asks the as-of route at `t` and checks it against the replay of `events`.
async fn check_as_of(api: &Api, key: &str, events: &[Value], t: DateTime<Utc>) {
    let asked = millis(t);
    let answer = api.get(&format!("{AS_OF}?as_of={asked}"), key).await;
    answer.expect(StatusCode::OK);
    let expected: Vec<(Uuid, Facts)> = replay(events, t)
        .into_iter()
        .filter(|(_, f)| !f.required)
        .collect();
    let admins = answer.json["admins"].as_array().expect("admins");
    let got: Vec<(Uuid, Facts)> = admins
        .iter()
        .map(|a| {
            (
                a["id"].as_str().expect("id").parse().expect("a UUID"),
                Facts {
                    required: a["mfa"]["required"].as_bool().expect("required"),
                    source: a["mfa"]["requirement_source"].as_str().map(str::to_owned),
                    enrolled: a["mfa"]["enrolled"].as_bool().expect("enrolled"),
                    locked: a["mfa"]["locked"].as_bool().expect("locked"),
                },
            )
        })
        .collect();
    assert_eq!(got, expected, "the list as of {asked}");
    assert_eq!(answer.json["count"], json!(expected.len()), "as of {asked}");
    if t <= Utc::now() {
        assert_eq!(answer.json["as_of"], json!(asked));
    }
}

/// The code an independent TOTP implementation (tests/py/totp.py) computes at a Unix time.
fn independent_code(uri: &str, at: i64) -> String {
    gatehouse_tests::browser::totp_code(uri, at)
}

async fn post(api: &Api, path: &str, body: Value) -> Answer {
    api.send(
        Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .expect("request"),
    )
    .await
}

/// Enrolls the admin through a Set Up MFA link issued as the mailer issues it.
async fn enroll(api: &Api, admin: Uuid, email: &str) {
    let token = link_token::generate().expect("a token");
    let client = api.env.db.pool.get().await.expect("a connection");
    client
        .execute(
            "INSERT INTO mfa_setup_links (token_hash, event_id, admin_id, org_id, expires_at)
             VALUES ($1, $2, $3, $4, now() + interval '1 hour')",
            &[&token.hash, &Uuid::now_v7(), &admin, &api.org.id.0],
        )
        .await
        .expect("a link");
    let offer = post(
        api,
        "/api/v1/mfa/setup",
        json!({"token": token.plaintext, "email": email, "password": PASSWORD}),
    )
    .await;
    offer.expect(StatusCode::OK);
    let uri = offer.json["otpauth_uri"]
        .as_str()
        .expect("a URI")
        .to_owned();
    let code = independent_code(&uri, Utc::now().timestamp());
    post(
        api,
        "/api/v1/mfa/setup/complete",
        json!({"token": token.plaintext, "code": code}),
    )
    .await
    .expect(StatusCode::OK);
}

/// Locks an enrolled admin's MFA with wrong codes at Verify Your Identity.
async fn lock(api: &Api, email: &str) {
    let (answer, session) = api.login(email, PASSWORD).await;
    answer.expect(StatusCode::OK);
    let session = session.expect("a pending session");
    for _ in 0..5 {
        let verified = api
            .json(
                Method::POST,
                "/api/v1/auth/mfa",
                &session,
                Some(json!({"code": "000000"})),
            )
            .await;
        if verified.status == StatusCode::LOCKED {
            return;
        }
        verified.expect_error(StatusCode::UNAUTHORIZED, "invalid_code");
    }
    panic!("five wrong codes lock MFA");
}

/// An admin the generator made: id, email, and what the test expects of them.
struct Made {
    id: Uuid,
    email: String,
    required: bool,
    enrolled: bool,
    locked: bool,
}

/// Runs `commands` random commands through the API as the owner.
async fn random_history(api: &Api, rng: &mut Rng, commands: usize) {
    let key = api.org.key.clone();
    let mut made: Vec<Made> = Vec::new();
    let mut global = false;
    let roles = ["administrator", "manager", "help_desk", "read_only"];
    for _ in 0..commands {
        match rng.below(10) {
            0..=2 => {
                let role = *rng.pick(&roles).expect("a role");
                let required = global || rng.below(2) == 0;
                let created = api.create_admin(&key, role, Some(required)).await;
                made.push(Made {
                    id: created.id(),
                    email: created.json["email"].as_str().expect("email").to_owned(),
                    required,
                    enrolled: false,
                    locked: false,
                });
            }
            3 | 4 => {
                let Some(i) = (!made.is_empty()).then(|| rng.below(made.len())) else {
                    continue;
                };
                // The other state than now (removing is refused while the global one is on).
                let required = global || !made[i].required;
                let path = format!("/api/v1/admins/{}/mfa", made[i].id);
                api.json(
                    Method::PUT,
                    &path,
                    &key,
                    Some(json!({"required": required})),
                )
                .await
                .expect(StatusCode::OK);
                made[i].required = required;
            }
            5 => {
                let Some(i) = (!made.is_empty()).then(|| rng.below(made.len())) else {
                    continue;
                };
                let gone = made.remove(i);
                let answer = api
                    .json(
                        Method::DELETE,
                        &format!("/api/v1/admins/{}", gone.id),
                        &key,
                        None,
                    )
                    .await;
                assert!(answer.status.is_success(), "removed: {:?}", answer.json);
            }
            6 => {
                global = !global;
                api.json(
                    Method::PUT,
                    "/api/v1/settings/security",
                    &key,
                    Some(json!({"global_mfa_required": global})),
                )
                .await
                .expect(StatusCode::OK);
                if global {
                    made.iter_mut().for_each(|m| m.required = true);
                }
            }
            7 | 8 => {
                let Some(i) = (!made.is_empty()).then(|| rng.below(made.len())) else {
                    continue;
                };
                enroll(api, made[i].id, &made[i].email).await;
                made[i].enrolled = true;
                made[i].locked = false;
            }
            _ => {
                let lockable: Vec<usize> = (0..made.len())
                    .filter(|&i| made[i].enrolled && !made[i].locked)
                    .collect();
                let Some(&i) = rng.pick(&lockable) else {
                    continue;
                };
                lock(api, &made[i].email).await;
                made[i].locked = true;
            }
        }
    }
    // A fixed tail, so the list shows a lockout and the reset that clears it, whatever the seed.
    if global {
        api.json(
            Method::PUT,
            "/api/v1/settings/security",
            &key,
            Some(json!({"global_mfa_required": false})),
        )
        .await
        .expect(StatusCode::OK);
    }
    let created = api.create_admin(&key, "manager", Some(false)).await;
    let email = created.json["email"].as_str().expect("email").to_owned();
    enroll(api, created.id(), &email).await;
    lock(api, &email).await;
    enroll(api, created.id(), &email).await;
}

#[tokio::test]
async fn as_of_equals_a_replay_of_the_events_up_to_any_instant() {
    let api = Api::start().await;
    let mut rng = Rng(0x5EED_0005);
    random_history(&api, &mut rng, 45).await;
    let key = api.org.key.clone();
    let events = all_events(&api, &key).await;
    let kinds: std::collections::BTreeSet<&str> =
        events.iter().filter_map(|e| e["type"].as_str()).collect();
    for kind in [
        "gatehouse.admin.created.v1",
        "gatehouse.admin.removed.v1",
        "gatehouse.admin.mfa_required.v1",
        "gatehouse.admin.mfa_requirement_removed.v1",
        "gatehouse.admin.mfa_enrollment_completed.v1",
        "gatehouse.admin.mfa_locked.v1",
        "gatehouse.org.global_mfa_enabled.v1",
    ] {
        assert!(kinds.contains(kind), "the history holds {kind}: {kinds:?}");
    }

    // Instants at, just before and between event times, before the first and after the last.
    let times: Vec<DateTime<Utc>> = events.iter().map(time_of).collect();
    let (first, last) = (times[0], times[times.len() - 1]);
    let mut instants = vec![
        first - Duration::days(1),
        first - Duration::milliseconds(1),
        last,
        last + Duration::hours(1),
    ];
    // Every event's time and the millisecond before it, then random ones.
    for &t in &times {
        instants.extend([t, t - Duration::milliseconds(1)]);
    }
    instants.dedup();
    let known = instants.len();
    while instants.len() < known + 30 {
        let i = rng.below(times.len());
        let t = times[i];
        instants.push(match rng.below(3) {
            0 => t,
            1 => t - Duration::milliseconds(1),
            _ => {
                let next = times.get(i + 1).copied().unwrap_or(t);
                t + (next - t) / 2
            }
        });
    }
    for t in instants {
        check_as_of(&api, &key, &events, t).await;
    }

    // Now: the live widget and the replay agree, and so does the coverage point of today.
    let head = api.env.db.head().await.expect("head");
    let live = api
        .get_at(
            "/api/v1/widgets/admins-without-mfa-required?limit=200",
            &key,
            head,
        )
        .await;
    live.expect(StatusCode::OK);
    let now = api
        .get(&format!("{AS_OF}?as_of=2999-01-01T00:00:00Z"), &key)
        .await;
    now.expect(StatusCode::OK);
    assert_eq!(now.json["admins"], live.json["admins"]);
    assert_eq!(now.json["count"], live.json["count"]);
    let as_of =
        DateTime::parse_from_rfc3339(now.json["as_of"].as_str().expect("as_of")).expect("a time");
    assert!(as_of <= Utc::now(), "a future instant is answered as now");

    let today = Utc::now().date_naive();
    let coverage = api
        .get(&format!("{COVERAGE}?from={today}&to={today}"), &key)
        .await;
    coverage.expect(StatusCode::OK);
    let all = replay(&events, Utc::now());
    assert_eq!(
        coverage.json["points"],
        json!([{
            "t": format!("{today}T23:59:59.999Z"),
            "admins": all.len(),
            "mfa_required": all.values().filter(|f| f.required).count(),
            "mfa_enrolled": all.values().filter(|f| f.enrolled).count(),
        }])
    );
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, d).expect("a day")
}

/// Appends one event to the store at `at`, as the system, like a command would.
async fn append_at(api: &Api, at: DateTime<Utc>, event: Event) {
    let stream = match event.aggregate() {
        gatehouse_events::types::Aggregate::Admin(id) => id,
        gatehouse_events::types::Aggregate::Org(id) => id,
    };
    api.env
        .db
        .append(AppendRequest {
            org_id: api.org.id.0,
            actor: Actor::System,
            correlation_id: Uuid::now_v7(),
            time: at,
            auth_method: None,
            events: vec![event],
            expected: vec![(stream, Expected::Any)],
            org_position: None,
            statements: Vec::new(),
        })
        .await
        .expect("appended");
}

#[tokio::test]
async fn each_coverage_point_is_the_replay_at_the_end_of_its_day() {
    let api = Api::start().await;
    let mut rng = Rng(0xC0_FE_FE);
    // Twelve days of history in March 2026, stored after the organisation's own events (so
    // positions and times disagree in order, as they may in a real store).
    let mut ids: Vec<Uuid> = Vec::new();
    for d in 1..=12 {
        for _ in 0..rng.below(5) {
            let hour = u32::try_from(rng.below(24)).expect("an hour");
            let at = Utc
                .with_ymd_and_hms(2026, 3, d, hour, 59, 59)
                .single()
                .expect("a time")
                + Duration::microseconds(999_999);
            let pick = rng.pick(&ids).copied();
            let event = match (rng.below(5), pick) {
                (0, Some(id)) => Event::AdminRemoved(AdminRef { admin_id: id }),
                (1, Some(id)) => Event::MfaRequired(MfaRequired {
                    admin_id: id,
                    source: RequirementSource::Admin,
                }),
                (2, Some(id)) => Event::MfaRequirementRemoved(AdminRef { admin_id: id }),
                (3, Some(id)) => Event::MfaEnrollmentCompleted(MfaEnrollmentCompleted {
                    admin_id: id,
                    method: "totp".to_owned(),
                    replaced_previous: false,
                }),
                _ => {
                    let id = Uuid::now_v7();
                    ids.push(id);
                    Event::AdminCreated(AdminCreated {
                        admin_id: id,
                        email: format!("{id}@example.com"),
                        first_name: "Ada".to_owned(),
                        last_name: "Lovelace".to_owned(),
                        role: Role::Manager,
                        mfa_required: rng.below(2) == 0,
                    })
                }
            };
            append_at(&api, at, event).await;
        }
    }
    let key = api.org.key.clone();
    let events = all_events(&api, &key).await;

    let answer = api
        .get(
            &format!("{COVERAGE}?from=2026-02-27&to=2026-03-14&interval=day"),
            &key,
        )
        .await;
    answer.expect(StatusCode::OK);
    let points = answer.json["points"].as_array().expect("points");
    assert_eq!(points.len(), 16, "one point a day, from and to included");
    for (i, point) in points.iter().enumerate() {
        let end = day(1) - Duration::days(2) + Duration::days(i as i64);
        let t = end
            .and_hms_milli_opt(23, 59, 59, 999)
            .expect("a time")
            .and_utc();
        let state = replay(&events, t);
        assert_eq!(
            point,
            &json!({
                "t": millis(t),
                "admins": state.len(),
                "mfa_required": state.values().filter(|f| f.required).count(),
                "mfa_enrolled": state.values().filter(|f| f.enrolled).count(),
            }),
            "day {end}"
        );
        // The as-of answer at that instant is the same state.
        check_as_of(&api, &key, &events, t).await;
    }
    assert!(
        points.iter().any(|p| p["admins"] != points[0]["admins"]),
        "the series changes over the window: {points:?}"
    );

    // The default series: the last 30 days, ending today with the whole history.
    let answer = api.get(COVERAGE, &key).await;
    answer.expect(StatusCode::OK);
    let points = answer.json["points"].as_array().expect("points");
    assert_eq!(points.len(), 30);
    let today = Utc::now().date_naive();
    assert_eq!(points[29]["t"], json!(format!("{today}T23:59:59.999Z")));
}

#[tokio::test]
async fn another_organisation_sees_only_its_own_history() {
    let api = Api::start().await;
    let mine = api
        .create_admin(&api.org.key, "manager", Some(false))
        .await
        .id();
    let other = api.other_org().await;
    let theirs = api
        .create_admin(&other.key, "manager", Some(false))
        .await
        .id();
    let ids = |answer: &Answer| support::ids_of(&answer.json["admins"]);

    let at_now = format!("{AS_OF}?as_of={}", millis(Utc::now()));
    let a = api.get(&at_now, &api.org.key).await;
    a.expect(StatusCode::OK);
    let b = api.get(&at_now, &other.key).await;
    b.expect(StatusCode::OK);
    assert_eq!((ids(&a), ids(&b)), (vec![mine], vec![theirs]));

    let today = Utc::now().date_naive();
    let coverage = api
        .get(&format!("{COVERAGE}?from={today}"), &other.key)
        .await;
    coverage.expect(StatusCode::OK);
    // Their owner (required by default) and their manager.
    assert_eq!(coverage.json["points"][0]["admins"], json!(2));
}

#[tokio::test]
async fn bad_parameters_are_refused_and_a_command_runner_is_forbidden() {
    let api = Api::start().await;
    let key = &api.org.key;
    for path in [
        AS_OF.to_owned(),
        format!("{AS_OF}?as_of=yesterday"),
        format!("{AS_OF}?as_of=2026-13-01T00:00:00Z"),
        format!("{COVERAGE}?interval=week"),
        format!("{COVERAGE}?from=2026-03-02&to=2026-03-01"),
        format!("{COVERAGE}?from=2000-01-01&to=2026-03-01"),
        format!("{COVERAGE}?to=soon"),
    ] {
        let answer = api.get(&path, key).await;
        answer.expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        assert!(
            !answer.json["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{path} says why"
        );
    }
    let message = api.get(&format!("{AS_OF}?as_of=yesterday"), key).await;
    assert!(
        message.json["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("as_of") && m.contains("RFC 3339")),
        "{:?}",
        message.json
    );

    let (_, runner, _) = api.admin_with_key(Role::CommandRunner).await;
    api.get(&format!("{AS_OF}?as_of=2026-01-01T00:00:00Z"), &runner)
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    api.get(COVERAGE, &runner)
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
}
