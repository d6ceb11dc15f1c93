//! The sign-in throttle: how many sign-in attempts an account, and a client address, may
//! make in a window. The counts live in the `Sessions` store, so with a shared backend every
//! node sees the same count.
//!
//! The web pages ask before checking a password; the JSON API's login does not (yet).

use crate::{App, AppError, AppResult};
use std::time::Duration;

/// Sign-in attempts allowed per account in [`ATTEMPT_WINDOW`].
const ATTEMPTS_PER_ACCOUNT: u64 = 10;
/// Sign-in attempts allowed per client address in [`ATTEMPT_WINDOW`]: more than per account,
/// since many people may share one address.
const ATTEMPTS_PER_ADDRESS: u64 = 50;
/// How long an attempt counts; the count starts again after it.
const ATTEMPT_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Whether a sign-in attempt may go on to check its password.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignInAttempt {
    /// Within the limits.
    Allowed,
    /// Over the limit for the account or for the client address: wait for the window
    /// (15 minutes) to pass.
    TooMany,
}

impl App {
    /// Counts a sign-in attempt for the account with `email` (trimmed, case-insensitive) and
    /// for the `client` address (every attempt counts, whatever its outcome), and says
    /// whether it may go ahead.
    ///
    /// # Errors
    /// [`AppError::Unavailable`] when the counters cannot be reached.
    pub async fn count_sign_in_attempt(
        &self,
        email: &str,
        client: &str,
    ) -> AppResult<SignInAttempt> {
        let email = email.trim().to_lowercase();
        let sessions = &self.inner.sessions;
        let counts = async {
            let by_account = sessions
                .increment(&format!("web:login:account:{email}"), ATTEMPT_WINDOW)
                .await?;
            let by_address = sessions
                .increment(&format!("web:login:address:{client}"), ATTEMPT_WINDOW)
                .await?;
            Ok::<_, crescendo_cache::CacheError>((by_account, by_address))
        };
        match counts.await {
            Ok((a, b)) if a > ATTEMPTS_PER_ACCOUNT || b > ATTEMPTS_PER_ADDRESS => {
                Ok(SignInAttempt::TooMany)
            }
            Ok(_) => Ok(SignInAttempt::Allowed),
            Err(e) => {
                tracing::warn!(error = %e, "rate-limit counters unavailable");
                Err(AppError::Unavailable)
            }
        }
    }
}
