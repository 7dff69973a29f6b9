//! Users and sessions on PostgreSQL.

use hermet_domain::id::{SessionId, UserId};
use hermet_domain::user::{Account, Gender, NewUser, User, UserStatus, search_key};
use tokio_postgres::Row;

use super::{PgDatabase, PgTx, pg_err};
use crate::StoreError;
use crate::ports::*;

const USER_COLUMNS: &str = "id, email, mobile, nickname, avatar, gender, region, birthday, tagline, profile_ver, status, deleted_at, created_at, updated_at";

fn user_from_row(r: &Row, o: usize) -> Result<User, StoreError> {
    Ok(User {
        id: UserId(r.try_get(o).map_err(pg_err)?),
        email: r.try_get(o + 1).map_err(pg_err)?,
        mobile: r.try_get(o + 2).map_err(pg_err)?,
        nickname: r.try_get(o + 3).map_err(pg_err)?,
        avatar: r.try_get(o + 4).map_err(pg_err)?,
        gender: Gender::parse_db(r.try_get(o + 5).map_err(pg_err)?)
            .map_err(|e| StoreError::other(anyhow::anyhow!("{e:?}")))?,
        region: r.try_get(o + 6).map_err(pg_err)?,
        birthday: r.try_get(o + 7).map_err(pg_err)?,
        tagline: r.try_get(o + 8).map_err(pg_err)?,
        profile_ver: r.try_get(o + 9).map_err(pg_err)?,
        status: UserStatus::parse_db(r.try_get(o + 10).map_err(pg_err)?)
            .map_err(|e| StoreError::other(anyhow::anyhow!("{e:?}")))?,
        deleted_at: r.try_get(o + 11).map_err(pg_err)?,
        created_at: r.try_get(o + 12).map_err(pg_err)?,
        updated_at: r.try_get(o + 13).map_err(pg_err)?,
    })
}

fn status_of(s: &str) -> Result<UserStatus, StoreError> {
    UserStatus::parse_db(s).map_err(|e| StoreError::other(anyhow::anyhow!("{e:?}")))
}

impl UserReads for PgDatabase {
    #[tracing::instrument(level = "debug", name = "postgres.user_by_id", skip_all)]
    async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let conn = self.read_conn().await?;
        let stmt = conn.prep(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1")).await.map_err(pg_err)?;
        conn.query_opt(&stmt, &[&id.get()]).await.map_err(pg_err)?.map(|r| user_from_row(&r, 0)).transpose()
    }

    #[tracing::instrument(level = "debug", name = "postgres.users_by_ids", skip_all)]
    async fn users_by_ids(&self, ids: &[UserId]) -> Result<Vec<User>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let conn = self.read_conn().await?;
        let stmt = conn
            .prep(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ANY($1::bigint[])"))
            .await
            .map_err(pg_err)?;
        let ids: Vec<i64> = ids.iter().map(|u| u.get()).collect();
        conn.query(&stmt, &[&ids]).await.map_err(pg_err)?.iter().map(|r| user_from_row(r, 0)).collect()
    }

    #[tracing::instrument(level = "debug", name = "postgres.user_by_account", skip_all)]
    async fn user_by_account(&self, account: &Account) -> Result<Option<(User, Option<String>)>, StoreError> {
        let column = match account {
            Account::Email(_) => "email",
            Account::Mobile(_) => "mobile",
        };
        let conn = self.write_conn().await?;
        let sql =
            format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE {column} = $1 AND status <> 'deleted'");
        let stmt = conn.prep(&sql).await.map_err(pg_err)?;
        match conn.query_opt(&stmt, &[&account.as_str()]).await.map_err(pg_err)? {
            Some(r) => Ok(Some((user_from_row(&r, 0)?, r.try_get(14).map_err(pg_err)?))),
            None => Ok(None),
        }
    }

    #[tracing::instrument(level = "debug", name = "postgres.search_users", skip_all)]
    async fn search_users(&self, q: &UserSearch) -> Result<Vec<(String, User)>, StoreError> {
        let conn = self.read_conn().await?;
        let sql = format!(
            "SELECT search_name, {USER_COLUMNS} FROM users
             WHERE status = 'active'
               AND ((email = $1) OR (mobile = $2) OR (search_name >= $3 AND search_name < $3 || chr(1114111)))
               AND ($4::text IS NULL OR (search_name, id) > ($4, $5))
             ORDER BY search_name, id LIMIT $6"
        );
        let stmt = conn.prep(&sql).await.map_err(pg_err)?;
        let (after_name, after_id) = match &q.after {
            Some((n, id)) => (Some(n.as_str()), *id),
            None => (None, 0),
        };
        let rows = conn
            .query(&stmt, &[&q.email, &q.mobile, &q.prefix, &after_name, &after_id, &(q.limit as i64)])
            .await
            .map_err(pg_err)?;
        rows.iter().map(|r| Ok((r.try_get(0).map_err(pg_err)?, user_from_row(r, 1)?))).collect()
    }
}

