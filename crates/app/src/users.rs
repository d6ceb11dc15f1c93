//! Users and profiles: register, login, settings, follow.

use crate::{App, AppError, AppResult, Cached, FieldErrors, keys};
use crescendo_domain::{Email, Id, Password, Text, Username};
use crescendo_store::{NewUser, UserChanges, UserRecord};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The signed-in user, with a fresh token.
#[derive(Clone, Debug)]
pub struct UserView {
    /// The user's ID.
    pub id: Id,
    /// Email.
    pub email: String,
    /// A new API token.
    pub token: String,
    /// Username.
    pub username: String,
    /// Bio (empty when unset).
    pub bio: String,
    /// Image URL (empty when unset).
    pub image: String,
}

/// A user as others see them, with whether the viewer follows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileView {
    /// The profile's shared part.
    pub profile: Arc<Cached<Profile>>,
    /// Whether the viewer follows this user (false for anonymous viewers and oneself).
    pub following: bool,
}

/// The public part of a user: what every viewer sees, cached under `profile:{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// The user's ID.
    pub id: Id,
    /// Username.
    pub username: String,
    /// Bio.
    pub bio: String,
    /// Image URL.
    pub image: String,
}

/// Settings a user may change; absent fields stay as they are.
#[derive(Clone, Debug, Default)]
pub struct UserChangesInput {
    /// New email.
    pub email: Option<String>,
    /// New username.
    pub username: Option<String>,
    /// New password.
    pub password: Option<String>,
    /// New bio (`null` or empty clears it).
    pub bio: Option<String>,
    /// New image URL (`null` or empty clears it).
    pub image: Option<String>,
}

impl App {
    fn user_view(&self, u: UserRecord) -> UserView {
        UserView {
            id: u.id,
            token: self
                .inner
                .tokens
                .issue(u.id, &self.inner.tokens.stamp(&u.password_hash)),
            email: u.email,
            username: u.username,
            bio: u.bio,
            image: u.image,
        }
    }

    /// Signs a new user up.
    ///
    /// # Errors
    /// [`AppError::Validation`] for bad fields; [`AppError::Conflict`] for a taken username
    /// or email.
    #[tracing::instrument(skip_all)]
    pub async fn register(
        &self,
        username: &str,
        email: &str,
        password: &str,
    ) -> AppResult<UserView> {
        let mut errs = FieldErrors::default();
        let username = errs.check(Username::parse(username));
        let email = errs.check(Email::parse(email));
        let password = errs.check(Password::parse(password));
        errs.into_result()?;
        let (username, email, password) = (
            username.expect("checked"),
            email.expect("checked"),
            password.expect("checked"),
        );
        // Refuse taken names before paying for a hash; the store's unique keys still decide.
        if self
            .store()
            .user_id_by_username(username.as_str())
            .await?
            .is_some()
        {
            return Err(AppError::Conflict { field: "username" });
        }
        if self.store().user_by_email(email.as_str()).await?.is_some() {
            return Err(AppError::Conflict { field: "email" });
        }
        let password_hash = self.inner.passwords.hash(password.expose()).await?;
        // a cached "no such user" for this name must not outlive the sign-up
        let k = vec![keys::username(username.as_str())];
        let (user, purge) = self
            .purging(
                &k,
                self.store().create_user(NewUser {
                    username: username.into_string(),
                    email: email.into_string(),
                    password_hash,
                }),
            )
            .await?;
        // signed up is signed in: the new user's next requests read at least this write
        self.act_as(user.id).await;
        self.invalidate(k, purge).await?;
        tracing::info!(user_id = %user.id, "user registered");
        Ok(self.user_view(user))
    }

