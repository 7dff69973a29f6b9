//! Contacts: friendships, contact requests and the contact list read model
//! (`user_contact_view`).

use std::future::Future;

use hermet_domain::contact::{ApplicationStatus, ContactApplication, Friendship};
use hermet_domain::id::{ApplicationId, UserId};

use super::StoreResult;

/// A row of `user_contact_view`.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactRow {
    pub user_id: UserId,
    pub contact_id: UserId,
    pub contact_nickname: String,
    pub contact_avatar: String,
    pub contact_info_ver: i64,
    pub remark_name: String,
    pub sort_name: String,
    pub initial: String,
    pub group_name: String,
    pub tags: serde_json::Value,
    pub is_starred: bool,
    pub is_blocked: bool,
    pub source: String,
    pub added_at: i64,
    pub deleted_at: Option<i64>,
}

impl ContactRow {
    pub fn diff(&self, other: &Self) -> Vec<&'static str> {
        let mut d = Vec::new();
        macro_rules! cmp { ($($f:ident),*) => { $( if self.$f != other.$f { d.push(stringify!($f)); } )* } }
        cmp!(
            contact_nickname,
            contact_avatar,
            contact_info_ver,
            remark_name,
            sort_name,
            initial,
            group_name,
            tags,
            is_starred,
            is_blocked,
            source,
            added_at,
            deleted_at
        );
        d
    }
}

/// `GET /contacts`: keyset position is (starred, sort name, contact id).
#[derive(Debug, Clone)]
pub struct ContactQuery {
    pub user_id: UserId,
    pub group: Option<String>,
    pub initial: Option<String>,
    pub after: Option<(bool, String, i64)>,
    pub limit: u32,
}

pub trait ContactReads {
    fn friendship(&self, user: UserId, friend: UserId) -> impl Future<Output = StoreResult<Option<Friendship>>> + Send;
    /// Applications where `user` is the target (`incoming`) or the applicant.
    fn contact_applications(
        &self,
        user: UserId,
        incoming: bool,
        status: Option<ApplicationStatus>,
        before_id: i64,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<ContactApplication>>> + Send;
    fn contacts(&self, q: &ContactQuery) -> impl Future<Output = StoreResult<Vec<ContactRow>>> + Send;
    fn contact(&self, user: UserId, contact: UserId) -> impl Future<Output = StoreResult<Option<ContactRow>>> + Send;
}

pub trait ContactWrites {
    /// Inserts or revives friendships (a deleted one becomes live again with new values).
    fn upsert_friendships(&mut self, rows: &[Friendship], now: i64) -> impl Future<Output = StoreResult<()>> + Send;
    /// Writes one friendship's values: the upsert of that one row.
    fn update_friendship(&mut self, f: &Friendship, now: i64) -> impl Future<Output = StoreResult<()>> + Send {
        self.upsert_friendships(std::slice::from_ref(f), now)
    }
    fn pending_contact_application(
        &mut self,
        applicant: UserId,
        target: UserId,
    ) -> impl Future<Output = StoreResult<Option<ContactApplication>>> + Send;
    fn insert_contact_application(&mut self, a: &ContactApplication) -> impl Future<Output = StoreResult<()>> + Send;
    fn lock_contact_application(
        &mut self,
        id: ApplicationId,
    ) -> impl Future<Output = StoreResult<Option<ContactApplication>>> + Send;
    fn update_contact_application(&mut self, a: &ContactApplication) -> impl Future<Output = StoreResult<()>> + Send;
}
