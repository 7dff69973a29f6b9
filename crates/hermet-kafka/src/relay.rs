//! The outbox relay (`000_70dd81066eae5b2b.txt` §5.3 方案2, done properly).
//!
//! - **One publisher at a time.** Relays share a lease row (`relay_lease`); the holder
//!   renews it before each batch, and a batch cannot outlive it (the producer gives up on
//!   a message after `message_timeout_ms` < `relay_lease_ms`). So two relays never publish
//!   the same row, and rows leave in outbox order.
//! - **Order.** Rows are read in position order. Commands that touch the same aggregate
//!   serialize on its row lock, taken before their outbox insert, so their positions are in
//!   commit order; the idempotent producer keeps each partition in send order through
//!   retries. Hence per-key order holds from the command to the topic.
//! - **Acknowledged, then marked.** A row is marked published (with its partition and
//!   offset) only after the broker acknowledged it. A crash in between publishes it again
//!   (at-least-once); consumers are idempotent.
//! - **Broker down.** Sends fail after `message_timeout_ms`; nothing is marked, the outbox
//!   grows, the API is unaffected, and the relay retries with backoff until the broker
//!   returns.

use std::time::{Duration, Instant};

use futures::future::join_all;
use hermet_app::App;
use hermet_domain::time::now_ms;
use hermet_store::{Database, OutboxRecord, PipelineWrites, Publication, Transaction};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

use crate::{KafkaSettings, headers_of, topic_of, value_of};

const LEASE: &str = "outbox-relay";

pub struct Relay<D: Database> {
    app: App<D>,
    settings: KafkaSettings,
    producer: FutureProducer,
    holder: String,
    /// Rows per batch now: `relay_batch_size`, cut to a quarter after a failed batch (at
    /// least [`MIN_BATCH`]) and doubled back after each published one. A broker that has
    /// just returned, or is slow, gets the backlog in pieces it can acknowledge within
    /// `message_timeout_ms`, instead of the whole batch again and again (a batch that
    /// timed out may have been stored all the same, and is stored again by the retry).
    batch: u32,
}

/// The smallest batch the relay cuts down to after failures.
const MIN_BATCH: u32 = 16;

impl<D: Database> Relay<D> {
    pub fn new(app: App<D>, settings: KafkaSettings, holder: String) -> anyhow::Result<Self> {
        let producer = settings.producer_config().create()?;
        let batch = settings.relay_batch_size.max(1);
        Ok(Self { app, settings, producer, holder, batch })
    }

    /// Publishes until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        tracing::info!(holder = %self.holder, "outbox relay started");
        let poll = Duration::from_millis(self.app.pipeline_settings().poll_interval_ms);
        let mut written = self.app.written();
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            let pause = match self.step().await {
                Ok(Step::Published) => {
                    failures = 0;
                    self.batch = self.batch.saturating_mul(2).min(self.settings.relay_batch_size.max(1));
                    continue;
                }
                Ok(Step::Idle) => {
                    failures = 0;
                    poll
                }
                // A relay that shut down cleanly released the lease: take over quickly.
                Ok(Step::NotLeader) => {
                    Duration::from_millis(self.settings.relay_lease_ms / 3).min(hermet_app::pipeline::LEASE_RETRY)
                }
                Err(e) => {
                    failures += 1;
                    self.batch = (self.batch / 4).max(MIN_BATCH).min(self.settings.relay_batch_size.max(1));
                    tracing::warn!(error = %e, failures, next_batch = self.batch, "relay batch failed; retrying with a new producer");
                    // A fresh producer gets a new producer id and restarts its sequence
                    // numbers: after messages timed out (broker down), the broker may
                    // refuse the old producer's next sequence for good. The unacked rows
                    // are still unpublished and go out again, in order.
                    match self.settings.producer_config().create() {
                        Ok(p) => self.producer = p,
                        Err(e) => tracing::error!(error = %e, "cannot create a Kafka producer"),
                    }
                    hermet_app::pipeline::reconnect_backoff(failures)
                }
            };
            tokio::select! {
                _ = written.changed() => {}
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        self.app.release_lease(LEASE, &self.holder).await;
        tracing::info!("outbox relay stopped");
    }

    /// One batch: renew the lease, read unpublished rows, publish, mark what was acked.
    pub async fn step(&self) -> anyhow::Result<Step> {
        let mut tx = self.app.db.begin().await?;
        let held = tx.take_lease(LEASE, &self.holder, self.settings.relay_lease_ms as i64, now_ms()).await?;
        tx.commit().await?;
        if !held {
            return Ok(Step::NotLeader);
        }
        let letters = self.publish_dead_letters().await?;
        let rows = self.app.db.unpublished(self.batch).await?;
        if rows.is_empty() {
            return Ok(if letters > 0 { Step::Published } else { Step::Idle });
        }
        let (published, failed) = self.publish(&rows).await;
        let mut tx = self.app.db.begin().await?;
        tx.mark_published(&published, now_ms()).await?;
        tx.commit().await?;
        metrics::counter!("relay_published_total").increment(published.len() as u64);
        self.app.progressed();
        match failed {
            None => Ok(Step::Published),
            Some(e) => {
                metrics::counter!("relay_failed_total").increment((rows.len() - published.len()) as u64);
                Err(anyhow::anyhow!("{} of {} events not acknowledged: {e}", rows.len() - published.len(), rows.len()))
            }
        }
    }

