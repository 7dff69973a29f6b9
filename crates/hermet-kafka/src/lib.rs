//! hermet's Kafka transport (`HERMET_KAFKA_BROKERS`):
//! - [`relay::run_relay`] publishes outbox rows to topics by aggregate, in order, and marks
//!   them published only after the broker acknowledged them;
//! - [`source::KafkaSource`] is the consumers' [`hermet_app::pipeline::consumer::EventSource`]
//!   on Kafka, with offsets kept in the database in the same transaction as the work;
//! - [`replay`] moves a consumer's per-partition offsets.
//!
//! Topic map (docs/EVENTS.md): events go to one topic per aggregate family, keyed by the
//! entity whose order matters; `channel.created` on `channel-events` follows `000_70dd81066eae5b2b.txt`
//! §3.3 exactly (key channelId, headers `event_type` and `timestamp`, the document's JSON).

pub mod relay;
pub mod source;

use std::time::Duration;

use hermet_store::OutboxRecord;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, OwnedHeaders};

/// Kafka settings; producer defaults follow `000_70dd81066eae5b2b.txt` §4.2 (lz4, 16 KiB batches, 10 ms
/// linger, idempotence) except `acks`: librdkafka refuses an idempotent producer without
/// `acks=all`, and idempotence is what keeps per-key order through retries.
///
/// Deserialized as the `[kafka]` section of hermet's configuration; `brokers` comes from
/// the top-level `kafka_brokers` setting.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    /// `host:port,…`
    #[serde(skip)]
    pub brokers: String,
    pub client_id: String,
    /// Prepended to every topic name (isolates deployments, or tests, on one cluster).
    pub topic_prefix: String,
    /// Partitions of the topics hermet creates.
    pub partitions: i32,
    pub replication_factor: i32,
    pub acks: String,
    pub compression: String,
    pub batch_size_bytes: u32,
    pub linger_ms: u64,
    pub idempotence: bool,
    /// How long the producer tries a message before reporting it failed.
    pub message_timeout_ms: u64,
    /// Outbox rows per relay batch.
    pub relay_batch_size: u32,
    /// The relay lease; a holder renews it before every batch and a batch can take at
    /// most `message_timeout_ms`, which must be shorter.
    pub relay_lease_ms: u64,
    pub fetch_max_bytes: u32,
    pub fetch_min_bytes: u32,
    pub fetch_max_wait_ms: u64,
    /// librdkafka properties given to every client hermet makes (producer, consumers,
    /// admin): `security.protocol`, `sasl.mechanism`, `sasl.username`, `sasl.password`,
    /// `ssl.ca.location`, … ([`ClientProperties`]).
    pub client: ClientProperties,
}

/// librdkafka properties passed through as they are, for what hermet has no setting of its
/// own: TLS and SASL above all (`security.protocol = "sasl_ssl"`, `sasl.mechanism =
/// "SCRAM-SHA-512"`, …). In the environment a property's dots are written `_`
/// (`HERMET_KAFKA__CLIENT__SECURITY_PROTOCOL=ssl`): names are normalized so. Values of
/// secrets (passwords, keys, tokens) are redacted in `Debug` (`hermet config`, logs).
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(transparent)]
pub struct ClientProperties(pub std::collections::BTreeMap<String, String>);

impl ClientProperties {
    /// The properties, names normalized (`security_protocol` → `security.protocol`).
    pub fn iter(&self) -> impl Iterator<Item = (String, &str)> {
        self.0.iter().map(|(k, v)| (k.trim().to_ascii_lowercase().replace('_', "."), v.as_str()))
    }

    /// Whether the value of property `name` is a secret.
    pub fn is_secret(name: &str) -> bool {
        ["password", "secret", "key.pem", "oauthbearer.config", "jaas", "token"].iter().any(|s| name.contains(s))
    }
}

impl std::fmt::Debug for ClientProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(k, v)| {
                let v = if Self::is_secret(&k) { "[redacted]" } else { v };
                (k, v)
            }))
            .finish()
    }
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            brokers: String::new(),
            client_id: "hermet".into(),
            topic_prefix: String::new(),
            partitions: 8,
            replication_factor: 1,
            acks: "all".into(),
            compression: "lz4".into(),
            batch_size_bytes: 16_384,
            linger_ms: 10,
            idempotence: true,
            message_timeout_ms: 10_000,
            relay_batch_size: 1_000,
            relay_lease_ms: 30_000,
            fetch_max_bytes: 1_048_576,
            fetch_min_bytes: 1,
            fetch_max_wait_ms: 500,
            client: ClientProperties::default(),
        }
    }
}

