//! Users: profiles, accounts and search.

use std::future::Future;

use hermet_domain::id::UserId;
use hermet_domain::user::{Account, NewUser, User, UserStatus};

use super::StoreResult;

/// A user search: exact e-mail or mobile, or a nickname prefix; live users only.
#[derive(Debug, Clone)]
pub struct UserSearch {
    pub email: Option<String>,
    pub mobile: Option<String>,
    /// Lower-cased nickname prefix (see `hermet_domain::user::search_key`).
    pub prefix: String,
    /// Keyset position: the (search name, id) of the last row of the previous page.
    pub after: Option<(String, i64)>,
    pub limit: u32,
}

pub trait UserReads {
    fn user_by_id(&self, id: UserId) -> impl Future<Output = StoreResult<Option<User>>> + Send;
    /// The users `ids` that exist (deleted ones too), in no order.
    fn users_by_ids(&self, ids: &[UserId]) -> impl Future<Output = StoreResult<Vec<User>>> + Send;
    /// The user holding a live account and their password hash (`None` when the account
    /// cannot sign in with a password).
    fn user_by_account(
        &self,
        account: &Account,
    ) -> impl Future<Output = StoreResult<Option<(User, Option<String>)>>> + Send;
    fn search_users(&self, q: &UserSearch) -> impl Future<Output = StoreResult<Vec<(String, User)>>> + Send;
}

pub trait UserWrites {
    /// Inserts users in one set-based statement. A taken account fails with a unique
    /// violation of `users_email_live` or `users_mobile_live`.
    fn insert_users(&mut self, users: &[NewUser]) -> impl Future<Output = StoreResult<()>> + Send;
    /// Reads a user and locks the row until commit.
    fn lock_user(&mut self, id: UserId) -> impl Future<Output = StoreResult<Option<User>>> + Send;
    /// Writes the profile fields, `profile_ver` and `updated_at` of `user`.
    fn update_profile(&mut self, user: &User) -> impl Future<Output = StoreResult<()>> + Send;
    fn set_user_status(
        &mut self,
        id: UserId,
        status: UserStatus,
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
}
