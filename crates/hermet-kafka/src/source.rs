//! The consumers' event source on Kafka.
//!
//! Offsets live in the database, one `consumer_offset` row per partition
//! (`consumer@topic/partition`, the next offset to read), advanced compare-and-set in the
//! same transaction as the batch's work: a batch is applied exactly once as far as the
//! read models can tell, whatever the broker remembers about consumer groups. Each
//! consumer is assigned every partition of the event topics and seeks to its stored
//! offsets; a replay (`hermet replay`) rewrites them and the consumer seeks again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hermet_app::App;
use hermet_app::pipeline::consumer::{Batch, EventSource, OffsetMove};
use hermet_app::pipeline::partition_offset_name;
use hermet_domain::{Error, Result};
use hermet_store::{Database, StoredEvent};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::KafkaSettings;

pub struct KafkaSource<D: Database> {
    app: App<D>,
    settings: KafkaSettings,
    consumer_name: &'static str,
    consumer: Arc<StreamConsumer>,
    /// Next offset to read per (topic, partition).
    positions: BTreeMap<(String, i32), i64>,
    poll: Duration,
    last_lag_sample: Instant,
    /// A lag sample is under way: at most one at a time, so a slow broker is not sent a
    /// new round of watermark requests every few seconds on top of those still waiting.
    sampling: Arc<AtomicBool>,
}

fn kafka_err(e: impl std::fmt::Display) -> Error {
    Error::internal(anyhow::anyhow!("kafka: {e}"))
}

/// The partitions of `topics`, from the broker's metadata (a blocking call, off the
/// runtime's threads).
pub async fn partitions(consumer: Arc<StreamConsumer>, topics: Vec<String>) -> Result<Vec<(String, i32)>> {
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for t in topics {
            let md = consumer.fetch_metadata(Some(&t), Duration::from_secs(10)).map_err(kafka_err)?;
            for topic in md.topics() {
                if topic.partitions().is_empty() {
                    return Err(kafka_err(format!("topic {t} has no partitions")));
                }
                out.extend(topic.partitions().iter().map(|p| (t.clone(), p.id())));
            }
        }
        Ok(out)
    })
    .await
    .map_err(kafka_err)?
}

impl<D: Database> KafkaSource<D> {
    pub async fn new(app: &App<D>, settings: &KafkaSettings, consumer_name: &'static str) -> Result<Self> {
        let consumer: StreamConsumer = settings.consumer_config(consumer_name).create().map_err(kafka_err)?;
        let consumer = Arc::new(consumer);
        let mut positions = BTreeMap::new();
        for tp in partitions(consumer.clone(), settings.event_topics()).await? {
            positions.insert(tp, 0);
        }
        let mut source = Self {
            app: app.clone(),
            settings: settings.clone(),
            consumer_name,
            consumer,
            positions,
            poll: Duration::from_millis(app.pipeline_settings().poll_interval_ms),
            last_lag_sample: Instant::now(),
            sampling: Arc::new(AtomicBool::new(false)),
        };
        source.reset().await?;
        Ok(source)
    }

    async fn stored_positions(&self) -> Result<BTreeMap<(String, i32), i64>> {
        let prefix = format!("{}@", self.consumer_name);
        let stored: BTreeMap<String, i64> =
            self.app.db.consumer_offsets(&prefix).await?.into_iter().map(|(n, (_, o))| (n, o)).collect();
        Ok(self
            .positions
            .keys()
            .map(|(t, p)| {
                let name = partition_offset_name(self.consumer_name, t, *p);
                ((t.clone(), *p), stored.get(&name).copied().unwrap_or(0))
            })
            .collect())
    }

    fn sample_lag(&mut self) {
        if self.last_lag_sample.elapsed() < Duration::from_secs(5) {
            return;
        }
        self.last_lag_sample = Instant::now();
        if self.sampling.swap(true, Ordering::AcqRel) {
            return;
        }
        let (consumer, positions, name) = (self.consumer.clone(), self.positions.clone(), self.consumer_name);
        let sampling = self.sampling.clone();
        tokio::task::spawn_blocking(move || {
            let mut lag = 0i64;
            let mut complete = true;
            for ((t, p), next) in positions {
                match consumer.fetch_watermarks(&t, p, Duration::from_secs(1)) {
                    Ok((_, high)) => lag += (high - next).max(0),
                    // the broker is away or slow: leave the gauge as it was
                    Err(_) => {
                        complete = false;
                        break;
                    }
                }
            }
            if complete {
                metrics::gauge!("consumer_lag_events", "consumer" => name).set(lag as f64);
            }
            sampling.store(false, Ordering::Release);
        });
    }
}

fn header(m: &impl Message, key: &str) -> Option<String> {
    let h = m.headers()?;
    h.iter().find(|x| x.key == key).and_then(|x| x.value).map(|v| String::from_utf8_lossy(v).into_owned())
}

