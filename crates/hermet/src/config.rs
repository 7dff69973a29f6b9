//! Configuration: built-in defaults, then a TOML file (`--config`, else `hermet.toml`
//! if present), then `HERMET_*` environment variables (`__` separates sections:
//! `HERMET_DATABASE__MAX_CONNECTIONS`), then [`Config::validate`]. Secrets are
//! redacted in `Debug` output and logs.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use hermet_app::cache::CacheMode;
use hermet_app::{AuthSettings, Limits, PasswordParams};
use hermet_store::{Backend, PoolSettings};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize};

#[derive(Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address and port the HTTP server listens on (`HERMET_LISTEN`).
    pub listen: String,
    /// `sqlite://PATH` (embedded default) or `postgres://…` (`HERMET_DATABASE_URL`).
    pub database_url: String,
    /// Optional PostgreSQL read replica for read-model queries (`HERMET_READ_DATABASE_URL`).
    pub read_database_url: Option<String>,
    /// Accounts (e-mail or mobile) that are administrators, comma-separated in the
    /// environment (`HERMET_ADMIN_ACCOUNTS`).
    #[serde(deserialize_with = "comma_list")]
    pub admin_accounts: Vec<String>,
    /// 0..=1023, unique per node: part of every id this node makes (`HERMET_NODE_ID`).
    pub node_id: u16,
    /// `pretty` or `json` (`HERMET_LOG_FORMAT`).
    pub log_format: LogFormat,
    /// A tracing filter such as `info` or `hermet=debug,info`; `RUST_LOG` overrides it.
    pub log_level: String,
    /// Apply pending migrations when `serve` starts.
    pub migrate_on_start: bool,
    /// `dual_write` (read models updated in each command's transaction) or `async`
    /// (consumers of the outbox update them) (`HERMET_SYNC_MODE`).
    pub sync_mode: SyncModeConfig,
    /// Kafka bootstrap servers `host:port,…`; unset: the embedded event log
    /// (`HERMET_KAFKA_BROKERS`).
    pub kafka_brokers: Option<String>,
    /// `redis://host:port` of the Redis that gateway nodes share for presence and push
    /// routing; unset: a single node, presence in memory (`HERMET_REDIS_URL`).
    pub redis_url: Option<String>,
    /// PEM file of the CA that signed a `rediss://` server's certificate, when not one
    /// the system trusts (`HERMET_REDIS_CA_FILE`).
    pub redis_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for a Redis that authenticates clients by certificate
    /// (`tls-auth-clients`), with `redis_key_file` (`HERMET_REDIS_CERT_FILE`).
    pub redis_cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM) (`HERMET_REDIS_KEY_FILE`).
    pub redis_key_file: Option<PathBuf>,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub http: HttpConfig,
    pub limits: Limits,
    pub pipeline: PipelineConfig,
    /// Kafka producer, consumer and topic settings (`000_70dd81066eae5b2b.txt` §4.2 defaults), used only
    /// when `kafka_brokers` is set.
    pub kafka: hermet_kafka::KafkaSettings,
    /// The WebSocket gateway: connections per user, send queue, timeouts.
    pub gateway: hermet_app::gateway::GatewaySettings,
    /// Read caches (conversation-list first pages, sessions) and their invalidation.
    pub cache: hermet_app::cache::CacheSettings,
    /// Per-action rate limits (docs/API.md "Rate limits").
    pub rate_limits: hermet_app::rate_limits::RateLimits,
    /// How concurrent message sends share transactions (group commit).
    pub group_commit: hermet_app::messages::GroupCommitSettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncModeConfig {
    DualWrite,
    Async,
}

/// The `[pipeline]` section: the pipeline's own settings struct (serde), so the two
/// cannot drift apart.
pub type PipelineConfig = hermet_app::PipelineSettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// The `[database]` section: the store's own pool settings (serde), as `[pipeline]` is
/// the pipeline's, so names, defaults and meaning have one definition.
pub type DatabaseConfig = PoolSettings;

