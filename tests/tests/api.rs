//! The JSON API (SPEC §3) against real Postgres and real NATS, with the relay and the
//! projections running: what a client sees for every route, every refusal and every bad input.
//! Reads after writes send `Gatehouse-Min-Position` instead of sleeping.

#[path = "api/support.rs"]
mod support;

use std::collections::HashSet;

use axum::http::{Method, StatusCode};
use gatehouse_domain::Role;
use serde_json::{Value, json};
use support::{Api, PASSWORD, email, ids_of, sorted, uuids};
use uuid::Uuid;

const ADMINS: &str = "/api/v1/admins";
const BULK: &str = "/api/v1/admins/require-mfa";
const WIDGET: &str = "/api/v1/widgets/admins-without-mfa-required";
const HOME: &str = "/api/v1/home/widgets";
const HOME_TOGGLE: &str = "/api/v1/home/widgets/admins-without-mfa-required";
const SECURITY: &str = "/api/v1/settings/security";
const KEYS: &str = "/api/v1/me/api-keys";

fn admin(id: Uuid) -> String {
    format!("{ADMINS}/{id}")
}

fn mfa(id: Uuid) -> String {
    format!("{ADMINS}/{id}/mfa")
}

fn is_rfc3339_utc_millis(s: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
        && s.ends_with('Z')
        && s.len() == "2026-11-28T10:00:00.123Z".len()
}

