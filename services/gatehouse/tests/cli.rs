//! The `gatehouse` binary as an operator runs it, against real Postgres and NATS.

mod common;

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use futures::StreamExt;
use gatehouse_tests::{TestEnv, nats_url};
use serde_json::Value;

const SECRET_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn gatehouse(env: &TestEnv) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    cmd.env("DATABASE_URL", &env.db_url)
        .env("NATS_URL", nats_url())
        .env("GATEHOUSE_NATS_STREAM", &env.stream)
        .env("GATEHOUSE_NATS_PREFIX", &env.prefix)
        .env("GATEHOUSE_SECRET_KEY", SECRET_KEY)
        .env(
            "GATEHOUSE_MAILDIR",
            std::env::temp_dir().join(format!("{}-mail", env.prefix)),
        )
        .env("GATEHOUSE_PUBLIC_URL", "http://127.0.0.1:8080")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("the gatehouse binary runs")
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("an address").port()
}

/// A `gatehouse serve` child process, killed when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve(env: &TestEnv) -> Server {
    let port = free_port();
    let child = gatehouse(env)
        .args(["serve"])
        .env("GATEHOUSE_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("serve starts");
    let base = format!("http://127.0.0.1:{port}");
    let server = Server { child, base };
    common::await_success(&format!("{}/readyz", server.base), Duration::from_secs(60)).await;
    server
}

fn org_create(env: &TestEnv, email: &str) -> Value {
    common::org_create(gatehouse(env), email)
}

#[tokio::test]
async fn org_create_prints_one_json_object_with_a_generated_password_and_an_api_key() {
    let env = TestEnv::new().await;
    let created = org_create(&env, "owner@acme.example");
    for field in ["org_id", "owner_id"] {
        assert!(
            uuid::Uuid::parse_str(created[field].as_str().expect(field)).is_ok(),
            "{field}"
        );
    }
    let password = created["owner_password"]
        .as_str()
        .expect("a generated password");
    assert!(password.len() >= 20, "generated passwords are strong");
    assert!(
        created["api_key"]
            .as_str()
            .expect("an API key")
            .starts_with("ghk_")
    );
    // The owner's Set Up MFA link: a token whose hash names a live link for the owner.
    let link = created["setup_link"].as_str().expect("a setup link");
    let token = link
        .strip_prefix("http://127.0.0.1:8080/mfa/setup?token=")
        .expect("a link to the portal's setup page");
    let client = env.db.pool.get().await.expect("a connection");
    let owner: uuid::Uuid = created["owner_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("the owner's id");
    let live: bool = client
        .query_one(
            "SELECT admin_id = $2 AND expires_at > now() AND used_at IS NULL
             FROM mfa_setup_links WHERE token_hash = $1",
            &[&gatehouse_auth::link_token::hash(token), &owner],
        )
        .await
        .expect("the link is stored by its hash")
        .get(0);
    assert!(live);

    // The same email again is refused with a clear line, and nothing is created.
    let again = run(gatehouse(&env).args([
        "org",
        "create",
        "--name",
        "Other",
        "--owner-email",
        "OWNER@acme.example",
        "--json",
    ]));
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

#[tokio::test]
async fn serve_without_a_secret_key_refuses_to_start_with_one_clear_line() {
    let env = TestEnv::new().await;
    let out = run(gatehouse(&env)
        .env_remove("GATEHOUSE_SECRET_KEY")
        .args(["serve"]));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("GATEHOUSE_SECRET_KEY is required"),
        "{stderr}"
    );
}

#[tokio::test]
async fn unreachable_postgres_or_nats_is_named_in_one_line_with_how_to_start_it() {
    let env = TestEnv::new().await;
    let port = free_port();
    let out = run(gatehouse(&env)
        .env(
            "DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:{port}/x"),
        )
        .args(["migrate"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("cannot reach Postgres at 127.0.0.1:{port}")),
        "{stderr}"
    );
    assert!(stderr.contains("Start it"), "{stderr}");

    let out = run(gatehouse(&env)
        .env("NATS_URL", format!("nats://127.0.0.1:{port}"))
        .args(["serve"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("cannot reach NATS at nats://127.0.0.1:{port}")),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_command_over_http_is_stored_published_on_nats_and_readable_at_its_position() {
    let env = TestEnv::new().await;
    let created = org_create(&env, "owner@acme.example");
    let key = created["api_key"].as_str().expect("api key").to_owned();
    let org_id = created["org_id"].as_str().expect("org id").to_owned();
    let mut subscription = env
        .nats
        .subscribe(format!(
            "{}.{org_id}.admin.mfa_requirement_removed",
            env.prefix
        ))
        .await
        .expect("subscribe");
    let server = serve(&env).await;
    let http = reqwest::Client::new();

    let created_admin: Value = http
        .post(format!("{}/api/v1/admins", server.base))
        .header("x-api-key", &key)
        .json(&serde_json::json!({
            "email": "grace@acme.example", "first_name": "Grace", "last_name": "Hopper",
            "role": "administrator", "password": "a long enough password"
        }))
        .send()
        .await
        .expect("POST /admins")
        .error_for_status()
        .expect("201")
        .json()
        .await
        .expect("an Admin");
    let id = created_admin["id"].as_str().expect("id").to_owned();
    assert_eq!(created_admin["mfa"]["required"], true);
    assert_eq!(created_admin["mfa"]["requirement_source"], "default");

    let answer = http
        .put(format!("{}/api/v1/admins/{id}/mfa", server.base))
        .header("x-api-key", &key)
        .json(&serde_json::json!({"required": false}))
        .send()
        .await
        .expect("PUT mfa");
    assert_eq!(answer.status(), 200);
    let position = answer.headers()["gatehouse-position"]
        .to_str()
        .expect("ascii")
        .to_owned();

    let widget: Value = http
        .get(format!(
            "{}/api/v1/widgets/admins-without-mfa-required",
            server.base
        ))
        .header("x-api-key", &key)
        .header("Gatehouse-Min-Position", &position)
        .send()
        .await
        .expect("GET widget")
        .json()
        .await
        .expect("widget JSON");
    assert_eq!(widget["count"], 1);
    assert_eq!(widget["admins"][0]["id"], id.as_str());

    let message = tokio::time::timeout(Duration::from_secs(30), subscription.next())
        .await
        .expect("the event reaches NATS")
        .expect("a message");
    let envelope: Value = serde_json::from_slice(&message.payload).expect("an envelope");
    assert_eq!(
        envelope["type"],
        "gatehouse.admin.mfa_requirement_removed.v1"
    );
    assert_eq!(envelope["position"].to_string(), position);
    let headers = message.headers.expect("headers");
    assert_eq!(
        headers.get("Nats-Msg-Id").map(|v| v.as_str().to_owned()),
        envelope["id"].as_str().map(str::to_owned)
    );

    let metrics = http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("gatehouse_commands_total"), "{metrics}");
}

#[tokio::test]
async fn projections_rebuild_replays_the_store_and_keeps_the_read_models() {
    let env = TestEnv::new().await;
    let created = org_create(&env, "owner@acme.example");
    let out = run(gatehouse(&env).args(["projections", "rebuild"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let org: uuid::Uuid = created["org_id"]
        .as_str()
        .expect("org")
        .parse()
        .expect("uuid");
    let admins = gatehouse_projections::query::list_admins(&env.db, org, None, 50)
        .await
        .expect("query");
    assert_eq!(admins.len(), 1);
    assert_eq!(admins[0].email, "owner@acme.example");

    let unknown = run(gatehouse(&env).args(["projections", "rebuild", "nonsense"]));
    assert!(!unknown.status.success());
}
