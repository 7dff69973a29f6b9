//! Sign-up, sign-in, refresh-token rotation, sign-out and request authentication.
//!
//! A session is one refresh-token family. Access tokens name their session, and every
//! authenticated request checks that the session is live and the user active, so a
//! sign-out or a disabled account takes effect at once rather than at token expiry.
//! Each refresh rotates the token; presenting a rotated-out token again means it leaked,
//! and the whole session is revoked.

use hermet_domain::id::{SessionId, UserId};
use hermet_domain::time::now_ms;
use hermet_domain::user::{Account, AccountType, NewUser, UserStatus};
use hermet_domain::{Error, ErrorCode, Result, validate};
use hermet_store::{Database, NewSession, SessionWrites, StoreError, Transaction, UserWrites};

use crate::{App, password, tokens};

/// The authenticated caller of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    pub user_id: UserId,
    pub session_id: SessionId,
    pub is_admin: bool,
    /// The cache generation of the caller's lists, read with the session's (one lookup
    /// for both: `App::first_page_cached` in `conversations`); `None` when not caching.
    pub lists_generation: Option<[u64; 2]>,
}

/// Tokens handed to a client.
#[derive(Debug, Clone)]
pub struct IssuedTokens {
    pub user_id: UserId,
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
}

pub struct SignUp {
    pub account_type: AccountType,
    pub account: String,
    pub credential: String,
    pub nickname: String,
    pub avatar: Option<String>,
    pub user_agent: String,
}

pub(crate) fn account_taken(e: StoreError) -> Error {
    if e.is_unique("users_email_live") || e.is_unique("users_mobile_live") {
        Error::Refused {
            code: ErrorCode::AccountTaken,
            message: "an account with this e-mail or mobile number already exists".into(),
            field: Some("account"),
            details: None,
        }
    } else {
        e.into()
    }
}

/// The longest failure-budget key a malformed account is counted under (a real account
/// is at most 254 characters).
const SIGN_IN_KEY_MAX: usize = 256;

fn invalid_credentials() -> Error {
    Error::Unauthorized { code: ErrorCode::InvalidCredentials, message: "wrong account or password" }
}

