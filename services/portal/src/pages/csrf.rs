//! Cross-site request forgery for HTML forms.
//!
//! Every form of a logged-in page carries the session's CSRF token in a hidden `csrf_token`
//! input; [`check`] compares it in constant time. The login form has no session yet: it is
//! refused when the browser says the post came from another site ([`same_origin`]).

use axum::http::{HeaderMap, header};
use gatehouse_auth::session::Session;

use super::error::PageError;

/// Compares without an early exit, so the time taken does not tell how much of a guess was
/// right. (The lengths are not secret: every token has the same.)
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

/// Refuses (403) a form whose token is missing or is not the session's.
pub fn check(session: &Session, submitted: &str) -> Result<(), PageError> {
    if !session.csrf_token.is_empty()
        && constant_time_eq(session.csrf_token.as_bytes(), submitted.as_bytes())
    {
        Ok(())
    } else {
        Err(PageError::csrf())
    }
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

/// Refuses a post that the browser says came from another site: `Sec-Fetch-Site` when the
/// browser sends it, else an `Origin` naming another origin. (Pages send no referrer, so a
/// browser may say `Origin: null` for the portal's own forms; that alone is not refused.)
pub fn same_origin(headers: &HeaderMap, public_url: &str) -> Result<(), PageError> {
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = value("sec-fetch-site") {
        return match site {
            "same-origin" | "none" => Ok(()),
            _ => Err(PageError::csrf()),
        };
    }
    match value(header::ORIGIN.as_str()) {
        Some(origin)
            if origin != "null"
                && origin.trim_end_matches('/') != origin_of(public_url).trim_end_matches('/') =>
        {
            Err(PageError::csrf())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn tokens_compare_equal_only_when_identical() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn cross_site_login_posts_are_refused() {
        let url = "http://127.0.0.1:8080";
        let mut headers = HeaderMap::new();
        assert!(
            same_origin(&headers, url).is_ok(),
            "no header: not a browser"
        );
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(same_origin(&headers, url).is_ok());
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(same_origin(&headers, url).is_err());
        headers.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(same_origin(&headers, url).is_ok(), "fetch metadata decides");
        headers.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(same_origin(&headers, url).is_err());
    }
}
