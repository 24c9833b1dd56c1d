//! The API under test: a router over real services (Postgres, NATS, the relay and the
//! projections running), an organisation with its owner and the owner's API key, and helpers to
//! send requests through `tower::ServiceExt::oneshot`.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use gatehouse_auth::{AuthMethod, Passwords, Principal};
use gatehouse_commands::{CommandContext, Commands};
use gatehouse_domain::decide::NewAdmin;
use gatehouse_domain::{AdminId, Email, OrgId, PersonName, Role};
use gatehouse_portal::AppState;
use gatehouse_portal::metrics_exporter_prometheus::PrometheusBuilder;
use gatehouse_projections::{Checkpoints, ProjectionsConfig};
use gatehouse_relay::RelayConfig;
use gatehouse_tests::TestEnv;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use uuid::Uuid;

/// A password that passes the policy for every address these tests make.
pub const PASSWORD: &str = "correct horse battery staple";

/// The session token a `Set-Cookie: gatehouse_session=…` answer carries, if any.
pub fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.strip_prefix("gatehouse_session="))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
        .find(|v| !v.is_empty())
}

/// A fresh, unique email address (addresses are unique across organisations).
pub fn email(label: &str) -> String {
    format!("{label}.{}@example.com", Uuid::new_v4().simple())
}

/// An organisation and its owner (an `administrator_with_billing`) with an API key.
#[derive(Debug, Clone)]
pub struct Org {
    pub id: OrgId,
    pub owner: AdminId,
    pub key: String,
}

/// One answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
    pub json: Value,
}

impl Answer {
    /// The `Gatehouse-Position` of a command answer.
    pub fn position(&self) -> i64 {
        self.headers
            .get("gatehouse-position")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "no Gatehouse-Position on a {} answer: {}",
                    self.status, self.json
                )
            })
    }

    /// The error code of an error answer.
    pub fn code(&self) -> &str {
        self.json["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("not an error answer: {}", self.json))
    }

    pub fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub fn expect(&self, status: StatusCode) -> &Answer {
        assert_eq!(self.status, status, "unexpected answer: {}", self.json);
        self
    }

    #[track_caller]
    pub fn expect_error(&self, status: StatusCode, code: &str) -> &Answer {
        self.expect(status);
        assert_eq!(self.code(), code, "unexpected error: {}", self.json);
        assert!(
            self.json["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "no message: {}",
            self.json
        );
        self
    }

    pub fn id(&self) -> Uuid {
        self.json["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no id in {}", self.json))
    }
}