impl<D: Database> App<D> {
    /// `POST /auth/sign-up`: creates the user and a first session.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn sign_up(&self, req: SignUp) -> Result<IssuedTokens> {
        let account = Account::parse(req.account_type, &req.account)?;
        validate::password("credential", &req.credential)?;
        let nickname = validate::nickname("nickname", &req.nickname)?;
        let avatar = validate::avatar("avatar", req.avatar.as_deref().unwrap_or(""))?;
        let hash = password::hash(self.settings.auth.password, req.credential).await?;
        let now = now_ms();
        let user =
            NewUser { id: self.next_id()?, account, password_hash: Some(hash), nickname, avatar, created_at: now };
        let mut tx = self.db.begin().await?;
        tx.insert_users(std::slice::from_ref(&user)).await.map_err(account_taken)?;
        let (session, tokens) = self.new_session(user.id, now, req.user_agent)?;
        tx.insert_sessions(&[session]).await?;
        self.commit(tx).await?;
        tracing::info!(user_id = %user.id, "user signed up");
        Ok(tokens)
    }

    /// `POST /auth/sign-in`: a wrong account (unknown, or one that cannot exist) and a
    /// wrong password get the same 401.
    #[tracing::instrument(level = "debug", skip_all, fields(account_type = ?account_type))]
    pub async fn sign_in(
        &self,
        account_type: AccountType,
        account: &str,
        credential: String,
        user_agent: String,
    ) -> Result<IssuedTokens> {
        if credential.is_empty() {
            return Err(Error::invalid("credential", "credential must not be empty"));
        }
        // An account that cannot exist (not an e-mail address or mobile number) is an
        // unknown account: the same 401 after the same password verification, so the
        // answer tells nothing about the rules an account follows either.
        let account = Account::parse(account_type, account).map_err(|_| account);
        // the back-off is per account whether or not it exists, so it reveals nothing
        let key = match &account {
            Ok(Account::Email(a) | Account::Mobile(a)) => a.clone(),
            Err(raw) => raw.trim().chars().take(SIGN_IN_KEY_MAX).collect(),
        };
        self.limiter.sign_in_allowed(&key).await?;
        let found = match &account {
            Ok(account) => self.db.user_by_account(account).await?,
            Err(_) => None,
        };
        let hash = found.as_ref().and_then(|(_, h)| h.clone());
        let ok = password::verify(self.settings.auth.password, credential, hash).await?;
        self.limiter.sign_in_result(&key, ok && found.is_some()).await;
        let user = match found {
            Some((user, _)) if ok => user,
            _ => return Err(invalid_credentials()),
        };
        if user.status != UserStatus::Active {
            return Err(Error::forbidden("this account is disabled"));
        }
        let now = now_ms();
        let (session, tokens) = self.new_session(user.id, now, user_agent)?;
        let mut tx = self.db.begin().await?;
        tx.insert_sessions(&[session]).await?;
        self.commit(tx).await?;
        Ok(tokens)
    }

    /// `POST /auth/refresh-token`: rotates the refresh token and issues a new pair.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn refresh(&self, refresh_token: &str) -> Result<IssuedTokens> {
        let invalid = || Error::Unauthorized {
            code: ErrorCode::InvalidRefreshToken,
            message: "the refresh token is invalid, expired or revoked",
        };
        if refresh_token.is_empty() || refresh_token.len() > 256 {
            return Err(invalid());
        }
        let old_hash = tokens::hash_refresh_token(refresh_token);
        let now = now_ms();
        let mut tx = self.db.begin().await?;
        let Some(rec) = tx.lock_refresh_token(&old_hash).await? else {
            return Err(invalid());
        };
        if rec.session_revoked || rec.session_expires_at <= now || rec.user_status != UserStatus::Active {
            return Err(invalid());
        }
        if rec.rotated_at.is_some() {
            // A rotated-out token came back: someone holds a copy. End the session for
            // everyone holding any token of this family.
            tx.revoke_session(rec.session_id, "refresh_token_reuse", now).await?;
            tx.touched().sessions.push(rec.session_id);
            self.commit(tx).await?;
            tracing::warn!(session_id = %rec.session_id, user_id = %rec.user_id, "rotated refresh token reused; session revoked");
            return Err(Error::Unauthorized {
                code: ErrorCode::RefreshTokenReused,
                message: "this refresh token was already used; the session has been revoked",
            });
        }
        let (new_token, new_hash) = tokens::new_refresh_token()?;
        let expires_at = now + self.settings.auth.refresh_token_ttl_secs as i64 * 1000;
        tx.rotate_refresh_token(rec.session_id, &old_hash, &new_hash, now, expires_at).await?;
        tx.touched().sessions.push(rec.session_id);
        self.commit(tx).await?;
        Ok(IssuedTokens {
            user_id: rec.user_id,
            access_token: self.auth.access_token(rec.user_id, rec.session_id, now)?,
            refresh_token: new_token,
            expires_in: self.auth.access_ttl_secs,
        })
    }

    /// `POST /auth/sign-out`: revokes the caller's session; its tokens stop working now.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id, session_id = %who.session_id))]
    pub async fn sign_out(&self, who: Principal) -> Result<()> {
        let mut tx = self.db.begin().await?;
        tx.revoke_session(who.session_id, "sign_out", now_ms()).await?;
        tx.touched().sessions.push(who.session_id);
        self.commit(tx).await?;
        Ok(())
    }

    /// Whether `who`'s session is still live: not signed out, not expired, its user
    /// active (open WebSockets check it now and then; `gateway.session_check_secs`).
    pub async fn session_is_live(&self, who: Principal) -> Result<bool> {
        let (ctx, _) = self.auth_context(who.user_id, who.session_id).await?;
        Ok(ctx.is_some_and(|c| {
            c.user_id == who.user_id
                && !c.session_revoked
                && c.session_expires_at > now_ms()
                && c.user_status == UserStatus::Active
        }))
    }

    /// Authenticates an access token: signature and expiry, then a live session of an
    /// active user.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn authenticate(&self, access_token: &str) -> Result<Principal> {
        let (user_id, session_id) = self.auth.verify(access_token)?;
        let (ctx, lists_generation) = self.auth_context(user_id, session_id).await?;
        let ctx = ctx.ok_or_else(Error::invalid_token)?;
        if ctx.user_id != user_id || ctx.session_revoked || ctx.session_expires_at <= now_ms() {
            return Err(Error::invalid_token());
        }
        if ctx.user_status != UserStatus::Active {
            return Err(Error::Unauthorized { code: ErrorCode::AccountDisabled, message: "this account is disabled" });
        }
        let is_admin = [ctx.email.as_deref(), ctx.mobile.as_deref()]
            .into_iter()
            .flatten()
            .any(|a| self.settings.admins.contains(a));
        Ok(Principal { user_id, session_id, is_admin, lists_generation })
    }

    pub(crate) fn new_session(
        &self,
        user_id: UserId,
        now: i64,
        user_agent: String,
    ) -> Result<(NewSession, IssuedTokens)> {
        let session_id: SessionId = self.next_id()?;
        let (refresh_token, refresh_hash) = tokens::new_refresh_token()?;
        let user_agent: String = user_agent.chars().take(256).collect();
        let session = NewSession {
            id: session_id,
            user_id,
            created_at: now,
            expires_at: now + self.settings.auth.refresh_token_ttl_secs as i64 * 1000,
            user_agent,
            refresh_hash,
        };
        let tokens = IssuedTokens {
            user_id,
            access_token: self.auth.access_token(user_id, session_id, now)?,
            refresh_token,
            expires_in: self.auth.access_ttl_secs,
        };
        Ok((session, tokens))
    }
}