impl KafkaSettings {
    /// Problems with these settings, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.brokers.trim().is_empty() {
            p.push("kafka_brokers: must list at least one host:port".into());
        }
        if self.idempotence && !matches!(self.acks.as_str(), "all" | "-1") {
            p.push("kafka.acks: an idempotent producer needs acks=all (or set kafka.idempotence=false)".into());
        }
        if !matches!(self.compression.as_str(), "none" | "gzip" | "lz4" | "zstd" | "snappy") {
            p.push("kafka.compression: one of none, gzip, lz4, zstd, snappy".into());
        }
        if self.partitions < 1 {
            p.push("kafka.partitions: at least 1".into());
        }
        if self.fetch_max_bytes < 1_000_000 {
            // librdkafka refuses a consumer whose fetch.max.bytes is below message.max.bytes
            p.push("kafka.fetch_max_bytes: at least 1000000 (librdkafka's message.max.bytes)".into());
        }
        if self.message_timeout_ms >= self.relay_lease_ms {
            p.push("kafka.message_timeout_ms: must be shorter than kafka.relay_lease_ms".into());
        }
        p.extend(self.client_problems());
        p
    }

    /// Properties hermet sets itself may not be given in `kafka.client`, and librdkafka
    /// must accept the others: an unknown name, a bad value, or `ssl`/`sasl_ssl` in a
    /// build without OpenSSL is a configuration error, not a failure later.
    fn client_problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.client.0.is_empty() {
            return p;
        }
        let own = Self { client: ClientProperties::default(), ..self.clone() };
        let (producer, consumer) = (own.producer_config(), own.consumer_config("check"));
        for (name, _) in self.client.iter() {
            if producer.get(&name).is_some() || consumer.get(&name).is_some() {
                p.push(format!(
                    "kafka.client.\"{name}\": set by hermet itself (see its own [kafka] settings), not passed through"
                ));
            }
        }
        if p.is_empty() {
            for config in [self.producer_config(), self.consumer_config("check")] {
                if let Err(e) = config.create_native_config() {
                    p.push(format!("kafka.client: {e}"));
                    break;
                }
            }
        }
        p
    }

    pub fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.topic_prefix)
    }

    /// Every topic the pipeline reads.
    pub fn event_topics(&self) -> Vec<String> {
        TOPICS.iter().map(|t| self.topic(t)).collect()
    }

    /// Reconnects are retried every 100 ms, growing to 1 s at most (librdkafka's default
    /// grows to 10 s): a broker that returns is used again within about a second.
    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            .set("reconnect.backoff.ms", "100")
            .set("reconnect.backoff.max.ms", "1000");
        for (name, value) in self.client.iter() {
            c.set(name, value);
        }
        c
    }

    pub(crate) fn producer_config(&self) -> ClientConfig {
        let mut c = self.client();
        c.set("acks", &self.acks)
            .set("compression.type", &self.compression)
            .set("batch.size", self.batch_size_bytes.to_string())
            .set("linger.ms", self.linger_ms.to_string())
            .set("enable.idempotence", self.idempotence.to_string())
            .set("message.timeout.ms", self.message_timeout_ms.to_string())
            .set("retry.backoff.ms", "100")
            .set("retry.backoff.max.ms", "1000");
        c
    }

    pub(crate) fn consumer_config(&self, group: &str) -> ClientConfig {
        let mut c = self.client();
        c.set("group.id", format!("hermet-{group}"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.max.bytes", self.fetch_max_bytes.to_string())
            .set("fetch.min.bytes", self.fetch_min_bytes.to_string())
            .set("fetch.wait.max.ms", self.fetch_max_wait_ms.to_string())
            .set("isolation.level", "read_uncommitted");
        c
    }
}

pub const CHANNEL_EVENTS: &str = "channel-events";
pub const MESSAGE_EVENTS: &str = "message-events";
pub const USER_EVENTS: &str = "user-events";
pub const CONTACT_EVENTS: &str = "contact-events";
pub const TOPICS: [&str; 4] = [CHANNEL_EVENTS, MESSAGE_EVENTS, USER_EVENTS, CONTACT_EVENTS];

/// The topic (without prefix) an event type goes to. Keys are the outbox's aggregate keys:
/// channel id for channel and message events, user id for user events and one-sided
/// contact changes, the shared channel for `friendship.created`.
pub fn topic_of(event_type: &str) -> &'static str {
    match event_type.split_once('.').map(|(family, _)| family) {
        Some("message") | Some("conversation") if event_type != "conversation.settings_changed" => MESSAGE_EVENTS,
        Some("user") | Some("conversation") => USER_EVENTS,
        Some("contact") | Some("friendship") => CONTACT_EVENTS,
        _ => CHANNEL_EVENTS,
    }
}

