//! Administration: bulk user creation (tests and benchmarks need thousands of users
//! quickly) and disabling, enabling or deleting users. Callers must be admins.

use std::collections::HashSet;

use hermet_domain::id::UserId;
use hermet_domain::time::now_ms;
use hermet_domain::user::{Account, AccountType, NewUser, UserStatus};
use hermet_domain::{Error, ErrorCode, Result, validate};
use hermet_store::{Database, SessionWrites, Transaction, UserWrites};

use crate::auth::{IssuedTokens, account_taken};
use crate::{App, Principal, password};

pub struct BulkUser {
    pub account_type: AccountType,
    pub account: String,
    /// `None`: the account cannot sign in with a password (use `issue_tokens`).
    pub credential: Option<String>,
    pub nickname: String,
    pub avatar: Option<String>,
}

pub struct CreatedUser {
    pub user_id: UserId,
    pub account: String,
    pub tokens: Option<IssuedTokens>,
}

fn require_admin(who: Principal) -> Result<()> {
    if who.is_admin { Ok(()) } else { Err(Error::forbidden("administrator rights are required")) }
}

impl<D: Database> App<D> {
    /// `POST /admin/users`: creates up to `max_bulk_users` users in one transaction,
    /// optionally with a session each. All or nothing.
    #[tracing::instrument(level = "debug", skip_all, fields(admin_id = %who.user_id, users = users.len(), issue_tokens))]
    pub async fn bulk_create_users(
        &self,
        who: Principal,
        users: Vec<BulkUser>,
        issue_tokens: bool,
    ) -> Result<Vec<CreatedUser>> {
        require_admin(who)?;
        let max = self.settings.limits.max_bulk_users;
        if users.is_empty() || users.len() > max {
            return Err(Error::invalid("users", format!("users must hold 1 to {max} entries")));
        }
        let mut seen = HashSet::with_capacity(users.len());
        let mut accounts = Vec::with_capacity(users.len());
        let mut credentials = Vec::with_capacity(users.len());
        let mut profiles = Vec::with_capacity(users.len());
        for (i, u) in users.into_iter().enumerate() {
            let field = |f: &str| format!("users[{i}].{f}");
            let account = Account::parse(u.account_type, &u.account).map_err(|_| {
                Error::invalid(
                    field("account"),
                    format!("{} is not a valid {:?} account", field("account"), u.account_type).to_lowercase(),
                )
            })?;
            if !seen.insert(account.clone()) {
                return Err(Error::invalid(
                    field("account"),
                    format!("{} repeats an account given earlier in the list", field("account")),
                ));
            }
            if let Some(c) = &u.credential {
                validate::password(&field("credential"), c)?;
            }
            let nickname = validate::nickname(&field("nickname"), &u.nickname)?;
            let avatar = validate::avatar(&field("avatar"), u.avatar.as_deref().unwrap_or(""))?;
            accounts.push(account);
            credentials.push(u.credential);
            profiles.push((nickname, avatar));
        }
        let hashes = password::hash_many(self.settings.auth.password, credentials).await?;
        let now = now_ms();
        let ids = self.ids.next_many(accounts.len()).map_err(Error::internal)?;
        let new_users: Vec<NewUser> = accounts
            .into_iter()
            .zip(hashes)
            .zip(profiles)
            .zip(ids)
            .map(|(((account, password_hash), (nickname, avatar)), id)| NewUser {
                id: UserId(id),
                account,
                password_hash,
                nickname,
                avatar,
                created_at: now,
            })
            .collect();
        let mut sessions = Vec::new();
        let mut created = Vec::with_capacity(new_users.len());
        for u in &new_users {
            let tokens = if issue_tokens {
                let (s, t) = self.new_session(u.id, now, "admin-bulk-create".into())?;
                sessions.push(s);
                Some(t)
            } else {
                None
            };
            created.push(CreatedUser { user_id: u.id, account: u.account.as_str().to_owned(), tokens });
        }
        let mut tx = self.db.begin().await?;
        tx.insert_users(&new_users).await.map_err(account_taken)?;
        tx.insert_sessions(&sessions).await?;
        self.commit(tx).await?;
        tracing::info!(admin = %who.user_id, count = created.len(), "users bulk-created");
        Ok(created)
    }

    /// Disables, re-enables or deletes a user. Disabling and deleting revoke every
    /// session of the user at once; a deleted user's account can be registered again.
    /// Deleting also erases the profile (others see "Deleted account") and takes the
    /// account out of every group.
    #[tracing::instrument(level = "debug", skip_all, fields(admin_id = %who.user_id, target_id = %id, status = status.as_str()))]
    pub async fn set_user_status(&self, who: Principal, id: UserId, status: UserStatus) -> Result<()> {
        require_admin(who)?;
        if id == who.user_id && status != UserStatus::Active {
            return Err(Error::Refused {
                code: ErrorCode::CannotLockOutSelf,
                message: "an administrator cannot disable or delete their own account".into(),
                field: None,
                details: None,
            });
        }
        let now = now_ms();
        let mut tx = self.db.begin().await?;
        let user = tx.lock_user(id).await?.ok_or(Error::NotFound("user"))?;
        match (user.status, status) {
            (UserStatus::Deleted, _) => return Err(Error::NotFound("user")),
            (a, b) if a == b => return Ok(()),
            _ => {}
        }
        if status == UserStatus::Deleted {
            // The write side first; the read models follow as for any change.
            self.erase_profile(&mut tx, &user, now).await?;
            self.remove_from_all_groups(&mut tx, who, id, now).await?;
        }
        tx.set_user_status(id, status, now).await?;
        tx.touched().accounts.push(id);
        if status != UserStatus::Active {
            let n = tx.revoke_user_sessions(id, status.as_str(), now).await?;
            tracing::info!(user_id = %id, sessions = n, status = status.as_str(), "user locked out");
        }
        self.commit(tx).await?;
        Ok(())
    }
}
