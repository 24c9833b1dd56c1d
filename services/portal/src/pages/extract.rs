//! Forms and query strings for pages, rejected as pages rather than as plain text.

use axum::extract::{Form, FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::PageError;

/// An `application/x-www-form-urlencoded` body. Fields a form must carry (the CSRF token) are
/// `#[serde(default)]` in the handler's type, so a missing token reaches the token check (403)
/// instead of failing here.
pub struct PageForm<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for PageForm<T> {
    type Rejection = PageError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Form::<T>::from_request(req, state).await {
            Ok(Form(value)) => Ok(PageForm(value)),
            Err(rejection) => Err(PageError::new(
                rejection.status(),
                "The form could not be read. Go back, reload the page and try again.",
            )),
        }
    }
}

/// Query parameters.
pub struct PageQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for PageQuery<T> {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(PageQuery(value)),
            Err(_) => Err(PageError::bad_request(
                "This address has parameters Gatehouse does not understand.",
            )),
        }
    }
}
