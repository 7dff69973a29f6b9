//! Friendships, contact requests and contact rows on SQLite.

use hermet_domain::contact::{ApplicationStatus, ContactApplication, Friendship};
use hermet_domain::id::{ApplicationId, UserId};
use hermet_domain::user::search_key;

use rusqlite::params;

use super::statements::{exec, qmap, qopt};
use super::{SqliteDatabase, SqliteTx};
use crate::StoreError;
use crate::ports::*;
use crate::queries::{self as q};
use crate::rows::*;

impl ContactReads for SqliteDatabase {
    #[tracing::instrument(level = "debug", name = "sqlite.friendship", skip_all)]
    async fn friendship(&self, user: UserId, friend: UserId) -> Result<Option<Friendship>, StoreError> {
        self.read(move |c| qopt(c, &q::FRIENDSHIP, [user.get(), friend.get()], |r| friendship_from(r))).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.contact_applications", skip_all)]
    async fn contact_applications(
        &self,
        user: UserId,
        incoming: bool,
        status: Option<ApplicationStatus>,
        before_id: i64,
        limit: u32,
    ) -> Result<Vec<ContactApplication>, StoreError> {
        self.read(move |c| {
            let sql = if incoming { &q::CONTACT_APPS_INCOMING } else { &q::CONTACT_APPS_OUTGOING };
            qmap(c, sql, params![user.get(), q::status_text(status), before_id, limit as i64], |r| {
                contact_application_from(r)
            })
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.contacts", skip_all)]
    async fn contacts(&self, cq: &ContactQuery) -> Result<Vec<ContactRow>, StoreError> {
        let cq = cq.clone();
        self.read(move |c| {
            let a = q::ContactArgs::of(&cq);
            qmap(
                c,
                &q::CONTACTS,
                params![cq.user_id.get(), a.group, a.initial, a.has_after, a.starred, a.sort_name, a.contact, a.limit],
                |r| contact_from(r),
            )
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.contact", skip_all)]
    async fn contact(&self, user: UserId, contact: UserId) -> Result<Option<ContactRow>, StoreError> {
        self.read(move |c| qopt(c, &q::CONTACT, [user.get(), contact.get()], |r| contact_from(r))).await
    }
}

impl ContactWrites for SqliteTx {
    #[tracing::instrument(level = "debug", name = "sqlite.upsert_friendships", skip_all)]
    async fn upsert_friendships(&mut self, rows: &[Friendship], now: i64) -> Result<(), StoreError> {
        let rows = rows.to_vec();
        self.run(move |c| {
            for f in &rows {
                let tags = serde_json::to_string(&f.tags).unwrap_or_else(|_| "[]".into());
                exec(
                    c,
                    q::UPSERT_FRIENDSHIP,
                    params![
                        f.user_id.get(),
                        f.friend_id.get(),
                        f.remark_name,
                        search_key(&f.remark_name),
                        f.source.as_str(),
                        tags,
                        f.group_name,
                        f.is_starred,
                        f.is_blocked,
                        f.added_at,
                        f.deleted_at,
                        now
                    ],
                )?;
            }
            Ok(())
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.pending_contact_application", skip_all)]
    async fn pending_contact_application(
        &mut self,
        applicant: UserId,
        target: UserId,
    ) -> Result<Option<ContactApplication>, StoreError> {
        self.run(move |c| {
            qopt(c, &q::CONTACT_APP_PENDING, [applicant.get(), target.get()], |r| contact_application_from(r))
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.insert_contact_application", skip_all)]
    async fn insert_contact_application(&mut self, a: &ContactApplication) -> Result<(), StoreError> {
        let a = a.clone();
        self.run(move |c| {
            exec(
                c,
                q::INSERT_CONTACT_APP,
                params![
                    a.id.get(),
                    a.applicant_id.get(),
                    a.target_id.get(),
                    a.message,
                    a.source.as_str(),
                    a.status.as_str(),
                    a.created_at,
                    a.updated_at,
                    a.reviewed_at
                ],
            )
            .map(|_| ())
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.lock_contact_application", skip_all)]
    async fn lock_contact_application(&mut self, id: ApplicationId) -> Result<Option<ContactApplication>, StoreError> {
        self.run(move |c| qopt(c, &q::CONTACT_APP_BY_ID, [id.get()], |r| contact_application_from(r))).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.update_contact_application", skip_all)]
    async fn update_contact_application(&mut self, a: &ContactApplication) -> Result<(), StoreError> {
        let a = a.clone();
        self.run(move |c| {
            exec(
                c,
                q::UPDATE_CONTACT_APP,
                params![a.id.get(), a.message, a.source.as_str(), a.status.as_str(), a.updated_at, a.reviewed_at],
            )
            .map(|_| ())
        })
        .await
    }
}
