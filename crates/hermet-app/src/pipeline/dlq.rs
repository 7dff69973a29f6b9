//! The dead-letter store's operations (`hermet dlq list|show|replay|discard`).
//!
//! A replay is a request: the dead letter moves to `replay` (with a corrected payload if
//! one is given) and the consumer it belongs to applies it when next idle, with its real
//! handler (the notifier pushes through the gateway it runs with), then marks it
//! `replayed`, or `pending` again with the new error.

use hermet_domain::time::now_ms;
use hermet_domain::{Error, ErrorCode, Result};
use hermet_store::{Database, DeadLetter, DeadLetterChange, PipelineWrites, Transaction};

use crate::App;

impl<D: Database> App<D> {
    /// Dead letters with `status` (any when empty), oldest first, after id `after`.
    pub async fn dead_letters(&self, status: &str, after: i64, limit: u32) -> Result<Vec<DeadLetter>> {
        if !matches!(status, "" | "pending" | "replay" | "replayed" | "discarded") {
            return Err(Error::invalid("status", "status must be pending, replay, replayed or discarded"));
        }
        Ok(self.db.dead_letters(status, after, limit.clamp(1, 1000)).await?)
    }

    pub async fn dead_letter(&self, id: i64) -> Result<DeadLetter> {
        self.db.dead_letter(id).await?.ok_or(Error::NotFound("dead letter"))
    }

    /// Asks the dead letter's consumer to apply it again, with `payload` instead of the
    /// stored one when given (it must be JSON).
    pub async fn request_dead_letter_replay(&self, id: i64, payload: Option<String>) -> Result<DeadLetter> {
        if let Some(p) = &payload
            && let Err(e) = serde_json::from_str::<serde_json::Value>(p)
        {
            return Err(Error::invalid("payload", format!("the payload is not JSON: {e}")));
        }
        let change = DeadLetterChange { status: "replay".into(), payload, error: None };
        self.settle_dead_letter(id, change).await
    }

    /// Gives up on a pending dead letter for good (it stays listed as `discarded`).
    pub async fn discard_dead_letter(&self, id: i64) -> Result<DeadLetter> {
        self.settle_dead_letter(id, DeadLetterChange { status: "discarded".into(), ..Default::default() }).await
    }

    async fn settle_dead_letter(&self, id: i64, change: DeadLetterChange) -> Result<DeadLetter> {
        let current = self.dead_letter(id).await?;
        let mut tx = self.db.begin().await?;
        if !tx.update_dead_letter(id, "pending", &change, now_ms()).await? {
            return Err(Error::Refused {
                code: ErrorCode::DeadLetterNotPending,
                message: format!("dead letter {id} is {}, not pending", current.status),
                field: None,
                details: None,
            });
        }
        tx.commit().await?;
        self.wake_consumers();
        self.dead_letter(id).await
    }
}
