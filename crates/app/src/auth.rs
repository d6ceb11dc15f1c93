//! API tokens (JWT, HS256) and password hashing (argon2id).

use crate::{AppError, AppResult};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD as B64_STD, URL_SAFE_NO_PAD as B64};
use crescendo_domain::{Id, Redacted};
use crescendo_telemetry::names;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;

/// Signs and checks API tokens: `Authorization: Token <jwt>`.
#[derive(Clone, Debug)]
pub struct Tokens {
    key: Redacted<Arc<[u8]>>,
    ttl: Duration,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Claims {
    /// The user's ID, as a string (IDs exceed JavaScript's exact integers).
    sub: String,
    iat: u64,
    exp: u64,
    /// The user's credential stamp when the token was issued ([`Tokens::stamp`]); a token
    /// without one (or with an older one) is refused.
    #[serde(default)]
    cs: String,
}

/// What a valid token says: whom it was issued to, under which credential stamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenClaims {
    /// The user the token was issued to.
    pub user: Id,
    /// The user's credential stamp at the time ([`Tokens::stamp`]).
    pub stamp: String,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Tokens {
    /// Tokens signed with `key`, valid for `ttl`.
    pub fn new(key: &[u8], ttl: Duration) -> Self {
        Self {
            key: Redacted(key.into()),
            ttl,
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.key.0).expect("HMAC takes keys of any length")
    }

    /// A short keyed digest of a password hash, carried in tokens and web sessions: a
    /// password change stores a new hash (with a new salt), so every token and session
    /// issued before it stops matching. It reveals nothing of the hash without the key.
    pub fn stamp(&self, password_hash: &str) -> String {
        let mut mac = self.mac();
        mac.update(b"credential-stamp\0");
        mac.update(password_hash.as_bytes());
        B64.encode(&mac.finalize().into_bytes()[..12])
    }

    /// A token for `user`, whose credentials carry `stamp` ([`Tokens::stamp`]).
    pub fn issue(&self, user: Id, stamp: &str) -> String {
        let now = now_secs();
        let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = Claims {
            sub: user.to_string(),
            iat: now,
            exp: now + self.ttl.as_secs(),
            cs: stamp.to_string(),
        };
        let payload = B64.encode(serde_json::to_vec(&claims).expect("claims serialise"));
        let signing_input = format!("{header}.{payload}");
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{sig}")
    }

    /// The user a token was issued to, and the credential stamp it carries (whether that
    /// stamp is still the user's is [`App::authenticate`](crate::App::authenticate)'s check).
    ///
    /// # Errors
    /// [`AppError::Unauthorized`] if the token is malformed, not signed with our key (the
    /// comparison is constant-time), not HS256, or expired.
    pub fn verify(&self, token: &str) -> AppResult<TokenClaims> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AppError::Unauthorized);
        };
        let sig = B64.decode(s).map_err(|_| AppError::Unauthorized)?;
        let mut mac = self.mac();
        mac.update(h.as_bytes());
        mac.update(b".");
        mac.update(p.as_bytes());
        mac.verify_slice(&sig).map_err(|_| AppError::Unauthorized)?;
        let header: serde_json::Value =
            serde_json::from_slice(&B64.decode(h).map_err(|_| AppError::Unauthorized)?)
                .map_err(|_| AppError::Unauthorized)?;
        if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
            return Err(AppError::Unauthorized);
        }
        let claims: Claims =
            serde_json::from_slice(&B64.decode(p).map_err(|_| AppError::Unauthorized)?)
                .map_err(|_| AppError::Unauthorized)?;
        if claims.exp <= now_secs() {
            return Err(AppError::Unauthorized);
        }
        let user = claims
            .sub
            .parse::<i64>()
            .map(Id::from_i64)
            .map_err(|_| AppError::Unauthorized)?;
        Ok(TokenClaims {
            user,
            stamp: claims.cs,
        })
    }
}