/// The ids in a JSON array of Admin objects.
pub fn ids_of(admins: &Value) -> Vec<Uuid> {
    admins
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|a| a["id"].as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Ids as a sorted list (for comparing sets).
pub fn sorted(mut ids: Vec<Uuid>) -> Vec<Uuid> {
    ids.sort();
    ids
}

/// A JSON array of ids as sorted `Uuid`s.
pub fn uuids(value: &Value) -> Vec<Uuid> {
    sorted(
        value
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|v| v.as_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default(),
    )
}

pub struct Api {
    pub env: TestEnv,
    pub commands: Commands,
    pub router: Router,
    pub org: Org,
    /// `GATEHOUSE_PUBLIC_URL` of this API: the origin the CSRF guard expects.
    #[allow(dead_code)] // read by the browser tests only
    pub public_url: String,
    shutdown: CancellationToken,
}

impl Api {
    /// Starts the relay, the projections and the router, and creates the first organisation.
    pub async fn start() -> Api {
        Self::start_with("http://127.0.0.1:8080").await
    }

    /// [`Api::start`] with the given `GATEHOUSE_PUBLIC_URL`.
    pub async fn start_with(public_url: &str) -> Api {
        let env = TestEnv::new().await;
        let shutdown = CancellationToken::new();
        let relay = RelayConfig::new(&env.stream, &env.prefix);
        gatehouse_relay::ensure_stream(&env.jetstream, &relay)
            .await
            .expect("the JetStream stream");
        tokio::spawn(gatehouse_relay::run(
            env.db.clone(),
            env.jetstream.clone(),
            relay,
            shutdown.clone(),
        ));
        tokio::spawn(gatehouse_projections::run(
            env.db.clone(),
            env.jetstream.clone(),
            ProjectionsConfig::new(&env.stream, &env.prefix),
            shutdown.clone(),
        ));
        let commands = new_commands(&env);
        let router = router(&env, commands.clone(), public_url).await;
        let org = create_org(&commands, "Acme").await;
        Api {
            env,
            commands,
            router,
            org,
            public_url: public_url.to_owned(),
            shutdown,
        }
    }

    /// [`Api::start`], served over HTTP on a port of its own on 127.0.0.1 (for a browser):
    /// `public_url` is `http://127.0.0.1:<port>`. The server stops with the `Api`.
    #[allow(dead_code)] // used by the browser tests only
    pub async fn serve() -> Api {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port on 127.0.0.1");
        let port = listener.local_addr().expect("the bound address").port();
        let api = Self::start_with(&format!("http://127.0.0.1:{port}")).await;
        let app = api
            .router
            .clone()
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        let shutdown = api.shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                served = axum::serve(listener, app).into_future() => {
                    served.expect("serving the portal");
                }
            }
        });
        api
    }

    /// `public_url` joined with `path` (which starts with `/`).
    #[allow(dead_code)] // used by the browser tests only
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.public_url)
    }

    /// Another organisation, with its owner and key.
    pub async fn other_org(&self) -> Org {
        create_org(&self.commands, "Globex").await
    }

    /// The router of another API process on the same database and NATS: its own command
    /// service, so its own kept states and API key cache, as a second `gatehouse serve` has.
    #[allow(dead_code)] // used by tests/tests/api_keys.rs only
    pub async fn another_process(&self) -> Router {
        router(&self.env, new_commands(&self.env), &self.public_url).await
    }

    /// Sends a request built by the caller.
    pub async fn send(&self, request: Request<Body>) -> Answer {
        self.send_via(&self.router, request).await
    }

    /// Sends a request to `router` (this API's, or [`Api::another_process`]'s).
    pub async fn send_via(&self, router: &Router, request: Request<Body>) -> Answer {
        let response = router
            .clone()
            .oneshot(request)
            .await
            .expect("the router answers");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("the body")
            .to_bytes()
            .to_vec();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            bytes,
            json,
        }
    }

    /// A request as `credential`: an API key (`ghk_…`) in `x-api-key`, or else a session
    /// token in the `gatehouse_session` cookie (as a browser sends it, with a JSON content type
    /// on every change so the CSRF guard lets it through).
    fn builder(
        method: Method,
        path: &str,
        credential: Option<&str>,
    ) -> axum::http::request::Builder {
        let changes = !matches!(method, Method::GET | Method::HEAD);
        let builder = Request::builder().method(method).uri(path);
        match credential {
            Some(key) if key.starts_with("ghk_") => builder.header("x-api-key", key),
            Some(token) => {
                let builder = builder.header(header::COOKIE, format!("gatehouse_session={token}"));
                if changes {
                    builder.header(header::CONTENT_TYPE, "application/json")
                } else {
                    builder
                }
            }
            None => builder,
        }
    }

    /// Logs in; answers the login's answer and the session token its cookie carries.
    pub async fn login(&self, email: &str, password: &str) -> (Answer, Option<String>) {
        let answer = self
            .send(
                Request::builder()
                    .method(Method::POST)
                    .uri("/api/v1/auth/login")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(
                        json!({"email": email, "password": password}).to_string(),
                    ))
                    .expect("request"),
            )
            .await;
        let token = session_token(&answer.headers);
        (answer, token)
    }

    /// Creates an admin of `role` without MFA required and logs them in: their id and session.
    pub async fn admin_with_session(&self, role: Role) -> (Uuid, String) {
        let created = self
            .create_admin(&self.org.key, role.as_str(), Some(false))
            .await;
        let email = created.json["email"].as_str().expect("email").to_owned();
        let (answer, token) = self.login(&email, PASSWORD).await;
        answer.expect(StatusCode::OK);
        assert_eq!(answer.json["status"], "authenticated");
        (created.id(), token.expect("a session cookie"))
    }

    /// A GET as `key`.
    pub async fn get(&self, path: &str, key: &str) -> Answer {
        self.get_via(&self.router, path, key).await
    }

    /// A GET as `key` sent to `router`.
    pub async fn get_via(&self, router: &Router, path: &str, key: &str) -> Answer {
        let request = Self::builder(Method::GET, path, Some(key))
            .body(Body::empty())
            .expect("request");
        self.send_via(router, request).await
    }

    /// A GET as `key` that reflects at least `position`.
    pub async fn get_at(&self, path: &str, key: &str, position: i64) -> Answer {
        let request = Self::builder(Method::GET, path, Some(key))
            .header("gatehouse-min-position", position.to_string())
            .body(Body::empty())
            .expect("request");
        self.send(request).await
    }

    /// A request with a JSON body (or none) as `key`.
    pub async fn json(&self, method: Method, path: &str, key: &str, body: Option<Value>) -> Answer {
        let builder = Self::builder(method, path, Some(key));
        let request = match body {
            Some(body) => builder
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .expect("request"),
            None => builder.body(Body::empty()).expect("request"),
        };
        self.send(request).await
    }

    /// A request with a raw body and content type, as `key`.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        key: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Answer {
        let mut builder = Self::builder(method, path, Some(key));
        if let Some(content_type) = content_type {
            builder = builder.header(header::CONTENT_TYPE, content_type);
        }
        self.send(builder.body(Body::from(body)).expect("request"))
            .await
    }

    /// Creates an admin through the API as `key`; answers the 201 answer.
    pub async fn create_admin(&self, key: &str, role: &str, mfa_required: Option<bool>) -> Answer {
        let mut body = json!({
            "email": email(role),
            "first_name": "Ada",
            "last_name": "Lovelace",
            "role": role,
            "password": PASSWORD,
        });
        if let Some(required) = mfa_required {
            body["mfa_required"] = json!(required);
        }
        let answer = self
            .json(Method::POST, "/api/v1/admins", key, Some(body))
            .await;
        answer.expect(StatusCode::CREATED);
        answer
    }

    /// Creates an admin of `role` in the first organisation and an API key for them.
    pub async fn admin_with_key(&self, role: Role) -> (Uuid, String, i64) {
        let created = self
            .create_admin(&self.org.key, role.as_str(), Some(false))
            .await;
        let id = created.id();
        let email = created.json["email"].as_str().expect("email").to_owned();
        let principal = Principal {
            admin_id: AdminId(id),
            org_id: self.org.id,
            email,
            role,
            auth_method: AuthMethod::ApiKey,
        };
        let key = self
            .commands
            .create_api_key(&CommandContext::new(principal), "test")
            .await
            .expect("an API key");
        (id, key.value.1, key.position)
    }

    /// The stream versions of one stream, in order.
    pub async fn stream_versions(&self, stream: Uuid) -> Vec<i64> {
        let client = self.env.db.pool.get().await.expect("a connection");
        let rows = client
            .query(
                "SELECT stream_version FROM events WHERE stream_id = $1 ORDER BY stream_version",
                &[&stream],
            )
            .await
            .expect("the stream's versions");
        rows.iter().map(|r| r.get(0)).collect()
    }

    /// The type of a stream's last event.
    pub async fn last_event_type(&self, stream: Uuid) -> String {
        let client = self.env.db.pool.get().await.expect("a connection");
        let row = client
            .query_one(
                "SELECT event_type FROM events WHERE stream_id = $1 ORDER BY stream_version DESC LIMIT 1",
                &[&stream],
            )
            .await
            .expect("the stream's last event");
        row.get(0)
    }

    /// The number of events in the store.
    pub async fn event_count(&self) -> i64 {
        let client = self.env.db.pool.get().await.expect("a connection");
        client
            .query_one("SELECT count(*) FROM events", &[])
            .await
            .expect("the count")
            .get(0)
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Creates an organisation, its owner, and an API key for the owner.
/// A command service on the test's database, hashing up to four passwords at once.
fn new_commands(env: &TestEnv) -> Commands {
    Commands::new(
        env.db.clone(),
        Passwords::new(4),
        gatehouse_auth::secretbox::SecretKey::random().expect("a key"),
    )
}

/// The portal's router over `commands`, as one API process serves it.
async fn router(env: &TestEnv, commands: Commands, public_url: &str) -> Router {
    let checkpoints = Checkpoints::start(env.db.clone())
        .await
        .expect("the checkpoints follower");
    gatehouse_portal::router(AppState::new(gatehouse_portal::Shared {
        commands,
        db: env.db.clone(),
        checkpoints,
        nats: Some(env.nats.clone()),
        metrics: Some(PrometheusBuilder::new().build_recorder().handle()),
        public_url: public_url.to_owned(),
    }))
}

async fn create_org(commands: &Commands, name: &str) -> Org {
    let owner = NewAdmin {
        id: AdminId::generate(),
        email: Email::parse(&email("owner")).expect("an email"),
        first_name: PersonName::parse("first_name", "Olive").expect("a name"),
        last_name: PersonName::parse("last_name", "Owner").expect("a name"),
        role: Role::AdministratorWithBilling,
        mfa_required: None,
    };
    let email = owner.email.as_str().to_owned();
    let created = commands
        .create_org(name, owner, PASSWORD.to_owned())
        .await
        .expect("an organisation");
    let (org_id, owner_id) = created.value;
    let principal = Principal {
        admin_id: owner_id,
        org_id,
        email,
        role: Role::AdministratorWithBilling,
        auth_method: AuthMethod::ApiKey,
    };
    let key = commands
        .create_api_key(&CommandContext::new(principal), "test")
        .await
        .expect("an API key");
    Org {
        id: org_id,
        owner: owner_id,
        key: key.value.1,
    }
}
