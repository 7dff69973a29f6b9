//! Profiles: read my profile, change it, read others' public profiles, search users.

use hermet_domain::event::{DomainEvent, UserProfileUpdated};
use hermet_domain::id::UserId;
use hermet_domain::time::now_ms;
use hermet_domain::user::{ProfilePatch, User, UserStatus, search_key};
use hermet_domain::{Error, Result, validate};
use hermet_store::{Database, UserSearch, UserWrites};

use crate::page::{Page, decode_cursor};
use crate::rate_limits::{Key, Limit};
use crate::{App, Principal};

/// A patch as received; validated into a [`ProfilePatch`].
#[derive(Debug, Default)]
pub struct ProfileChanges {
    pub nickname: Option<String>,
    pub avatar: Option<String>,
    pub gender: Option<hermet_domain::user::Gender>,
    pub region: Option<String>,
    pub birthday: Option<Option<String>>,
    pub tagline: Option<String>,
}

impl ProfileChanges {
    pub fn validate(self) -> Result<ProfilePatch> {
        Ok(ProfilePatch {
            nickname: self.nickname.map(|v| validate::nickname("nickname", &v)).transpose()?,
            avatar: self.avatar.map(|v| validate::avatar("avatar", &v)).transpose()?,
            gender: self.gender,
            region: self.region.map(|v| validate::text("region", &v, validate::REGION_MAX, true)).transpose()?,
            birthday: self.birthday.map(|b| b.map(|v| validate::birthday("birthday", &v)).transpose()).transpose()?,
            tagline: self.tagline.map(|v| validate::text("tagline", &v, validate::TAGLINE_MAX, true)).transpose()?,
        })
    }
}

/// The nickname a deleted account shows in others' lists.
pub const DELETED_NICKNAME: &str = "Deleted account";

fn changed_fields(old: &User, new: &User) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |name: &str, differs: bool| {
        if differs {
            out.push(name.to_owned());
        }
    };
    check("nickname", old.nickname != new.nickname);
    check("avatar", old.avatar != new.avatar);
    check("gender", old.gender != new.gender);
    check("region", old.region != new.region);
    check("birthday", old.birthday != new.birthday);
    check("tagline", old.tagline != new.tagline);
    out
}

/// Most users one `GET /users?ids=` reads.
pub const USERS_BY_IDS_MAX: usize = 100;

impl<D: Database> App<D> {
    /// `GET /users/me`.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id))]
    pub async fn me(&self, who: Principal) -> Result<User> {
        self.db.user_by_id(who.user_id).await?.ok_or(Error::NotFound("user"))
    }

    /// `PATCH /users/me`: changes the profile, bumps `profile_ver` and records
    /// `user.profile_updated` in the same transaction. A patch that changes nothing
    /// writes nothing.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id))]
    pub async fn update_me(&self, who: Principal, changes: ProfileChanges) -> Result<User> {
        let patch = changes.validate()?;
        let mut tx = self.db.begin().await?;
        let current = tx.lock_user(who.user_id).await?.ok_or(Error::NotFound("user"))?;
        let updated = patch.apply(&current);
        let changed = changed_fields(&current, &updated);
        if changed.is_empty() {
            return Ok(current);
        }
        let now = now_ms();
        let updated = self.write_profile(&mut tx, updated, changed, now).await?;
        self.commit(tx).await?;
        Ok(updated)
    }

    /// Writes a changed profile (`changed` names the fields) with a new `profileVer` and
    /// records `user.profile_updated` in the same transaction: in dual-write mode every
    /// conversation view where the user is the peer and every contact view listing them
    /// are refreshed there, through the reverse indexes.
    pub(crate) async fn write_profile(
        &self,
        tx: &mut D::Tx,
        mut updated: User,
        changed: Vec<String>,
        now: i64,
    ) -> Result<User> {
        updated.profile_ver += 1;
        updated.updated_at = now;
        tx.update_profile(&updated).await?;
        let event = DomainEvent::UserProfileUpdated(UserProfileUpdated {
            user_id: updated.id,
            profile_ver: updated.profile_ver,
            nickname: updated.nickname.clone(),
            avatar: updated.avatar.clone(),
            gender: updated.gender.as_str().to_owned(),
            region: updated.region.clone(),
            birthday: updated.birthday.clone(),
            tagline: updated.tagline.clone(),
            changed,
            updated_at: now,
        });
        self.record(tx, &[event], now).await?;
        Ok(updated)
    }

