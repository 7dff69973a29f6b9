//! Users and sessions on SQLite. Same statements as the PostgreSQL driver; bulk inserts
//! are one prepared statement executed per row inside the transaction, which in-process
//! SQLite runs at about a million rows a second (no round trips to save).

use hermet_domain::id::{SessionId, UserId};
use hermet_domain::user::{Account, Gender, NewUser, User, UserStatus, search_key};
use rusqlite::{OptionalExtension, Row, params};

use super::{SqliteDatabase, SqliteTx};
use crate::StoreError;
use crate::ports::*;

const USER_COLUMNS: &str = "id, email, mobile, nickname, avatar, gender, region, birthday, tagline, profile_ver, status, deleted_at, created_at, updated_at";

fn bad_value(idx: usize, msg: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, msg.into())
}

fn user_from_row(r: &Row<'_>, o: usize) -> rusqlite::Result<User> {
    let gender: String = r.get(o + 5)?;
    let status: String = r.get(o + 10)?;
    Ok(User {
        id: UserId(r.get(o)?),
        email: r.get(o + 1)?,
        mobile: r.get(o + 2)?,
        nickname: r.get(o + 3)?,
        avatar: r.get(o + 4)?,
        gender: Gender::parse_db(&gender).map_err(|e| bad_value(o + 5, format!("{e:?}")))?,
        region: r.get(o + 6)?,
        birthday: r.get(o + 7)?,
        tagline: r.get(o + 8)?,
        profile_ver: r.get(o + 9)?,
        status: UserStatus::parse_db(&status).map_err(|e| bad_value(o + 10, format!("{e:?}")))?,
        deleted_at: r.get(o + 11)?,
        created_at: r.get(o + 12)?,
        updated_at: r.get(o + 13)?,
    })
}

fn status_of(idx: usize, s: String) -> rusqlite::Result<UserStatus> {
    UserStatus::parse_db(&s).map_err(|e| bad_value(idx, format!("{e:?}")))
}

impl UserReads for SqliteDatabase {
    #[tracing::instrument(level = "debug", name = "sqlite.user_by_id", skip_all)]
    async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        self.read(move |c| {
            c.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))?
                .query_row([id.get()], |r| user_from_row(r, 0))
                .optional()
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.users_by_ids", skip_all)]
    async fn users_by_ids(&self, ids: &[UserId]) -> Result<Vec<User>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = super::statements::json_ids(ids);
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM users WHERE id IN (SELECT value FROM json_each(?1))"
            ))?;
            let rows = stmt.query_map([ids], |r| user_from_row(r, 0))?;
            rows.collect()
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.user_by_account", skip_all)]
    async fn user_by_account(&self, account: &Account) -> Result<Option<(User, Option<String>)>, StoreError> {
        let column = match account {
            Account::Email(_) => "email",
            Account::Mobile(_) => "mobile",
        };
        let value = account.as_str().to_owned();
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {USER_COLUMNS}, password_hash FROM users WHERE {column} = ?1 AND status <> 'deleted'"
            ))?
            .query_row([value], |r| Ok((user_from_row(r, 0)?, r.get(14)?)))
            .optional()
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.search_users", skip_all)]
    async fn search_users(&self, q: &UserSearch) -> Result<Vec<(String, User)>, StoreError> {
        let q = q.clone();
        self.read(move |c| {
            let (after_name, after_id) = match &q.after {
                Some((n, id)) => (Some(n.clone()), *id),
                None => (None, 0),
            };
            let mut stmt = c.prepare_cached(&format!(
                "SELECT search_name, {USER_COLUMNS} FROM users
                 WHERE status = 'active'
                   AND ((email = ?1) OR (mobile = ?2) OR (search_name >= ?3 AND search_name < ?3 || char(1114111)))
                   AND (?4 IS NULL OR (search_name, id) > (?4, ?5))
                 ORDER BY search_name, id LIMIT ?6"
            ))?;
            let rows = stmt
                .query_map(params![q.email, q.mobile, q.prefix, after_name, after_id, q.limit as i64], |r| {
                    Ok((r.get(0)?, user_from_row(r, 1)?))
                })?;
            rows.collect()
        })
        .await
    }
}

impl SessionReads for SqliteDatabase {
    #[tracing::instrument(level = "debug", name = "sqlite.auth_context", skip_all)]
    async fn auth_context(&self, session: SessionId) -> Result<Option<AuthContext>, StoreError> {
        self.read(move |c| {
            c.prepare_cached(
                "SELECT s.id, s.user_id, s.revoked_at IS NOT NULL, s.expires_at, u.status, u.email, u.mobile
                 FROM session s JOIN users u ON u.id = s.user_id WHERE s.id = ?1",
            )?
            .query_row([session.get()], |r| {
                Ok(AuthContext {
                    session_id: SessionId(r.get(0)?),
                    user_id: UserId(r.get(1)?),
                    session_revoked: r.get(2)?,
                    session_expires_at: r.get(3)?,
                    user_status: status_of(4, r.get(4)?)?,
                    email: r.get(5)?,
                    mobile: r.get(6)?,
                })
            })
            .optional()
        })
        .await
    }
}

