//! Group commit for message sends: sends that arrive while others are being written
//! wait in one queue and go out together: one transaction of set-based statements
//! (locks, messages, mentions, read positions, the refresh of every affected
//! conversation row, the outbox) and one commit, so one WAL flush, for the whole batch.
//! Each send is still validated on its own against the rows the batch locked
//! (`batch.rs`), and gets its own answer or error; if the transaction fails as a
//! whole (a `clientMsgId` raced by a send outside the batch, a deadlock, a lost
//! connection), every send of it is retried alone. A batch starts as soon as a slot is
//! free (`group_commit.concurrency` in flight), never on a timer, so a lone send waits
//! for nothing; under load the queue that builds up while the slots are busy is the
//! batch (docs/ARCHITECTURE.md "Group commit").
//!
//! A batch ends as every command does (`crate::commit`), except that it frees its slot
//! between the commit and the read-your-writes wait: `commit_without_waiting`, then
//! [`Committed::wait`](crate::commit::Committed::wait).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use hermet_domain::time::now_ms;
use hermet_domain::{Error, Result};
use hermet_store::{Database, Locks, MessageWrites, StoreError};
use tokio::sync::{Semaphore, oneshot};

use super::SentMessage;
use super::batch::{Batch, Decision, Outgoing, batch_locks};
use crate::App;
use crate::cache::ChannelKind;
use crate::commit::Committed;

/// The `[group_commit]` settings: how concurrent message sends share transactions.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupCommitSettings {
    /// Most sends one transaction carries; 1 commits every send alone.
    pub max_batch: usize,
    /// Batches written at once, each on its own connection of the write pool.
    pub concurrency: usize,
}

impl Default for GroupCommitSettings {
    fn default() -> Self {
        Self { max_batch: 64, concurrency: 2 }
    }
}

impl GroupCommitSettings {
    pub fn problems(&self, max_connections: usize) -> Vec<String> {
        let mut p = Vec::new();
        if !(1..=1_000).contains(&self.max_batch) {
            p.push("group_commit.max_batch: must be 1 to 1000".into());
        }
        if self.concurrency == 0 || self.concurrency > max_connections {
            p.push(format!("group_commit.concurrency: must be 1 to database.max_connections ({max_connections})"));
        }
        p
    }
}

/// Sends waiting for a batch, and the slots batches run in.
pub(crate) struct SendQueue {
    waiting: Mutex<VecDeque<Job>>,
    slots: Arc<Semaphore>,
    max_batch: usize,
}

impl SendQueue {
    pub(crate) fn new(s: &GroupCommitSettings) -> Self {
        Self {
            waiting: Mutex::new(VecDeque::new()),
            slots: Arc::new(Semaphore::new(s.concurrency.max(1))),
            max_batch: s.max_batch.max(1),
        }
    }

    fn push(&self, job: Job) {
        let mut q = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        q.push_back(job);
        metrics::gauge!("message_sends_waiting").set(q.len() as f64);
    }

    fn take(&self) -> Vec<Job> {
        let mut q = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        let n = q.len().min(self.max_batch);
        let jobs = q.drain(..n).collect();
        metrics::gauge!("message_sends_waiting").set(q.len() as f64);
        jobs
    }
}

struct Job {
    send: Outgoing,
    /// The answer, and whether its read models had caught up (see `read_model`).
    reply: oneshot::Sender<(Result<SentMessage>, bool)>,
}

/// Why a batch's transaction failed as a whole.
enum Failure {
    /// A `clientMsgId` was committed by a send outside the batch meanwhile.
    Raced,
    Error(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Error(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        if e.is_unique("message_sender_client_msg") { Failure::Raced } else { Failure::Error(e.into()) }
    }
}

/// A batch's slot: freed when the batch is done, or when its task unwinds from a panic,
/// and then the queue is dispatched again, so the sends behind it are never stranded.
struct SlotGuard<D: Database> {
    app: App<D>,
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl<D: Database> Drop for SlotGuard<D> {
    fn drop(&mut self) {
        drop(self.slot.take());
        // Not while the runtime itself is being torn down (there is nothing to spawn on).
        if tokio::runtime::Handle::try_current().is_ok() {
            self.app.dispatch_sends();
        }
    }
}

/// A batch's outcome: one answer per send, and the commit their authors wait for.
type BatchOutcome = (Vec<Result<SentMessage>>, Committed);

impl<D: Database> App<D> {
    /// Writes a validated send with the sends that arrive meanwhile, and answers it once
    /// its batch committed and (async mode) was projected.
    pub(super) async fn write_send(&self, send: Outgoing) -> Result<SentMessage> {
        let (reply, answer) = oneshot::channel();
        self.sends.push(Job { send, reply });
        self.dispatch_sends();
        // The batch runs in its own task, so a caller that goes away (a closed
        // connection) cancels nothing half-way; only a panic drops the answer.
        let (answer, projected) =
            answer.await.unwrap_or((Err(Error::Unavailable("the message may not have been sent; retry it")), true));
        if !projected {
            crate::pipeline::read_model::mark_behind();
        }
        answer
    }

