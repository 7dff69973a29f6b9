//! Friend applications, friendships and the contact list (`003_0aed9671e6f5a289.txt`
//! "添加好友").

use hermet_domain::channel::{ChannelType, MemberRole, single_pair};
use hermet_domain::contact::{
    APPLICATION_MESSAGE_MAX, ApplicationStatus, ContactApplication, DEFAULT_GROUP, FriendSource, Friendship,
    GROUP_NAME_MAX, REMARK_MAX, TAG_MAX, TAGS_MAX,
};
use hermet_domain::event::{self, DomainEvent};
use hermet_domain::id::{ApplicationId, ChannelId, UserId};
use hermet_domain::time::now_ms;
use hermet_domain::user::UserStatus;
use hermet_domain::{Error, ErrorCode, Result, validate};
use hermet_store::{
    ChannelWrites, ContactQuery, ContactRow, ContactWrites, ConversationWrites, Database, Locks, NewChannel, NewMember,
    StoreError,
};

use crate::commit::timed;
use crate::page::{Page, decode_cursor};
use crate::rate_limits::{Key, Limit};
use crate::{App, Principal};

/// Changes to one of my contacts; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct ContactChanges {
    pub remark_name: Option<String>,
    pub group_name: Option<String>,
    pub tags: Option<Vec<String>>,
    pub is_starred: Option<bool>,
    pub is_blocked: Option<bool>,
}

/// What accepting an application made.
#[derive(Debug, Clone)]
pub struct Friended {
    pub channel_id: ChannelId,
    pub contact_id: UserId,
}

fn not_found_application() -> Error {
    Error::NotFound("application")
}

/// 409 for reviewing an application that is no longer pending.
pub(crate) fn already_reviewed() -> Error {
    Error::Refused {
        code: ErrorCode::ApplicationNotPending,
        message: "this application was already reviewed".into(),
        field: None,
        details: None,
    }
}

impl<D: Database> App<D> {
    /// `POST /contacts/applications`: one pending application per pair; a repeat
    /// refreshes its message.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id, contact_id = %contact_id))]
    pub async fn apply_contact(
        &self,
        who: Principal,
        contact_id: UserId,
        message: &str,
        source: FriendSource,
    ) -> Result<ContactApplication> {
        timed("contact.apply", async {
            let message = validate::text("message", message, APPLICATION_MESSAGE_MAX, true)?;
            self.rate_limit(Limit::ApplicationsPerUser, Key::Id(who.user_id.get())).await?;
            if contact_id == who.user_id {
                return Err(Error::Refused {
                    code: ErrorCode::CannotAddSelf,
                    message: "you cannot send a friend application to yourself".into(),
                    field: Some("contactId"),
                    details: None,
                });
            }
            let now = now_ms();
            let mut tx = self.db.begin().await?;
            let users = tx.lock_users(&[who.user_id, contact_id], true).await?;
            if !users.iter().any(|u| u.id == contact_id && u.status == UserStatus::Active) {
                return Err(Error::NotFound("user"));
            }
            if tx.lock_friendship(who.user_id, contact_id, false).await?.is_some_and(|f| f.is_live()) {
                return Err(Error::Refused {
                    code: ErrorCode::AlreadyFriends,
                    message: "this user is already your friend".into(),
                    field: Some("contactId"),
                    details: None,
                });
            }
            let app = match tx.pending_contact_application(who.user_id, contact_id).await? {
                Some(mut a) => {
                    a.message = message;
                    a.source = source;
                    a.updated_at = now;
                    tx.update_contact_application(&a).await?;
                    a
                }
                None => {
                    let a = ContactApplication {
                        id: self.next_id()?,
                        applicant_id: who.user_id,
                        target_id: contact_id,
                        message,
                        source,
                        status: ApplicationStatus::Pending,
                        created_at: now,
                        updated_at: now,
                        reviewed_at: None,
                    };
                    tx.insert_contact_application(&a)
                        .await
                        .map_err(|e| conflict_pending(e, "contact_application_pending"))?;
                    a
                }
            };
            let ev = DomainEvent::ContactApplicationCreated(event::ContactApplicationCreated {
                application_id: app.id,
                applicant_id: app.applicant_id,
                target_id: app.target_id,
                message: app.message.clone(),
                source: app.source.as_str().into(),
                created_at: now,
            });
            self.record(&mut tx, &[ev], now).await?;
            self.commit(tx).await?;
            Ok(app)
        })
        .await
    }

