//! Browser sessions: a signed cookie that holds only a session ID; the session itself (who
//! is signed in, the CSRF token) is stored through [`App`]'s web-session methods (in the
//! `Sessions` seam), so any web node can serve any request once that seam is shared.
//!
//! The cookie is `crescendo_sid=<id>.<mac>`: 24 random bytes, and an HMAC-SHA256 of them
//! under a key derived from the token key (every node of a topology shares it). It is
//! `HttpOnly`, `SameSite=Lax` and `Path=/`, and `Secure` when the site is served over
//! HTTPS. Signing in issues a new ID (no session fixation); signing out deletes the session.
//!
//! Anonymous visitors get no stored session: the sign-in and sign-up forms are protected by
//! a signed CSRF cookie instead, `crescendo_csrf=<token>.<mac>` (24 random bytes and an
//! HMAC-SHA256 of them under a second key derived from the token key). The form carries the
//! token; a post is accepted when the cookie's MAC is right and the form's token equals the
//! cookie's (double submit, compared in constant time). A session is stored only when someone
//! signs in or up, so a flood of anonymous page views leaves no state on the server.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use crescendo_app::{App, AppResult};
use crescendo_domain::{Id, Redacted};
use hmac::{Hmac, Mac};
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::time::Duration;

/// The cookie's name.
pub const COOKIE_NAME: &str = "crescendo_sid";
/// The name of the anonymous visitor's signed CSRF cookie.
pub const CSRF_COOKIE_NAME: &str = "crescendo_csrf";
/// How long a session lives without being renewed by a sign-in.
pub const SESSION_TTL: Duration = Duration::from_secs(14 * 24 * 3600);

/// Signs and checks session cookies.
#[derive(Clone, Debug)]
pub struct SessionKeys {
    mac: Redacted<Hmac<Sha256>>,
    /// Signs anonymous CSRF cookies (a key of its own, so neither cookie passes as the other).
    csrf_mac: Redacted<Hmac<Sha256>>,
    secure: bool,
}

impl SessionKeys {
    /// Keys derived from the service's token key (so a topology's nodes agree), with
    /// `secure` cookies when the site is served over HTTPS.
    pub fn derive(token_key: &[u8], secure: bool) -> Self {
        let derive = |label: &[u8]| {
            let mut m =
                Hmac::<Sha256>::new_from_slice(token_key).expect("HMAC takes any key length");
            m.update(label);
            let derived = m.finalize().into_bytes();
            Hmac::new_from_slice(&derived).expect("HMAC takes any key length")
        };
        Self {
            mac: Redacted(derive(b"crescendo web session cookie v1")),
            csrf_mac: Redacted(derive(b"crescendo web anonymous csrf cookie v1")),
            secure,
        }
    }

    fn sign(&self, id: &str) -> String {
        sign_with(&self.mac.0, id)
    }

    /// The session ID of a cookie value whose MAC is right.
    fn verify<'a>(&self, value: &'a str) -> Option<&'a str> {
        verify_with(&self.mac.0, value)
    }

    /// `Set-Cookie` for an anonymous visitor's CSRF `token` (it lasts as long as the
    /// browser keeps it open).
    fn csrf_cookie(&self, token: &str) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let v = format!(
            "{CSRF_COOKIE_NAME}={token}.{}; Path=/; HttpOnly; SameSite=Lax{secure}",
            sign_with(&self.csrf_mac.0, token)
        );
        HeaderValue::from_str(&v).expect("cookie is ASCII")
    }

    /// `Set-Cookie` for session `id`.
    pub fn cookie(&self, id: &str) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let v = format!(
            "{COOKIE_NAME}={id}.{}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
            self.sign(id),
            SESSION_TTL.as_secs()
        );
        HeaderValue::from_str(&v).expect("cookie is ASCII")
    }

    /// `Set-Cookie` that removes the cookie.
    pub fn clear_cookie(&self) -> HeaderValue {
        HeaderValue::from_static("crescendo_sid=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0")
    }
}

/// The MAC of `value` under `mac`, in base64.
fn sign_with(mac: &Hmac<Sha256>, value: &str) -> String {
    let mut m = mac.clone();
    m.update(value.as_bytes());
    B64.encode(m.finalize().into_bytes())
}

/// The part before the dot of a cookie value `<part>.<mac>` whose MAC under `mac` is right.
fn verify_with<'a>(mac: &Hmac<Sha256>, value: &'a str) -> Option<&'a str> {
    let (id, tag) = value.split_once('.')?;
    let tag = B64.decode(tag).ok()?;
    let mut m = mac.clone();
    m.update(id.as_bytes());
    m.verify_slice(&tag).ok()?;
    Some(id)
}