    /// Copies new dead letters of the Kafka consumers to `<topic>.dlq` (key: the event id;
    /// value: the payload as received; headers: what failed, where and why). The table
    /// stays the store `hermet dlq` works on; the topic is for Kafka-native tooling.
    async fn publish_dead_letters(&self) -> anyhow::Result<usize> {
        let letters = self.app.db.dead_letters_to_publish(100).await?;
        if letters.is_empty() {
            return Ok(0);
        }
        let mut pending = Vec::with_capacity(letters.len());
        for d in &letters {
            let topic = dlq_topic(&d.source);
            let key = d.event_id.to_string();
            let error: String = d.error.chars().take(4_096).collect();
            let headers = OwnedHeaders::new_with_capacity(8)
                .insert(Header { key: "event_type", value: Some(&d.event_type) })
                .insert(Header { key: "event_id", value: Some(&key) })
                .insert(Header { key: "consumer", value: Some(&d.consumer) })
                .insert(Header { key: "error", value: Some(&error) })
                .insert(Header { key: "attempts", value: Some(&d.attempts.to_string()) })
                .insert(Header { key: "source", value: Some(&d.source) })
                .insert(Header { key: "dead_letter_id", value: Some(&d.id.to_string()) })
                .insert(Header { key: "timestamp", value: Some(&d.updated_at.to_string()) });
            let record = FutureRecord::to(&topic).key(&key).payload(&d.payload).headers(headers);
            pending.push(self.producer.send_result(record).map_err(|(e, _)| e.to_string()));
        }
        let results = join_all(pending.into_iter().map(|p| async move {
            match p {
                Ok(f) => matches!(f.await, Ok(Ok(_))),
                Err(_) => false,
            }
        }))
        .await;
        let acked: Vec<(i64, i64)> =
            letters.iter().zip(&results).filter(|(_, ok)| **ok).map(|(d, _)| (d.id, d.updated_at)).collect();
        let mut tx = self.app.db.begin().await?;
        tx.mark_dead_letters_published(&acked, now_ms()).await?;
        tx.commit().await?;
        metrics::counter!("dead_letters_published_total").increment(acked.len() as u64);
        if acked.len() < letters.len() {
            anyhow::bail!("{} of {} dead letters not acknowledged", letters.len() - acked.len(), letters.len());
        }
        Ok(acked.len())
    }

    /// Sends every row (the producer batches and pipelines them) and waits for the acks.
    async fn publish(&self, rows: &[OutboxRecord]) -> (Vec<Publication>, Option<String>) {
        let start = Instant::now();
        let topics: Vec<String> = rows.iter().map(|r| self.settings.topic(topic_of(&r.event_type))).collect();
        let mut pending = Vec::with_capacity(rows.len());
        for (row, topic) in rows.iter().zip(&topics) {
            let value = value_of(row);
            let record = FutureRecord::to(topic).key(&row.aggregate_key).payload(&value).headers(headers_of(row));
            pending.push(match self.producer.send_result(record) {
                Ok(delivery) => Ok(delivery),
                Err((e, _)) => Err(e.to_string()),
            });
        }
        let mut published = Vec::with_capacity(rows.len());
        let mut failed = None;
        let results = join_all(pending.into_iter().map(|p| async move {
            match p {
                Ok(f) => match f.await {
                    Ok(Ok(d)) => Ok(d),
                    Ok(Err((e, _))) => Err(e.to_string()),
                    Err(_) => Err("the producer was dropped".to_owned()),
                },
                Err(e) => Err(e),
            }
        }))
        .await;
        for ((row, topic), r) in rows.iter().zip(topics).zip(results) {
            match r {
                Ok(d) => {
                    metrics::histogram!("relay_publish_seconds").record(start.elapsed().as_secs_f64());
                    published.push(Publication {
                        position: row.position,
                        topic,
                        partition: d.partition,
                        offset: d.offset,
                    })
                }
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        (published, failed)
    }
}

/// `kafka TOPIC/PARTITION@OFFSET` → `TOPIC.dlq`.
fn dlq_topic(source: &str) -> String {
    let topic = source.strip_prefix("kafka ").and_then(|r| r.rsplit_once('/')).map(|(t, _)| t).unwrap_or("unknown");
    format!("{topic}.dlq")
}

#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Published,
    Idle,
    /// Another relay holds the lease.
    NotLeader,
}

#[cfg(test)]
mod tests {
    #[test]
    fn dead_letters_go_to_the_twin_of_their_topic() {
        assert_eq!(super::dlq_topic("kafka p.channel-events/3@17"), "p.channel-events.dlq");
    }
}
