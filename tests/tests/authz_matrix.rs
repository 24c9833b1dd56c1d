//! The authorization matrix (SPEC §1, issue 8 point 7) as a table: one row per operation of the
//! HTTP API (method and path template), each checked for every role, for a caller without
//! credentials and, where the operation names something by id, for the ids of another
//! organisation, which must answer exactly as an id that names nothing and change nothing.
//!
//! Credentials: an API key for every route that takes an authenticated caller; the session
//! cookie for the routes that only make sense with one (`POST /auth/mfa`,
//! `POST /auth/mfa/reset-request`, `POST /auth/logout`) and for `POST /me/api-keys`, which
//! refuses API keys. `POST /auth/login` is tried with each role's own email and password. The
//! emailed link's routes (`/mfa/setup*`) authenticate by the link's token, not by a role: every
//! caller with an unknown token gets 410 and nothing changes (a live link is `auth_email.rs`'s).
//!
//! Every refused cell asserts its status and error code and that the event store did not grow;
//! every allowed cell asserts a 2xx answer in which no id of the other organisation appears.
//! `every_documented_operation_has_exactly_one_row` fails when the OpenAPI document gains an
//! operation without a row here.
//!
//! Beyond the JSON API: the audit history's id filters (another organisation's ids find what
//! absent ones find), and the HTML pages and forms with the same matrix by session (`PAGE_ROWS`).

#[allow(dead_code)]
#[path = "api/support.rs"]
mod support;

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use gatehouse_domain::Role;
use serde_json::{Value, json};
use support::{Answer, Api, Org, PASSWORD, email};
use uuid::Uuid;

/// Who may do it, in the words of SPEC §1's matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// Anyone, without credentials: operations, logging in and out, the emailed link.
    Public,
    /// Every authenticated admin, on their own things (themself, Home widgets, API keys) and
    /// the organisation's security settings, which the matrix does not restrict.
    Everyone,
    /// Every admin logged in by session; API keys are refused.
    Session,
    /// "See the widget, the admin list, the audit history": all but command_runner.
    Readers,
    /// "Require MFA / remove the requirement" and "reset another admin's MFA": billing on any
    /// admin, administrator on any but billing ones.
    ManageMfa,
    /// "Turn the Global MFA Requirement on or off": billing only.
    GlobalMfa,
    /// "Create or remove an admin": billing only.
    ManageAdmins,
}

impl Rule {
    /// SPEC §1, written out here rather than taken from `policy.rs`, so that the code is checked
    /// against the contract and not against itself.
    fn allows(self, actor: Role, target: Role) -> bool {
        match self {
            Rule::Public | Rule::Everyone | Rule::Session => true,
            Rule::Readers => actor != Role::CommandRunner,
            Rule::ManageMfa => match actor {
                Role::AdministratorWithBilling => true,
                Role::Administrator => target != Role::AdministratorWithBilling,
                Role::Manager | Role::HelpDesk | Role::ReadOnly | Role::CommandRunner => false,
            },
            Rule::GlobalMfa | Rule::ManageAdmins => actor == Role::AdministratorWithBilling,
        }
    }

    /// Whether `actor` may do this to anybody at all; if so, an absent id is a 404 for them.
    fn allows_someone(self, actor: Role) -> bool {
        self.allows(actor, Role::ReadOnly)
    }
}

/// The operations, one per row; [`Matrix::check`] knows how to call each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Healthz,
    Readyz,
    Metrics,
    OpenApi,
    Login,
    VerifyCode,
    ResetRequest,
    Logout,
    SetupStart,
    SetupComplete,
    ListAdmins,
    CreateAdmin,
    BulkRequireMfa,
    GetAdmin,
    RemoveAdmin,
    SetMfa,
    ResetMfa,
    GetSecurity,
    PutSecurity,
    HomeWidgets,
    SetHomeWidget,
    WidgetList,
    Me,
    ListKeys,
    CreateKey,
    RevokeKey,
    Events,
    AuditExport,
    AuditVerify,
    AuditEvents,
    AuditAsOf,
    AuditCoverage,
}

struct Row {
    method: &'static str,
    /// The path template, as the OpenAPI document spells it.
    path: &'static str,
    rule: Rule,
    op: Op,
}

const fn row(method: &'static str, path: &'static str, rule: Rule, op: Op) -> Row {
    Row {
        method,
        path,
        rule,
        op,
    }
}

#[rustfmt::skip]
const ROWS: [Row; 32] = [
    row("GET", "/healthz", Rule::Public, Op::Healthz),
    row("GET", "/readyz", Rule::Public, Op::Readyz),
    row("GET", "/metrics", Rule::Public, Op::Metrics),
    row("GET", "/api/openapi.json", Rule::Public, Op::OpenApi),
    row("POST", "/api/v1/auth/login", Rule::Public, Op::Login),
    row("POST", "/api/v1/auth/mfa", Rule::Session, Op::VerifyCode),
    row("POST", "/api/v1/auth/mfa/reset-request", Rule::Public, Op::ResetRequest),
    row("POST", "/api/v1/auth/logout", Rule::Public, Op::Logout),
    row("POST", "/api/v1/mfa/setup", Rule::Public, Op::SetupStart),
    row("POST", "/api/v1/mfa/setup/complete", Rule::Public, Op::SetupComplete),
    row("GET", "/api/v1/admins", Rule::Readers, Op::ListAdmins),
    row("POST", "/api/v1/admins", Rule::ManageAdmins, Op::CreateAdmin),
    row("POST", "/api/v1/admins/require-mfa", Rule::ManageMfa, Op::BulkRequireMfa),
    row("GET", "/api/v1/admins/{id}", Rule::Readers, Op::GetAdmin),
    row("DELETE", "/api/v1/admins/{id}", Rule::ManageAdmins, Op::RemoveAdmin),
    row("PUT", "/api/v1/admins/{id}/mfa", Rule::ManageMfa, Op::SetMfa),
    row("POST", "/api/v1/admins/{id}/mfa/reset", Rule::ManageMfa, Op::ResetMfa),
    row("GET", "/api/v1/settings/security", Rule::Everyone, Op::GetSecurity),
    row("PUT", "/api/v1/settings/security", Rule::GlobalMfa, Op::PutSecurity),
    row("GET", "/api/v1/home/widgets", Rule::Everyone, Op::HomeWidgets),
    row("PUT", "/api/v1/home/widgets/admins-without-mfa-required", Rule::Everyone, Op::SetHomeWidget),
    row("GET", "/api/v1/widgets/admins-without-mfa-required", Rule::Readers, Op::WidgetList),
    row("GET", "/api/v1/me", Rule::Everyone, Op::Me),
    row("GET", "/api/v1/me/api-keys", Rule::Everyone, Op::ListKeys),
    row("POST", "/api/v1/me/api-keys", Rule::Session, Op::CreateKey),
    row("DELETE", "/api/v1/me/api-keys/{id}", Rule::Everyone, Op::RevokeKey),
    row("GET", "/api/v1/events", Rule::Readers, Op::Events),
    row("GET", "/api/v1/audit/export", Rule::Readers, Op::AuditExport),
    row("GET", "/api/v1/audit/verify", Rule::Readers, Op::AuditVerify),
    row("GET", "/api/v1/audit/events", Rule::Readers, Op::AuditEvents),
    row("GET", "/api/v1/audit/admins-without-mfa-required", Rule::Readers, Op::AuditAsOf),
    row("GET", "/api/v1/audit/mfa-coverage", Rule::Readers, Op::AuditCoverage),
];