/// What the store keeps per session.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Stored {
    /// The signed-in user.
    u: Option<i64>,
    /// The CSRF token forms must carry.
    csrf: String,
    /// The user's credential stamp at sign-in (`App::credential_stamp`): after a password
    /// change the session no longer signs anyone in.
    #[serde(default)]
    s: String,
}

/// A browser's session, as loaded for one request.
#[derive(Clone, Debug, Default)]
pub struct Session {
    id: Option<String>,
    /// The signed-in user, if any.
    pub user: Option<Id>,
    /// The CSRF token forms must carry (empty when there is no session yet).
    pub csrf: String,
    /// A cookie to set on the response (a new or renewed session).
    pub set_cookie: Option<HeaderValue>,
    /// The token of the request's anonymous CSRF cookie, if its MAC is right.
    anonymous_csrf: Option<String>,
}

fn random_token() -> String {
    let mut b = [0u8; 24];
    getrandom::fill(&mut b).expect("the OS has randomness");
    B64.encode(b)
}

impl Session {
    /// The session named by the request's cookie, if its MAC is right and the store still has
    /// it; else an empty session.
    pub async fn load(app: &App, keys: &SessionKeys, headers: &HeaderMap) -> Self {
        let anonymous = Self {
            anonymous_csrf: cookie_value(headers, CSRF_COOKIE_NAME)
                .and_then(|v| verify_with(&keys.csrf_mac.0, v))
                .map(str::to_string),
            ..Self::default()
        };
        let Some(id) = cookie_value(headers, COOKIE_NAME).and_then(|v| keys.verify(v)) else {
            return anonymous;
        };
        let stored = match app.web_session(id).await {
            Ok(Some(bytes)) => serde_json::from_slice::<Stored>(&bytes).unwrap_or_default(),
            Ok(None) => return anonymous,
            Err(e) => {
                tracing::warn!(error = %e, "session store unavailable; treating the request as signed out");
                return anonymous;
            }
        };
        let user = match stored.u.map(Id::from_i64) {
            Some(user) => match app.credentials_current(user, &stored.s).await {
                Ok(true) => Some(user),
                // begun before the password changed (or the account is gone)
                Ok(false) => return anonymous,
                Err(e) => {
                    tracing::warn!(error = %e, "credentials unavailable; treating the request as signed out");
                    return anonymous;
                }
            },
            None => None,
        };
        Session {
            id: Some(id.to_string()),
            user,
            csrf: stored.csrf,
            ..anonymous
        }
    }

    /// Gives a visitor without a stored session the CSRF token of its signed cookie (a new
    /// token, with its cookie set on the response, when the request has none or a forged
    /// one); a stored session keeps its own token. Nothing is stored on the server.
    pub fn ensure_anonymous_csrf(&mut self, keys: &SessionKeys) {
        if !self.csrf.is_empty() {
            return;
        }
        match &self.anonymous_csrf {
            Some(token) => self.csrf = token.clone(),
            None => {
                let token = random_token();
                self.set_cookie = Some(keys.csrf_cookie(&token));
                self.anonymous_csrf = Some(token.clone());
                self.csrf = token;
            }
        }
    }

    /// Makes sure there is a stored session with a CSRF token (for a page that shows a
    /// form); a new one sets its cookie on the response.
    ///
    /// # Errors
    /// [`crescendo_app::AppError::Unavailable`] when the session store cannot be reached.
    pub async fn ensure(&mut self, app: &App, keys: &SessionKeys) -> AppResult<()> {
        if self.id.is_some() && !self.csrf.is_empty() {
            return Ok(());
        }
        self.start(app, keys, self.user).await
    }

    /// Starts a new session for `user` (a fresh ID and CSRF token), replacing the current one.
    ///
    /// # Errors
    /// [`crescendo_app::AppError::Unavailable`] when the session store cannot be reached.
    pub async fn start(
        &mut self,
        app: &App,
        keys: &SessionKeys,
        user: Option<Id>,
    ) -> AppResult<()> {
        if let Some(old) = self.id.take() {
            app.delete_web_session(&old).await?;
        }
        let stamp = match user {
            Some(u) => app
                .credential_stamp(u)
                .await?
                .ok_or(crescendo_app::AppError::Unauthorized)?
                .to_string(),
            None => String::new(),
        };
        let id = random_token();
        let stored = Stored {
            u: user.map(Id::as_i64),
            csrf: random_token(),
            s: stamp,
        };
        let bytes = Bytes::from(serde_json::to_vec(&stored).expect("sessions serialise"));
        app.save_web_session(&id, bytes, SESSION_TTL).await?;
        self.set_cookie = Some(keys.cookie(&id));
        self.id = Some(id);
        self.user = user;
        self.csrf = stored.csrf;
        Ok(())
    }