    /// Starts a batch in every free slot while sends are waiting. A finished batch calls
    /// this again, so a send queued while every slot was busy is never left behind.
    fn dispatch_sends(&self) {
        while let Ok(slot) = self.sends.slots.clone().try_acquire_owned() {
            let jobs = self.sends.take();
            if jobs.is_empty() {
                return;
            }
            let app = self.clone();
            let slot = SlotGuard { app: self.clone(), slot: Some(slot) };
            tokio::spawn(async move {
                let (replies, sends): (Vec<_>, Vec<_>) = jobs.into_iter().map(|j| (j.reply, j.send)).unzip();
                let (results, committed) = app.send_batch(&sends).await;
                // The next batch may start while these senders wait for their projection.
                drop(slot);
                let projected = committed.wait(&app).await;
                for (reply, r) in replies.into_iter().zip(results) {
                    let _ = reply.send((r, projected));
                }
            });
        }
    }

    /// One transaction for all of `sends`; if it fails as a whole, each send alone.
    async fn send_batch(&self, sends: &[Outgoing]) -> BatchOutcome {
        metrics::histogram!("message_send_batch_size").record(sends.len() as f64);
        let all: Vec<&Outgoing> = sends.iter().collect();
        if let [one] = all[..] {
            return self.send_alone(one).await;
        }
        match self.try_batch(&all).await {
            Ok(done) => done,
            Err(e) => {
                if let Failure::Error(e) = &e {
                    tracing::warn!(error = %e, size = sends.len(), "batch of sends failed; sending each alone");
                }
                metrics::counter!("message_send_batch_splits_total").increment(1);
                let alone = futures::future::join_all(all.iter().map(|s| self.send_alone(s))).await;
                let committed = alone.iter().fold(Committed::NOTHING, |all, (_, c)| all.and(*c));
                (alone.into_iter().flat_map(|(r, _)| r).collect(), committed)
            }
        }
    }

    /// A send in a transaction of its own; a raced `clientMsgId` is read back once.
    async fn send_alone(&self, send: &Outgoing) -> BatchOutcome {
        for _ in 0..2 {
            match self.try_batch(&[send]).await {
                Ok(done) => return done,
                Err(Failure::Raced) => continue,
                Err(Failure::Error(e)) => return (vec![Err(e)], Committed::NOTHING),
            }
        }
        (vec![Err(Error::Unavailable("concurrent retries of this message; try again"))], Committed::NOTHING)
    }

    /// Validates each send against the rows the batch locked and writes the accepted
    /// ones in one transaction. `Err` only when the transaction failed as a whole.
    async fn try_batch(&self, sends: &[&Outgoing]) -> std::result::Result<BatchOutcome, Failure> {
        // The channels' kinds before taking a connection for the transaction (never hold
        // one connection while waiting for another from the same pool).
        let mut results: Vec<Option<Result<SentMessage>>> = (0..sends.len()).map(|_| None).collect();
        let mut kinds: Vec<Option<ChannelKind>> = Vec::with_capacity(sends.len());
        for (i, s) in sends.iter().enumerate() {
            match self.channel_kind(s.channel).await {
                Ok(k) => kinds.push(Some(k)),
                Err(e) => {
                    results[i] = Some(Err(e));
                    kinds.push(None);
                }
            }
        }
        let locks = batch_locks(sends, &kinds);
        if locks.channels.is_empty() {
            return Ok((results.into_iter().flatten().collect(), Committed::NOTHING));
        }
        let now = now_ms();
        let mut tx = self.db.begin().await?;
        let locked = tx.lock_for_sends(&locks).await?;
        let mut batch = Batch::new(&locked, self.settings.limits.mention_all_by_members);
        let mut decisions: Vec<Option<Decision>> = Vec::with_capacity(sends.len());
        for (i, (s, kind)) in sends.iter().zip(&kinds).enumerate() {
            let Some(kind) = kind else {
                decisions.push(None);
                continue;
            };
            match batch.decide(s, kind.peer_of(s.who.user_id), now, &self.ids) {
                Ok(d) => decisions.push(Some(d)),
                Err(e) => {
                    results[i] = Some(Err(e));
                    decisions.push(None);
                }
            }
        }
        let mut committed = Committed::NOTHING;
        if !batch.messages.is_empty() {
            tx.append_messages(&batch.messages, now).await?;
            if !batch.slow_sends.is_empty() {
                tx.note_slow_sends(&batch.slow_sends, now).await?;
            }
            self.record(&mut tx, &batch.events, now).await?;
            committed = self.commit_without_waiting(tx).await?;
        }
        let answers = results
            .into_iter()
            .zip(decisions)
            .map(|(r, d)| match (r, d) {
                (Some(r), _) => r,
                (None, Some(Decision::Existing(sent))) => Ok(sent),
                (None, Some(Decision::InBatch(k))) => Ok((&batch.messages[k]).into()),
                (None, None) => Err(Error::internal(anyhow::anyhow!("a send of the batch was not decided"))),
            })
            .collect();
        Ok((answers, committed))
    }
}