/// How a cell's caller proves who they are.
#[derive(Debug, Clone, Copy)]
enum Cred<'a> {
    Anonymous,
    Key(&'a str),
    Session(&'a str),
}

/// What a cell must answer.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Success,
    Refused(StatusCode, &'static str),
}

const FORBIDDEN: Expect = Expect::Refused(StatusCode::FORBIDDEN, "forbidden");
const SELF_ACTION: Expect = Expect::Refused(StatusCode::FORBIDDEN, "self_action_forbidden");
const UNAUTHORIZED: Expect = Expect::Refused(StatusCode::UNAUTHORIZED, "unauthorized");

fn by_role(allowed: bool) -> Expect {
    if allowed { Expect::Success } else { FORBIDDEN }
}

/// An administrator of the caller's organisation acting in the matrix, with both credentials.
struct Actor {
    role: Role,
    id: Uuid,
    email: String,
    key: String,
    key_id: Uuid,
    session: String,
}

/// One organisation with an actor and a standing target per role, and another organisation.
struct Matrix {
    api: Api,
    actors: Vec<Actor>,
    /// One admin of each role in the caller's organisation, never an actor.
    targets: Vec<(Role, Uuid)>,
    /// The other organisation's admins: its owner (billing) and a read_only admin.
    foreign_admins: [Uuid; 2],
    /// The other organisation owner's API key id.
    foreign_key: Uuid,
    /// Ids of the other organisation that no answer to this one may contain.
    foreign_strings: Vec<String>,
    /// The other organisation, and how many events it had once set up.
    other: Org,
    other_events: usize,
    /// The highest `Gatehouse-Position` seen: every GET reads at least this far.
    head: i64,
    /// Counted for the summary line: requests sent, cells asserted, foreign/absent id pairs.
    requests: usize,
    cells: usize,
    absent_pairs: usize,
}

fn uuid_at(value: &Value) -> Uuid {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an id: {value}"))
}

/// The answer's body with `id` masked, to compare answers about different ids.
fn masked(answer: &Answer, id: Uuid) -> String {
    String::from_utf8_lossy(&answer.bytes).replace(&id.to_string(), "<id>")
}

fn new_admin_body() -> Value {
    json!({
        "email": email("created"),
        "first_name": "Ada",
        "last_name": "Lovelace",
        "role": "read_only",
        "password": PASSWORD,
        "mfa_required": false,
    })
}

impl Matrix {
    async fn new() -> Matrix {
        let api = Api::start().await;
        let other = api.other_org().await;
        let mut head = 0;
        let mut actors = Vec::new();
        for role in Role::ALL {
            let (id, key, position) = api.admin_with_key(role).await;
            head = head.max(position);
            let me = api.get_at("/api/v1/me", &key, position).await;
            me.expect(StatusCode::OK);
            let email = me.json["email"].as_str().expect("an email").to_owned();
            let keys = api.get("/api/v1/me/api-keys", &key).await;
            keys.expect(StatusCode::OK);
            let key_id = uuid_at(&keys.json["api_keys"][0]["id"]);
            let (login, session) = api.login(&email, PASSWORD).await;
            login.expect(StatusCode::OK);
            assert_eq!(login.json["status"], "authenticated", "{role:?} logs in");
            actors.push(Actor {
                role,
                id,
                email,
                key,
                key_id,
                session: session.expect("a session cookie"),
            });
        }
        let mut targets = Vec::new();
        for role in Role::ALL {
            let created = api
                .create_admin(&api.org.key, role.as_str(), Some(false))
                .await;
            head = head.max(created.position());
            targets.push((role, created.id()));
        }
        let foreign_admin = api.create_admin(&other.key, "read_only", Some(false)).await;
        head = head.max(foreign_admin.position());
        let foreign_key = foreign_key_id(&api, &other).await;
        let foreign_admins = [other.owner.0, foreign_admin.id()];
        let foreign_strings = [other.id.0, other.owner.0, foreign_admin.id(), foreign_key]
            .iter()
            .map(Uuid::to_string)
            .collect();
        let other_events = org_events(&api, &other).await;
        Matrix {
            api,
            actors,
            targets,
            foreign_admins,
            foreign_key,
            foreign_strings,
            other,
            other_events,
            head,
            requests: 0,
            cells: 0,
            absent_pairs: 0,
        }
    }

    /// Sends one request; a GET under `/api/v1` reads at least as far as [`Matrix::head`].
    async fn send(
        &mut self,
        cred: Cred<'_>,
        method: &Method,
        path: &str,
        body: Option<&Value>,
    ) -> Answer {
        let mut builder = Request::builder().method(method.clone()).uri(path);
        match cred {
            Cred::Anonymous => {}
            Cred::Key(key) => builder = builder.header("x-api-key", key),
            Cred::Session(token) => {
                builder = builder.header(header::COOKIE, format!("gatehouse_session={token}"));
            }
        }
        if *method == Method::GET && path.starts_with("/api/v1/") {
            builder = builder.header("gatehouse-min-position", self.head.to_string());
        }
        // The CSRF guard wants every cookie-authenticated change to be JSON, body or not.
        let json = body.is_some() || (matches!(cred, Cred::Session(_)) && *method != Method::GET);
        if json {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        let answer = self.api.send(builder.body(body).expect("a request")).await;
        if let Some(position) = answer
            .headers
            .get("gatehouse-position")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i64>().ok())
        {
            self.head = self.head.max(position);
        }
        self.requests += 1;
        answer
    }

    /// One cell of the matrix: asserts `expect`; a refusal must leave the store as it was, and
    /// an answer must not show anything of the other organisation.
    async fn cell(
        &mut self,
        label: &str,
        cred: Cred<'_>,
        method: &Method,
        path: &str,
        body: Option<Value>,
        expect: Expect,
    ) -> Answer {
        self.cells += 1;
        let before = self.api.event_count().await;
        let answer = self.send(cred, method, path, body.as_ref()).await;
        match expect {
            Expect::Success => {
                assert!(
                    answer.status.is_success(),
                    "{label}: {method} {path} must be allowed, got {} {}",
                    answer.status,
                    answer.json
                );
                let text = String::from_utf8_lossy(&answer.bytes);
                for foreign in &self.foreign_strings {
                    assert!(
                        !text.contains(foreign.as_str()),
                        "{label}: {method} {path} shows the other organisation's {foreign}"
                    );
                }
            }
            Expect::Refused(status, code) => {
                assert_eq!(
                    (answer.status, answer.json["error"]["code"].as_str()),
                    (status, Some(code)),
                    "{label}: {method} {path}: {}",
                    answer.json
                );
                assert!(
                    answer.json["error"]["message"]
                        .as_str()
                        .is_some_and(|m| !m.is_empty()),
                    "{label}: {method} {path}: no message in {}",
                    answer.json
                );
                assert_eq!(
                    self.api.event_count().await,
                    before,
                    "{label}: the refused {method} {path} changed the store"
                );
            }
        }
        answer
    }

    /// Ids of the other organisation answer exactly as a random id does (status and body, with
    /// the id masked), change nothing, and are a 404 for a role that may act on someone here
    /// (a role that may act on nobody is refused before any id is looked at).
    #[allow(clippy::too_many_arguments)]
    async fn foreign_ids_read_as_absent(
        &mut self,
        actor: usize,
        rule: Rule,
        method: &Method,
        path: impl Fn(Uuid) -> String,
        body: impl Fn(Uuid) -> Option<Value>,
        foreign: &[Uuid],
    ) {
        let (role, key) = (self.actors[actor].role, self.actors[actor].key.clone());
        for &theirs in foreign {
            self.absent_pairs += 1;
            let random = Uuid::now_v7();
            let before = self.api.event_count().await;
            let foreign_answer = self
                .send(
                    Cred::Key(&key),
                    method,
                    &path(theirs),
                    body(theirs).as_ref(),
                )
                .await;
            let absent_answer = self
                .send(
                    Cred::Key(&key),
                    method,
                    &path(random),
                    body(random).as_ref(),
                )
                .await;
            let label = format!("{role:?}: {method} {}", path(theirs));
            assert_eq!(
                self.api.event_count().await,
                before,
                "{label}: another organisation's id changed the store"
            );
            assert_eq!(
                foreign_answer.status, absent_answer.status,
                "{label}: another organisation's id answers unlike an absent one: {} vs {}",
                foreign_answer.json, absent_answer.json
            );
            assert_eq!(
                masked(&foreign_answer, theirs),
                masked(&absent_answer, random),
                "{label}: another organisation's id answers unlike an absent one"
            );
            let (status, code) = if rule.allows_someone(role) {
                (StatusCode::NOT_FOUND, "not_found")
            } else {
                (StatusCode::FORBIDDEN, "forbidden")
            };
            assert_eq!(
                (
                    foreign_answer.status,
                    foreign_answer.json["error"]["code"].as_str()
                ),
                (status, Some(code)),
                "{label}: {}",
                foreign_answer.json
            );
        }
    }

    /// The row's cells for a caller without credentials and for every role by API key, with
    /// the body `body` gives for the role; answers the roles' answers in [`Role::ALL`] order.
    async fn plain(
        &mut self,
        row: &Row,
        path: &str,
        body: impl Fn(Role) -> Option<Value>,
    ) -> Vec<Answer> {
        let method = method_of(row);
        let anonymous = if row.rule == Rule::Public {
            Expect::Success
        } else {
            UNAUTHORIZED
        };
        self.cell(
            "anonymous",
            Cred::Anonymous,
            &method,
            path,
            body(Role::ReadOnly),
            anonymous,
        )
        .await;
        let mut answers = Vec::new();
        for i in 0..self.actors.len() {
            let (role, key) = (self.actors[i].role, self.actors[i].key.clone());
            let expect = by_role(row.rule.allows_someone(role));
            let label = format!("{role:?}");
            answers.push(
                self.cell(&label, Cred::Key(&key), &method, path, body(role), expect)
                    .await,
            );
        }
        answers
    }

    async fn check(&mut self, row: &Row) {
        let method = method_of(row);
        match row.op {
            Op::Healthz
            | Op::Readyz
            | Op::Metrics
            | Op::OpenApi
            | Op::ListAdmins
            | Op::GetSecurity
            | Op::WidgetList
            | Op::ListKeys
            | Op::Events
            | Op::AuditExport
            | Op::AuditVerify
            | Op::AuditEvents
            | Op::AuditCoverage => {
                self.plain(row, row.path, |_| None).await;
            }
            Op::SetHomeWidget => {
                self.plain(row, row.path, |_| Some(json!({"visible": false})))
                    .await;
            }
            Op::AuditAsOf => {
                let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                let path = format!("{}?as_of={now}", row.path);
                self.plain(row, &path, |_| None).await;
            }
            Op::CreateAdmin => {
                self.plain(row, row.path, |_| Some(new_admin_body())).await;
            }
            Op::PutSecurity => {
                let on = Some(json!({"global_mfa_required": true}));
                self.plain(row, row.path, |_| on.clone()).await;
                // Billing turned it on: turn it off again (still billing's right alone).
                let billing = self.actors[0].key.clone();
                let off = Some(json!({"global_mfa_required": false}));
                self.cell(
                    "billing",
                    Cred::Key(&billing),
                    &method,
                    row.path,
                    off,
                    Expect::Success,
                )
                .await;
            }
            Op::HomeWidgets => {
                let answers = self.plain(row, row.path, |_| None).await;
                // A role that may not see the widget gets it hidden and empty
                // (docs/decisions.md), as if it had none to show.
                let runner = &answers[5].json["admins_without_mfa_required"];
                assert_eq!(runner["visible"], false, "command_runner: {runner}");
                assert_eq!(runner["count"], 0, "command_runner: {runner}");
            }
            Op::Me => {
                let answers = self.plain(row, row.path, |_| None).await;
                for (answer, actor) in answers.iter().zip(&self.actors) {
                    assert_eq!(uuid_at(&answer.json["id"]), actor.id, "{:?}", actor.role);
                    assert_eq!(answer.json["org"]["id"], self.api.org.id.0.to_string());
                }
            }
            Op::Login => self.login(&method, row.path).await,
            Op::VerifyCode => self.verify_code(&method, row.path).await,
            Op::ResetRequest => self.reset_request(&method, row.path).await,
            Op::Logout => self.logout(&method, row.path).await,
            Op::SetupStart | Op::SetupComplete => self.setup_link(row).await,
            Op::CreateKey => self.create_key(&method, row.path).await,
            Op::RevokeKey => self.revoke_key(row).await,
            Op::GetAdmin => self.get_admin(row).await,
            Op::SetMfa => self.set_mfa(row).await,
            Op::ResetMfa => self.reset_mfa(row).await,
            Op::BulkRequireMfa => self.bulk(row).await,
            Op::RemoveAdmin => self.remove_admin(row).await,
        }
    }

    async fn login(&mut self, method: &Method, path: &str) {
        for i in 0..self.actors.len() {
            let (role, email) = (self.actors[i].role, self.actors[i].email.clone());
            let body = json!({"email": email, "password": PASSWORD});
            let answer = self
                .cell(
                    &format!("{role:?}"),
                    Cred::Anonymous,
                    method,
                    path,
                    Some(body),
                    Expect::Success,
                )
                .await;
            assert_eq!(answer.json["status"], "authenticated", "{role:?}");
        }
    }

    async fn verify_code(&mut self, method: &Method, path: &str) {
        let body = || Some(json!({"code": "000000"}));
        self.cell(
            "anonymous",
            Cred::Anonymous,
            method,
            path,
            body(),
            UNAUTHORIZED,
        )
        .await;
        for i in 0..self.actors.len() {
            let role = self.actors[i].role;
            let (key, session) = (self.actors[i].key.clone(), self.actors[i].session.clone());
            // An API key is no session to verify.
            self.cell(
                &format!("{role:?} by key"),
                Cred::Key(&key),
                method,
                path,
                body(),
                UNAUTHORIZED,
            )
            .await;
            let answer = self
                .cell(
                    &format!("{role:?}"),
                    Cred::Session(&session),
                    method,
                    path,
                    body(),
                    Expect::Success,
                )
                .await;
            assert_eq!(answer.json["status"], "authenticated", "{role:?}");
        }
    }

    async fn reset_request(&mut self, method: &Method, path: &str) {
        // An unknown address: the request is answered the same, and nothing is appended later
        // behind the following cells' backs.
        let unknown = Some(json!({"email": email("nobody")}));
        self.cell(
            "anonymous",
            Cred::Anonymous,
            method,
            path,
            unknown,
            Expect::Success,
        )
        .await;
        for i in 0..self.actors.len() {
            let (role, session) = (self.actors[i].role, self.actors[i].session.clone());
            let before = self.api.event_count().await;
            self.cell(
                &format!("{role:?}"),
                Cred::Session(&session),
                method,
                path,
                Some(json!({})),
                Expect::Success,
            )
            .await;
            assert_eq!(
                self.api.event_count().await,
                before + 1,
                "{role:?}: a session asks for its own admin's email"
            );
        }
    }

    async fn logout(&mut self, method: &Method, path: &str) {
        self.cell(
            "anonymous",
            Cred::Anonymous,
            method,
            path,
            None,
            Expect::Success,
        )
        .await;
        for i in 0..self.actors.len() {
            let (role, email) = (self.actors[i].role, self.actors[i].email.clone());
            // A session of its own: the actor's main one is used by later rows.
            let (login, token) = self.api.login(&email, PASSWORD).await;
            login.expect(StatusCode::OK);
            let token = token.expect("a session cookie");
            self.cell(
                &format!("{role:?}"),
                Cred::Session(&token),
                method,
                path,
                None,
                Expect::Success,
            )
            .await;
            self.cell(
                &format!("{role:?} after logout"),
                Cred::Session(&token),
                &Method::GET,
                "/api/v1/me",
                None,
                UNAUTHORIZED,
            )
            .await;
        }
    }

    /// The link's token is the credential: without a live one, every caller gets 410.
    async fn setup_link(&mut self, row: &Row) {
        let method = method_of(row);
        let gone = Expect::Refused(StatusCode::GONE, "link_expired");
        let token = "not-a-live-link-token-0123456789abcdefghijk";
        let body = |email: &str| {
            Some(json!({"token": token, "email": email, "password": PASSWORD, "code": "000000"}))
        };
        let nobody = email("nobody");
        self.cell(
            "anonymous",
            Cred::Anonymous,
            &method,
            row.path,
            body(&nobody),
            gone,
        )
        .await;
        for i in 0..self.actors.len() {
            let role = self.actors[i].role;
            let (email, key) = (self.actors[i].email.clone(), self.actors[i].key.clone());
            let session = self.actors[i].session.clone();
            self.cell(
                &format!("{role:?} by key"),
                Cred::Key(&key),
                &method,
                row.path,
                body(&email),
                gone,
            )
            .await;
            self.cell(
                &format!("{role:?}"),
                Cred::Session(&session),
                &method,
                row.path,
                body(&email),
                gone,
            )
            .await;
        }
    }

    async fn create_key(&mut self, method: &Method, path: &str) {
        let body = || Some(json!({"name": "matrix"}));
        self.cell(
            "anonymous",
            Cred::Anonymous,
            method,
            path,
            body(),
            UNAUTHORIZED,
        )
        .await;
        let by_key = Expect::Refused(StatusCode::FORBIDDEN, "session_required");
        for i in 0..self.actors.len() {
            let role = self.actors[i].role;
            let (key, session) = (self.actors[i].key.clone(), self.actors[i].session.clone());
            self.cell(
                &format!("{role:?} by key"),
                Cred::Key(&key),
                method,
                path,
                body(),
                by_key,
            )
            .await;
            let created = self
                .cell(
                    &format!("{role:?}"),
                    Cred::Session(&session),
                    method,
                    path,
                    body(),
                    Expect::Success,
                )
                .await;
            assert_eq!(created.status, StatusCode::CREATED, "{role:?}");
        }
    }

    async fn revoke_key(&mut self, row: &Row) {
        let method = method_of(row);
        let path = |id: Uuid| format!("/api/v1/me/api-keys/{id}");
        let first_key = self.actors[0].key_id;
        self.cell(
            "anonymous",
            Cred::Anonymous,
            &method,
            &path(first_key),
            None,
            UNAUTHORIZED,
        )
        .await;
        for i in 0..self.actors.len() {
            let role = self.actors[i].role;
            let (key, session) = (self.actors[i].key.clone(), self.actors[i].session.clone());
            let created = self
                .send(
                    Cred::Session(&session),
                    &Method::POST,
                    "/api/v1/me/api-keys",
                    Some(&json!({"name": "to revoke"})),
                )
                .await;
            created.expect(StatusCode::CREATED);
            let spare = created.id();
            self.cell(
                &format!("{role:?}"),
                Cred::Key(&key),
                &method,
                &path(spare),
                None,
                Expect::Success,
            )
            .await;
            // Another admin's key reads as absent too, in this organisation as in the other.
            let neighbour = self.actors[(i + 1) % self.actors.len()].key_id;
            let foreign = [self.foreign_key, neighbour];
            self.foreign_ids_read_as_absent(i, row.rule, &method, path, |_| None, &foreign)
                .await;
        }
    }

    async fn get_admin(&mut self, row: &Row) {
        let method = method_of(row);
        let path = |id: Uuid| format!("/api/v1/admins/{id}");
        let first = self.targets[0].1;
        self.cell(
            "anonymous",
            Cred::Anonymous,
            &method,
            &path(first),
            None,
            UNAUTHORIZED,
        )
        .await;
        for i in 0..self.actors.len() {
            let (role, key) = (self.actors[i].role, self.actors[i].key.clone());
            for (target_role, target) in self.targets.clone() {
                let expect = by_role(row.rule.allows(role, target_role));
                let label = format!("{role:?} on {target_role:?}");
                let answer = self
                    .cell(
                        &label,
                        Cred::Key(&key),
                        &method,
                        &path(target),
                        None,
                        expect,
                    )
                    .await;
                if matches!(expect, Expect::Success) {
                    assert_eq!(uuid_at(&answer.json["id"]), target, "{label}");
                }
            }
            let foreign = self.foreign_admins;
            self.foreign_ids_read_as_absent(i, row.rule, &method, path, |_| None, &foreign)
                .await;
        }
    }

    async fn set_mfa(&mut self, row: &Row) {
        let method = method_of(row);
        let path = |id: Uuid| format!("/api/v1/admins/{id}/mfa");
        let first = self.targets[0].1;
        let require = || Some(json!({"required": true}));
        self.cell(
            "anonymous",
            Cred::Anonymous,
            &method,
            &path(first),
            require(),
            UNAUTHORIZED,
        )
        .await;
        for i in 0..self.actors.len() {
            let (role, key) = (self.actors[i].role, self.actors[i].key.clone());
            // Billing requires MFA for everyone, then administrator removes it where it may:
            // both cells change something.
            let required = role == Role::AdministratorWithBilling;
            for (target_role, target) in self.targets.clone() {
                let allowed = row.rule.allows(role, target_role);
                let label = format!("{role:?} on {target_role:?}");
                let body = Some(json!({"required": required}));
                let answer = self
                    .cell(
                        &label,
                        Cred::Key(&key),
                        &method,
                        &path(target),
                        body,
                        by_role(allowed),
                    )
                    .await;
                if allowed {
                    assert_eq!(answer.json["mfa"]["required"], required, "{label}");
                } else if row.rule.allows_someone(role) {
                    // A role that may manage some admins is told which one is out of reach.
                    assert_eq!(
                        uuid_at(&answer.json["error"]["admin_ids"][0]),
                        target,
                        "{label}"
                    );
                }
            }
            let foreign = self.foreign_admins;
            self.foreign_ids_read_as_absent(i, row.rule, &method, path, |_| require(), &foreign)
                .await;
        }
    }

    async fn reset_mfa(&mut self, row: &Row) {
        let method = method_of(row);
        let path = |id: Uuid| format!("/api/v1/admins/{id}/mfa/reset");
        let first = self.targets[0].1;
        self.cell(
            "anonymous",
            Cred::Anonymous,
            &method,
            &path(first),
            None,
            UNAUTHORIZED,
        )
        .await;
        for i in 0..self.actors.len() {
            let (role, key, me) = (
                self.actors[i].role,
                self.actors[i].key.clone(),
                self.actors[i].id,
            );
            // At most two resets per target (billing's and administrator's): below the hourly three.
            for (target_role, target) in self.targets.clone() {
                let expect = by_role(row.rule.allows(role, target_role));
                let label = format!("{role:?} on {target_role:?}");
                let answer = self
                    .cell(
                        &label,
                        Cred::Key(&key),
                        &method,
                        &path(target),
                        None,
                        expect,
                    )
                    .await;
                if matches!(expect, Expect::Success) {
                    assert_eq!(answer.status, StatusCode::ACCEPTED, "{label}");
                }
            }
            // Nobody resets their own MFA through the admin route.
            let own = if row.rule.allows_someone(role) {
                SELF_ACTION
            } else {
                FORBIDDEN
            };
            self.cell(
                &format!("{role:?} on themself"),
                Cred::Key(&key),
                &method,
                &path(me),
                None,
                own,
            )
            .await;
            let foreign = self.foreign_admins;
            self.foreign_ids_read_as_absent(i, row.rule, &method, path, |_| None, &foreign)
                .await;
        }
    }

    async fn bulk(&mut self, row: &Row) {
        let method = method_of(row);
        let ids = |list: &[Uuid]| Some(json!({"admin_ids": list}));
        let first = self.targets[0].1;
        self.cell(
            "anonymous",
            Cred::Anonymous,
            &method,
            row.path,
            ids(&[first]),
            UNAUTHORIZED,
        )
        .await;
        let billing_target = self.targets[0].1;
        let read_only_target = self.targets[4].1;
        for i in 0..self.actors.len() {
            let (role, key) = (self.actors[i].role, self.actors[i].key.clone());
            for (target_role, target) in self.targets.clone() {
                let allowed = row.rule.allows(role, target_role);
                let label = format!("{role:?} on {target_role:?}");
                let answer = self
                    .cell(
                        &label,
                        Cred::Key(&key),
                        &method,
                        row.path,
                        ids(&[target]),
                        by_role(allowed),
                    )
                    .await;
                if !allowed && row.rule.allows_someone(role) {
                    assert_eq!(
                        answer.json["error"]["admin_ids"],
                        json!([target]),
                        "{label}"
                    );
                }
            }
            // A bulk request naming anyone out of reach is refused whole, naming the offenders.
            if row.rule.allows_someone(role)
                && !row.rule.allows(role, Role::AdministratorWithBilling)
            {
                let label = format!("{role:?} on read_only and billing at once");
                let both = ids(&[read_only_target, billing_target]);
                let answer = self
                    .cell(&label, Cred::Key(&key), &method, row.path, both, FORBIDDEN)
                    .await;
                assert_eq!(
                    answer.json["error"]["admin_ids"],
                    json!([billing_target]),
                    "{label}"
                );
            }
            // Another organisation's id next to one of this organisation's: refused whole.
            let foreign = self.foreign_admins;
            let path = |_: Uuid| row.path.to_owned();
            let body = |id: Uuid| ids(&[read_only_target, id]);
            self.foreign_ids_read_as_absent(i, row.rule, &method, path, body, &foreign)
                .await;
        }
    }

    async fn remove_admin(&mut self, row: &Row) {
        let method = method_of(row);
        let path = |id: Uuid| format!("/api/v1/admins/{id}");
        let first = self.targets[0].1;
        self.cell(
            "anonymous",
            Cred::Anonymous,
            &method,
            &path(first),
            None,
            UNAUTHORIZED,
        )
        .await;
        for i in 0..self.actors.len() {
            let (role, key, me) = (
                self.actors[i].role,
                self.actors[i].key.clone(),
                self.actors[i].id,
            );
            for (target_role, standing) in self.targets.clone() {
                let allowed = row.rule.allows(role, target_role);
                // A removal that may succeed takes an admin made for it, not a standing target.
                let target = if allowed {
                    let victim = self
                        .api
                        .create_admin(&self.api.org.key, target_role.as_str(), Some(false))
                        .await;
                    self.head = self.head.max(victim.position());
                    victim.id()
                } else {
                    standing
                };
                let label = format!("{role:?} on {target_role:?}");
                let answer = self
                    .cell(
                        &label,
                        Cred::Key(&key),
                        &method,
                        &path(target),
                        None,
                        by_role(allowed),
                    )
                    .await;
                if allowed {
                    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{label}");
                }
            }
            // Nobody removes themself.
            let own = if row.rule.allows_someone(role) {
                SELF_ACTION
            } else {
                FORBIDDEN
            };
            self.cell(
                &format!("{role:?} on themself"),
                Cred::Key(&key),
                &method,
                &path(me),
                None,
                own,
            )
            .await;
            let foreign = self.foreign_admins;
            self.foreign_ids_read_as_absent(i, row.rule, &method, path, |_| None, &foreign)
                .await;
        }
    }
}

fn method_of(row: &Row) -> Method {
    Method::from_bytes(row.method.as_bytes()).expect("a method name")
}

/// How many events `org` has (`GET /events` is not an audit read: it records nothing).
async fn org_events(api: &Api, org: &Org) -> usize {
    let events = api.get("/api/v1/events?after=0&limit=1000", &org.key).await;
    events.expect(StatusCode::OK);
    events.json.as_array().expect("a batch").len()
}

/// The id of the (only) API key of `org`'s owner.
async fn foreign_key_id(api: &Api, org: &Org) -> Uuid {
    let keys = api.get("/api/v1/me/api-keys", &org.key).await;
    keys.expect(StatusCode::OK);
    uuid_at(&keys.json["api_keys"][0]["id"])
}

#[tokio::test]
async fn every_role_gets_what_the_spec_allows_and_other_organisations_ids_read_as_absent() {
    let mut matrix = Matrix::new().await;
    // Turning the Global MFA Requirement on requires MFA for every admin, the actors included,
    // which would change what their later logins answer: that row goes last.
    let (last, first): (Vec<&Row>, Vec<&Row>) = ROWS.iter().partition(|r| r.op == Op::PutSecurity);
    for row in first.into_iter().chain(last) {
        matrix.check(row).await;
    }
    // Nothing of the other organisation was changed by any of it.
    assert_eq!(
        org_events(&matrix.api, &matrix.other).await,
        matrix.other_events,
        "the other organisation's history grew"
    );
    eprintln!(
        "authz matrix: {} rows, {} cells, {} foreign-vs-absent id pairs, {} requests",
        ROWS.len(),
        matrix.cells,
        matrix.absent_pairs,
        matrix.requests
    );
}

#[tokio::test]
async fn every_documented_operation_has_exactly_one_row() {
    let api = Api::start().await;
    let answer = api
        .send(
            Request::builder()
                .uri("/api/openapi.json")
                .body(Body::empty())
                .expect("a request"),
        )
        .await;
    answer.expect(StatusCode::OK);
    let paths = answer.json["paths"]
        .as_object()
        .expect("the document's paths");
    let documented: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            [
                "get", "put", "post", "delete", "patch", "head", "options", "trace",
            ]
            .into_iter()
            .filter(|method| item.get(*method).is_some())
            .map(|method| (method.to_uppercase(), path.clone()))
        })
        .collect();
    let table: BTreeSet<(String, String)> = ROWS
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    assert_eq!(table.len(), ROWS.len(), "an operation has two rows");
    let ops: BTreeSet<Op> = ROWS.iter().map(|r| r.op).collect();
    assert_eq!(ops.len(), ROWS.len(), "two rows check the same operation");
    let missing: Vec<_> = documented.difference(&table).collect();
    let undocumented: Vec<_> = table.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "documented operations without a row in the matrix: {missing:?}"
    );
    assert!(
        undocumented.is_empty(),
        "rows for operations the OpenAPI document does not list: {undocumented:?}"
    );
}

