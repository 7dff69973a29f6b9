//! Friendships, contact requests and contact rows on PostgreSQL.

use hermet_domain::contact::{ApplicationStatus, ContactApplication, Friendship};
use hermet_domain::id::{ApplicationId, UserId};
use hermet_domain::user::search_key;

use super::statements::{exec, query_map, query_opt};
use super::{PgDatabase, PgTx, pg_err};
use crate::StoreError;
use crate::ports::*;
use crate::queries as q;
use crate::rows::*;

impl ContactReads for PgDatabase {
    #[tracing::instrument(level = "debug", name = "postgres.friendship", skip_all)]
    async fn friendship(&self, user: UserId, friend: UserId) -> Result<Option<Friendship>, StoreError> {
        let c = self.write_conn().await?;
        query_opt(&c, &q::FRIENDSHIP, &[&user.get(), &friend.get()], friendship_from).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.contact_applications", skip_all)]
    async fn contact_applications(
        &self,
        user: UserId,
        incoming: bool,
        status: Option<ApplicationStatus>,
        before_id: i64,
        limit: u32,
    ) -> Result<Vec<ContactApplication>, StoreError> {
        let c = self.write_conn().await?;
        let sql = if incoming { &q::CONTACT_APPS_INCOMING } else { &q::CONTACT_APPS_OUTGOING };
        query_map(
            &c,
            sql,
            &[&user.get(), &q::status_text(status), &before_id, &(limit as i64)],
            contact_application_from,
        )
        .await
    }

    #[tracing::instrument(level = "debug", name = "postgres.contacts", skip_all)]
    async fn contacts(&self, cq: &ContactQuery) -> Result<Vec<ContactRow>, StoreError> {
        let c = self.read_conn().await?;
        let a = q::ContactArgs::of(cq);
        query_map(
            &c,
            &q::CONTACTS,
            &[&cq.user_id.get(), &a.group, &a.initial, &a.has_after, &a.starred, &a.sort_name, &a.contact, &a.limit],
            contact_from,
        )
        .await
    }

    #[tracing::instrument(level = "debug", name = "postgres.contact", skip_all)]
    async fn contact(&self, user: UserId, contact: UserId) -> Result<Option<ContactRow>, StoreError> {
        self.contact_row(user, contact).await
    }
}

impl PgDatabase {
    pub(crate) async fn contact_row(&self, user: UserId, contact: UserId) -> Result<Option<ContactRow>, StoreError> {
        let c = self.read_conn().await?;
        query_opt(&c, &q::CONTACT, &[&user.get(), &contact.get()], contact_from).await
    }
}

impl ContactWrites for PgTx {
    #[tracing::instrument(level = "debug", name = "postgres.upsert_friendships", skip_all)]
    async fn upsert_friendships(&mut self, rows: &[Friendship], now: i64) -> Result<(), StoreError> {
        let c = self.conn()?;
        let stmt = c.prep(q::UPSERT_FRIENDSHIP).await.map_err(pg_err)?;
        for f in rows {
            let tags = serde_json::to_value(&f.tags).map_err(StoreError::other)?;
            c.execute(
                &stmt,
                &[
                    &f.user_id.get(),
                    &f.friend_id.get(),
                    &f.remark_name,
                    &search_key(&f.remark_name),
                    &f.source.as_str(),
                    &tags,
                    &f.group_name,
                    &f.is_starred,
                    &f.is_blocked,
                    &f.added_at,
                    &f.deleted_at,
                    &now,
                ],
            )
            .await
            .map_err(pg_err)?;
        }
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "postgres.pending_contact_application", skip_all)]
    async fn pending_contact_application(
        &mut self,
        applicant: UserId,
        target: UserId,
    ) -> Result<Option<ContactApplication>, StoreError> {
        let sql = format!("{} FOR UPDATE", &*q::CONTACT_APP_PENDING);
        query_opt(self.conn()?, &sql, &[&applicant.get(), &target.get()], contact_application_from).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.insert_contact_application", skip_all)]
    async fn insert_contact_application(&mut self, a: &ContactApplication) -> Result<(), StoreError> {
        exec(
            self.conn()?,
            q::INSERT_CONTACT_APP,
            &[
                &a.id.get(),
                &a.applicant_id.get(),
                &a.target_id.get(),
                &a.message,
                &a.source.as_str(),
                &a.status.as_str(),
                &a.created_at,
                &a.updated_at,
                &a.reviewed_at,
            ],
        )
        .await
        .map(|_| ())
    }

    #[tracing::instrument(level = "debug", name = "postgres.lock_contact_application", skip_all)]
    async fn lock_contact_application(&mut self, id: ApplicationId) -> Result<Option<ContactApplication>, StoreError> {
        let sql = format!("{} FOR UPDATE", &*q::CONTACT_APP_BY_ID);
        query_opt(self.conn()?, &sql, &[&id.get()], contact_application_from).await
    }

    #[tracing::instrument(level = "debug", name = "postgres.update_contact_application", skip_all)]
    async fn update_contact_application(&mut self, a: &ContactApplication) -> Result<(), StoreError> {
        exec(
            self.conn()?,
            q::UPDATE_CONTACT_APP,
            &[&a.id.get(), &a.message, &a.source.as_str(), &a.status.as_str(), &a.updated_at, &a.reviewed_at],
        )
        .await
        .map(|_| ())
    }
}