    /// Signs a user in by email and password, from `client`, under the sign-in throttle
    /// (`signin.rs`): failures are counted per (account, client) and per client.
    ///
    /// # Errors
    /// [`AppError::Validation`] for blank fields; [`AppError::Unauthorized`] when the email is
    /// unknown or the password wrong (the same answer, in the same time, for both);
    /// [`AppError::Throttled`] after too many failures.
    #[tracing::instrument(skip_all)]
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        client: crate::ClientAddr,
    ) -> AppResult<UserView> {
        let mut errs = FieldErrors::default();
        errs.check(Text::required("email", email, 254));
        if password.is_empty() {
            errs.0.push(crescendo_domain::FieldError::new(
                "password",
                "can't be blank",
            ));
        }
        errs.into_result()?;
        let email = email.trim().to_lowercase();
        let check = async {
            let user = self.store().user_by_email(&email).await?;
            let ok = self
                .inner
                .passwords
                .verify(password, user.as_ref().map(|u| u.password_hash.as_str()))
                .await;
            Ok(user.filter(|_| ok))
        };
        match self.throttled(&email, client, check).await? {
            Some(u) => Ok(self.user_view(u)),
            None => Err(AppError::Unauthorized),
        }
    }

    /// The signed-in user.
    ///
    /// # Errors
    /// [`AppError::Unauthorized`] if the token's user no longer exists.
    pub async fn current_user(&self, id: Id) -> AppResult<UserView> {
        let u = self
            .store()
            .user_by_id(id)
            .await?
            .ok_or(AppError::Unauthorized)?;
        Ok(self.user_view(u))
    }

    /// Changes the signed-in user's settings.
    ///
    /// # Errors
    /// [`AppError::Validation`], [`AppError::Conflict`], [`AppError::Unauthorized`].
    #[tracing::instrument(skip_all, fields(user_id = %id))]
    pub async fn update_user(&self, id: Id, input: UserChangesInput) -> AppResult<UserView> {
        let mut errs = FieldErrors::default();
        let username = errs.check_given(input.username.as_deref(), Username::parse);
        let email = errs.check_given(input.email.as_deref(), Email::parse);
        let password = errs.check_given(input.password.as_deref(), Password::parse);
        let bio = errs.check_given(input.bio.as_deref(), |b| Text::optional("bio", b, 10_000));
        let image = errs.check_given(input.image.as_deref(), |i| {
            Text::optional("image", i, 2_000)
        });
        if let Some(img) = &image
            && !img.is_empty()
            && !(img.starts_with("https://") || img.starts_with("http://") || img.starts_with('/'))
        {
            errs.0.push(crescendo_domain::FieldError::new(
                "image",
                "must be an http(s) URL",
            ));
        }
        errs.into_result()?;
        let old = self
            .store()
            .user_by_id(id)
            .await?
            .ok_or(AppError::Unauthorized)?;
        let password_hash = match password {
            Some(p) => Some(self.inner.passwords.hash(p.expose()).await?),
            None => None,
        };
        let mut stale = vec![
            keys::profile(id),
            keys::username(&old.username),
            keys::credentials(id),
        ];
        if let Some(new) = &username
            && new.as_str() != old.username
        {
            stale.push(keys::username(new.as_str()));
        }
        let changes = UserChanges {
            username: username.map(Username::into_string),
            email: email.map(Email::into_string),
            password_hash,
            bio,
            image,
        };
        let (user, purge) = self
            .purging(&stale, self.store().update_user(id, changes))
            .await?;
        self.invalidate(stale, purge).await?;
        Ok(self.user_view(user))
    }

    /// Changes the signed-in user's settings as [`App::update_user`] does, but a new email
    /// or password takes the `current` password first, checked from `client` under the
    /// sign-in throttle: a session left open, or stolen, cannot take the account over.
    /// Other changes (name, bio, picture) need no password.
    ///
    /// # Errors
    /// As [`App::update_user`]; [`AppError::Validation`] (`current password`) when the
    /// current password is missing or wrong; [`AppError::Throttled`] after too many wrong ones.
    #[tracing::instrument(skip_all, fields(user_id = %id))]
    pub async fn update_user_confirmed(
        &self,
        id: Id,
        input: UserChangesInput,
        current: &str,
        client: crate::ClientAddr,
    ) -> AppResult<UserView> {
        let old = self
            .store()
            .user_by_id(id)
            .await?
            .ok_or(AppError::Unauthorized)?;
        let new_email = input
            .email
            .as_deref()
            .is_some_and(|e| e.trim().to_lowercase() != old.email);
        let new_password = input.password.as_deref().is_some_and(|p| !p.is_empty());
        if new_email || new_password {
            const FIELD: &str = "current password";
            if current.is_empty() {
                return Err(AppError::invalid(
                    FIELD,
                    "is needed to change your email or password",
                ));
            }
            let check = async {
                let hash = Some(old.password_hash.as_str());
                Ok(self
                    .inner
                    .passwords
                    .verify(current, hash)
                    .await
                    .then_some(()))
            };
            if self.throttled(&old.email, client, check).await?.is_none() {
                return Err(AppError::invalid(FIELD, "is not your current password"));
            }
        }
        self.update_user(id, input).await
    }

    /// `user`'s credential stamp now ([`Tokens::stamp`](crate::Tokens::stamp) of their
    /// password hash), cached like a profile and invalidated with it; `None` when the user
    /// no longer exists. Read after the user's own last write, like all of their reads.
    ///
    /// # Errors
    /// The store is unavailable.
    pub async fn credential_stamp(&self, user: Id) -> AppResult<Option<Arc<String>>> {
        self.cached(&keys::credentials(user), || async {
            Ok::<_, AppError>(
                self.store()
                    .user_by_id(user)
                    .await?
                    .map(|u| self.inner.tokens.stamp(&u.password_hash)),
            )
        })
        .await
    }

    /// Whether `stamp`, carried by a token or a web session, is still `user`'s: false once
    /// they changed their password (or their account is gone). Tokens are signed, so the stamp
    /// they carry cannot be forged, and a plain comparison suffices.
    ///
    /// # Errors
    /// The store is unavailable.
    pub async fn credentials_current(&self, user: Id, stamp: &str) -> AppResult<bool> {
        let now = match self.credential_stamp(user).await? {
            // the cached copy, compared where it lies: no allocation per request
            Some(now) => return Ok(now.as_str() == stamp),
            // a signed token names a user that existed: a replica that has not replayed
            // the sign-up yet is asked no further, the primary is
            None => {
                match crescendo_store::fence::reading_after(u64::MAX, self.store().user_by_id(user))
                    .await?
                {
                    Some(u) => self.inner.tokens.stamp(&u.password_hash),
                    None => return Ok(false),
                }
            }
        };
        Ok(now == stamp)
    }

    /// A user's public profile by ID (cached), e.g. for a page's header.
    ///
    /// # Errors
    /// The store is unavailable.
    pub async fn profile_by_id(&self, id: Id) -> AppResult<Option<Arc<Cached<Profile>>>> {
        self.profile_record(id).await
    }

    /// A user's public profile, cached.
    pub(crate) async fn profile_record(&self, id: Id) -> AppResult<Option<Arc<Cached<Profile>>>> {
        self.cached(&keys::profile(id), || async {
            Ok::<_, AppError>(self.store().user_by_id(id).await?.map(|u| {
                Cached::new(Profile {
                    id: u.id,
                    username: u.username,
                    bio: u.bio,
                    image: u.image,
                })
            }))
        })
        .await
    }

    /// The ID behind a username (case-insensitive), cached, "no such user" too.
    pub(crate) async fn user_id(&self, username: &str) -> AppResult<Option<Id>> {
        let id = self
            .cached(&keys::username(username), || async {
                Ok::<_, AppError>(self.store().user_id_by_username(username).await?)
            })
            .await?;
        Ok(id.map(|i| *i))
    }

    /// Whom `viewer` follows, sorted, cached under the viewer's key.
    pub(crate) async fn followees(&self, viewer: Id) -> AppResult<Arc<Vec<Id>>> {
        let v = self
            .cached(&keys::followees(viewer), || async {
                let mut ids = self.store().followees(viewer).await?;
                ids.sort_unstable();
                Ok::<_, AppError>(Some(ids))
            })
            .await?;
        Ok(v.unwrap_or_default())
    }

    pub(crate) async fn profile_view(
        &self,
        viewer: Option<Id>,
        p: Arc<Cached<Profile>>,
    ) -> AppResult<ProfileView> {
        let following = match viewer {
            Some(v) if v != p.id => self.followees(v).await?.binary_search(&p.id).is_ok(),
            _ => false,
        };
        Ok(ProfileView {
            profile: p,
            following,
        })
    }

    async fn profile_by_name(&self, username: &str) -> AppResult<Arc<Cached<Profile>>> {
        let id = self
            .user_id(username)
            .await?
            .ok_or(AppError::NotFound("profile"))?;
        self.profile_record(id)
            .await?
            .ok_or(AppError::NotFound("profile"))
    }

    /// A profile by username, as `viewer` sees it.
    ///
    /// # Errors
    /// [`AppError::NotFound`].
    pub async fn profile(&self, viewer: Option<Id>, username: &str) -> AppResult<ProfileView> {
        let p = self.profile_by_name(username).await?;
        self.profile_view(viewer, p).await
    }

    /// `viewer` follows `username`.
    ///
    /// # Errors
    /// [`AppError::NotFound`]; [`AppError::Validation`] when following oneself.
    #[tracing::instrument(skip_all, fields(user_id = %viewer))]
    pub async fn follow(&self, viewer: Id, username: &str) -> AppResult<ProfileView> {
        let p = self.profile_by_name(username).await?;
        if p.id == viewer {
            return Err(AppError::invalid("username", "cannot follow yourself"));
        }
        let k = vec![keys::followees(viewer)];
        let (_, purge) = self.purging(&k, self.store().follow(viewer, p.id)).await?;
        self.invalidate(k, purge).await?;
        Ok(ProfileView {
            profile: p,
            following: true,
        })
    }

    /// `viewer` stops following `username`.
    ///
    /// # Errors
    /// [`AppError::NotFound`].
    #[tracing::instrument(skip_all, fields(user_id = %viewer))]
    pub async fn unfollow(&self, viewer: Id, username: &str) -> AppResult<ProfileView> {
        let p = self.profile_by_name(username).await?;
        let mut k = vec![keys::followees(viewer)];
        if self.feeds_by_fan_out().await? {
            // the unfollow removes the followee's entries from the viewer's timeline
            k.push(keys::timeline(viewer));
        }
        let (_, purge) = self
            .purging(&k, self.store().unfollow(viewer, p.id))
            .await?;
        self.invalidate(k, purge).await?;
        Ok(ProfileView {
            profile: p,
            following: false,
        })
    }
}