/// Ids in query parameters read as absent too: the audit history filtered on another
/// organisation's admin or organisation finds what a filter on an id that names nothing finds.
#[tokio::test]
async fn audit_filters_on_another_organisations_ids_find_what_absent_ids_find() {
    let api = Api::start().await;
    let other = api.other_org().await;
    let theirs = api.create_admin(&other.key, "read_only", Some(false)).await;
    let their_email = theirs.json["email"].as_str().expect("an email").to_owned();
    let nobody = email("nobody");
    let position = theirs.position();
    let (their_id, their_org, random) = (
        theirs.id().to_string(),
        other.id.0.to_string(),
        Uuid::now_v7().to_string(),
    );
    let filters = [
        ("initiated_by", other.owner.0.to_string(), random.clone()),
        ("initiated_by", their_email.clone(), nobody.clone()),
        ("resource", their_id.clone(), random.clone()),
        ("resource", their_email, nobody),
        ("resource", their_org, random),
    ];
    for (name, foreign, absent) in filters {
        let path = |value: &str| format!("/api/v1/audit/events?{name}={value}");
        let foreign_answer = api.get_at(&path(&foreign), &api.org.key, position).await;
        let absent_answer = api.get_at(&path(&absent), &api.org.key, position).await;
        foreign_answer.expect(StatusCode::OK);
        absent_answer.expect(StatusCode::OK);
        assert_eq!(
            foreign_answer.json, absent_answer.json,
            "{name}={foreign} answers unlike {name}={absent}"
        );
        assert_eq!(foreign_answer.json["events"], json!([]), "{name}={foreign}");
    }
}