#[derive(Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 key, at least 32 bytes. When unset, one is generated on first start and
    /// stored in the database, shared by all nodes.
    #[serde(serialize_with = "redacted")]
    pub jwt_secret: Option<SecretString>,
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub body_limit_bytes: usize,
    pub admin_body_limit_bytes: usize,
    pub request_timeout_secs: u64,
    /// On SIGTERM/SIGINT, wait this long for in-flight requests before exiting.
    pub shutdown_grace_secs: u64,
    /// Browser origins (`https://app.example.com`) allowed to call the API and open
    /// WebSockets; `*` allows any; none by default. Comma-separated in the environment.
    #[serde(deserialize_with = "comma_list")]
    pub allowed_origins: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            database_url: "sqlite://./data/hermet.db".into(),
            read_database_url: None,
            admin_accounts: Vec::new(),
            node_id: 0,
            log_format: LogFormat::Pretty,
            log_level: "info".into(),
            migrate_on_start: true,
            sync_mode: SyncModeConfig::DualWrite,
            kafka_brokers: None,
            redis_url: None,
            redis_ca_file: None,
            redis_cert_file: None,
            redis_key_file: None,
            database: DatabaseConfig::default(),
            auth: AuthConfig::default(),
            http: HttpConfig::default(),
            limits: Limits::default(),
            pipeline: PipelineConfig::default(),
            kafka: hermet_kafka::KafkaSettings::default(),
            gateway: hermet_app::gateway::GatewaySettings::default(),
            cache: hermet_app::cache::CacheSettings::default(),
            group_commit: hermet_app::messages::GroupCommitSettings::default(),
            rate_limits: hermet_app::rate_limits::RateLimits::default(),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        let a = AuthSettings::default();
        Self {
            jwt_secret: None,
            access_token_ttl_secs: a.access_token_ttl_secs,
            refresh_token_ttl_secs: a.refresh_token_ttl_secs,
            argon2_memory_kib: a.password.memory_kib,
            argon2_iterations: a.password.iterations,
            argon2_parallelism: a.password.parallelism,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        let h = hermet_api::HttpSettings::default();
        Self {
            body_limit_bytes: h.body_limit_bytes,
            admin_body_limit_bytes: h.admin_body_limit_bytes,
            request_timeout_secs: h.request_timeout_secs,
            shutdown_grace_secs: 20,
            allowed_origins: h.allowed_origins,
        }
    }
}

fn comma_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s.split(',').map(|a| a.trim().to_owned()).filter(|a| !a.is_empty()).collect(),
        OneOrMany::Many(v) => v.into_iter().map(|a| a.trim().to_owned()).filter(|a| !a.is_empty()).collect(),
    })
}

fn redacted<S: serde::Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_str("[redacted]"),
        None => s.serialize_none(),
    }
}

/// Hides the password of a database URL (`postgres://user:***@host/db`).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let q: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_owned(),
                })
                .collect();
            format!("{path}?{}", q.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("database_url", &redact_url(&self.database_url))
            .field("read_database_url", &self.read_database_url.as_deref().map(redact_url))
            .field("admin_accounts", &self.admin_accounts)
            .field("node_id", &self.node_id)
            .field("log_format", &self.log_format)
            .field("migrate_on_start", &self.migrate_on_start)
            .field("sync_mode", &self.sync_mode)
            .field("pipeline", &self.pipeline)
            .field("kafka_brokers", &self.kafka_brokers)
            .field("kafka", &self.kafka)
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("redis_ca_file", &self.redis_ca_file)
            .field("redis_cert_file", &self.redis_cert_file)
            .field("redis_key_file", &self.redis_key_file)
            .field("gateway", &self.gateway)
            .field("database", &self.database)
            .field("auth.jwt_secret", &self.auth.jwt_secret.as_ref().map(|_| "[redacted]"))
            .field("http", &self.http)
            .field("limits", &self.limits)
            .field("group_commit", &self.group_commit)
            .field("rate_limits", &self.rate_limits)
            .finish()
    }
}

