//! The consistency checker's reads: read models as stored and as computed.

use std::future::Future;

use hermet_domain::id::UserId;

use super::{ContactRow, ConversationRow, StoreResult};

/// Rows as computed from the write side, and as stored.
pub type ExpectedAndStored<T> = (Vec<T>, Vec<T>);

/// What the consistency checker and the rebuild read: the read models as stored and as
/// computed from the write side, for a batch of owners.
pub trait ConsistencyReads {
    /// Ids of all users after `after`, ascending (batches of owners).
    fn user_ids_after(&self, after: i64, limit: u32) -> impl Future<Output = StoreResult<Vec<UserId>>> + Send;
    fn expected_conversations(
        &self,
        owners: &[UserId],
    ) -> impl Future<Output = StoreResult<Vec<ConversationRow>>> + Send;
    fn stored_conversations(&self, owners: &[UserId])
    -> impl Future<Output = StoreResult<Vec<ConversationRow>>> + Send;
    fn expected_contacts(&self, owners: &[UserId]) -> impl Future<Output = StoreResult<Vec<ContactRow>>> + Send;
    fn stored_contacts(&self, owners: &[UserId]) -> impl Future<Output = StoreResult<Vec<ContactRow>>> + Send;
    /// Conversation reverse-index rows (peer, owner, channel) owned by `owners`, expected and stored.
    fn reverse_conversations(
        &self,
        owners: &[UserId],
    ) -> impl Future<Output = StoreResult<ExpectedAndStored<(i64, i64, i64)>>> + Send;
    /// Contact reverse-index rows (contact, owner) owned by `owners`, expected and stored.
    fn reverse_contacts(
        &self,
        owners: &[UserId],
    ) -> impl Future<Output = StoreResult<ExpectedAndStored<(i64, i64)>>> + Send;
}