/// The Kafka value of an outbox row: its payload, except `channel.created`, whose ids are
/// JSON numbers as in `000_70dd81066eae5b2b.txt` §3.3.
pub fn value_of(row: &OutboxRecord) -> Vec<u8> {
    let mut v = row.payload.clone();
    if row.event_type == "channel.created" {
        map_channel_created_ids(&mut v, as_number);
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

/// The payload an event carries inside hermet, from its Kafka value: `channel.created`'s
/// ids become strings again, as every other payload, frame and body has them (JSON
/// numbers above 2^53 lose digits in JavaScript).
pub fn payload_of(event_type: &str, mut value: serde_json::Value) -> serde_json::Value {
    if event_type == "channel.created" {
        map_channel_created_ids(&mut value, as_string);
    }
    value
}

/// Rewrites the ids of a `channel.created` payload (`channelId`, `creatorId`, `memberIds`).
fn map_channel_created_ids(v: &mut serde_json::Value, f: fn(&serde_json::Value) -> Option<serde_json::Value>) {
    let Some(m) = v.as_object_mut() else { return };
    for key in ["channelId", "creatorId"] {
        if let Some(n) = m.get(key).and_then(f) {
            m.insert(key.into(), n);
        }
    }
    if let Some(serde_json::Value::Array(ids)) = m.get_mut("memberIds") {
        for id in ids.iter_mut() {
            if let Some(n) = f(id) {
                *id = n;
            }
        }
    }
}

fn as_number(v: &serde_json::Value) -> Option<serde_json::Value> {
    v.as_str().and_then(|s| s.parse::<u64>().ok()).map(serde_json::Value::from)
}

fn as_string(v: &serde_json::Value) -> Option<serde_json::Value> {
    v.as_u64().map(|n| serde_json::Value::String(n.to_string()))
}

/// Headers: the seed's `event_type` and `timestamp` (ms, as a string), plus `event_id`,
/// `schema_version` and `outbox_position`.
pub fn headers_of(row: &OutboxRecord) -> OwnedHeaders {
    let ts = row.created_at.to_string();
    let id = row.event_id.to_string();
    let version = row.schema_version.to_string();
    let position = row.position.to_string();
    OwnedHeaders::new()
        .insert(Header { key: "event_type", value: Some(row.event_type.as_str()) })
        .insert(Header { key: "timestamp", value: Some(ts.as_str()) })
        .insert(Header { key: "event_id", value: Some(id.as_str()) })
        .insert(Header { key: "schema_version", value: Some(version.as_str()) })
        .insert(Header { key: "outbox_position", value: Some(position.as_str()) })
}

/// Creates the event topics and their dead-letter topics when missing.
pub async fn ensure_topics(settings: &KafkaSettings) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = settings.client().create()?;
    let names: Vec<String> =
        settings.event_topics().into_iter().flat_map(|t| [format!("{t}.dlq"), t].into_iter()).collect();
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| NewTopic::new(n, settings.partitions, TopicReplication::Fixed(settings.replication_factor)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for r in admin.create_topics(&topics, &opts).await? {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => anyhow::bail!("cannot create topic {t}: {code}"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_client(props: &[(&str, &str)]) -> KafkaSettings {
        let mut s = KafkaSettings { brokers: "127.0.0.1:1".into(), ..KafkaSettings::default() };
        s.client.0.extend(props.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        s
    }

    #[test]
    fn client_properties_reach_every_client() {
        let s = with_client(&[
            ("security.protocol", "sasl_ssl"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "hermet"),
            ("sasl_password", "hunter2"),
            ("ssl.ca.location", "/etc/ssl/certs/ca-certificates.crt"),
        ]);
        assert!(s.problems().is_empty(), "{:?}", s.problems());
        for c in [s.client(), s.producer_config(), s.consumer_config("notifier")] {
            assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
            assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
            assert_eq!(c.get("sasl.username"), Some("hermet"));
            assert_eq!(c.get("sasl.password"), Some("hunter2"), "env-style names are normalized");
            assert_eq!(c.get("ssl.ca.location"), Some("/etc/ssl/certs/ca-certificates.crt"));
            assert_eq!(c.get("bootstrap.servers"), Some("127.0.0.1:1"));
        }
        let shown = format!("{s:?}");
        assert!(shown.contains("sasl.username") && shown.contains("hermet"), "{shown}");
        assert!(!shown.contains("hunter2") && shown.contains("[redacted]"), "{shown}");
    }

    /// librdkafka is built with OpenSSL: TLS and SCRAM clients can be made (they connect
    /// lazily, so no broker is needed).
    #[tokio::test]
    async fn tls_and_scram_clients_can_be_created() {
        let s = with_client(&[
            ("security.protocol", "sasl_ssl"),
            ("sasl.mechanism", "SCRAM-SHA-256"),
            ("sasl.username", "u"),
            ("sasl.password", "p"),
        ]);
        let producer: Result<rdkafka::producer::FutureProducer, _> = s.producer_config().create();
        assert!(producer.is_ok(), "{:?}", producer.err());
        let consumer: Result<rdkafka::consumer::StreamConsumer, _> = s.consumer_config("check").create();
        assert!(consumer.is_ok(), "{:?}", consumer.err());
    }

    #[test]
    fn bad_client_properties_are_configuration_errors() {
        let p = with_client(&[("group.id", "mine")]).problems();
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("kafka.client.\"group.id\": set by hermet"), "{p:?}");
        let p = with_client(&[("no.such.property", "1")]).problems();
        assert!(p.len() == 1 && p[0].starts_with("kafka.client:") && p[0].contains("no.such.property"), "{p:?}");
        let p = with_client(&[("security.protocol", "carrier_pigeon")]).problems();
        assert!(p.len() == 1 && p[0].contains("security.protocol"), "{p:?}");
    }

    #[test]
    fn topics_by_aggregate() {
        assert_eq!(topic_of("channel.created"), CHANNEL_EVENTS);
        assert_eq!(topic_of("channel.member_added"), CHANNEL_EVENTS);
        assert_eq!(topic_of("message.sent"), MESSAGE_EVENTS);
        assert_eq!(topic_of("conversation.read"), MESSAGE_EVENTS);
        assert_eq!(topic_of("conversation.settings_changed"), USER_EVENTS);
        assert_eq!(topic_of("user.profile_updated"), USER_EVENTS);
        assert_eq!(topic_of("friendship.created"), CONTACT_EVENTS);
        assert_eq!(topic_of("contact.application_created"), CONTACT_EVENTS);
    }

    #[test]
    fn channel_created_ids_are_numbers_on_kafka_and_strings_inside() {
        let row = OutboxRecord {
            position: 1,
            event_id: 2,
            event_type: "channel.created".into(),
            schema_version: 1,
            aggregate_key: "12345".into(),
            payload: serde_json::json!({"channelId": "12345", "channelType": "group", "channelName": "n",
                "avatar": "", "creatorId": "1001", "memberIds": ["1001", "1002"], "createdAt": 5}),
            created_at: 5,
        };
        let v: serde_json::Value = serde_json::from_slice(&value_of(&row)).unwrap();
        assert_eq!(v["channelId"], 12345);
        assert_eq!(v["creatorId"], 1001);
        assert_eq!(v["memberIds"], serde_json::json!([1001, 1002]));
        assert_eq!(v["channelName"], "n");
        // and back: inside hermet (frames, projections) the ids are strings again
        assert_eq!(payload_of("channel.created", v), row.payload);
        let other = serde_json::json!({"channelId": "1", "seq": 3});
        assert_eq!(payload_of("message.sent", other.clone()), other);
    }
}