impl Config {
    /// Loads defaults ← file ← environment, then validates.
    pub fn load(file: Option<&Path>) -> Result<Self, String> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) if !path.exists() => {
                return Err(format!("config file {} does not exist", path.display()));
            }
            Some(path) => fig = fig.merge(Toml::file(path)),
            None if Path::new("hermet.toml").exists() => fig = fig.merge(Toml::file("hermet.toml")),
            None => {}
        }
        // HERMET_CONFIG names the file (clap reads it), it is not a setting.
        fig = fig.merge(Env::prefixed("HERMET_").ignore(&["CONFIG"]).split("__"));
        let config: Config =
            fig.extract().map_err(|e| e.into_iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))?;
        config
            .validate()
            .map_err(|errors| errors.into_iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))?;
        Ok(config)
    }

    /// Where cache generations live, `auto` resolved; `Off` when not caching.
    pub fn cache_mode(&self) -> CacheMode {
        match self.cache.mode {
            CacheMode::Auto if self.read_database_url.is_some() => CacheMode::Off,
            CacheMode::Auto if self.redis_url.is_some() => CacheMode::Redis,
            // The embedded default is one process; its projectors run in it unless told
            // not to (then, in async mode, another process moves the read models).
            CacheMode::Auto
                if Backend::from_url(&self.database_url) == Some(Backend::Sqlite)
                    && (self.sync_mode == SyncModeConfig::DualWrite || self.pipeline.serve_runs_pipeline) =>
            {
                CacheMode::Local
            }
            CacheMode::Auto => CacheMode::Off,
            m => m,
        }
    }

    /// Every problem at once, each naming its setting.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        if self.listen.parse::<SocketAddr>().is_err() {
            errors.push(format!(
                "listen (HERMET_LISTEN): '{}' is not an address:port such as 127.0.0.1:8080",
                self.listen
            ));
        }
        let backend = Backend::from_url(&self.database_url);
        if backend.is_none() {
            errors.push(format!(
                "database_url (HERMET_DATABASE_URL): '{}' must start with sqlite:// or postgres://",
                redact_url(&self.database_url)
            ));
        }
        if backend == Some(Backend::Postgres)
            && let Err(e) = hermet_store::postgres::tls::check_url(&self.database_url)
        {
            errors.push(format!("database_url (HERMET_DATABASE_URL): {e}"));
        }
        if let Some(read) = &self.read_database_url {
            if Backend::from_url(read) == Some(Backend::Postgres)
                && let Err(e) = hermet_store::postgres::tls::check_url(read)
            {
                errors.push(format!("read_database_url (HERMET_READ_DATABASE_URL): {e}"));
            }
            if Backend::from_url(read) != Some(Backend::Postgres) {
                errors.push("read_database_url (HERMET_READ_DATABASE_URL): must be a postgres:// URL".into());
            } else if backend != Some(Backend::Postgres) {
                errors.push("read_database_url (HERMET_READ_DATABASE_URL): a read replica needs database_url to be PostgreSQL too".into());
            }
        }
        match self.cache.mode {
            CacheMode::Redis if self.redis_url.is_none() => {
                errors.push("cache.mode (HERMET_CACHE__MODE): redis needs redis_url (HERMET_REDIS_URL)".into())
            }
            CacheMode::Local | CacheMode::Redis if self.read_database_url.is_some() => errors.push(
                "cache.mode (HERMET_CACHE__MODE): not with read_database_url: a replica may not have a write the cache was told of yet".into(),
            ),
            _ => {}
        }
        if let Some(r) = &self.redis_url
            && !(r.starts_with("redis://") || r.starts_with("rediss://") || r.starts_with("redis+unix://"))
        {
            errors.push("redis_url (HERMET_REDIS_URL): must be a redis:// or rediss:// URL".into());
        }
        match &self.redis_url {
            Some(url) => errors.extend(self.redis_tls().problems(url)),
            None if self.redis_ca_file.is_some() || self.redis_cert_file.is_some() || self.redis_key_file.is_some() => {
                errors.push("redis_ca_file, redis_cert_file, redis_key_file: only with a rediss:// redis_url".into())
            }
            None => {}
        }
        if self.node_id > hermet_domain::id::MAX_NODE_ID {
            errors.push(format!("node_id (HERMET_NODE_ID): {} is out of range 0..=1023", self.node_id));
        }
        if self.database.max_connections == 0 {
            errors.push("database.max_connections: must be at least 1".into());
        }
        if !["FULL", "NORMAL", "EXTRA"].contains(&self.database.sqlite_synchronous.to_ascii_uppercase().as_str()) {
            errors.push("database.sqlite_synchronous: must be FULL, NORMAL or EXTRA".into());
        }
        if self.auth.jwt_secret.as_ref().is_some_and(|s| s.expose_secret().len() < 32) {
            errors.push("auth.jwt_secret (HERMET_AUTH__JWT_SECRET): must be at least 32 bytes".into());
        }
        if self.auth.access_token_ttl_secs == 0 || self.auth.refresh_token_ttl_secs == 0 {
            errors.push("auth.access_token_ttl_secs and auth.refresh_token_ttl_secs: must be positive".into());
        }
        if argon2::Params::new(
            self.auth.argon2_memory_kib,
            self.auth.argon2_iterations,
            self.auth.argon2_parallelism,
            None,
        )
        .is_err()
        {
            errors.push("auth.argon2_*: invalid argon2 parameters (memory must be at least 8 KiB per lane; iterations and parallelism at least 1)".into());
        }
        for o in &self.http.allowed_origins {
            let valid = o == "*"
                || o.split_once("://").is_some_and(|(scheme, host)| {
                    matches!(scheme, "http" | "https")
                        && !host.trim_end_matches('/').is_empty()
                        && !host.trim_end_matches('/').contains('/')
                });
            if !valid {
                errors.push(format!(
                    "http.allowed_origins: {o:?} is not an origin (scheme://host[:port], e.g. https://app.example.com, or *)"
                ));
            }
        }
        if self.http.body_limit_bytes < 1024 {
            errors.push("http.body_limit_bytes: must be at least 1024".into());
        }
        if self.pipeline.batch_size == 0 {
            errors.push("pipeline.batch_size: must be at least 1".into());
        }
        if self.pipeline.max_attempts == 0 {
            errors.push("pipeline.max_attempts: must be at least 1".into());
        }
        if self.pipeline.notify_workers == 0 || self.pipeline.notify_chunk_size == 0 {
            errors.push("pipeline.notify_workers and pipeline.notify_chunk_size: must be at least 1".into());
        }
        if self.gateway.max_connections_per_user == 0 || self.gateway.send_queue == 0 {
            errors.push("gateway.max_connections_per_user and gateway.send_queue: must be at least 1".into());
        }
        if self.pipeline.outbox_prune_interval_secs > 0
            && self.pipeline.outbox_retention_secs < self.pipeline.compensation_lookback_secs
        {
            // the compensation scanner looks for outbox rows of recent groups
            errors.push("pipeline.outbox_retention_secs: must be at least pipeline.compensation_lookback_secs".into());
        }
        if self.pipeline.outbox_prune_interval_secs > 0
            && self.pipeline.inbox_retention_secs > self.pipeline.outbox_retention_secs
        {
            errors.push("pipeline.inbox_retention_secs: must be at most pipeline.outbox_retention_secs (inbox payloads are read from the outbox)".into());
        }
        if self.pipeline.inbox_max_per_user == 0 || self.gateway.sync_page_size == 0 {
            errors.push("pipeline.inbox_max_per_user and gateway.sync_page_size: must be at least 1".into());
        }
        if self.gateway.heartbeat_secs == 0 || self.gateway.node_ttl_secs <= self.gateway.heartbeat_secs {
            errors.push("gateway.node_ttl_secs: must be greater than gateway.heartbeat_secs (at least 1)".into());
        }
        if let Some(k) = self.kafka_settings() {
            errors.extend(k.problems().into_iter().map(|p| {
                if p.starts_with("kafka_brokers") {
                    p.replacen("kafka_brokers", "kafka_brokers (HERMET_KAFKA_BROKERS)", 1)
                } else {
                    p
                }
            }));
        }
        errors.extend(self.rate_limits.problems());
        if self.limits.max_group_members < 2 {
            errors.push("limits.max_group_members: must be at least 2".into());
        }
        if self.limits.large_group_threshold < 2 {
            errors.push("limits.large_group_threshold: must be at least 2".into());
        }
        errors.extend(self.group_commit.problems(self.database.max_connections));
        if self.limits.max_bulk_users == 0 {
            errors.push("limits.max_bulk_users: must be at least 1".into());
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.listen.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080)))
    }

    /// The TLS files for a `rediss://` `redis_url`.
    pub fn redis_tls(&self) -> hermet_redis::RedisTls {
        hermet_redis::RedisTls {
            ca_file: self.redis_ca_file.clone(),
            cert_file: self.redis_cert_file.clone(),
            key_file: self.redis_key_file.clone(),
        }
    }

    pub fn pool_settings(&self) -> PoolSettings {
        self.database.clone()
    }

    pub fn auth_settings(&self) -> AuthSettings {
        AuthSettings {
            jwt_secret: self.auth.jwt_secret.clone(),
            access_token_ttl_secs: self.auth.access_token_ttl_secs,
            refresh_token_ttl_secs: self.auth.refresh_token_ttl_secs,
            password: PasswordParams {
                memory_kib: self.auth.argon2_memory_kib,
                iterations: self.auth.argon2_iterations,
                parallelism: self.auth.argon2_parallelism,
            },
            admin_accounts: self.admin_accounts.clone(),
        }
    }

    pub fn http_settings(&self) -> hermet_api::HttpSettings {
        hermet_api::HttpSettings {
            body_limit_bytes: self.http.body_limit_bytes,
            admin_body_limit_bytes: self.http.admin_body_limit_bytes,
            request_timeout_secs: self.http.request_timeout_secs,
            allowed_origins: self.http.allowed_origins.clone(),
        }
    }

    pub fn pipeline_settings(&self) -> hermet_app::PipelineSettings {
        hermet_app::PipelineSettings {
            sync_mode: match self.sync_mode {
                SyncModeConfig::DualWrite => hermet_app::SyncMode::DualWrite,
                SyncModeConfig::Async => hermet_app::SyncMode::Async,
            },
            transport: if self.kafka_brokers.is_some() {
                hermet_app::Transport::Kafka
            } else {
                hermet_app::Transport::Embedded
            },
            ..self.pipeline.clone()
        }
    }

    /// The Kafka transport's settings, when `kafka_brokers` is set.
    pub fn kafka_settings(&self) -> Option<hermet_kafka::KafkaSettings> {
        let brokers = self.kafka_brokers.clone()?;
        Some(hermet_kafka::KafkaSettings { brokers, ..self.kafka.clone() })
    }

    pub fn limits(&self) -> Limits {
        self.limits.clone()
    }
}

