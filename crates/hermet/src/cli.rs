//! Command line: one binary, roles chosen by subcommand.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "hermet", version, about = "hermet instant-messaging server")]
pub struct Cli {
    /// TOML configuration file (default: ./hermet.toml if present).
    #[arg(long, global = true, env = "HERMET_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum BenchScenario {
    /// Group creation latency per size; with --database-url also the raw COPY of the same rows.
    CreateGroup {
        #[arg(long, value_delimiter = ',', default_value = "10,100,500,1000,5000,10000")]
        members: Vec<usize>,
        /// PostgreSQL to measure the baseline on (the server's database).
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Message sends per group size (2: a one-to-one chat): API latency and messages/s
    /// with --concurrency senders at once.
    Send {
        #[arg(long, value_delimiter = ',', default_value = "2,10,500,5000,50000")]
        members: Vec<usize>,
        #[arg(long, default_value_t = 300)]
        messages: usize,
        /// Senders at once: group members sending to their group, or for 1:1 that many pairs.
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// Seconds to wait between setting up every channel and measuring.
        #[arg(long, default_value_t = 20)]
        settle_secs: u64,
    },
    /// Conversation-list reads on a dataset of --groups × --group-size conversation rows
    /// (built through the API): users with --conversations conversations, at each
    /// --concurrency; with --database-url also the same query through a prepared statement.
    ConversationList {
        #[arg(long, value_delimiter = ',', default_value = "50,500,5000")]
        conversations: Vec<usize>,
        #[arg(long, default_value_t = 10_000)]
        groups: usize,
        #[arg(long, default_value_t = 100)]
        group_size: usize,
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        concurrency: Vec<usize>,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        #[arg(long)]
        database_url: Option<String>,
    },
    /// A user who is the peer in N one-to-one conversations renames: API time and time
    /// until a friend's list shows it; with --database-url also the fan-out UPDATE by hand.
    ProfileFanout {
        #[arg(long, value_delimiter = ',', default_value = "100,1000,5000")]
        peers: Vec<usize>,
        #[arg(long)]
        database_url: Option<String>,
    },
    /// The database's own limits on the server's PostgreSQL: single-row INSERT
    /// transactions per second at each --concurrency (what 1:1 messaging is compared with).
    Baseline {
        #[arg(long)]
        database_url: String,
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        concurrency: Vec<usize>,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
    /// Async mode: commit → read model updated (the server's sync_lag_seconds) while
    /// messages arrive at a steady rate.
    SyncLag {
        /// Messages (one event each) per second.
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        #[arg(long, default_value_t = 20.0)]
        seconds: f64,
        /// Groups of three the messages are spread over.
        #[arg(long, default_value_t = 100)]
        groups: usize,
        /// Sends in flight at most (beyond it the rate falls behind, and the report says so).
        #[arg(long, default_value_t = 256)]
        max_in_flight: usize,
    },
    /// Real WebSocket clients: N members online, one sends; latency until every member
    /// has the message, and deliveries per second.
    Fanout {
        #[arg(long, value_delimiter = ',', default_value = "100,500,1000,5000")]
        members: Vec<usize>,
        /// Messages per group size (each waited for by every member).
        #[arg(long, default_value_t = 50)]
        messages: usize,
        /// Messages sent and waited for first, not measured (each connection of the
        /// server's pools prepares its statements on first use).
        #[arg(long, default_value_t = 5)]
        warmup: usize,
    },
    /// What a hostile client learns or costs: sign-in timings (unknown account, wrong
    /// password, right password; medians should not tell the first two apart), then a
    /// flood of made-up methods and paths and the HTTP metric series it left. Run the
    /// server with rate limits off.
    Abuse {
        /// Sign-ins of each kind.
        #[arg(long, default_value_t = 100)]
        samples: usize,
        /// Requests with made-up methods.
        #[arg(long, default_value_t = 5_000)]
        flood: usize,
    },
    /// The server's resident memory with many idle authenticated WebSocket connections
    /// (reads /proc/PID/status of the server: run it on the same machine).
    Idle {
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// The server's process id.
        #[arg(long)]
        server_pid: u32,
        /// Keep the connections open this long after measuring (to inspect the server).
        #[arg(long, default_value_t = 0)]
        hold_secs: u64,
    },
    /// Message search on a large history, in-process on the configured database (a fresh
    /// one): groups and `--messages` text messages in four scripts written through the
    /// store's batch append, then each kind of query timed. Takes no --server.
    Search {
        #[arg(long, default_value_t = 1_000_000)]
        messages: usize,
        #[arg(long, default_value_t = 1_000)]
        groups: usize,
        #[arg(long, default_value_t = 20)]
        members_per_group: usize,
        /// Groups the searcher is a member of.
        #[arg(long, default_value_t = 100)]
        member_of: usize,
        /// Times each query runs.
        #[arg(long, default_value_t = 30)]
        runs: usize,
    },
    /// The pipeline's own throughput, in-process on the configured database (a fresh one)
    /// and transport: the Kafka relay publishing a backlog, the conversation projector
    /// draining it. Takes no --server.
    Pipeline {
        /// Messages in the backlog (one event each).
        #[arg(long, default_value_t = 20_000)]
        messages: usize,
        /// Groups of three the messages are spread over.
        #[arg(long, default_value_t = 100)]
        groups: usize,
        /// Concurrent senders writing the backlog.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// Dependency faults under sustained load (docs/RELIABILITY.md): each run starts its
    /// own nodes of this binary, redis-server, tansu or a PostgreSQL cluster on loopback,
    /// injects the fault, measures recovery and checks that nothing was lost, doubled or
    /// reordered. --repeat runs per fault. Takes no --server.
    Faults {
        /// Which faults: redis, broker, database, restart, kill (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "redis,broker,database,restart,kill")]
        faults: Vec<String>,
        /// How long the dependency stays away (default: redis 20 s, broker 60 s, database 20 s).
        #[arg(long)]
        outage_secs: Option<f64>,
        /// Messages per second, all senders together.
        #[arg(long, default_value_t = 30.0)]
        rate: f64,
        /// Sending clients.
        #[arg(long, default_value_t = 3)]
        senders: usize,
        /// A PostgreSQL server where each run gets a database of its own (created and
        /// dropped); the database fault starts a cluster of its own instead.
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
        database_url: String,
        /// Write the tables (markdown) to this file, e.g. docs/RELIABILITY.md's results.
        #[arg(long)]
        markdown: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters, oldest first.
    List {
        /// pending, replay, replayed or discarded (default: all).
        #[arg(long, default_value = "")]
        status: String,
        /// Start after this id.
        #[arg(long, default_value_t = 0)]
        after: i64,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show one dead letter with its payload and error.
    Show { id: i64 },
    /// Ask its consumer to apply it again (optionally with a corrected JSON payload).
    Replay {
        id: i64,
        #[arg(long)]
        payload: Option<String>,
    },
    /// Give up on it for good.
    Discard { id: i64 },
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every role in one process (the default): the HTTP API, the outbox relay (with
    /// Kafka), the consumers (notifier; read-model projectors in async mode), the
    /// compensation scanner.
    Serve,
    /// Run only the consumers (and the compensation scanner), without HTTP, until
    /// SIGTERM/SIGINT.
    Project,
    /// Run only the outbox relay to Kafka, until SIGTERM/SIGINT.
    Relay,
    /// Rewind (or move) a consumer; the running consumer re-consumes from there, and this
    /// command shows its progress until it has caught up.
    Replay {
        /// conversation-view-updater, contact-view-updater or notifier.
        #[arg(long)]
        consumer: String,
        /// `earliest`, a log cursor `TX:POSITION` (embedded log), or a Unix time in ms.
        #[arg(long, default_value = "earliest")]
        from: String,
        /// Move the offsets and return, without following the consumer's progress.
        #[arg(long)]
        no_wait: bool,
    },
    /// Delete outbox rows older than pipeline.outbox_retention_secs that every consumer
    /// has passed (embedded) or that were published (Kafka); the upkeep does this every
    /// pipeline.outbox_prune_interval_secs.
    PruneOutbox,
    /// The dead-letter store: events a consumer gave up on.
    Dlq {
        #[command(subcommand)]
        action: DlqCommand,
    },
    /// Scan recently created groups for missing events or read-model rows and re-emit
    /// their events (the scanner `serve` runs periodically).
    Compensate {
        /// How far back to look, in seconds.
        #[arg(long, default_value_t = 3600)]
        lookback_secs: u64,
        /// Leave changes younger than this to the pipeline, in seconds.
        #[arg(long, default_value_t = 60)]
        grace_secs: u64,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the effective configuration (secrets redacted) and exit.
    Config,
    /// Recompute every read-model row from the write side and report missing, extra and
    /// mismatched rows field by field; exits 1 when anything is inconsistent.
    CheckConsistency {
        /// Rewrite the inconsistent rows from the write side.
        #[arg(long)]
        repair: bool,
        /// Check only this user's rows.
        #[arg(long)]
        user: Option<i64>,
        /// Print at most this many findings.
        #[arg(long, default_value_t = 50)]
        show: usize,
    },
    /// Benchmarks against a running server (see docs/BENCHMARKS.md).
    Bench {
        #[command(subcommand)]
        scenario: BenchScenario,
        /// The server to drive.
        #[arg(long, global = true, default_value = "http://127.0.0.1:8080")]
        server: String,
        /// An account listed in the server's admin_accounts (signed up if missing).
        #[arg(long, global = true, default_value = "bench-admin@bench.hermet")]
        admin_account: String,
        #[arg(long, global = true, default_value = "bench-admin-password")]
        admin_password: String,
        /// Repeats per measurement.
        #[arg(long, global = true, default_value_t = 5)]
        repeat: usize,
        /// Seed of the workload (names and order).
        #[arg(long, global = true, default_value_t = 42)]
        seed: u64,
        /// Also write the results as JSON here.
        #[arg(long, global = true)]
        json: Option<PathBuf>,
    },
    /// Rebuild the read models (conversation and contact views, reverse indexes) from
    /// the write side.
    RebuildViews {
        /// Rebuild only this user's rows.
        #[arg(long)]
        user: Option<i64>,
    },
}
