//! The read models' refresh from the write side.

use std::future::Future;

use hermet_domain::id::UserId;
use hermet_domain::projection::Refresh;

use super::StoreResult;

pub trait ProjectionWrites {
    /// Recomputes the read-model rows named by `refresh` from the write side (one
    /// set-based statement per kind of row).
    fn apply_refresh(&mut self, refresh: &Refresh, now: i64) -> impl Future<Output = StoreResult<()>> + Send;
    /// Deletes read-model rows of `owners` that the write side no longer backs.
    fn delete_orphans(&mut self, owners: &[UserId]) -> impl Future<Output = StoreResult<u64>> + Send;
}
