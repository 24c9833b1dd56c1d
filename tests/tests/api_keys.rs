//! API keys kept in memory by each API process (services/auth/src/key_cache.rs): a key that was
//! revoked, or whose admin was removed, is refused by the process that did it at once and by
//! every other process once Postgres tells it, even when the news was lost with a connection.
//!
//! Two processes here are two routers over one database, each with its own command service and
//! so its own cache, as two `gatehouse serve` processes behind one load balancer.

#[allow(dead_code)]
#[path = "api/support.rs"]
mod support;

use std::time::Duration;

use axum::Router;
use axum::http::{Method, StatusCode};
use gatehouse_auth::key_cache::CHANNEL;
use gatehouse_domain::Role;
use gatehouse_tests::eventually;
use serde_json::json;
use support::Api;
use uuid::Uuid;

const ME: &str = "/api/v1/me";
const KEYS: &str = "/api/v1/me/api-keys";

/// Far longer than a notification takes, far shorter than a kept key's [`MAX_AGE`]: a test that
/// passes within it did not pass because the entry aged out.
///
/// [`MAX_AGE`]: gatehouse_auth::key_cache::MAX_AGE
const NEWS: Duration = Duration::from_secs(10);

/// The statement a cache's listener last ran, as Postgres shows it.
fn listen_statement() -> String {
    format!("LISTEN \"{CHANNEL}\"")
}

/// The server processes of the API key caches listening on this test's database.
async fn listeners(api: &Api) -> Vec<i32> {
    let client = api.env.db.pool.get().await.expect("a connection");
    let rows = client
        .query(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = $1",
            &[&listen_statement()],
        )
        .await
        .expect("pg_stat_activity");
    rows.iter().map(|r| r.get(0)).collect()
}

/// Waits until `processes` API key caches listen on this test's database, none of them through
/// one of the server processes in `not`; answers theirs.
async fn until_listening(api: &Api, processes: usize, not: &[i32]) -> Vec<i32> {
    eventually(NEWS, "the API key caches to listen", || async {
        let pids = listeners(api).await;
        (pids.len() == processes && pids.iter().all(|p| !not.contains(p))).then_some(pids)
    })
    .await
}

/// A manager with a session, and an API key they created: (key, key id).
async fn manager_key(api: &Api) -> (String, String, Uuid) {
    let (_, session) = api.admin_with_session(Role::Manager).await;
    let created = api
        .json(Method::POST, KEYS, &session, Some(json!({"name": "ci"})))
        .await;
    created.expect(StatusCode::CREATED);
    let key = created.json["key"].as_str().expect("the key").to_owned();
    (session, key, created.id())
}

/// Uses `key` on `process` until it is refused.
async fn until_refused(api: &Api, process: &Router, key: &str) {
    eventually(NEWS, "the key to be refused", || async {
        let answer = api.get_via(process, ME, key).await;
        (answer.status == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
}

async fn drop_notifying_triggers(api: &Api) {
    let client = api.env.db.pool.get().await.expect("a connection");
    client
        .batch_execute(
            "DROP TRIGGER api_keys_changed ON api_keys;
             DROP TRIGGER admin_credentials_changed ON admin_credentials;",
        )
        .await
        .expect("the triggers dropped");
}

#[tokio::test]
async fn a_key_revoked_or_whose_admin_was_removed_in_one_process_is_refused_by_another() {
    let api = Api::start().await;
    let other = api.another_process().await;
    let (session, revoked, key_id) = manager_key(&api).await;
    let (removed_admin, removed_key, _) = api.admin_with_key(Role::Administrator).await;
    let (_, kept_key, _) = api.admin_with_key(Role::Manager).await;
    for key in [&revoked, &removed_key, &kept_key] {
        api.get_via(&other, ME, key).await.expect(StatusCode::OK);
    }
    until_listening(&api, 2, &[]).await;
    // Now kept by the other process.
    for key in [&revoked, &removed_key, &kept_key] {
        api.get_via(&other, ME, key).await.expect(StatusCode::OK);
    }

    api.json(Method::DELETE, &format!("{KEYS}/{key_id}"), &session, None)
        .await
        .expect(StatusCode::NO_CONTENT);
    api.json(
        Method::DELETE,
        &format!("/api/v1/admins/{removed_admin}"),
        &api.org.key,
        None,
    )
    .await
    .expect(StatusCode::NO_CONTENT);

    until_refused(&api, &other, &revoked).await;
    until_refused(&api, &other, &removed_key).await;
    api.get_via(&other, ME, &kept_key)
        .await
        .expect(StatusCode::OK);
    api.get(ME, &revoked)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn the_process_that_revokes_a_key_refuses_it_at_once_without_waiting_for_postgres() {
    let api = Api::start().await;
    let (session, key, key_id) = manager_key(&api).await;
    api.get(ME, &key).await.expect(StatusCode::OK);
    until_listening(&api, 1, &[]).await;
    // No notification will come: only the process's own bookkeeping can refuse the key now.
    drop_notifying_triggers(&api).await;
    api.get(ME, &key).await.expect(StatusCode::OK);

    api.json(Method::DELETE, &format!("{KEYS}/{key_id}"), &session, None)
        .await
        .expect(StatusCode::NO_CONTENT);
    api.get(ME, &key)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn a_process_whose_listener_lost_its_connection_does_not_trust_what_it_kept() {
    let api = Api::start().await;
    let other = api.another_process().await;
    let (session, key, key_id) = manager_key(&api).await;
    api.get_via(&other, ME, &key).await.expect(StatusCode::OK);
    let before = until_listening(&api, 2, &[]).await;
    api.get_via(&other, ME, &key).await.expect(StatusCode::OK);

    // The revocation's notification is lost (no trigger sends it), and so are the listeners'
    // connections: what a process kept from before can no longer be trusted, not even once it
    // listens again.
    drop_notifying_triggers(&api).await;
    let client = api.env.db.pool.get().await.expect("a connection");
    for pid in &before {
        client
            .execute("SELECT pg_terminate_backend($1)", &[pid])
            .await
            .expect("a listener terminated");
    }
    api.json(Method::DELETE, &format!("{KEYS}/{key_id}"), &session, None)
        .await
        .expect(StatusCode::NO_CONTENT);
    until_listening(&api, 2, &before).await;
    api.get_via(&other, ME, &key)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
}
