//! The read fence that travels with the client (rung 8): each region keeps its users' last
//! write positions in its own shared state, so a user who writes through one region and
//! whose next request lands in the other would be read from a replica that may not have
//! replayed the write. Every answer to a request that wrote therefore carries the write's
//! fence, `POSITION@MS`, in the [`X_FENCE`] header (for API clients, exposed to scripts by
//! CORS) and in the [`FENCE_COOKIE`] cookie (for browsers: `HttpOnly`, `SameSite=Lax`,
//! `Path=/`, `Max-Age` of the fence's TTL, `Secure` when the site is served over HTTPS).
//! A request that carries either back (the header when both are there) reads at least at
//! that position on any node of any region; see `App::in_request` for what a forged value
//! costs (this client's own reads from the primary, past the caches) and why it is trusted
//! for nothing else.

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::Response;
use crescendo_app::{App, FENCE_TTL};

/// The header a write's answer carries its fence in, and a request carries it back in.
pub(crate) static X_FENCE: HeaderName = HeaderName::from_static("x-crescendo-fence");

/// The cookie a write's answer carries its fence in, for browsers.
pub(crate) const FENCE_COOKIE: &str = "crescendo_fence";

/// Longest carried value looked at: a position and a time in ms, in decimal, and the `@`.
const MAX_CARRIED: usize = 2 * 20 + 1;

/// What the consistency middleware needs: the application, and whether cookies are `Secure`.
#[derive(Clone)]
pub(crate) struct Scope {
    pub(crate) app: App,
    secure_cookies: bool,
}

impl Scope {
    pub(crate) fn new(app: App, secure_cookies: bool) -> Self {
        Self {
            app,
            secure_cookies,
        }
    }

    /// Adds the fence of the request's write to its answer, as [`X_FENCE`] and as the
    /// [`FENCE_COOKIE`] cookie.
    pub(crate) fn hand_back(&self, res: &mut Response, fence: &str) {
        let Ok(value) = HeaderValue::from_str(fence) else {
            return;
        };
        let secure = if self.secure_cookies { "; Secure" } else { "" };
        let cookie = format!(
            "{FENCE_COOKIE}={fence}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
            FENCE_TTL.as_secs()
        );
        let headers = res.headers_mut();
        headers.insert(X_FENCE.clone(), value);
        if let Ok(cookie) = HeaderValue::from_str(&cookie) {
            headers.append(header::SET_COOKIE, cookie);
        }
    }
}

/// The fence a request carries back: its [`X_FENCE`] header, else its [`FENCE_COOKIE`]
/// cookie; nothing longer than a fence can be (the application parses the rest).
pub(crate) fn carried(headers: &HeaderMap) -> Option<String> {
    headers
        .get(&X_FENCE)
        .and_then(|v| v.to_str().ok())
        .or_else(|| crescendo_web::session::cookie_value(headers, FENCE_COOKIE))
        .filter(|v| v.len() <= MAX_CARRIED)
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_carried_before_the_cookie_and_oversized_values_are_not() {
        let mut h = HeaderMap::new();
        assert_eq!(carried(&h), None);
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("crescendo_sid=x.y; crescendo_fence=70@1"),
        );
        assert_eq!(carried(&h).as_deref(), Some("70@1"));
        h.insert(X_FENCE.clone(), HeaderValue::from_static("90@2"));
        assert_eq!(carried(&h).as_deref(), Some("90@2"));
        let long = "9".repeat(MAX_CARRIED + 1);
        h.insert(X_FENCE.clone(), HeaderValue::from_str(&long).unwrap());
        assert_eq!(carried(&h), None);
    }
}