/// The HTML pages and their forms (outside the OpenAPI document), by session with the form's
/// CSRF token: the same matrix, the same absent-looking foreign ids. A refused page or form
/// answers 403 and changes nothing; an allowed page answers 200, an allowed form 303.
#[rustfmt::skip]
const PAGE_ROWS: [(&str, &str, Rule); 11] = [
    ("GET", "/", Rule::Everyone),
    ("GET", "/home/settings", Rule::Everyone),
    ("POST", "/home/settings", Rule::Everyone),
    ("GET", "/admins-without-mfa-required", Rule::Readers),
    ("POST", "/admins-without-mfa-required/require-mfa", Rule::ManageMfa),
    ("GET", "/admins", Rule::Readers),
    ("GET", "/admins/{id}", Rule::Readers),
    ("POST", "/admins/{id}/mfa", Rule::ManageMfa),
    ("POST", "/admins/{id}/mfa/reset", Rule::ManageMfa),
    ("GET", "/settings/security", Rule::Everyone),
    // Last: turning the Global MFA Requirement on changes every admin.
    ("POST", "/settings/security", Rule::GlobalMfa),
];

/// `application/x-www-form-urlencoded` of `fields` (the values here need no escaping but `@`).
fn form(fields: &[(&str, String)]) -> String {
    fields
        .iter()
        .map(|(name, value)| format!("{name}={}", value.replace('@', "%40")))
        .collect::<Vec<_>>()
        .join("&")
}