impl SessionReads for PgDatabase {
    #[tracing::instrument(level = "debug", name = "postgres.auth_context", skip_all)]
    async fn auth_context(&self, session: SessionId) -> Result<Option<AuthContext>, StoreError> {
        // Sessions are read from the primary: a sign-out must take effect at once.
        let conn = self.primary_read_conn().await?;
        let stmt = conn
            .prep(
                "SELECT s.id, s.user_id, s.revoked_at IS NOT NULL, s.expires_at, u.status, u.email, u.mobile
                 FROM session s JOIN users u ON u.id = s.user_id WHERE s.id = $1",
            )
            .await
            .map_err(pg_err)?;
        let Some(r) = conn.query_opt(&stmt, &[&session.get()]).await.map_err(pg_err)? else {
            return Ok(None);
        };
        Ok(Some(AuthContext {
            session_id: SessionId(r.get(0)),
            user_id: UserId(r.get(1)),
            session_revoked: r.get(2),
            session_expires_at: r.get(3),
            user_status: status_of(r.get(4))?,
            email: r.get(5),
            mobile: r.get(6),
        }))
    }
}

impl UserWrites for PgTx {
    #[tracing::instrument(level = "debug", name = "postgres.insert_users", skip_all)]
    async fn insert_users(&mut self, users: &[NewUser]) -> Result<(), StoreError> {
        let mut ids = Vec::with_capacity(users.len());
        let mut emails = Vec::with_capacity(users.len());
        let mut mobiles = Vec::with_capacity(users.len());
        let mut hashes = Vec::with_capacity(users.len());
        let mut nicknames = Vec::with_capacity(users.len());
        let mut search = Vec::with_capacity(users.len());
        let mut avatars = Vec::with_capacity(users.len());
        let mut times = Vec::with_capacity(users.len());
        for u in users {
            ids.push(u.id.get());
            let (e, m) = match &u.account {
                Account::Email(e) => (Some(e.as_str()), None),
                Account::Mobile(m) => (None, Some(m.as_str())),
            };
            emails.push(e);
            mobiles.push(m);
            hashes.push(u.password_hash.as_deref());
            nicknames.push(u.nickname.as_str());
            search.push(search_key(&u.nickname));
            avatars.push(u.avatar.as_str());
            times.push(u.created_at);
        }
        let conn = self.conn()?;
        let stmt = conn
            .prep(
                "INSERT INTO users (id, email, mobile, password_hash, nickname, search_name, avatar, created_at, updated_at)
                 SELECT i, e, m, h, n, s, a, t, t
                 FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bigint[])
                      AS x(i, e, m, h, n, s, a, t)",
            )
            .await
            .map_err(pg_err)?;
        conn.execute(&stmt, &[&ids, &emails, &mobiles, &hashes, &nicknames, &search, &avatars, &times])
            .await
            .map_err(pg_err)?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "postgres.lock_user", skip_all)]
    async fn lock_user(&mut self, id: UserId) -> Result<Option<User>, StoreError> {
        let conn = self.conn()?;
        let stmt =
            conn.prep(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1 FOR UPDATE")).await.map_err(pg_err)?;
        conn.query_opt(&stmt, &[&id.get()]).await.map_err(pg_err)?.map(|r| user_from_row(&r, 0)).transpose()
    }

    #[tracing::instrument(level = "debug", name = "postgres.update_profile", skip_all)]
    async fn update_profile(&mut self, u: &User) -> Result<(), StoreError> {
        let conn = self.conn()?;
        let stmt = conn
            .prep(
                "UPDATE users SET nickname = $2, search_name = $3, avatar = $4, gender = $5, region = $6, birthday = $7,
                        tagline = $8, profile_ver = $9, updated_at = $10
                 WHERE id = $1",
            )
            .await
            .map_err(pg_err)?;
        conn.execute(
            &stmt,
            &[
                &u.id.get(),
                &u.nickname,
                &search_key(&u.nickname),
                &u.avatar,
                &u.gender.as_str(),
                &u.region,
                &u.birthday,
                &u.tagline,
                &u.profile_ver,
                &u.updated_at,
            ],
        )
        .await
        .map_err(pg_err)?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "postgres.set_user_status", skip_all)]
    async fn set_user_status(&mut self, id: UserId, status: UserStatus, now: i64) -> Result<(), StoreError> {
        let conn = self.conn()?;
        let stmt = conn
            .prep(
                "UPDATE users SET status = $2, updated_at = $3,
                        deleted_at = CASE WHEN $2 = 'deleted' THEN $3::bigint ELSE NULL END
                 WHERE id = $1",
            )
            .await
            .map_err(pg_err)?;
        conn.execute(&stmt, &[&id.get(), &status.as_str(), &now]).await.map_err(pg_err)?;
        Ok(())
    }
}