    /// Ends the session: deletes it from the store and clears the cookie.
    ///
    /// # Errors
    /// [`crescendo_app::AppError::Unavailable`] when the session store cannot be reached.
    pub async fn end(&mut self, app: &App, keys: &SessionKeys) -> AppResult<()> {
        if let Some(id) = self.id.take() {
            app.delete_web_session(&id).await?;
        }
        self.user = None;
        self.csrf.clear();
        self.set_cookie = Some(keys.clear_cookie());
        Ok(())
    }

    /// Whether a submitted form's token is this session's (compared in constant time).
    pub fn csrf_ok(&self, submitted: &str) -> bool {
        if self.csrf.is_empty() || submitted.len() != self.csrf.len() {
            return false;
        }
        submitted
            .bytes()
            .zip(self.csrf.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    /// Adds the session cookie, if one is due, to response headers.
    pub fn apply(&self, headers: &mut HeaderMap) {
        if let Some(c) = &self.set_cookie {
            headers.append(SET_COOKIE, c.clone());
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(name)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_verify_only_with_their_own_mac_and_key() {
        let keys = SessionKeys::derive(b"0123456789abcdef0123456789abcdef", false);
        let c = keys.cookie("abc").to_str().unwrap().to_string();
        assert!(
            c.contains("HttpOnly") && c.contains("SameSite=Lax") && !c.contains("Secure"),
            "{c}"
        );
        let value = c
            .split(';')
            .next()
            .unwrap()
            .strip_prefix("crescendo_sid=")
            .unwrap();
        assert_eq!(keys.verify(value), Some("abc"));
        assert_eq!(
            keys.verify(&value.replace("abc", "abd")),
            None,
            "another ID with the same MAC fails"
        );
        let other = SessionKeys::derive(b"another key, also 32 bytes long!", true);
        assert_eq!(other.verify(value), None, "another key fails");
        assert!(other.cookie("x").to_str().unwrap().ends_with("; Secure"));
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_str(&format!("a=1; {COOKIE_NAME}={value}; b=2")).unwrap(),
        );
        assert_eq!(cookie_value(&h, COOKIE_NAME), Some(value));
    }

    #[test]
    fn anonymous_csrf_cookies_verify_only_under_their_own_key() {
        let keys = SessionKeys::derive(b"0123456789abcdef0123456789abcdef", true);
        let c = keys.csrf_cookie("tok").to_str().unwrap().to_string();
        assert!(
            c.starts_with("crescendo_csrf=tok.")
                && c.contains("HttpOnly")
                && c.ends_with("; Secure"),
            "{c}"
        );
        let value = c
            .split(';')
            .next()
            .unwrap()
            .strip_prefix("crescendo_csrf=")
            .unwrap();
        assert_eq!(verify_with(&keys.csrf_mac.0, value), Some("tok"));
        assert_eq!(keys.verify(value), None, "not a session cookie");
        let session = keys.cookie("tok").to_str().unwrap().to_string();
        let session = session
            .split(';')
            .next()
            .unwrap()
            .strip_prefix("crescendo_sid=")
            .unwrap();
        assert_eq!(
            verify_with(&keys.csrf_mac.0, session),
            None,
            "nor the other way round"
        );

        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_str(&format!("crescendo_csrf={value}")).unwrap(),
        );
        let mut s = Session {
            anonymous_csrf: cookie_value(&h, CSRF_COOKIE_NAME)
                .and_then(|v| verify_with(&keys.csrf_mac.0, v))
                .map(str::to_string),
            ..Default::default()
        };
        s.ensure_anonymous_csrf(&keys);
        assert!(
            s.csrf_ok("tok") && s.set_cookie.is_none(),
            "the cookie's token, no new cookie"
        );
        let mut fresh = Session::default();
        fresh.ensure_anonymous_csrf(&keys);
        assert!(
            !fresh.csrf.is_empty() && fresh.set_cookie.is_some(),
            "a new token and cookie"
        );
    }

    #[test]
    fn csrf_tokens_must_match_exactly() {
        let s = Session {
            csrf: "token".into(),
            ..Default::default()
        };
        assert!(s.csrf_ok("token"));
        assert!(!s.csrf_ok("tokem") && !s.csrf_ok("") && !s.csrf_ok("token2"));
        assert!(
            !Session::default().csrf_ok(""),
            "no session, no valid token"
        );
    }
}