impl Matrix {
    /// Waits until every read model has applied everything in the store.
    async fn settle(&mut self) {
        self.head = self.api.env.db.head().await.expect("the store's head");
        let owner = self.api.org.key.clone();
        self.send(Cred::Key(&owner), &Method::GET, "/api/v1/me", None)
            .await
            .expect(StatusCode::OK);
    }

    async fn page(
        &mut self,
        session: Option<&str>,
        method: &Method,
        path: &str,
        body: Option<String>,
    ) -> Answer {
        let mut builder = Request::builder().method(method.clone()).uri(path);
        if let Some(token) = session {
            builder = builder.header(header::COOKIE, format!("gatehouse_session={token}"));
        }
        if body.is_some() {
            builder = builder.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        self.requests += 1;
        let body = body.map_or_else(Body::empty, Body::from);
        self.api.send(builder.body(body).expect("a request")).await
    }

    /// One page cell: 200 (GET) or 303 (form) when allowed (`refused` is `None`), else the
    /// `refused` status with nothing changed.
    async fn page_cell(
        &mut self,
        label: &str,
        session: Option<&str>,
        method: &Method,
        path: &str,
        body: Option<String>,
        refused: Option<StatusCode>,
    ) -> Answer {
        self.cells += 1;
        let before = self.api.event_count().await;
        let answer = self.page(session, method, path, body).await;
        let text = String::from_utf8_lossy(&answer.bytes).into_owned();
        if let Some(refused) = refused {
            assert_eq!(answer.status, refused, "{label}: {method} {path}: {text}");
            assert_eq!(
                self.api.event_count().await,
                before,
                "{label}: the refused {method} {path} changed the store"
            );
        } else {
            let ok = if *method == Method::GET {
                StatusCode::OK
            } else {
                StatusCode::SEE_OTHER
            };
            assert_eq!(answer.status, ok, "{label}: {method} {path}: {text}");
            let location = answer
                .headers
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok());
            assert!(
                !location.is_some_and(|l| l.starts_with("/login")),
                "{label}: {method} {path} sent to {location:?}"
            );
            for foreign in &self.foreign_strings {
                assert!(
                    !text.contains(foreign.as_str()),
                    "{label}: {method} {path} shows the other organisation's {foreign}"
                );
            }
        }
        answer
    }