/// Argon2id hashing off the async runtime, a bounded number at a time, in reused memory.
///
/// Each hash needs `memory_kib` of working memory. Allocating it per hash lets the
/// allocator keep a freed copy per thread (hundreds of MiB after a burst of sign-ups), so
/// the working memory is allocated once per permit and reused: memory stays at
/// `concurrency × memory_kib` however many hashes run. Requests beyond the bound wait.
#[derive(Clone)]
pub struct Passwords {
    params: argon2::Params,
    permits: Arc<Semaphore>,
    /// Idle working-memory buffers, one per permit once used.
    buffers: Arc<Mutex<Vec<Vec<argon2::Block>>>>,
    /// A hash of a random password, verified against when an email is unknown, so a login
    /// takes as long whether or not the account exists.
    decoy: Arc<str>,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;

impl Passwords {
    /// Argon2id with `memory_kib`, `iterations`, one lane; at most `concurrency` at once.
    ///
    /// # Errors
    /// Invalid argon2 parameters.
    pub fn new(memory_kib: u32, iterations: u32, concurrency: usize) -> anyhow::Result<Self> {
        let params = argon2::Params::new(memory_kib, iterations, 1, Some(HASH_LEN))
            .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        let mut p = Self {
            params,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            buffers: Arc::new(Mutex::new(Vec::new())),
            decoy: "".into(),
        };
        let mut salt = [0u8; SALT_LEN];
        getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let mut buf = p.buffer(p.params.block_count());
        p.decoy = hash_with(
            &p.params,
            &format!("{:x}", getrandom::u64().unwrap_or(1)),
            &salt,
            &mut buf,
        )?
        .into();
        p.give_back(buf);
        Ok(p)
    }

    fn buffer(&self, blocks: usize) -> Vec<argon2::Block> {
        let mut idle = self.buffers.lock().expect("buffer lock is never poisoned");
        match idle.iter().position(|b| b.len() == blocks) {
            Some(i) => idle.swap_remove(i),
            None => vec![argon2::Block::default(); blocks],
        }
    }

    fn give_back(&self, buf: Vec<argon2::Block>) {
        // only buffers of the configured size are kept; odd ones (old hashes) are freed
        if buf.len() == self.params.block_count() {
            self.buffers
                .lock()
                .expect("buffer lock is never poisoned")
                .push(buf);
        }
    }

