//! Raw-SQL baselines on the server's own PostgreSQL, measured in the same run as the
//! scenario they frame, so each result can be stated as a ratio to what the database
//! itself does on this machine: single-row INSERT transactions per second, the
//! conversation-list query through a prepared statement, the profile fan-out UPDATE, and
//! the binary COPY of the rows a new group writes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use tokio_postgres::Client as Pg;
use tokio_postgres::types::ToSql;

use crate::Stats;

/// A connection to `--database-url`, with the URL's TLS parameters (`sslmode`, …) as
/// hermet's own connections have them.
pub(crate) async fn connect(url: &str) -> anyhow::Result<Pg> {
    hermet_store::postgres::tls::connect(url).await.context("connecting to --database-url")
}

#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub concurrency: usize,
    pub operations: usize,
    pub per_sec: f64,
    pub latency: Stats,
}

/// Runs the prepared statement `sql` on `concurrency` connections for `duration`, each
/// connection one execution after another, with the parameters `params(worker, i)`.
async fn drive<P>(url: &str, sql: &str, concurrency: usize, duration: Duration, params: P) -> anyhow::Result<Throughput>
where
    P: Fn(usize, usize) -> Vec<Box<dyn ToSql + Sync + Send>> + Clone + Send + Sync + 'static,
{
    let mut conns = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let c = connect(url).await?;
        let stmt = c.prepare(sql).await?;
        conns.push((c, stmt));
    }
    let conns = Arc::new(conns);
    crate::sustained(concurrency, duration, move |w, i| {
        let (conns, p) = (conns.clone(), params(w, i));
        async move {
            let refs: Vec<&(dyn ToSql + Sync)> = p.iter().map(|b| b.as_ref() as &(dyn ToSql + Sync)).collect();
            let (c, stmt) = &conns[w];
            c.query(stmt, &refs).await?;
            Ok(())
        }
    })
    .await
}

/// `ANALYZE`s the database at `url`: the statistics autovacuum would have gathered.
pub async fn analyze(url: &str) -> anyhow::Result<()> {
    connect(url).await?.batch_execute("ANALYZE").await?;
    Ok(())
}

/// Single-row INSERT transactions (autocommit, durable as configured) per second on
/// `concurrency` connections: the database's own ceiling for small writes.
pub async fn insert_tps(url: &str, concurrency: usize, duration: Duration) -> anyhow::Result<Throughput> {
    let setup = connect(url).await?;
    setup
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS bench_insert (id BIGSERIAL PRIMARY KEY, channel_id BIGINT NOT NULL,
             sender_id BIGINT NOT NULL, content TEXT NOT NULL, created_at BIGINT NOT NULL)",
        )
        .await?;
    let sql = "INSERT INTO bench_insert (channel_id, sender_id, content, created_at) VALUES ($1, $2, $3, $4)";
    let r = drive(url, sql, concurrency, duration, |w, i| {
        vec![
            Box::new(w as i64) as Box<dyn ToSql + Sync + Send>,
            Box::new(i as i64),
            Box::new("hello, this is a benchmark message"),
            Box::new(0i64),
        ]
    })
    .await?;
    setup.batch_execute("DROP TABLE bench_insert").await?;
    Ok(r)
}

/// The conversation list's first page for `user` through a prepared statement, the
/// plainest form of the query (no auth, no HTTP, no total).
pub async fn list_query(url: &str, user: i64, concurrency: usize, duration: Duration) -> anyhow::Result<Throughput> {
    let sql = "SELECT * FROM user_conversation_view WHERE user_id = $1 AND closed_at IS NULL AND NOT is_hidden
               ORDER BY is_pinned DESC, last_active_at DESC, channel_id DESC LIMIT 20";
    drive(url, sql, concurrency, duration, move |_, _| vec![Box::new(user) as Box<dyn ToSql + Sync + Send>]).await
}

