//! `GET /api/openapi.json`: the OpenAPI 3.1 description of every route, generated from the
//! handlers' `#[utoipa::path]` attributes and the bodies' `ToSchema` derives.

use std::sync::LazyLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{admins, api_keys, auth, bulk, events, health, me, mfa, settings, setup, widgets};
use crate::error::ErrorBody;

/// Declares the `x-api-key` security scheme the routes refer to as `api_key`.
struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                crate::extract::API_KEY_HEADER,
                "An API key created with POST /api/v1/me/api-keys",
            ))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Gatehouse API",
        description = "Enforces MFA for the administrators of an admin portal. Errors are \
            `{\"error\": {\"code\", \"message\"}}` (ErrorBody). Command answers carry \
            `Gatehouse-Position`; GETs may send `Gatehouse-Min-Position` to read their writes."
    ),
    paths(
        admins::list, admins::create, admins::get, admins::remove,
        auth::login, auth::verify, auth::reset_request, auth::logout,
        setup::start, setup::complete,
        mfa::set_requirement, mfa::reset, bulk::require_mfa,
        settings::get, settings::put,
        widgets::home, widgets::set_visibility, widgets::list,
        me::get,
        api_keys::create, api_keys::list, api_keys::revoke,
        events::list,
        super::audit::export::export, super::audit::verify::verify,
        super::audit::events::list,
        super::audit::replay::admins_without_mfa_required, super::audit::replay::mfa_coverage,
        health::healthz, health::readyz, health::metrics,
        openapi_json,
    ),
    components(schemas(super::audit::verify::VerifyAnswer, ErrorBody)),
    modifiers(&ApiKeyScheme),
    tags(
        (name = "auth", description = "Login, Verify Your Identity and the Set Up MFA link"),
        (name = "admins", description = "Administrators"),
        (name = "mfa", description = "MFA requirements, one or in bulk"),
        (name = "settings", description = "The Global MFA Requirement"),
        (name = "widgets", description = "The Admins Without MFA Required widget"),
        (name = "me", description = "The caller"),
        (name = "api_keys", description = "The caller's API keys"),
        (name = "events", description = "The organisation's events over HTTP"),
        (name = "audit", description = "The audit history for compliance auditors"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    )
)]
pub struct ApiDoc;

/// The document, rendered once.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    // Serialising a document of plain maps and strings cannot fail; the fallback keeps the
    // request path free of panics all the same.
    ApiDoc::openapi()
        .to_json()
        .unwrap_or_else(|_| "{}".to_owned())
});

/// This document.
#[utoipa::path(
    get, path = "/api/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json", body = Object))
)]
pub async fn openapi_json() -> Response {
    let mut response = DOCUMENT.as_str().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// OpenAPI requires operation ids to be unique; generated clients name methods after them.
    #[test]
    fn every_operation_has_an_id_of_its_own() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serialises");
        let mut seen = HashSet::new();
        for (path, operations) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in operations.as_object().expect("operations") {
                let id = operation["operationId"].as_str().expect("an operationId");
                assert!(seen.insert(id.to_owned()), "{method} {path} reuses {id}");
            }
        }
    }
}