    /// `GET /contacts/applications`.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id, incoming))]
    pub async fn contact_applications(
        &self,
        who: Principal,
        incoming: bool,
        status: Option<ApplicationStatus>,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Page<ContactApplication>> {
        let limit = validate::limit(limit)?;
        let before: i64 = cursor.map(decode_cursor).transpose()?.unwrap_or(i64::MAX);
        let items = self.db.contact_applications(who.user_id, incoming, status, before, limit + 1).await?;
        Ok(Page::from_overfetch(items, limit, |a| a.id.get()))
    }

    /// `POST /contacts/applications/{id}/accept`: friendship both ways, the pair's single
    /// channel (reused if they had one), both members, both conversation and contact
    /// views and the reverse indexes, in one transaction.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id, application_id = %id))]
    pub async fn accept_contact(&self, who: Principal, id: ApplicationId) -> Result<Friended> {
        timed("contact.accept", async {
            let now = now_ms();
            let mut tx = self.db.begin().await?;
            let mut app = tx
                .lock_contact_application(id)
                .await?
                .filter(|a| a.target_id == who.user_id)
                .ok_or_else(not_found_application)?;
            if app.status != ApplicationStatus::Pending {
                return Err(already_reviewed());
            }
            let (a, b) = (app.applicant_id, app.target_id);
            let users = tx.lock_users(&[a, b], true).await?;
            if users.len() != 2 || users.iter().any(|u| u.status != UserStatus::Active) {
                return Err(Error::Refused {
                    code: ErrorCode::ApplicantInactive,
                    message: "the applicant's account is no longer active".into(),
                    field: None,
                    details: None,
                });
            }
            let pair = single_pair(a, b);
            let channel_id = match tx.single_channel(&pair).await? {
                Some(c) => c.id,
                None => {
                    let cid: ChannelId = self.next_id()?;
                    tx.insert_channel(&NewChannel {
                        id: cid,
                        channel_type: ChannelType::Single,
                        name: String::new(),
                        avatar: String::new(),
                        creator_id: a,
                        single_pair: Some(pair),
                        created_at: now,
                        member_count: 0,
                        read_diffusion: false,
                    })
                    .await?;
                    let ids = self.ids.next_many(2).map_err(Error::internal)?;
                    let members = [(a, ids[0]), (b, ids[1])].map(|(u, id)| NewMember {
                        id,
                        user_id: u,
                        role: MemberRole::Member,
                        join_seq: 0,
                        joined_at: now,
                    });
                    tx.upsert_members(cid, &members, now).await?;
                    tx.recount_members(cid, self.settings.limits.large_groups(), now).await?;
                    cid
                }
            };
            // Each direction: keep a live friendship as it is (with its remark), revive or
            // create the others.
            let mut rows = Vec::new();
            for (u, f) in [(a, b), (b, a)] {
                match tx.lock_friendship(u, f, true).await? {
                    Some(existing) if existing.is_live() => {}
                    _ => rows.push(Friendship {
                        user_id: u,
                        friend_id: f,
                        remark_name: String::new(),
                        source: app.source,
                        tags: Vec::new(),
                        group_name: DEFAULT_GROUP.into(),
                        is_starred: false,
                        is_blocked: false,
                        added_at: now,
                        deleted_at: None,
                    }),
                }
            }
            tx.upsert_friendships(&rows, now).await?;
            // Becoming friends (again) reopens a conversation either side had closed.
            for u in [a, b] {
                let mut s = tx.setting(u, channel_id).await?;
                if s.closed_at.is_some() {
                    s.closed_at = None;
                    tx.save_setting(u, channel_id, &s, now).await?;
                }
            }
            app.review(ApplicationStatus::Approved, now);
            tx.update_contact_application(&app).await?;
            // A crossing application the other way is settled too.
            if let Some(mut other) = tx.pending_contact_application(b, a).await? {
                other.review(ApplicationStatus::Approved, now);
                tx.update_contact_application(&other).await?;
            }
            let events = [
                DomainEvent::ContactApplicationReviewed(event::ContactApplicationReviewed {
                    application_id: app.id,
                    applicant_id: a,
                    target_id: b,
                    status: "approved".into(),
                    reviewed_at: now,
                }),
                DomainEvent::FriendshipCreated(event::FriendshipCreated {
                    user_id: a,
                    friend_id: b,
                    channel_id,
                    source: app.source.as_str().into(),
                    added_at: now,
                }),
            ];
            self.record(&mut tx, &events, now).await?;
            self.commit(tx).await?;
            Ok(Friended { channel_id, contact_id: a })
        })
        .await
    }

    /// `POST /contacts/applications/{id}/reject`.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id, application_id = %id))]
    pub async fn reject_contact(&self, who: Principal, id: ApplicationId) -> Result<ContactApplication> {
        timed("contact.reject", async {
            let now = now_ms();
            let mut tx = self.db.begin().await?;
            let mut app = tx
                .lock_contact_application(id)
                .await?
                .filter(|a| a.target_id == who.user_id)
                .ok_or_else(not_found_application)?;
            if app.status != ApplicationStatus::Pending {
                return Err(already_reviewed());
            }
            app.review(ApplicationStatus::Rejected, now);
            tx.update_contact_application(&app).await?;
            let ev = DomainEvent::ContactApplicationReviewed(event::ContactApplicationReviewed {
                application_id: app.id,
                applicant_id: app.applicant_id,
                target_id: app.target_id,
                status: "rejected".into(),
                reviewed_at: now,
            });
            self.record(&mut tx, &[ev], now).await?;
            self.commit(tx).await?;
            Ok(app)
        })
        .await
    }

    /// `GET /contacts`: starred first, then by display name (remark, else nickname).
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id))]
    pub async fn contacts(
        &self,
        who: Principal,
        group: Option<String>,
        initial: Option<String>,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Page<ContactRow>> {
        let limit = validate::limit(limit)?;
        let initial = initial
            .map(|i| {
                let i = i.trim().to_uppercase();
                if i == "#" || (i.len() == 1 && i.chars().all(|c| c.is_ascii_uppercase())) {
                    Ok(i)
                } else {
                    Err(Error::invalid("initial", "initial must be one letter A-Z or #"))
                }
            })
            .transpose()?;
        let group = group.map(|g| validate::text("group", &g, GROUP_NAME_MAX, false)).transpose()?;
        let after: Option<(bool, String, i64)> = cursor.map(decode_cursor).transpose()?;
        let items =
            self.db.contacts(&ContactQuery { user_id: who.user_id, group, initial, after, limit: limit + 1 }).await?;
        Ok(Page::from_overfetch(items, limit, |c| (c.is_starred, c.sort_name.clone(), c.contact_id.get())))
    }

    /// `PATCH /contacts/{contactId}`: remark (becomes my conversation's name), group,
    /// tags, star, block (blocking refuses the peer's messages to me).
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id, contact_id = %contact_id))]
    pub async fn update_contact(&self, who: Principal, contact_id: UserId, ch: ContactChanges) -> Result<ContactRow> {
        timed("contact.update", async {
            let remark =
                ch.remark_name.map(|r| validate::display_name("remarkName", &r, REMARK_MAX, true)).transpose()?;
            let group = ch.group_name.map(|g| validate::text("groupName", &g, GROUP_NAME_MAX, false)).transpose()?;
            let tags = ch.tags.map(validate_tags).transpose()?;
            let now = now_ms();
            let mut tx = self.db.begin().await?;
            tx.lock_users(&[contact_id], true).await?;
            let channel = tx.single_channel(&single_pair(who.user_id, contact_id)).await?;
            let mut f = tx
                .lock_friendship(who.user_id, contact_id, true)
                .await?
                .filter(Friendship::is_live)
                .ok_or(Error::NotFound("contact"))?;
            let before = f.clone();
            let mut changed = Vec::new();
            if let Some(r) = remark {
                f.remark_name = r;
            }
            if let Some(g) = group {
                f.group_name = g;
            }
            if let Some(t) = tags {
                f.tags = t;
            }
            if let Some(s) = ch.is_starred {
                f.is_starred = s;
            }
            if let Some(b) = ch.is_blocked {
                f.is_blocked = b;
            }
            for (name, differs) in [
                ("remarkName", f.remark_name != before.remark_name),
                ("groupName", f.group_name != before.group_name),
                ("tags", f.tags != before.tags),
                ("isStarred", f.is_starred != before.is_starred),
                ("isBlocked", f.is_blocked != before.is_blocked),
            ] {
                if differs {
                    changed.push(name.to_owned());
                }
            }
            if !changed.is_empty() {
                tx.update_friendship(&f, now).await?;
                let ev = DomainEvent::FriendshipUpdated(event::FriendshipUpdated {
                    user_id: who.user_id,
                    friend_id: contact_id,
                    channel_id: channel.map(|c| c.id),
                    remark_name: f.remark_name.clone(),
                    group_name: f.group_name.clone(),
                    tags: f.tags.clone(),
                    is_starred: f.is_starred,
                    is_blocked: f.is_blocked,
                    changed,
                    updated_at: now,
                });
                self.record(&mut tx, &[ev], now).await?;
            }
            self.commit(tx).await?;
            self.contact_row(who.user_id, contact_id).await
        })
        .await
    }

    /// `DELETE /contacts/{contactId}`: removes the friendship on my side only and closes
    /// my conversation with them. The peer keeps me in their list, but neither side can
    /// send in the pair's chat until they are friends again (`not_friends`).
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id, contact_id = %contact_id))]
    pub async fn delete_contact(&self, who: Principal, contact_id: UserId) -> Result<()> {
        timed("contact.delete", async {
            let now = now_ms();
            let mut tx = self.db.begin().await?;
            tx.lock_users(&[contact_id], true).await?;
            let channel = tx.single_channel(&single_pair(who.user_id, contact_id)).await?;
            let mut f = tx
                .lock_friendship(who.user_id, contact_id, true)
                .await?
                .filter(Friendship::is_live)
                .ok_or(Error::NotFound("contact"))?;
            f.deleted_at = Some(now);
            tx.update_friendship(&f, now).await?;
            if let Some(c) = &channel {
                let mut s = tx.setting(who.user_id, c.id).await?;
                s.closed_at = Some(now);
                s.closed_seq = c.last_seq;
                tx.save_setting(who.user_id, c.id, &s, now).await?;
            }
            let ev = DomainEvent::FriendshipDeleted(event::FriendshipDeleted {
                user_id: who.user_id,
                friend_id: contact_id,
                channel_id: channel.map(|c| c.id),
                deleted_at: now,
            });
            self.record(&mut tx, &[ev], now).await?;
            self.commit(tx).await?;
            Ok(())
        })
        .await
    }

    async fn contact_row(&self, owner: UserId, contact: UserId) -> Result<ContactRow> {
        self.db.contact(owner, contact).await?.ok_or(Error::NotFound("contact"))
    }
}

fn validate_tags(tags: Vec<String>) -> Result<Vec<String>> {
    if tags.len() > TAGS_MAX {
        return Err(Error::invalid("tags", format!("at most {TAGS_MAX} tags")));
    }
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for (i, t) in tags.iter().enumerate() {
        let t = validate::text(&format!("tags[{i}]"), t, TAG_MAX, false)?;
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

pub(crate) fn conflict_pending(e: StoreError, constraint: &str) -> Error {
    if e.is_unique(constraint) {
        Error::Refused {
            code: ErrorCode::ApplicationPending,
            message: "an application is already pending; try again".into(),
            field: None,
            details: None,
        }
    } else {
        e.into()
    }
}