/// One profile fan-out by hand: the conversation rows whose peer is `user` (through the
/// reverse index) and the contact rows listing them, in one transaction.
pub async fn fanout_update(url: &str, user: i64, repeat: usize) -> anyhow::Result<Stats> {
    let mut c = connect(url).await?;
    let mut samples = Vec::with_capacity(repeat);
    for k in 0..repeat {
        let name = format!("baseline {k}");
        let t = Instant::now();
        let tx = c.transaction().await?;
        tx.execute(
            "UPDATE user_conversation_view v SET peer_nickname = $2, conversation_name = $2, version = v.version + 1
             FROM conversation_reverse_index r
             WHERE r.peer_user_id = $1 AND v.user_id = r.owner_user_id AND v.channel_id = r.channel_id",
            &[&user, &name],
        )
        .await?;
        tx.execute(
            "UPDATE user_contact_view v SET contact_nickname = $2, version = v.version + 1
             FROM contact_reverse_index r
             WHERE r.contact_user_id = $1 AND v.user_id = r.owner_user_id AND v.contact_id = $1",
            &[&user, &name],
        )
        .await?;
        tx.commit().await?;
        samples.push(t.elapsed());
    }
    Ok(Stats::of(&samples))
}

/// The database's own limit: binary COPY of the rows a group of `n` members writes
/// (members and conversation views, in read-diffusion form when the server made the
/// group a large one, as it did) in one committed transaction, into channel `channel`
/// (negative: no real channel has it). The caller removes them ([`remove_copied`]) after
/// its last repeat, so the tables grow between repeats as they do under the API.
pub async fn copy_group(
    pg: &mut tokio_postgres::Client,
    n: usize,
    channel: i64,
    read_diffusion: bool,
) -> anyhow::Result<Duration> {
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    use tokio_postgres::types::Type;

    let now = 1_800_000_000_000i64;
    let t = Instant::now();
    let tx = pg.transaction().await?;
    let sink = tx
        .copy_in("COPY channel_member (id, channel_id, user_id, role, group_nickname, joined_at, join_seq, created_at, updated_at) FROM STDIN BINARY")
        .await?;
    let types =
        [Type::INT8, Type::INT8, Type::INT8, Type::TEXT, Type::TEXT, Type::INT8, Type::INT8, Type::INT8, Type::INT8];
    let mut w = std::pin::pin!(BinaryCopyInWriter::new(sink, &types));
    for i in 0..n as i64 {
        let (id, user) = (-(-channel * 100_000 + i), -(i + 1));
        w.as_mut().write(&[&id, &channel, &user, &"member", &"", &now, &0i64, &now, &now]).await?;
    }
    w.finish().await?;
    let sink = tx
        .copy_in(
            "COPY user_conversation_view (user_id, channel_id, conversation_type, conversation_name, conversation_avatar,
             conversation_info_ver, last_active_at, opened_at, read_diffusion, created_at, updated_at) FROM STDIN BINARY",
        )
        .await?;
    let types = [
        Type::INT8,
        Type::INT8,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::INT8,
        Type::INT8,
        Type::INT8,
        Type::BOOL,
        Type::INT8,
        Type::INT8,
    ];
    let mut w = std::pin::pin!(BinaryCopyInWriter::new(sink, &types));
    for i in 0..n as i64 {
        let user = -(i + 1);
        w.as_mut()
            .write(&[&user, &channel, &"group", &"bench", &"", &1i64, &now, &now, &read_diffusion, &now, &now])
            .await?;
    }
    w.finish().await?;
    tx.commit().await?;
    Ok(t.elapsed())
}

/// Removes the rows [`copy_group`] wrote into `channels`.
pub async fn remove_copied(pg: &tokio_postgres::Client, channels: &[i64]) -> anyhow::Result<()> {
    pg.execute("DELETE FROM channel_member WHERE channel_id = ANY($1)", &[&channels]).await?;
    pg.execute("DELETE FROM user_conversation_view WHERE channel_id = ANY($1)", &[&channels]).await?;
    Ok(())
}