    /// The PHC string of `password`.
    ///
    /// # Errors
    /// Hashing failed (a bug).
    pub async fn hash(&self, password: &str) -> AppResult<String> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| AppError::Unavailable)?;
        let mut salt = [0u8; SALT_LEN];
        getrandom::fill(&mut salt)
            .map_err(|e| AppError::Internal(anyhow::anyhow!("no randomness: {e}")))?;
        let (me, pw) = (self.clone(), password.to_string());
        metrics::counter!(names::PASSWORD_HASHES, "op" => "hash").increment(1);
        tokio::task::spawn_blocking(move || {
            let mut buf = me.buffer(me.params.block_count());
            let r = hash_with(&me.params, &pw, &salt, &mut buf);
            me.give_back(buf);
            r
        })
        .await
        .map_err(|e| AppError::Internal(e.into()))?
        .map_err(AppError::Internal)
    }

    /// Whether `password` matches `phc`; with `None`, checks against the decoy and fails.
    pub async fn verify(&self, password: &str, phc: Option<&str>) -> bool {
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let known = phc.is_some();
        let (me, pw, phc) = (
            self.clone(),
            password.to_string(),
            phc.unwrap_or(&self.decoy).to_string(),
        );
        metrics::counter!(names::PASSWORD_HASHES, "op" => "verify").increment(1);
        let ok = tokio::task::spawn_blocking(move || me.verify_blocking(&pw, &phc))
            .await
            .unwrap_or(false);
        ok && known
    }

    fn verify_blocking(&self, password: &str, phc: &str) -> bool {
        let Ok(h) = argon2::password_hash::phc::PasswordHash::new(phc) else {
            return false;
        };
        if h.algorithm.as_str() != "argon2id" {
            return false;
        }
        let (Ok(params), Some(salt), Some(expected)) =
            (argon2::Params::try_from(&h), h.salt, h.hash)
        else {
            return false;
        };
        let salt: &[u8] = salt.as_ref();
        let Ok(params) = argon2::Params::new(
            params.m_cost(),
            params.t_cost(),
            params.p_cost(),
            Some(expected.len()),
        ) else {
            return false;
        };
        let mut out = vec![0u8; expected.len()];
        let mut buf = self.buffer(params.block_count());
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let r = argon.hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut buf);
        self.give_back(buf);
        // constant-time comparison
        r.is_ok()
            && out
                .iter()
                .zip(expected.as_bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

fn hash_with(
    params: &argon2::Params,
    password: &str,
    salt: &[u8],
    buf: &mut [argon2::Block],
) -> anyhow::Result<String> {
    let argon = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        params.clone(),
    );
    let mut out = [0u8; HASH_LEN];
    argon
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, buf)
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    Ok(format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        B64_STD.encode(salt),
        B64_STD.encode(out)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_tampering() {
        let t = Tokens::new(b"0123456789abcdef0123456789abcdef", Duration::from_secs(60));
        let id = Id::from_i64(1234567890123);
        let tok = t.issue(id, "s1");
        assert_eq!(
            t.verify(&tok).unwrap(),
            TokenClaims {
                user: id,
                stamp: "s1".into()
            }
        );
        let other = Tokens::new(
            b"another key another key another k",
            Duration::from_secs(60),
        );
        assert!(matches!(other.verify(&tok), Err(AppError::Unauthorized)));
        let mut parts: Vec<&str> = tok.split('.').collect();
        let forged = B64.encode(br#"{"sub":"1","iat":0,"exp":99999999999}"#);
        parts[1] = &forged;
        assert!(matches!(
            t.verify(&parts.join(".")),
            Err(AppError::Unauthorized)
        ));
        for junk in ["", "a.b", "a.b.c", "a.b.c.d", "...."] {
            assert!(
                matches!(t.verify(junk), Err(AppError::Unauthorized)),
                "{junk}"
            );
        }
    }

    #[test]
    fn expired_tokens_are_refused() {
        let t = Tokens::new(b"0123456789abcdef0123456789abcdef", Duration::ZERO);
        assert!(matches!(
            t.verify(&t.issue(Id::from_i64(1), "s")),
            Err(AppError::Unauthorized)
        ));
    }

    #[test]
    fn stamps_follow_the_hash_and_the_key() {
        let t = Tokens::new(b"0123456789abcdef0123456789abcdef", Duration::from_secs(60));
        let a = t.stamp("$argon2id$v=19$m=1024,t=1,p=1$c2FsdA$aGFzaA");
        assert_eq!(a, t.stamp("$argon2id$v=19$m=1024,t=1,p=1$c2FsdA$aGFzaA"));
        assert_ne!(a, t.stamp("$argon2id$v=19$m=1024,t=1,p=1$c2FsdB$aGFzaA"));
        let other = Tokens::new(b"another key another key another k", Duration::ZERO);
        assert_ne!(
            a,
            other.stamp("$argon2id$v=19$m=1024,t=1,p=1$c2FsdA$aGFzaA")
        );
        assert!(!a.contains("aGFzaA"), "the hash does not show through");
    }

    #[tokio::test]
    async fn passwords_verify_only_against_their_hash() {
        let p = Passwords::new(1024, 1, 2).unwrap();
        let h = p.hash("correct horse").await.unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(p.verify("correct horse", Some(&h)).await);
        assert!(!p.verify("wrong horse", Some(&h)).await);
        assert!(
            !p.verify("correct horse", None).await,
            "unknown accounts never verify"
        );
        assert!(!p.verify("x", Some("not a hash")).await);
        // hashes made with other parameters (an older configuration) still verify
        let old = Passwords::new(2048, 2, 1).unwrap();
        let h_old = old.hash("old secret!").await.unwrap();
        assert!(h_old.contains("m=2048,t=2,p=1"), "{h_old}");
        assert!(p.verify("old secret!", Some(&h_old)).await);
    }

    #[test]
    fn hashes_are_standard_phc_strings() {
        // a hash made by the argon2 crate's own PHC encoder verifies here
        use argon2::password_hash::PasswordHasher;
        let params = argon2::Params::new(1024, 1, 1, None).unwrap();
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let phc = argon
            .hash_password(b"interop password")
            .unwrap()
            .to_string();
        let p = Passwords::new(1024, 1, 1).unwrap();
        assert!(p.verify_blocking("interop password", &phc));
        assert!(!p.verify_blocking("other password", &phc));
    }
}