    async fn check_page(&mut self, (method, template, rule): (&str, &str, Rule), csrf: &[String]) {
        let method = Method::from_bytes(method.as_bytes()).expect("a method name");
        let path = |id: Uuid| template.replace("{id}", &id.to_string());
        let billing_on =
            |role: Role| (role == Role::AdministratorWithBilling).then_some("on".to_owned());
        // The form a role sends to `template` about `target`.
        let fields = |role: Role, csrf: &str, target: Uuid| -> Option<String> {
            let mut fields = vec![("csrf_token", csrf.to_owned())];
            match template {
                "/home/settings" => fields.push(("visible", "on".to_owned())),
                "/admins-without-mfa-required/require-mfa" => {
                    fields.push(("admin_ids", target.to_string()))
                }
                // Billing requires MFA, administrator removes it: both change something.
                "/admins/{id}/mfa" => {
                    fields.extend(billing_on(role).map(|on| ("mfa_required", on)))
                }
                "/admins/{id}/mfa/reset" => fields.push(("kind", "reset".to_owned())),
                "/settings/security" => fields.push(("global_mfa_required", "on".to_owned())),
                _ => {}
            }
            (method != Method::GET).then(|| form(&fields))
        };
        let by_target = template.contains("{id}") || template.ends_with("/require-mfa");
        let first = self.targets[0].1;
        // Without a session every page and form sends the browser to the login page.
        let answer = self
            .page_cell(
                "anonymous",
                None,
                &method,
                &path(first),
                fields(Role::ReadOnly, "", first),
                Some(StatusCode::SEE_OTHER),
            )
            .await;
        assert_eq!(
            answer
                .headers
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok()),
            Some("/login")
        );
        for i in 0..self.actors.len() {
            let (role, session) = (self.actors[i].role, self.actors[i].session.clone());
            let csrf = &csrf[i];
            let targets = if by_target {
                self.targets.clone()
            } else {
                vec![(Role::ReadOnly, first)]
            };
            for (target_role, target) in targets {
                let label = format!("{role:?} on {target_role:?}");
                let allowed = rule.allows(role, target_role);
                self.page_cell(
                    &label,
                    Some(&session),
                    &method,
                    &path(target),
                    fields(role, csrf, target),
                    (!allowed).then_some(StatusCode::FORBIDDEN),
                )
                .await;
            }
            if template == "/settings/security"
                && method == Method::POST
                && rule.allows_someone(role)
            {
                let off = Some(form(&[("csrf_token", csrf.clone())]));
                self.page_cell(
                    &format!("{role:?} turning it off"),
                    Some(&session),
                    &method,
                    template,
                    off,
                    None,
                )
                .await;
            }
            if !by_target {
                continue;
            }
            for theirs in self.foreign_admins {
                self.absent_pairs += 1;
                let random = Uuid::now_v7();
                // Pages show read models: let them settle so the two answers see the same.
                self.settle().await;
                let before = self.api.event_count().await;
                let foreign_answer = self
                    .page(
                        Some(&session),
                        &method,
                        &path(theirs),
                        fields(role, csrf, theirs),
                    )
                    .await;
                let absent_answer = self
                    .page(
                        Some(&session),
                        &method,
                        &path(random),
                        fields(role, csrf, random),
                    )
                    .await;
                let label = format!("{role:?}: {method} {}", path(theirs));
                assert_eq!(
                    self.api.event_count().await,
                    before,
                    "{label}: another organisation's id changed the store"
                );
                assert_eq!(
                    foreign_answer.status, absent_answer.status,
                    "{label}: another organisation's id answers unlike an absent one"
                );
                assert_eq!(
                    masked(&foreign_answer, theirs),
                    masked(&absent_answer, random),
                    "{label}: another organisation's id answers unlike an absent one"
                );
                // Unlike the API, a refused form re-renders the admin's page, so a role that may
                // act on nobody (manager, ...) gets that page's 404 for an absent id: the same
                // for both, which is what matters here.
                let status = foreign_answer.status;
                if rule.allows_someone(role) {
                    assert_eq!(status, StatusCode::NOT_FOUND, "{label}");
                } else {
                    assert!(
                        [StatusCode::FORBIDDEN, StatusCode::NOT_FOUND].contains(&status),
                        "{label}: {status}"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn every_page_and_form_holds_the_matrix_and_other_organisations_ids_read_as_absent() {
    let mut matrix = Matrix::new().await;
    // Every read model has caught up with the set-up before the pages read them.
    matrix.settle().await;
    let mut csrf = Vec::new();
    for i in 0..matrix.actors.len() {
        let session = matrix.actors[i].session.clone();
        let page = matrix
            .page(Some(&session), &Method::GET, "/home/settings", None)
            .await;
        page.expect(StatusCode::OK);
        let text = String::from_utf8_lossy(&page.bytes);
        let marker = "name=\"csrf_token\" value=\"";
        let start = text.find(marker).expect("a CSRF token on the page") + marker.len();
        let end = start + text[start..].find('"').expect("the end of the token");
        csrf.push(text[start..end].to_owned());
    }
    for row in PAGE_ROWS {
        matrix.check_page(row, &csrf).await;
    }
    eprintln!(
        "page matrix: {} rows, {} cells, {} foreign-vs-absent id pairs",
        PAGE_ROWS.len(),
        matrix.cells,
        matrix.absent_pairs
    );
}