// ---------------------------------------------------------------------------------------------
// Admins
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn admins_are_created_read_listed_page_by_page_and_removed() {
    let api = Api::start().await;
    let key = api.org.key.clone();
    let address = email("Grace");
    let body = json!({
        "email": format!("  {}  ", address.to_uppercase()),
        "first_name": " Grace ",
        "last_name": "Hopper",
        "role": "manager",
        "password": PASSWORD,
    });
    let created = api.json(Method::POST, ADMINS, &key, Some(body)).await;
    created.expect(StatusCode::CREATED);
    let id = created.id();
    let position = created.position();
    assert_eq!(created.json["email"], address.to_lowercase());
    assert_eq!(created.json["first_name"], "Grace");
    assert_eq!(created.json["role"], "manager");
    assert!(
        is_rfc3339_utc_millis(created.json["created_at"].as_str().unwrap_or_default()),
        "{}",
        created.json
    );
    assert_eq!(
        created.json["mfa"],
        json!({"required": true, "requirement_source": "default", "enrolled": false, "locked": false})
    );

    let read = api.get_at(&admin(id), &key, position).await;
    read.expect(StatusCode::OK);
    for field in [
        "id",
        "email",
        "first_name",
        "last_name",
        "role",
        "created_at",
        "mfa",
    ] {
        assert_eq!(read.json[field], created.json[field], "{field}");
    }
    assert!(is_rfc3339_utc_millis(
        read.json["created_at"].as_str().unwrap_or_default()
    ));

    let first = api
        .get_at(&format!("{ADMINS}?limit=1"), &key, position)
        .await;
    first.expect(StatusCode::OK);
    assert_eq!(
        ids_of(&first.json["admins"]),
        vec![api.org.owner.0],
        "admins come in creation order"
    );
    let cursor = first.json["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let second = api
        .get(&format!("{ADMINS}?limit=1&cursor={cursor}"), &key)
        .await;
    second.expect(StatusCode::OK);
    assert_eq!(ids_of(&second.json["admins"]), vec![id]);
    assert_eq!(
        second.json["next_cursor"],
        Value::Null,
        "the last page has no next cursor"
    );
    let all = api.get(ADMINS, &key).await;
    assert_eq!(ids_of(&all.json["admins"]), vec![api.org.owner.0, id]);
    assert_eq!(all.json["next_cursor"], Value::Null);

    let removed = api.json(Method::DELETE, &admin(id), &key, None).await;
    removed.expect(StatusCode::NO_CONTENT);
    assert!(removed.bytes.is_empty());
    let position = removed.position();
    api.get_at(&admin(id), &key, position)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    let all = api.get_at(ADMINS, &key, position).await;
    assert_eq!(ids_of(&all.json["admins"]), vec![api.org.owner.0]);
    api.json(Method::DELETE, &admin(id), &key, None)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn nobody_removes_themself_and_an_email_address_names_one_admin() {
    let api = Api::start().await;
    let key = api.org.key.clone();
    api.json(Method::DELETE, &admin(api.org.owner.0), &key, None)
        .await
        .expect_error(StatusCode::FORBIDDEN, "self_action_forbidden");

    let created = api.create_admin(&key, "help_desk", None).await;
    let taken = created.json["email"].as_str().expect("email").to_owned();
    let again = json!({"email": taken, "first_name": "A", "last_name": "B", "role": "help_desk", "password": PASSWORD});
    api.json(Method::POST, ADMINS, &key, Some(again))
        .await
        .expect_error(StatusCode::CONFLICT, "email_taken");
}

#[tokio::test]
async fn only_billing_administrators_create_or_remove_admins() {
    let api = Api::start().await;
    let (target, _, _) = api.admin_with_key(Role::ReadOnly).await;
    let (_, plain, _) = api.admin_with_key(Role::Administrator).await;
    let body = json!({"email": email("x"), "first_name": "A", "last_name": "B", "role": "read_only", "password": PASSWORD});
    api.json(Method::POST, ADMINS, &plain, Some(body))
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    api.json(Method::DELETE, &admin(target), &plain, None)
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn me_shows_the_caller_and_their_organisation() {
    let api = Api::start().await;
    let head = api.commands.db().head().await.expect("head");
    let me = api.get_at("/api/v1/me", &api.org.key, head).await;
    me.expect(StatusCode::OK);
    assert_eq!(me.id(), api.org.owner.0);
    assert_eq!(me.json["role"], "administrator_with_billing");
    assert_eq!(me.json["mfa"]["required"], true);
    assert_eq!(
        me.json["org"],
        json!({"id": api.org.id.0.to_string(), "name": "Acme"})
    );
}

// ---------------------------------------------------------------------------------------------
// MFA requirements
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn requiring_and_removing_mfa_moves_an_admin_out_of_and_back_into_the_widget() {
    let api = Api::start().await;
    let key = api.org.key.clone();
    let created = api.create_admin(&key, "administrator", Some(false)).await;
    let id = created.id();
    assert_eq!(created.json["mfa"]["required"], false);
    assert_eq!(created.json["mfa"]["requirement_source"], Value::Null);

    let widget = api.get_at(WIDGET, &key, created.position()).await;
    widget.expect(StatusCode::OK);
    assert_eq!(widget.json["count"], 1);
    assert_eq!(ids_of(&widget.json["admins"]), vec![id]);
    assert_eq!(widget.json["next_cursor"], Value::Null);

    let required = api
        .json(Method::PUT, &mfa(id), &key, Some(json!({"required": true})))
        .await;
    required.expect(StatusCode::OK);
    assert_eq!(required.json["mfa"]["required"], true);
    assert_eq!(required.json["mfa"]["requirement_source"], "admin");
    let widget = api.get_at(WIDGET, &key, required.position()).await;
    assert_eq!(widget.json["count"], 0);
    assert_eq!(widget.json["admins"], json!([]));
    let read = api.get_at(&admin(id), &key, required.position()).await;
    assert_eq!(read.json["mfa"]["requirement_source"], "admin");

    // Asking again changes nothing and still answers the admin.
    let again = api
        .json(Method::PUT, &mfa(id), &key, Some(json!({"required": true})))
        .await;
    again.expect(StatusCode::OK);
    assert!(again.position() >= required.position());

    let removed = api
        .json(
            Method::PUT,
            &mfa(id),
            &key,
            Some(json!({"required": false})),
        )
        .await;
    removed.expect(StatusCode::OK);
    assert_eq!(
        removed.json["mfa"],
        json!({"required": false, "requirement_source": null, "enrolled": false, "locked": false})
    );
    let widget = api.get_at(WIDGET, &key, removed.position()).await;
    assert_eq!(widget.json["count"], 1);
}

#[tokio::test]
async fn plain_administrators_cannot_change_the_mfa_of_billing_administrators() {
    let api = Api::start().await;
    let (_, plain, _) = api.admin_with_key(Role::Administrator).await;
    let answer = api
        .json(
            Method::PUT,
            &mfa(api.org.owner.0),
            &plain,
            Some(json!({"required": false})),
        )
        .await;
    answer.expect_error(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(
        uuids(&answer.json["error"]["admin_ids"]),
        vec![api.org.owner.0]
    );
    let (_, manager, _) = api.admin_with_key(Role::Manager).await;
    api.json(
        Method::PUT,
        &mfa(api.org.owner.0),
        &manager,
        Some(json!({"required": true})),
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn bulk_require_mfa_requires_every_listed_admin_and_reports_those_already_required() {
    let api = Api::start().await;
    let key = api.org.key.clone();
    let a = api.create_admin(&key, "manager", Some(false)).await.id();
    let b = api.create_admin(&key, "read_only", Some(false)).await.id();
    let c = api.create_admin(&key, "help_desk", Some(false)).await.id();
    let already = api.create_admin(&key, "help_desk", None).await.id();

    let answer = api
        .json(
            Method::POST,
            BULK,
            &key,
            Some(json!({"admin_ids": [a, b, already, a]})),
        )
        .await;
    answer.expect(StatusCode::OK);
    assert_eq!(uuids(&answer.json["required"]), sorted(vec![a, b]));
    assert_eq!(uuids(&answer.json["already_required"]), vec![already]);

    let widget = api.get_at(WIDGET, &key, answer.position()).await;
    assert_eq!(widget.json["count"], 1);
    assert_eq!(ids_of(&widget.json["admins"]), vec![c]);
    let read = api.get_at(&admin(a), &key, answer.position()).await;
    assert_eq!(read.json["mfa"]["requirement_source"], "admin");

    api.json(Method::POST, BULK, &key, Some(json!({"admin_ids": []})))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
}

#[tokio::test]
async fn bulk_require_mfa_refuses_billing_targets_for_plain_administrators_and_changes_nothing() {
    let api = Api::start().await;
    let key = api.org.key.clone();
    let (_, plain, _) = api.admin_with_key(Role::Administrator).await;
    let billing = api
        .create_admin(&key, "administrator_with_billing", Some(false))
        .await
        .id();
    let other = api.create_admin(&key, "read_only", Some(false)).await;
    let events_before = api.event_count().await;

    let answer = api
        .json(
            Method::POST,
            BULK,
            &plain,
            Some(json!({"admin_ids": [other.id(), billing]})),
        )
        .await;
    answer.expect_error(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(uuids(&answer.json["error"]["admin_ids"]), vec![billing]);

    assert_eq!(
        api.event_count().await,
        events_before,
        "nothing was appended"
    );
    let widget = api.get_at(WIDGET, &key, other.position()).await;
    let without: HashSet<Uuid> = ids_of(&widget.json["admins"]).into_iter().collect();
    assert!(
        without.contains(&billing) && without.contains(&other.id()),
        "both still without MFA: {}",
        widget.json
    );

    let unknown = Uuid::now_v7();
    let answer = api
        .json(
            Method::POST,
            BULK,
            &key,
            Some(json!({"admin_ids": [other.id(), unknown]})),
        )
        .await;
    answer.expect_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(uuids(&answer.json["error"]["admin_ids"]), vec![unknown]);
    assert_eq!(
        api.event_count().await,
        events_before,
        "nothing was appended"
    );
}

#[tokio::test]
async fn the_global_mfa_requirement_requires_everyone_and_refuses_removals_while_on() {
    let api = Api::start().await;
    let key = api.org.key.clone();
    let a = api
        .create_admin(&key, "administrator", Some(false))
        .await
        .id();
    let b = api.create_admin(&key, "read_only", Some(false)).await;
    let settings = api.get_at(SECURITY, &key, b.position()).await;
    assert_eq!(settings.json, json!({"global_mfa_required": false}));
    let (_, plain, _) = api.admin_with_key(Role::Administrator).await;
    api.json(
        Method::PUT,
        SECURITY,
        &plain,
        Some(json!({"global_mfa_required": true})),
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "forbidden");

    let on = api
        .json(
            Method::PUT,
            SECURITY,
            &key,
            Some(json!({"global_mfa_required": true})),
        )
        .await;
    on.expect(StatusCode::OK);
    assert_eq!(on.json, json!({"global_mfa_required": true}));
    let position = on.position();
    assert_eq!(
        api.get_at(SECURITY, &key, position).await.json,
        json!({"global_mfa_required": true})
    );
    let widget = api.get_at(WIDGET, &key, position).await;
    assert_eq!(
        (widget.json["count"].clone(), widget.json["admins"].clone()),
        (json!(0), json!([]))
    );
    let home = api.get_at(HOME, &key, position).await;
    assert_eq!(home.json["admins_without_mfa_required"]["count"], 0);
    assert_eq!(
        api.get_at(&admin(a), &key, position).await.json["mfa"]["requirement_source"],
        "global"
    );

    api.json(Method::PUT, &mfa(a), &key, Some(json!({"required": false})))
        .await
        .expect_error(StatusCode::CONFLICT, "global_mfa_enforced");
    let body = json!({"email": email("x"), "first_name": "A", "last_name": "B", "role": "read_only", "password": PASSWORD, "mfa_required": false});
    api.json(Method::POST, ADMINS, &key, Some(body))
        .await
        .expect_error(StatusCode::CONFLICT, "global_mfa_enforced");

    let off = api
        .json(
            Method::PUT,
            SECURITY,
            &key,
            Some(json!({"global_mfa_required": false})),
        )
        .await;
    off.expect(StatusCode::OK);
    let read = api.get_at(&admin(b.id()), &key, off.position()).await;
    assert_eq!(
        read.json["mfa"]["required"], true,
        "turning it off changes no admin"
    );
    let removed = api
        .json(Method::PUT, &mfa(a), &key, Some(json!({"required": false})))
        .await;
    removed.expect(StatusCode::OK);
    assert_eq!(removed.json["mfa"]["required"], false);
}

#[tokio::test]
async fn concurrent_mfa_changes_to_one_admin_all_answer_and_keep_its_stream_contiguous() {
    let api = Api::start().await;
    let key = api.org.key.clone();
    let target = api
        .create_admin(&key, "administrator", Some(false))
        .await
        .id();

    let changes = (0..50).map(|i| {
        let api = &api;
        let key = key.clone();
        async move {
            api.json(
                Method::PUT,
                &mfa(target),
                &key,
                Some(json!({"required": i % 2 == 0})),
            )
            .await
        }
    });
    let answers = futures::future::join_all(changes).await;

    let mut last_position = 0;
    for answer in &answers {
        assert!(
            answer.status == StatusCode::OK
                || (answer.status == StatusCode::CONFLICT && answer.code() == "conflict"),
            "unexpected answer {}: {}",
            answer.status,
            answer.json
        );
        if answer.status == StatusCode::OK {
            last_position = last_position.max(answer.position());
        }
    }
    assert!(last_position > 0, "at least one change was applied");

    let versions = api.stream_versions(target).await;
    let expected: Vec<i64> = (1..=versions.len() as i64).collect();
    assert_eq!(
        versions, expected,
        "the admin's stream versions have no gap"
    );

    let required_last = match api.last_event_type(target).await.as_str() {
        "gatehouse.admin.mfa_required.v1" => true,
        "gatehouse.admin.mfa_requirement_removed.v1" | "gatehouse.admin.created.v1" => false,
        other => panic!("unexpected last event {other}"),
    };
    let read = api.get_at(&admin(target), &key, last_position).await;
    read.expect(StatusCode::OK);
    assert_eq!(
        read.json["mfa"]["required"], required_last,
        "the read model shows the last applied change"
    );
}

// ---------------------------------------------------------------------------------------------
// Home widgets and API keys
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn each_admin_shows_or_hides_the_home_widget_for_themself() {
    let api = Api::start().await;
    let key = api.org.key.clone();
    let (_, manager, position) = api.admin_with_key(Role::Manager).await;
    let home = api.get_at(HOME, &key, position).await;
    home.expect(StatusCode::OK);
    assert_eq!(
        home.json,
        json!({"admins_without_mfa_required": {"visible": true, "count": 1}})
    );

    let hidden = api
        .json(
            Method::PUT,
            HOME_TOGGLE,
            &key,
            Some(json!({"visible": false})),
        )
        .await;
    hidden.expect(StatusCode::NO_CONTENT);
    let home = api.get_at(HOME, &key, hidden.position()).await;
    assert_eq!(home.json["admins_without_mfa_required"]["visible"], false);
    let theirs = api.get_at(HOME, &manager, hidden.position()).await;
    assert_eq!(
        theirs.json["admins_without_mfa_required"]["visible"], true,
        "another admin's choice is theirs"
    );

    let shown = api
        .json(
            Method::PUT,
            HOME_TOGGLE,
            &key,
            Some(json!({"visible": true})),
        )
        .await;
    shown.expect(StatusCode::NO_CONTENT);
    assert_eq!(
        api.get_at(HOME, &key, shown.position()).await.json["admins_without_mfa_required"]["visible"],
        true
    );
}

#[tokio::test]
async fn api_keys_are_shown_once_listed_without_the_key_and_refused_once_revoked() {
    let api = Api::start().await;
    let (_, key) = api.admin_with_session(Role::Manager).await;
    api.json(
        Method::POST,
        KEYS,
        &api.org.key,
        Some(json!({"name": "by key"})),
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "session_required");
    let created = api
        .json(Method::POST, KEYS, &key, Some(json!({"name": " ci "})))
        .await;
    created.expect(StatusCode::CREATED);
    created.position();
    let new_key = created.json["key"].as_str().expect("the key").to_owned();
    let key_id = created.id();
    assert!(new_key.starts_with("ghk_"));
    assert_eq!(created.json["name"], "ci");
    assert!(is_rfc3339_utc_millis(
        created.json["created_at"].as_str().unwrap_or_default()
    ));

    let listed = api.get(KEYS, &new_key).await;
    listed.expect(StatusCode::OK);
    let keys = listed.json["api_keys"].as_array().expect("a list").clone();
    assert_eq!(keys.len(), 1, "the manager's one key: {}", listed.json);
    assert!(
        keys.iter().all(|k| k.get("key").is_none()),
        "a listed key never shows the key: {}",
        listed.json
    );
    assert!(
        keys.iter().any(|k| k["id"] == key_id.to_string()
            && k["name"] == "ci"
            && k["created_at"] == created.json["created_at"]),
        "the listed key has the name and creation time it was answered with: {}",
        listed.json
    );

    api.json(Method::DELETE, &format!("{KEYS}/{key_id}"), &key, None)
        .await
        .expect(StatusCode::NO_CONTENT);
    api.get(KEYS, &new_key)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let listed = api.get(KEYS, &key).await;
    assert_eq!(listed.json["api_keys"].as_array().map(Vec::len), Some(0));
    api.json(Method::DELETE, &format!("{KEYS}/{key_id}"), &key, None)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    api.json(Method::POST, KEYS, &key, Some(json!({"name": ""})))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
}

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn events_answer_only_the_callers_organisation_in_position_order() {
    let api = Api::start().await;
    let other = api.other_org().await;
    api.create_admin(&api.org.key, "manager", None).await;
    api.create_admin(&other.key, "manager", None).await;

    let answer = api.get("/api/v1/events?after=0", &api.org.key).await;
    answer.expect(StatusCode::OK);
    assert_eq!(answer.content_type(), "application/cloudevents-batch+json");
    let events = answer.json.as_array().expect("a JSON array").clone();
    assert!(
        events.len() >= 4,
        "org created, owner created, key created, admin created: {}",
        answer.json
    );
    assert!(
        events
            .iter()
            .all(|e| e["orgid"] == api.org.id.0.to_string()),
        "only the caller's organisation"
    );
    assert!(events.iter().all(|e| e["specversion"] == "1.0"));
    let positions: Vec<i64> = events
        .iter()
        .filter_map(|e| e["position"].as_i64())
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "in position order: {positions:?}"
    );
    assert_eq!(events[0]["type"], "gatehouse.org.created.v1");

    let first = positions[0];
    let after = api
        .get(
            &format!("/api/v1/events?after={first}&limit=1"),
            &api.org.key,
        )
        .await;
    let after = after.json.as_array().expect("a JSON array").clone();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0]["position"], positions[1]);
    let last = positions[positions.len() - 1];
    assert_eq!(
        api.get(&format!("/api/v1/events?after={last}"), &api.org.key)
            .await
            .json,
        json!([])
    );

    for bad in ["after=-1", "limit=0", "limit=1001", "after=x"] {
        api.get(&format!("/api/v1/events?{bad}"), &api.org.key)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_query");
    }
}

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn malformed_json_is_refused_with_400() {
    let api = Api::start().await;
    let key = &api.org.key;
    let target = api.create_admin(key, "manager", None).await.id();
    for body in [
        &b"{\"required\": tru"[..],
        b"",
        b"{\"required\": true} trailing",
        b"not json",
    ] {
        api.raw(
            Method::PUT,
            &mfa(target),
            key,
            Some("application/json"),
            body.to_vec(),
        )
        .await
        .expect_error(StatusCode::BAD_REQUEST, "malformed_json");
    }
}

#[tokio::test]
async fn bodies_that_are_not_declared_json_are_refused_with_415() {
    let api = Api::start().await;
    let key = &api.org.key;
    let body = br#"{"visible": false}"#.to_vec();
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        api.raw(Method::PUT, HOME_TOGGLE, key, content_type, body.clone())
            .await
            .expect_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    }
    api.raw(
        Method::PUT,
        HOME_TOGGLE,
        key,
        Some("application/json; charset=utf-8"),
        body,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn bodies_over_64_kib_are_refused_with_413_while_a_bulk_request_takes_10000_ids() {
    let api = Api::start().await;
    let key = &api.org.key;
    let padding = "x".repeat(65 * 1024);
    let big = json!({"name": padding}).to_string().into_bytes();
    api.raw(Method::POST, KEYS, key, Some("application/json"), big)
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    let ids: Vec<Uuid> = (0..10_000).map(|_| Uuid::now_v7()).collect();
    let answer = api
        .json(Method::POST, BULK, key, Some(json!({"admin_ids": ids})))
        .await;
    answer.expect_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(
        answer.json["error"]["admin_ids"].as_array().map(Vec::len),
        Some(10_000),
        "all parsed, all unknown"
    );

    let huge = json!({"admin_ids": (0..16_000).map(|_| Uuid::now_v7()).collect::<Vec<_>>()})
        .to_string()
        .into_bytes();
    assert!(huge.len() > 512 * 1024);
    api.raw(Method::POST, BULK, key, Some("application/json"), huge)
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
}

#[tokio::test]
async fn invalid_fields_are_refused_with_422_naming_the_field() {
    let api = Api::start().await;
    let key = &api.org.key;
    let valid = json!({"email": email("ok"), "first_name": "A", "last_name": "B", "role": "manager", "password": PASSWORD});
    let with = |field: &str, value: Value| {
        let mut body = valid.clone();
        body[field] = value;
        body
    };
    let without = |field: &str| {
        let mut body = valid.clone();
        body.as_object_mut().map(|o| o.remove(field));
        body
    };
    let cases = [
        (with("email", json!("not-an-email")), "email"),
        (with("role", json!("superuser")), "role"),
        (with("password", json!("short")), "password"),
        (with("first_name", json!("   ")), "first_name"),
        (with("mfa_required", json!("yes")), "mfa_required"),
        (with("email", json!(42)), "email"),
        (without("password"), "password"),
        (without("role"), "role"),
    ];
    let events_before = api.event_count().await;
    for (body, field) in cases {
        let answer = api.json(Method::POST, ADMINS, key, Some(body)).await;
        answer.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
        assert_eq!(answer.json["error"]["field"], field, "{}", answer.json);
    }
    assert_eq!(api.event_count().await, events_before);

    let target = api.create_admin(key, "manager", None).await.id();
    let answer = api
        .json(
            Method::PUT,
            &mfa(target),
            key,
            Some(json!({"required": "yes"})),
        )
        .await;
    answer.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    assert_eq!(answer.json["error"]["field"], "required");
    let answer = api
        .json(
            Method::POST,
            BULK,
            key,
            Some(json!({"admin_ids": [target, "nope"]})),
        )
        .await;
    answer.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    assert_eq!(answer.json["error"]["field"], "admin_ids[1]");
}

#[tokio::test]
async fn unknown_ids_and_ids_that_are_not_uuids_answer_404() {
    let api = Api::start().await;
    let key = &api.org.key;
    let unknown = Uuid::now_v7();
    api.get(&admin(unknown), key)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    api.json(Method::DELETE, &admin(unknown), key, None)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    api.json(
        Method::PUT,
        &mfa(unknown),
        key,
        Some(json!({"required": true})),
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "not_found");
    api.json(Method::DELETE, &format!("{KEYS}/{unknown}"), key, None)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    for path in [
        format!("{ADMINS}/not-a-uuid"),
        format!("{ADMINS}/123/mfa"),
        format!("{KEYS}/nope"),
    ] {
        let method = if path.ends_with("/mfa") {
            Method::PUT
        } else {
            Method::DELETE
        };
        api.json(method, &path, key, Some(json!({"required": true})))
            .await
            .expect_error(StatusCode::NOT_FOUND, "not_found");
    }
    api.get(&format!("{ADMINS}/not-a-uuid"), key)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    api.get("/api/v1/nothing-here", key)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    api.json(Method::PATCH, ADMINS, key, None)
        .await
        .expect_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

#[tokio::test]
async fn bad_query_parameters_are_refused_with_400() {
    let api = Api::start().await;
    let key = &api.org.key;
    for query in ["limit=0", "limit=201", "limit=ten", "cursor=nope"] {
        api.get(&format!("{ADMINS}?{query}"), key)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        api.get(&format!("{WIDGET}?{query}"), key)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_query");
    }
    api.get(&format!("{ADMINS}?limit=200"), key)
        .await
        .expect(StatusCode::OK);
}

#[tokio::test]
async fn requests_without_a_valid_api_key_are_refused_with_401() {
    let api = Api::start().await;
    let no_key = axum::http::Request::builder()
        .uri(ADMINS)
        .body(axum::body::Body::empty())
        .expect("request");
    api.send(no_key)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let forged = format!("ghk_{}", "A".repeat(43));
    for key in ["", "nope", forged.as_str()] {
        api.get(ADMINS, key)
            .await
            .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
        api.json(
            Method::PUT,
            HOME_TOGGLE,
            key,
            Some(json!({"visible": false})),
        )
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
}

#[tokio::test]
async fn another_organisations_ids_answer_404_on_every_id_route() {
    let api = Api::start().await;
    let key = &api.org.key;
    let other = api.other_org().await;
    let foreign = api.create_admin(&other.key, "manager", Some(false)).await;
    let foreign_id = foreign.id();
    let their_keys = api.get(KEYS, &other.key).await;
    their_keys.expect(StatusCode::OK);
    let foreign_key_id = uuids(&json!([their_keys.json["api_keys"][0]["id"]]))[0];
    let position = foreign.position();

    for id in [foreign_id, other.owner.0] {
        api.get_at(&admin(id), key, position)
            .await
            .expect_error(StatusCode::NOT_FOUND, "not_found");
        api.json(Method::DELETE, &admin(id), key, None)
            .await
            .expect_error(StatusCode::NOT_FOUND, "not_found");
        api.json(Method::PUT, &mfa(id), key, Some(json!({"required": true})))
            .await
            .expect_error(StatusCode::NOT_FOUND, "not_found");
        api.json(Method::POST, &format!("{}/reset", mfa(id)), key, None)
            .await
            .expect_error(StatusCode::NOT_FOUND, "not_found");
    }
    let bulk = api
        .json(
            Method::POST,
            BULK,
            key,
            Some(json!({"admin_ids": [foreign_id]})),
        )
        .await;
    bulk.expect_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(uuids(&bulk.json["error"]["admin_ids"]), vec![foreign_id]);
    api.json(
        Method::DELETE,
        &format!("{KEYS}/{foreign_key_id}"),
        key,
        None,
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "not_found");

    // Nothing of theirs shows in our lists, and their admin and key are untouched.
    let ours = api.get_at(ADMINS, key, position).await;
    assert!(!ids_of(&ours.json["admins"]).contains(&foreign_id));
    assert!(!ids_of(&api.get_at(WIDGET, key, position).await.json["admins"]).contains(&foreign_id));
    let theirs = api.get_at(&admin(foreign_id), &other.key, position).await;
    assert_eq!(theirs.json["mfa"]["required"], false);
    let still = api.get(KEYS, &other.key).await;
    still.expect(StatusCode::OK);
    assert_eq!(still.json["api_keys"][0]["id"], foreign_key_id.to_string());
}

#[tokio::test]
async fn command_runners_cannot_read_the_directory_but_keep_their_own_widgets_and_keys() {
    let api = Api::start().await;
    let (runner_id, runner, position) = api.admin_with_key(Role::CommandRunner).await;
    for path in [
        ADMINS.to_owned(),
        admin(api.org.owner.0),
        admin(runner_id),
        WIDGET.to_owned(),
        "/api/v1/events".to_owned(),
    ] {
        api.get_at(&path, &runner, position)
            .await
            .expect_error(StatusCode::FORBIDDEN, "forbidden");
    }
    api.json(
        Method::PUT,
        &mfa(api.org.owner.0),
        &runner,
        Some(json!({"required": true})),
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "forbidden");
    api.json(
        Method::POST,
        BULK,
        &runner,
        Some(json!({"admin_ids": [runner_id]})),
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "forbidden");

    let home = api.get_at(HOME, &runner, position).await;
    home.expect(StatusCode::OK);
    assert_eq!(
        home.json,
        json!({"admins_without_mfa_required": {"visible": false, "count": 0}}),
        "the widget's count is not shown to a role that may not see the widget"
    );
    let owners = api.get_at(HOME, &api.org.key, position).await;
    assert_eq!(
        owners.json["admins_without_mfa_required"]["count"], 1,
        "the owner sees the runner, created without MFA required, in the count"
    );
    api.json(
        Method::PUT,
        HOME_TOGGLE,
        &runner,
        Some(json!({"visible": false})),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let (_, runner_session) = api.admin_with_session(Role::CommandRunner).await;
    api.json(
        Method::POST,
        KEYS,
        &runner_session,
        Some(json!({"name": "mine"})),
    )
    .await
    .expect(StatusCode::CREATED);
    api.get(KEYS, &runner).await.expect(StatusCode::OK);
    let me = api.get_at("/api/v1/me", &runner, position).await;
    me.expect(StatusCode::OK);
    assert_eq!(me.json["role"], "command_runner");
}

// ---------------------------------------------------------------------------------------------
// Read-your-writes, operations, OpenAPI
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn reads_wait_for_their_min_position_and_answer_503_when_it_is_not_reached() {
    let api = Api::start().await;
    let key = &api.org.key;
    for bad in ["soon", "-1", "1.5"] {
        let request = axum::http::Request::builder()
            .uri(ADMINS)
            .header("x-api-key", key.as_str())
            .header("gatehouse-min-position", bad)
            .body(axum::body::Body::empty())
            .expect("request");
        api.send(request)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_header");
    }
    let created = api.create_admin(key, "manager", None).await;
    let listed = api.get_at(ADMINS, key, created.position()).await;
    assert!(
        ids_of(&listed.json["admins"]).contains(&created.id()),
        "the read reflects the write"
    );

    let future = api
        .get_at(ADMINS, key, created.position() + 1_000_000)
        .await;
    future.expect_error(StatusCode::SERVICE_UNAVAILABLE, "not_caught_up");
    assert_eq!(
        future
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
}

#[tokio::test]
async fn a_read_waits_only_for_the_read_models_it_uses() {
    let api = Api::start().await;
    let key = &api.org.key;
    // While this transaction holds the audit model's checkpoint, that model applies nothing.
    let mut blocker = api.env.db.pool.get().await.expect("a connection");
    let hold = blocker.transaction().await.expect("a transaction");
    hold.execute("SELECT position FROM proj_audit.checkpoint FOR UPDATE", &[])
        .await
        .expect("hold the audit model's checkpoint");

    let created = api.create_admin(key, "manager", Some(false)).await;
    let position = created.position();
    let audit_path = format!("/api/v1/audit/events?resource={}", created.id());
    let audit = api.get_at(&audit_path, key, position);
    tokio::pin!(audit);
    // The admins list reads only the admins model: it answers while the audit read waits.
    let listed = tokio::select! {
        biased;
        early = &mut audit => panic!("the audit read answered before its model applied the write: {}", early.json),
        listed = api.get_at(ADMINS, key, position) => listed,
    };
    listed.expect(StatusCode::OK);
    assert!(ids_of(&listed.json["admins"]).contains(&created.id()));
    let widget = api.get_at(WIDGET, key, position).await;
    widget.expect(StatusCode::OK);
    assert!(ids_of(&widget.json["admins"]).contains(&created.id()));

    // Released, the audit model applies the write and the waiting read shows it.
    hold.rollback().await.expect("release the checkpoint");
    let audit = audit.await;
    audit.expect(StatusCode::OK);
    let created_records: Vec<&Value> = audit.json["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|r| r["event_type"] == "admin_create")
        .collect();
    assert_eq!(created_records.len(), 1, "{}", audit.json);
    assert_eq!(
        created_records[0]["resource"]["id"],
        created.id().to_string()
    );
}

#[tokio::test]
async fn health_readiness_and_metrics_answer_for_operators() {
    let api = Api::start().await;
    let health = api.get("/healthz", "").await;
    health.expect(StatusCode::OK);
    assert_eq!(health.json, json!({"status": "ok"}));
    let ready = api.get("/readyz", "").await;
    ready.expect(StatusCode::OK);
    assert_eq!(
        ready.json,
        json!({"status": "ready", "postgres": "ok", "nats": "ok"})
    );
    let metrics = api.get("/metrics", "").await;
    metrics.expect(StatusCode::OK);
    assert_eq!(metrics.content_type(), "text/plain; version=0.0.4");
}

#[tokio::test]
async fn the_openapi_document_describes_every_route_its_security_and_its_errors() {
    let api = Api::start().await;
    let answer = api.get("/api/openapi.json", "").await;
    answer.expect(StatusCode::OK);
    let doc = &answer.json;
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "OpenAPI 3.1: {}",
        doc["openapi"]
    );
    let expected = [
        ("/api/v1/admins", vec!["get", "post"]),
        ("/api/v1/admins/{id}", vec!["get", "delete"]),
        ("/api/v1/admins/{id}/mfa", vec!["put"]),
        ("/api/v1/admins/require-mfa", vec!["post"]),
        ("/api/v1/settings/security", vec!["get", "put"]),
        ("/api/v1/home/widgets", vec!["get"]),
        (
            "/api/v1/home/widgets/admins-without-mfa-required",
            vec!["put"],
        ),
        ("/api/v1/widgets/admins-without-mfa-required", vec!["get"]),
        ("/api/v1/me", vec!["get"]),
        ("/api/v1/me/api-keys", vec!["get", "post"]),
        ("/api/v1/me/api-keys/{id}", vec!["delete"]),
        ("/api/v1/events", vec!["get"]),
        ("/healthz", vec!["get"]),
        ("/readyz", vec!["get"]),
        ("/metrics", vec!["get"]),
        ("/api/openapi.json", vec!["get"]),
    ];
    for (path, methods) in expected {
        for method in methods {
            assert!(
                doc["paths"][path][method].is_object(),
                "{method} {path} is described"
            );
        }
    }
    let scheme = &doc["components"]["securitySchemes"]["api_key"];
    assert_eq!(
        (
            scheme["type"].as_str(),
            scheme["in"].as_str(),
            scheme["name"].as_str()
        ),
        (Some("apiKey"), Some("header"), Some("x-api-key"))
    );
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    assert!(doc["components"]["schemas"]["Admin"].is_object());
}