#[cfg(test)]
#[allow(clippy::field_reassign_with_default)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact_url("postgres://app:s3cret@db:5432/hermet"), "postgres://app:***@db:5432/hermet");
        assert_eq!(redact_url("postgres://db/hermet?user=a&password=x"), "postgres://db/hermet?user=a&password=***");
        assert_eq!(redact_url("sqlite://./data/hermet.db"), "sqlite://./data/hermet.db");
    }

    #[test]
    fn defaults_are_valid_and_debug_hides_secrets() {
        let mut c = Config::default();
        assert!(c.validate().is_ok());
        c.database_url = "postgres://u:pw@h/db".into();
        c.auth.jwt_secret = Some(SecretString::from("x".repeat(40)));
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("pw@") && !dbg.contains(&"x".repeat(40)), "{dbg}");
    }

    #[test]
    fn validation_names_each_bad_setting() {
        let mut c = Config::default();
        c.listen = "nowhere".into();
        c.database_url = "mysql://x".into();
        c.node_id = 2000;
        let errors = c.validate().unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("listen"));
        assert!(errors[1].starts_with("database_url"));
        assert!(errors[2].starts_with("node_id"));
    }

    #[test]
    fn tls_settings_are_checked_and_named() {
        let mut c = Config::default();
        c.database_url = "postgres://u:pw@db/hermet?sslmode=verify-everything".into();
        c.read_database_url = Some("postgres://db2/hermet?sslmode=verify-full&sslrootcert=/no/such/ca.pem".into());
        c.redis_url = Some("redis://cache:6379".into());
        c.redis_ca_file = Some("/no/such/redis-ca.pem".into());
        let errors = c.validate().unwrap_err();
        assert!(errors[0].starts_with("database_url (HERMET_DATABASE_URL): sslmode=verify-everything"), "{errors:?}");
        assert!(!errors[0].contains("pw"), "{errors:?}");
        assert_eq!(
            errors[1],
            "read_database_url (HERMET_READ_DATABASE_URL): sslrootcert=/no/such/ca.pem: no such file"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("redis_ca_file, redis_cert_file, redis_key_file: only for a rediss://"))
        );
        assert!(
            errors.iter().any(|e| e.starts_with("redis_ca_file (HERMET_REDIS_CA_FILE): cannot read")),
            "{errors:?}"
        );
        c.database_url = "postgres://u:pw@db/hermet?sslmode=require".into();
        c.read_database_url = Some("postgres://db2/hermet?sslmode=verify-full".into());
        c.redis_url = Some("rediss://cache:6380".into());
        c.redis_ca_file = None;
        assert!(c.validate().is_ok(), "{:?}", c.validate());
    }

    #[test]
    fn kafka_client_properties_load_from_toml_and_stay_secret() {
        let toml = r#"
            kafka_brokers = "127.0.0.1:9093"
            [kafka.client]
            "security.protocol" = "sasl_ssl"
            "sasl.mechanism" = "PLAIN"
            "sasl.username" = "hermet"
            sasl_password = "hunter2"
        "#;
        let c: Config =
            Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(toml)).extract().unwrap();
        assert!(c.validate().is_ok(), "{:?}", c.validate());
        let k = c.kafka_settings().unwrap();
        let props: Vec<(String, &str)> = k.client.iter().collect();
        assert!(props.contains(&("sasl.password".into(), "hunter2")), "{props:?}");
        assert!(props.contains(&("security.protocol".into(), "sasl_ssl")), "{props:?}");
        let shown = format!("{c:#?}");
        assert!(!shown.contains("hunter2") && shown.contains("sasl.username"), "{shown}");
    }

    #[test]
    fn group_commit_settings_are_checked_against_the_pool() {
        let mut c = Config::default();
        c.group_commit.max_batch = 0;
        c.group_commit.concurrency = c.database.max_connections + 1;
        let errors = c.validate().unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with("group_commit.max_batch"), "{errors:?}");
        assert!(errors[1].starts_with("group_commit.concurrency"), "{errors:?}");
        c.group_commit.max_batch = 1;
        c.group_commit.concurrency = c.database.max_connections;
        assert!(c.validate().is_ok());
    }

    #[test]
    fn pipeline_and_kafka_settings_are_checked_together() {
        let mut c = Config::default();
        c.pipeline.outbox_retention_secs = 60;
        c.kafka_brokers = Some("127.0.0.1:9092".into());
        c.kafka.fetch_max_bytes = 65_536;
        let errors = c.validate().unwrap_err();
        assert!(errors.iter().any(|e| e.starts_with("pipeline.outbox_retention_secs")), "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("kafka.fetch_max_bytes")), "{errors:?}");
        assert!(errors.iter().any(|e| e.starts_with("pipeline.inbox_retention_secs")), "{errors:?}");
        c.pipeline.outbox_prune_interval_secs = 0; // never pruned: any retention will do
        c.kafka.fetch_max_bytes = 1_048_576;
        assert!(c.validate().is_ok());
    }
}