    /// A deleted account's profile, as everyone sees it from then on: no name of its
    /// own, no avatar, nothing personal.
    pub(crate) async fn erase_profile(&self, tx: &mut D::Tx, current: &User, now: i64) -> Result<()> {
        let erased = User {
            nickname: DELETED_NICKNAME.to_owned(),
            avatar: String::new(),
            gender: hermet_domain::user::Gender::Unknown,
            region: String::new(),
            birthday: None,
            tagline: String::new(),
            ..current.clone()
        };
        let changed = changed_fields(current, &erased);
        if !changed.is_empty() {
            self.write_profile(tx, erased, changed, now).await?;
        }
        Ok(())
    }

    /// `GET /users/{id}`: the public profile of a user who is not deleted.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %_who.user_id, profile_id = %id))]
    pub async fn user_profile(&self, _who: Principal, id: UserId) -> Result<User> {
        match self.db.user_by_id(id).await? {
            Some(u) if u.status != UserStatus::Deleted => Ok(u),
            _ => Err(Error::NotFound("user")),
        }
    }

    /// The users `ids` by id (deleted ones too: a list that names them still shows them).
    pub async fn profiles_by_id(&self, ids: &[UserId]) -> Result<std::collections::HashMap<UserId, User>> {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        Ok(self.db.users_by_ids(&ids).await?.into_iter().map(|u| (u.id, u)).collect())
    }

    /// `GET /users?ids=`: the public profiles of `ids` (at most 100; repeats count once),
    /// in the order asked; unknown and deleted users are left out.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %_who.user_id, n = ids.len()))]
    pub async fn user_profiles(&self, _who: Principal, ids: &[UserId]) -> Result<Vec<User>> {
        let mut distinct: Vec<UserId> = Vec::with_capacity(ids.len());
        for id in ids {
            if !distinct.contains(id) {
                distinct.push(*id);
            }
        }
        if distinct.is_empty() || distinct.len() > USERS_BY_IDS_MAX {
            return Err(Error::invalid("ids", format!("ids must name 1 to {USERS_BY_IDS_MAX} users")));
        }
        let mut found = self.profiles_by_id(&distinct).await?;
        Ok(distinct.iter().filter_map(|id| found.remove(id)).filter(|u| u.status != UserStatus::Deleted).collect())
    }

    /// Whether `who` may see `id`'s presence: themselves, or a live friend (the friendship
    /// as `id` keeps it, so removing or blocking someone hides one's presence from them).
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id, target_id = %id))]
    pub async fn may_see_presence(&self, who: Principal, id: UserId) -> Result<()> {
        if who.user_id == id {
            return Ok(());
        }
        match self.db.friendship(id, who.user_id).await? {
            Some(f) if f.is_live() && !f.is_blocked => Ok(()),
            _ => match self.db.user_by_id(id).await? {
                Some(u) if u.status != UserStatus::Deleted => {
                    Err(Error::forbidden("presence is visible to the user's friends only"))
                }
                _ => Err(Error::NotFound("user")),
            },
        }
    }

    /// `GET /users/search?q=`: exact e-mail or mobile, or a nickname prefix (case
    /// folded); active users only; ordered by nickname.
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %who.user_id))]
    pub async fn search_users(
        &self,
        who: Principal,
        q: &str,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Page<User>> {
        let q = validate::text("q", q, 254, false)?;
        self.rate_limit(Limit::SearchesPerUser, Key::Id(who.user_id.get())).await?;
        let limit = validate::limit(limit)?;
        let after: Option<(String, i64)> = cursor.map(decode_cursor).transpose()?;
        let search = UserSearch {
            email: validate::email("q", &q).ok(),
            mobile: validate::mobile("q", &q).ok(),
            prefix: search_key(&q),
            after,
            limit: limit + 1,
        };
        let rows = self.db.search_users(&search).await?;
        let page = Page::from_overfetch(rows, limit, |(name, u)| (name.clone(), u.id.get()));
        Ok(Page { items: page.items.into_iter().map(|(_, u)| u).collect(), next_cursor: page.next_cursor })
    }
}