impl<D: Database> EventSource for KafkaSource<D> {
    async fn next_batch(&mut self, max: u32) -> Result<Option<Batch>> {
        self.sample_lag();
        let first = tokio::time::timeout(self.poll, self.consumer.recv()).await;
        let Ok(first) = first else {
            // Idle: notice a replay that moved the stored offsets.
            if self.stored_positions().await? != self.positions {
                self.reset().await?;
            }
            return Ok(None);
        };
        let mut batch = Batch::default();
        let mut ranges: BTreeMap<(String, i32), (i64, i64)> = BTreeMap::new();
        let mut next = Some(first);
        while let Some(received) = next {
            let m = received.map_err(kafka_err)?;
            let key = (m.topic().to_owned(), m.partition());
            let expected = self.positions.get(&key).copied().unwrap_or(0);
            if m.offset() >= expected {
                let raw = m.payload().unwrap_or_default();
                let event_type = header(&m, "event_type").unwrap_or_default();
                let payload = match serde_json::from_slice(raw) {
                    Ok(v) => crate::payload_of(&event_type, v),
                    Err(_) => serde_json::Value::String(String::from_utf8_lossy(raw).into_owned()),
                };
                batch.events.push(StoredEvent {
                    cursor: (i64::from(m.partition()), m.offset()),
                    event_id: header(&m, "event_id").and_then(|s| s.parse().ok()).unwrap_or(0),
                    event_type,
                    payload,
                    created_at: header(&m, "timestamp").and_then(|s| s.parse().ok()).unwrap_or(0),
                });
                batch.origins.push(format!("kafka {}/{}@{}", m.topic(), m.partition(), m.offset()));
                let r = ranges.entry(key).or_insert((expected, m.offset() + 1));
                r.1 = m.offset() + 1;
            }
            if batch.events.len() >= max as usize {
                break;
            }
            next = tokio::time::timeout(Duration::from_millis(2), self.consumer.recv()).await.ok();
        }
        if batch.events.is_empty() {
            return Ok(None);
        }
        batch.moves = ranges
            .into_iter()
            .map(|((t, p), (from, to))| OffsetMove {
                name: partition_offset_name(self.consumer_name, &t, p),
                from: (0, from),
                to: (0, to),
            })
            .collect();
        Ok(Some(batch))
    }

    fn committed(&mut self, batch: &Batch) {
        for m in &batch.moves {
            if let Some((_, tp)) = m.name.split_once('@')
                && let Some((t, p)) = tp.rsplit_once('/')
                && let Ok(p) = p.parse::<i32>()
            {
                self.positions.insert((t.to_owned(), p), m.to.1);
            }
        }
    }

    /// A new consumer client (the old one may be stuck after the broker went away and
    /// came back), assigned at the stored offsets.
    async fn recover(&mut self) -> Result<()> {
        let consumer: StreamConsumer = self.settings.consumer_config(self.consumer_name).create().map_err(kafka_err)?;
        self.consumer = Arc::new(consumer);
        self.reset().await
    }

    async fn reset(&mut self) -> Result<()> {
        self.positions = self.stored_positions().await?;
        let mut tpl = TopicPartitionList::new();
        for ((t, p), o) in &self.positions {
            tpl.add_partition_offset(t, *p, Offset::Offset(*o)).map_err(kafka_err)?;
        }
        self.consumer.assign(&tpl).map_err(kafka_err)?;
        // The sum of the next offsets names the committed position in one number
        // (operators and the kill-and-restart test compare it with the stored rows).
        let sum: i64 = self.positions.values().sum();
        tracing::info!(
            consumer = self.consumer_name,
            partitions = self.positions.len(),
            "{} resumes at committed position {sum} (sum of next offsets)",
            self.consumer_name
        );
        Ok(())
    }
}

/// `hermet replay` on Kafka: sets `consumer`'s offset on every partition to the first
/// offset at or after `from_ms` (0 = earliest). Running consumers seek when they notice.
pub async fn replay<D: Database>(
    app: &App<D>,
    settings: &KafkaSettings,
    consumer_name: &str,
    from_ms: i64,
) -> Result<Vec<(String, i64)>> {
    use hermet_store::{OffsetWrites, Transaction};
    app.check_replayable(consumer_name)?;
    let consumer: StreamConsumer = settings.consumer_config("replay").create().map_err(kafka_err)?;
    let consumer = Arc::new(consumer);
    let parts = partitions(consumer.clone(), settings.event_topics()).await?;
    let targets: Vec<(String, i64)> = if from_ms <= 0 {
        parts.iter().map(|(t, p)| (partition_offset_name(consumer_name, t, *p), 0)).collect()
    } else {
        let c = consumer.clone();
        let parts2 = parts.clone();
        let found = tokio::task::spawn_blocking(move || {
            let mut tpl = TopicPartitionList::new();
            for (t, p) in &parts2 {
                tpl.add_partition_offset(t, *p, Offset::Offset(from_ms)).map_err(kafka_err)?;
            }
            c.offsets_for_times(tpl, Duration::from_secs(10)).map_err(kafka_err)
        })
        .await
        .map_err(kafka_err)??;
        let mut out = Vec::new();
        for e in found.elements() {
            let offset = match e.offset() {
                Offset::Offset(o) => o,
                // No message at or after the time: start at the end.
                _ => consumer
                    .fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(5))
                    .map(|(_, h)| h)
                    .map_err(kafka_err)?,
            };
            out.push((partition_offset_name(consumer_name, e.topic(), e.partition()), offset));
        }
        out
    };
    let mut tx = app.db.begin().await?;
    let now = hermet_domain::time::now_ms();
    for (name, offset) in &targets {
        tx.set_offset(name, (0, *offset), now).await?;
    }
    tx.commit().await?;
    Ok(targets)
}