impl UserWrites for SqliteTx {
    #[tracing::instrument(level = "debug", name = "sqlite.insert_users", skip_all)]
    async fn insert_users(&mut self, users: &[NewUser]) -> Result<(), StoreError> {
        let users = users.to_vec();
        self.run(move |c| {
            let mut stmt = c.prepare_cached(
                "INSERT INTO users (id, email, mobile, password_hash, nickname, search_name, avatar, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
            )?;
            for u in &users {
                let (e, m) = match &u.account {
                    Account::Email(e) => (Some(e.as_str()), None),
                    Account::Mobile(m) => (None, Some(m.as_str())),
                };
                stmt.execute(params![u.id.get(), e, m, u.password_hash, u.nickname, search_key(&u.nickname), u.avatar, u.created_at])?;
            }
            Ok(())
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.lock_user", skip_all)]
    async fn lock_user(&mut self, id: UserId) -> Result<Option<User>, StoreError> {
        // The transaction already holds SQLite's write lock (BEGIN IMMEDIATE).
        self.run(move |c| {
            c.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))?
                .query_row([id.get()], |r| user_from_row(r, 0))
                .optional()
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.update_profile", skip_all)]
    async fn update_profile(&mut self, u: &User) -> Result<(), StoreError> {
        let u = u.clone();
        self.run(move |c| {
            c.prepare_cached(
                "UPDATE users SET nickname = ?2, search_name = ?3, avatar = ?4, gender = ?5, region = ?6, birthday = ?7,
                        tagline = ?8, profile_ver = ?9, updated_at = ?10
                 WHERE id = ?1",
            )?
            .execute(params![
                u.id.get(),
                u.nickname,
                search_key(&u.nickname),
                u.avatar,
                u.gender.as_str(),
                u.region,
                u.birthday,
                u.tagline,
                u.profile_ver,
                u.updated_at
            ])?;
            Ok(())
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.set_user_status", skip_all)]
    async fn set_user_status(&mut self, id: UserId, status: UserStatus, now: i64) -> Result<(), StoreError> {
        self.run(move |c| {
            c.prepare_cached(
                "UPDATE users SET status = ?2, updated_at = ?3,
                        deleted_at = CASE WHEN ?2 = 'deleted' THEN ?3 ELSE NULL END
                 WHERE id = ?1",
            )?
            .execute(params![id.get(), status.as_str(), now])?;
            Ok(())
        })
        .await
    }
}

impl SessionWrites for SqliteTx {
    #[tracing::instrument(level = "debug", name = "sqlite.insert_sessions", skip_all)]
    async fn insert_sessions(&mut self, sessions: &[NewSession]) -> Result<(), StoreError> {
        let sessions = sessions.to_vec();
        self.run(move |c| {
            let mut s1 = c.prepare_cached(
                "INSERT INTO session (id, user_id, created_at, refreshed_at, expires_at, user_agent) VALUES (?1, ?2, ?3, ?3, ?4, ?5)",
            )?;
            for s in &sessions {
                s1.execute(params![s.id.get(), s.user_id.get(), s.created_at, s.expires_at, s.user_agent])?;
            }
            let mut s2 = c.prepare_cached("INSERT INTO refresh_token (token_hash, session_id, issued_at) VALUES (?1, ?2, ?3)")?;
            for s in &sessions {
                s2.execute(params![s.refresh_hash, s.id.get(), s.created_at])?;
            }
            Ok(())
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.lock_refresh_token", skip_all)]
    async fn lock_refresh_token(&mut self, hash: &str) -> Result<Option<RefreshTokenRecord>, StoreError> {
        let hash = hash.to_owned();
        self.run(move |c| {
            c.prepare_cached(
                "SELECT r.session_id, s.user_id, r.rotated_at, s.revoked_at IS NOT NULL, s.expires_at, u.status
                 FROM refresh_token r JOIN session s ON s.id = r.session_id JOIN users u ON u.id = s.user_id
                 WHERE r.token_hash = ?1",
            )?
            .query_row([hash], |r| {
                Ok(RefreshTokenRecord {
                    session_id: SessionId(r.get(0)?),
                    user_id: UserId(r.get(1)?),
                    rotated_at: r.get(2)?,
                    session_revoked: r.get(3)?,
                    session_expires_at: r.get(4)?,
                    user_status: status_of(5, r.get(5)?)?,
                })
            })
            .optional()
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.rotate_refresh_token", skip_all)]
    async fn rotate_refresh_token(
        &mut self,
        session: SessionId,
        old_hash: &str,
        new_hash: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let (old_hash, new_hash) = (old_hash.to_owned(), new_hash.to_owned());
        self.run(move |c| {
            c.prepare_cached("UPDATE refresh_token SET rotated_at = ?2 WHERE token_hash = ?1")?
                .execute(params![old_hash, now])?;
            c.prepare_cached("INSERT INTO refresh_token (token_hash, session_id, issued_at) VALUES (?1, ?2, ?3)")?
                .execute(params![new_hash, session.get(), now])?;
            c.prepare_cached("UPDATE session SET refreshed_at = ?2, expires_at = ?3 WHERE id = ?1")?
                .execute(params![session.get(), now, expires_at])?;
            Ok(())
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.revoke_session", skip_all)]
    async fn revoke_session(&mut self, session: SessionId, reason: &str, now: i64) -> Result<(), StoreError> {
        let reason = reason.to_owned();
        self.run(move |c| {
            c.prepare_cached(
                "UPDATE session SET revoked_at = ?2, revoke_reason = ?3 WHERE id = ?1 AND revoked_at IS NULL",
            )?
            .execute(params![session.get(), now, reason])?;
            Ok(())
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.revoke_user_sessions", skip_all)]
    async fn revoke_user_sessions(&mut self, user: UserId, reason: &str, now: i64) -> Result<u64, StoreError> {
        let reason = reason.to_owned();
        self.run(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE session SET revoked_at = ?2, revoke_reason = ?3 WHERE user_id = ?1 AND revoked_at IS NULL",
                )?
                .execute(params![user.get(), now, reason])?;
            Ok(n as u64)
        })
        .await
    }
}