impl SessionWrites for PgTx {
    #[tracing::instrument(level = "debug", name = "postgres.insert_sessions", skip_all)]
    async fn insert_sessions(&mut self, sessions: &[NewSession]) -> Result<(), StoreError> {
        let ids: Vec<i64> = sessions.iter().map(|s| s.id.get()).collect();
        let users: Vec<i64> = sessions.iter().map(|s| s.user_id.get()).collect();
        let created: Vec<i64> = sessions.iter().map(|s| s.created_at).collect();
        let expires: Vec<i64> = sessions.iter().map(|s| s.expires_at).collect();
        let agents: Vec<&str> = sessions.iter().map(|s| s.user_agent.as_str()).collect();
        let hashes: Vec<&str> = sessions.iter().map(|s| s.refresh_hash.as_str()).collect();
        let conn = self.conn()?;
        let s1 = conn
            .prep(
                "INSERT INTO session (id, user_id, created_at, refreshed_at, expires_at, user_agent)
                 SELECT i, u, c, c, e, a FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[]) AS x(i, u, c, e, a)",
            )
            .await
            .map_err(pg_err)?;
        let s2 = conn
            .prep(
                "INSERT INTO refresh_token (token_hash, session_id, issued_at)
                 SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[])",
            )
            .await
            .map_err(pg_err)?;
        // Pipelined: both statements go out before either answer is read; they run in
        // the order sent, so refresh_token's reference to session holds.
        let (a, b) =
            tokio::join!(async { conn.execute(&s1, &[&ids, &users, &created, &expires, &agents]).await }, async {
                conn.execute(&s2, &[&hashes, &ids, &created]).await
            });
        a.map_err(pg_err)?;
        b.map_err(pg_err)?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "postgres.lock_refresh_token", skip_all)]
    async fn lock_refresh_token(&mut self, hash: &str) -> Result<Option<RefreshTokenRecord>, StoreError> {
        let conn = self.conn()?;
        let stmt = conn
            .prep(
                "SELECT r.session_id, s.user_id, r.rotated_at, s.revoked_at IS NOT NULL, s.expires_at, u.status
                 FROM refresh_token r JOIN session s ON s.id = r.session_id JOIN users u ON u.id = s.user_id
                 WHERE r.token_hash = $1 FOR UPDATE OF s",
            )
            .await
            .map_err(pg_err)?;
        let Some(r) = conn.query_opt(&stmt, &[&hash]).await.map_err(pg_err)? else {
            return Ok(None);
        };
        Ok(Some(RefreshTokenRecord {
            session_id: SessionId(r.get(0)),
            user_id: UserId(r.get(1)),
            rotated_at: r.get(2),
            session_revoked: r.get(3),
            session_expires_at: r.get(4),
            user_status: status_of(r.get(5))?,
        }))
    }

    #[tracing::instrument(level = "debug", name = "postgres.rotate_refresh_token", skip_all)]
    async fn rotate_refresh_token(
        &mut self,
        session: SessionId,
        old_hash: &str,
        new_hash: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let conn = self.conn()?;
        let s1 = conn.prep("UPDATE refresh_token SET rotated_at = $2 WHERE token_hash = $1").await.map_err(pg_err)?;
        let s2 = conn
            .prep("INSERT INTO refresh_token (token_hash, session_id, issued_at) VALUES ($1, $2, $3)")
            .await
            .map_err(pg_err)?;
        let s3 =
            conn.prep("UPDATE session SET refreshed_at = $2, expires_at = $3 WHERE id = $1").await.map_err(pg_err)?;
        let sid = session.get();
        let (a, b, c) = tokio::join!(
            async { conn.execute(&s1, &[&old_hash, &now]).await },
            async { conn.execute(&s2, &[&new_hash, &sid, &now]).await },
            async { conn.execute(&s3, &[&sid, &now, &expires_at]).await },
        );
        a.map_err(pg_err)?;
        b.map_err(pg_err)?;
        c.map_err(pg_err)?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "postgres.revoke_session", skip_all)]
    async fn revoke_session(&mut self, session: SessionId, reason: &str, now: i64) -> Result<(), StoreError> {
        let conn = self.conn()?;
        let stmt = conn
            .prep("UPDATE session SET revoked_at = $2, revoke_reason = $3 WHERE id = $1 AND revoked_at IS NULL")
            .await
            .map_err(pg_err)?;
        conn.execute(&stmt, &[&session.get(), &now, &reason]).await.map_err(pg_err)?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "postgres.revoke_user_sessions", skip_all)]
    async fn revoke_user_sessions(&mut self, user: UserId, reason: &str, now: i64) -> Result<u64, StoreError> {
        let conn = self.conn()?;
        let stmt = conn
            .prep("UPDATE session SET revoked_at = $2, revoke_reason = $3 WHERE user_id = $1 AND revoked_at IS NULL")
            .await
            .map_err(pg_err)?;
        conn.execute(&stmt, &[&user.get(), &now, &reason]).await.map_err(pg_err)
    }
}
