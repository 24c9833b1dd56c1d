//! `/me/api-keys`: the caller's own API keys. A key is shown once, when created.

use axum::Json;
use axum::extract::State;
use gatehouse_auth::api_key;
use gatehouse_events::format_time;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::consistency::Written;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Caller, JsonBody, PathId};
use crate::{AppState, dispatch};

/// A new key's name.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateApiKeyRequest {
    /// 1 to 100 printable characters.
    #[schema(example = "ci")]
    pub name: String,
}

/// A new key, with the key itself: store it now, it is never shown again.
#[derive(Serialize, ToSchema)]
pub struct CreatedApiKey {
    pub id: Uuid,
    pub name: String,
    /// Send it as the `x-api-key` header.
    #[schema(example = "ghk_…")]
    pub key: String,
    pub created_at: String,
}

/// A key as its owner may see it later: never the key itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeySummary {
    pub id: Uuid,
    pub name: String,
    pub created_at: String,
}

/// The caller's live keys, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    pub api_keys: Vec<ApiKeySummary>,
}

/// Creates an API key for the caller.
#[utoipa::path(
    post, path = "/api/v1/me/api-keys", tag = "api_keys", operation_id = "create_api_key",
    request_body = CreateApiKeyRequest,
    responses(
        (status = 201, description = "Created; the key is in this answer only", body = CreatedApiKey, headers(("Gatehouse-Position" = i64, description = "Position of the command's last event"))),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "`session_required`: keys are created from a logged-in session, not with a key", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<CreateApiKeyRequest>,
) -> Result<Written<CreatedApiKey>, ApiError> {
    // A key outlives the session: only someone who logged in (and passed MFA where it
    // applies) mints one, never another key.
    if caller.0.auth_method != gatehouse_auth::AuthMethod::Session {
        return Err(ApiError::session_required());
    }
    let ctx = caller.context();
    let name = body.name.trim().to_owned();
    let asked = name.clone();
    let outcome = dispatch::run(&state, ctx, |c, ctx| async move {
        c.create_api_key(&ctx, &asked).await
    })
    .await?;
    let (id, key, created_at) = outcome.value;
    let created = CreatedApiKey {
        id,
        name,
        key,
        created_at: format_time(created_at),
    };
    Ok(Written::created(outcome.position, created))
}

/// Lists the caller's live API keys.
#[utoipa::path(
    get, path = "/api/v1/me/api-keys", tag = "api_keys", operation_id = "list_api_keys",
    responses(
        (status = 200, description = "The caller's keys", body = ApiKeyList),
        (status = 401, description = "No valid API key", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<ApiKeyList>, ApiError> {
    let keys = api_key::list(&state.db, caller.admin_id()).await?;
    let api_keys = keys
        .into_iter()
        .map(|k| ApiKeySummary {
            id: k.key_id,
            name: k.name,
            created_at: format_time(k.created_at),
        })
        .collect();
    Ok(Json(ApiKeyList { api_keys }))
}

/// Revokes one of the caller's API keys; requests with it answer 401 from then on.
#[utoipa::path(
    delete, path = "/api/v1/me/api-keys/{id}", tag = "api_keys", operation_id = "revoke_api_key",
    params(("id" = Uuid, Path, description = "The key's id")),
    responses(
        (status = 204, description = "Revoked", headers(("Gatehouse-Position" = i64, description = "Position of the command's last event"))),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "Not one of the caller's live keys", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Written<()>, ApiError> {
    let outcome = dispatch::run(&state, caller.context(), move |c, ctx| async move {
        c.revoke_api_key(&ctx, id).await
    })
    .await
    .map_err(ApiError::from_revoke)?;
    Ok(Written::no_content(outcome.position))
}
