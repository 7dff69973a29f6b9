//! What browsers are told: which other origins may call the API (CORS, and the `Origin`
//! of a WebSocket upgrade), and the standard security headers on every response.
//!
//! hermet authenticates with bearer tokens, never cookies, so a page of another origin
//! cannot act as a signed-in user by itself; still, by default no other origin may read
//! responses or open a socket (`http.allowed_origins` is empty).

use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, Request};
use axum::middleware::Next;
use axum::response::Response;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The origins (`scheme://host[:port]`) allowed to call the API from a browser; `*` allows
/// every origin.
#[derive(Debug, Clone, Default)]
pub struct Origins(Vec<String>);

impl Origins {
    pub fn new(origins: &[String]) -> Self {
        Self(origins.iter().map(|o| o.trim_end_matches('/').to_ascii_lowercase()).collect())
    }

    fn any(&self) -> bool {
        self.0.iter().any(|o| o == "*")
    }

    fn allows(&self, origin: &str) -> bool {
        self.any() || self.0.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }

    /// Whether a WebSocket upgrade carrying these headers may proceed: a client that sends
    /// no `Origin` (not a browser), a page of this server's own origin (`Origin`'s host is
    /// the `Host` asked for), or an allowed origin.
    pub fn allows_upgrade(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return true };
        let own = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|host| origin.split_once("://").is_some_and(|(_, h)| h.eq_ignore_ascii_case(host)));
        own || self.allows(origin)
    }

    /// The CORS layer for these origins; `None` when none are allowed (browsers then
    /// refuse cross-origin reads on their own, as no `Access-Control-*` header is sent).
    pub fn cors(&self) -> Option<CorsLayer> {
        if self.0.is_empty() {
            return None;
        }
        let allow = if self.any() {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(self.0.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
        };
        Some(
            CorsLayer::new()
                .allow_origin(allow)
                .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    HeaderName::from_static("x-access-token"),
                    HeaderName::from_static("x-request-id"),
                ])
                .expose_headers([
                    header::RETRY_AFTER,
                    HeaderName::from_static("x-request-id"),
                    HeaderName::from_static("x-read-model"),
                ])
                .max_age(std::time::Duration::from_secs(3600)),
        )
    }
}

/// The security headers every response carries (a handler's own value wins): the API
/// answers JSON only, so nothing in it may be sniffed, framed, embedded or cached.
pub async fn headers(req: Request<axum::body::Body>, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CONTENT_SECURITY_POLICY, "default-src 'none'; frame-ancestors 'none'"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upgrade(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        h
    }

    #[test]
    fn upgrades_from_no_origin_the_own_origin_or_an_allowed_one() {
        let none = Origins::new(&[]);
        assert!(none.allows_upgrade(&upgrade(None, "chat.example.com")));
        assert!(none.allows_upgrade(&upgrade(Some("https://chat.example.com"), "chat.example.com")));
        assert!(!none.allows_upgrade(&upgrade(Some("https://evil.example"), "chat.example.com")));
        let some = Origins::new(&["https://App.example.com/".into()]);
        assert!(some.allows_upgrade(&upgrade(Some("https://app.example.com"), "api.example.com")));
        assert!(!some.allows_upgrade(&upgrade(Some("http://app.example.com"), "api.example.com")));
        assert!(Origins::new(&["*".into()]).allows_upgrade(&upgrade(Some("https://x.example"), "api.example.com")));
        assert!(none.cors().is_none() && some.cors().is_some());
    }
}
