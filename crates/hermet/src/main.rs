use std::process::ExitCode;

use clap::Parser;
use hermet::cli::{BenchScenario, Cli, Command, DlqCommand};
use hermet::commands;
use hermet::config::Config;
use hermet::startup::{self, Application};
use hermet::telemetry;
use tokio_util::sync::CancellationToken;

/// jemalloc instead of glibc's malloc: with 10,000 idle WebSocket connections the
/// server stays at ~190 MB resident against ~237 MB with glibc's per-thread arenas
/// (docs/BENCHMARKS.md, "Realtime fan-out and idle connections"; mimalloc did worse).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hermet: invalid configuration:\n{e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.log_format, &config.log_level);
    // Blocking threads run SQLite statements (at most one per pooled connection) and
    // password hashing (CPU-bound): tokio's default of 512 only adds idle threads, each
    // with a stack and an allocator cache (measured: 133 threads under 10,000 WebSocket
    // handshakes on SQLite).
    let runtime = match tokio::runtime::Builder::new_multi_thread().max_blocking_threads(64).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hermet: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command.unwrap_or(Command::Serve), config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "hermet failed");
            eprintln!("hermet: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            tracing::info!(config = ?config, "starting");
            let app = Application::build(config).await?;
            let shutdown = CancellationToken::new();
            startup::cancel_on_signal(shutdown.clone());
            app.run_until_stopped(shutdown).await
        }
        Command::Project => {
            let shutdown = CancellationToken::new();
            startup::cancel_on_signal(shutdown.clone());
            let roles = startup::Roles { relay: false, ..startup::Roles::ALL };
            startup::run_roles(&config, roles, shutdown).await
        }
        Command::Relay => {
            let shutdown = CancellationToken::new();
            startup::cancel_on_signal(shutdown.clone());
            startup::run_roles(&config, startup::Roles { relay: true, ..startup::Roles::NONE }, shutdown).await
        }
        Command::Dlq { action } => {
            let action = match action {
                DlqCommand::List { status, after, limit } => commands::DlqAction::List { status, after, limit },
                DlqCommand::Show { id } => commands::DlqAction::Show(id),
                DlqCommand::Replay { id, payload } => commands::DlqAction::Replay { id, payload },
                DlqCommand::Discard { id } => commands::DlqAction::Discard(id),
            };
            let show = matches!(action, commands::DlqAction::Show(_));
            let letters = commands::dlq(&config, action).await?;
            for d in &letters {
                if show {
                    println!("{}", serde_json::to_string_pretty(d)?);
                } else {
                    println!(
                        "{:>6} {:<9} {:<26} {:<28} {:<40} {}",
                        d.id, d.status, d.consumer, d.event_type, d.source, d.error
                    );
                }
            }
            if letters.is_empty() {
                eprintln!("no dead letters");
            }
            Ok(())
        }
        Command::Compensate { lookback_secs, grace_secs } => {
            let now = hermet_domain::time::now_ms();
            let since = now - (lookback_secs * 1000) as i64;
            let until = now - (grace_secs * 1000) as i64;
            let r = commands::compensate(&config, since, until).await?;
            println!("{}", serde_json::to_string_pretty(&r)?);
            Ok(())
        }
        Command::Replay { consumer, from, no_wait } => {
            use hermet_app::pipeline::ReplayFrom;
            let from = if from == "earliest" {
                ReplayFrom::Earliest
            } else if let Some((t, p)) = from.split_once(':') {
                ReplayFrom::Cursor((t.parse()?, p.parse()?))
            } else {
                ReplayFrom::Time(from.parse().map_err(|_| anyhow::anyhow!("--from: earliest, TX:POSITION or Unix ms"))?)
            };
            match commands::replay(&config, &consumer, from).await? {
                commands::ReplayedTo::Log(at) => println!("{consumer} now starts after log cursor {}:{}", at.0, at.1),
                commands::ReplayedTo::Kafka(offsets) => {
                    for (name, offset) in offsets {
                        println!("{name} now starts at offset {offset}");
                    }
                }
            }
            if !no_wait {
                let start = std::time::Instant::now();
                let stalled = std::cell::Cell::new((i64::MAX, std::time::Instant::now()));
                commands::follow_consumer(&config, &consumer, |left| {
                    eprint!("\r{consumer}: {left} events left ({:.0} s)   ", start.elapsed().as_secs_f64());
                    let (last, since) = stalled.get();
                    if left < last {
                        stalled.set((left, std::time::Instant::now()));
                    } else if since.elapsed() > std::time::Duration::from_secs(10) {
                        eprint!("\n  no progress for 10 s: is {consumer} running (hermet serve or hermet project)?\n");
                        stalled.set((left, std::time::Instant::now()));
                    }
                })
                .await?;
                eprintln!("\n{consumer} has caught up");
            }
            Ok(())
        }
        Command::PruneOutbox => {
            let n = commands::prune_outbox(&config).await?;
            println!("pruned {n} outbox rows");
            Ok(())
        }
        Command::Migrate => {
            let report = commands::migrate(&config).await?;
            if report.applied.is_empty() {
                println!("database is up to date");
            } else {
                for m in report.applied {
                    println!("applied {m}");
                }
            }
            Ok(())
        }
        Command::Config => {
            println!("{config:#?}");
            Ok(())
        }
        Command::CheckConsistency { repair, user, show } => {
            let report = commands::check_consistency(&config, repair, user).await?;
            for f in report.findings.iter().take(show) {
                println!("{} {} {}", f.model, f.kind, f.key);
                for (field, expected, stored) in &f.fields {
                    println!("    {field}: expected {expected}, stored {stored}");
                }
            }
            println!(
                "owners {} rows {} missing {} extra {} mismatched {} repaired {} consistency {:.4}%",
                report.owners,
                report.rows,
                report.missing(),
                report.extra(),
                report.mismatched(),
                report.repaired,
                report.rate()
            );
            if report.findings.is_empty() || repair {
                Ok(())
            } else {
                anyhow::bail!("read models are inconsistent; run with --repair to fix them")
            }
        }
        Command::Bench { scenario: BenchScenario::Baseline { database_url, concurrency, seconds }, json, .. } => {
            let mut rows = Vec::new();
            println!("{:>11} {:>12} {:>10} {:>10}", "concurrency", "INSERT tx/s", "p50 ms", "p99 ms");
            for c in concurrency {
                let d = std::time::Duration::from_secs_f64(seconds);
                let r = hermet_bench::baseline::insert_tps(&database_url, c, d).await?;
                println!("{:>11} {:>12.0} {:>10.2} {:>10.2}", c, r.per_sec, r.latency.p50_ms, r.latency.p99_ms);
                rows.push(r);
            }
            write_json(json, &serde_json::to_value(&rows)?)
        }
        Command::Bench {
            scenario: BenchScenario::Search { messages, groups, members_per_group, member_of, runs },
            json,
            ..
        } => {
            let bench = hermet::search_bench::SearchBench { messages, groups, members_per_group, member_of, runs };
            let r = commands::bench_search(&config, bench, |m| eprintln!("  {m}")).await?;
            println!("{:>44} {:>12} {:>10} {:>10} {:>6}", "query", "scope", "p50 ms", "p99 ms", "found");
            for t in &r.queries {
                let scope = if t.one_channel { "one channel" } else { "all mine" };
                println!("{:>44} {:>12} {:>10.2} {:>10.2} {:>6}", t.kind, scope, t.p50_ms, t.p99_ms, t.first_page);
            }
            write_json(json, &serde_json::to_value(&r)?)
        }
        Command::Bench { scenario: BenchScenario::Pipeline { messages, groups, concurrency }, json, .. } => {
            let r = commands::bench_pipeline(&config, messages, groups, concurrency, |m| eprintln!("  {m}")).await?;
            println!(
                "{:>9} {:>9} {:>8} {:>16} {:>20}",
                "backend", "transport", "events", "relay events/s", "projector events/s"
            );
            let relay = r.relay.as_ref().map(|t| format!("{:.0}", t.events_per_sec)).unwrap_or_else(|| "-".into());
            println!(
                "{:>9} {:>9} {:>8} {:>16} {:>20.0}",
                r.backend, r.transport, r.backlog_events, relay, r.projector.events_per_sec
            );
            write_json(json, &serde_json::to_value(&r)?)
        }
        Command::Bench {
            scenario: BenchScenario::Faults { faults, outage_secs, rate, senders, database_url, markdown },
            repeat,
            json,
            ..
        } => {
            let plans = faults
                .iter()
                .map(|f| {
                    let mut plan = hermet_bench::faults::Plan::new(hermet_bench::faults::Fault::parse(f)?);
                    if let Some(secs) = outage_secs.filter(|_| !plan.outage.is_zero()) {
                        plan.outage = std::time::Duration::from_secs_f64(secs);
                    }
                    plan.rate = rate;
                    plan.senders = senders.max(1);
                    anyhow::Ok(plan)
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let tools = hermet_bench::faults::Tools { hermet: std::env::current_exe()? };
            let runs = hermet_bench::faults::bench(&plans, repeat, &tools, &database_url).await?;
            let tables = hermet_bench::faults::markdown(&runs);
            println!("{tables}");
            if let Some(path) = markdown {
                std::fs::write(&path, &tables)?;
                eprintln!("wrote {}", path.display());
            }
            write_json(json, &serde_json::to_value(&runs)?)
        }
        Command::Bench { scenario, server, admin_account, admin_password, repeat, seed, json } => {
            bench(scenario, &server, &admin_account, &admin_password, repeat, seed, json).await
        }
        Command::RebuildViews { user } => {
            let n = commands::rebuild_views(&config, user).await?;
            println!("rebuilt the read models of {n} users");
            Ok(())
        }
    }
}

async fn bench(
    scenario: BenchScenario,
    server: &str,
    admin_account: &str,
    admin_password: &str,
    repeat: usize,
    seed: u64,
    json: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let client = hermet_bench::Client::connect(server, admin_account, admin_password, seed).await?;
    let value = match scenario {
        BenchScenario::CreateGroup { members, database_url } => {
            let rows = hermet_bench::create_group(&client, &members, repeat, database_url.as_deref()).await?;
            println!("{:>8} {:>10} {:>10} {:>14} {:>8}", "members", "p50 ms", "p99 ms", "COPY p50 ms", "ratio");
            for r in &rows {
                let (b, ratio) = match (&r.baseline_copy, r.ratio) {
                    (Some(b), Some(x)) => (format!("{:.2}", b.p50_ms), format!("{x:.2}")),
                    _ => ("-".into(), "-".into()),
                };
                println!("{:>8} {:>10.2} {:>10.2} {:>14} {:>8}", r.members, r.api.p50_ms, r.api.p99_ms, b, ratio);
            }
            serde_json::to_value(&rows)?
        }
        BenchScenario::Send { members, messages, concurrency, settle_secs } => {
            let settle = std::time::Duration::from_secs(settle_secs);
            let rows = hermet_bench::send(&client, &members, messages, concurrency, settle).await?;
            println!(
                "{:>8} {:>6} {:>11} {:>9} {:>10} {:>10} {:>10} {:>28}",
                "members",
                "large",
                "concurrency",
                "messages",
                "p50 ms",
                "p99 ms",
                "msg/s",
                "CPU µs/msg: db, server, bench"
            );
            for r in &rows {
                let cpu = hermet_bench::CpuPerMessage::column(r.cpu_us_per_message);
                println!(
                    "{:>8} {:>6} {:>11} {:>9} {:>10.2} {:>10.2} {:>10.1} {:>28}",
                    r.members,
                    r.large_group,
                    r.concurrency,
                    r.messages,
                    r.api.p50_ms,
                    r.api.p99_ms,
                    r.messages_per_sec,
                    cpu
                );
            }
            serde_json::to_value(&rows)?
        }
        BenchScenario::ConversationList { conversations, groups, group_size, concurrency, seconds, database_url } => {
            let r = hermet_bench::list::conversation_list(
                &client,
                &conversations,
                groups,
                group_size,
                &concurrency,
                seconds,
                database_url.as_deref(),
            )
            .await?;
            println!(
                "dataset: {} groups of {} ({} conversation rows), built in {:.0} s",
                r.groups,
                r.group_size,
                r.dataset_rows.map(|n| n.to_string()).unwrap_or_else(|| "?".into()),
                r.setup_secs
            );
            println!(
                "{:>13} {:>11} {:>10} {:>10} {:>10} {:>10} {:>8} {:>10}",
                "conversations", "concurrency", "p50 ms", "p99 ms", "req/s", "SQL q/s", "ratio", "cache hit"
            );
            for row in &r.rows {
                let (b, ratio) = match (&row.baseline, row.throughput_ratio) {
                    (Some(b), Some(x)) => (format!("{:.0}", b.per_sec), format!("{x:.2}")),
                    _ => ("-".into(), "-".into()),
                };
                let hit = row.cache_hit_rate.map(|h| format!("{:.1}%", h * 100.0)).unwrap_or_else(|| "-".into());
                println!(
                    "{:>13} {:>11} {:>10.2} {:>10.2} {:>10.0} {:>10} {:>8} {:>10}",
                    row.conversations,
                    row.api.concurrency,
                    row.api.latency.p50_ms,
                    row.api.latency.p99_ms,
                    row.api.per_sec,
                    b,
                    ratio,
                    hit
                );
            }
            serde_json::to_value(&r)?
        }
        BenchScenario::ProfileFanout { peers, database_url } => {
            let rows = hermet_bench::list::profile_fanout(&client, &peers, repeat, database_url.as_deref()).await?;
            println!(
                "{:>6} {:>12} {:>16} {:>18} {:>8}",
                "peers", "API p50 ms", "visible p50 ms", "UPDATE p50 ms", "ratio"
            );
            for r in &rows {
                let (b, ratio) = match (&r.baseline_update, r.ratio) {
                    (Some(b), Some(x)) => (format!("{:.2}", b.p50_ms), format!("{x:.2}")),
                    _ => ("-".into(), "-".into()),
                };
                println!("{:>6} {:>12.2} {:>16.2} {:>18} {:>8}", r.peers, r.api.p50_ms, r.visible.p50_ms, b, ratio);
            }
            serde_json::to_value(&rows)?
        }
        BenchScenario::SyncLag { rate, seconds, groups, max_in_flight } => {
            let r = hermet_bench::sync_lag(&client, rate, seconds, groups, max_in_flight).await?;
            println!(
                "target {:.0} events/s, achieved {:.0} events/s; send p50 {:.2} ms p99 {:.2} ms",
                r.target_events_per_sec, r.achieved_events_per_sec, r.api.p50_ms, r.api.p99_ms
            );
            println!("{:>28} {:>8} {:>12} {:>12}", "consumer", "events", "lag p50 ms", "lag p99 ms");
            for l in &r.lag {
                println!("{:>28} {:>8.0} {:>12.2} {:>12.2}", l.consumer, l.events, l.p50_ms, l.p99_ms);
            }
            serde_json::to_value(&r)?
        }
        BenchScenario::Fanout { members, messages, warmup } => {
            let rows = hermet_bench::fanout::fanout(&client, &members, messages, warmup).await?;
            println!(
                "{:>8} {:>9} {:>12} {:>12} {:>12} {:>14} {:>14} {:>14} {:>30}",
                "members",
                "messages",
                "all p50 ms",
                "all p99 ms",
                "all max ms",
                "deliv p50 ms",
                "deliv p99 ms",
                "deliveries/s",
                "CPU µs/msg: db, server, bench"
            );
            for r in &rows {
                let cpu = hermet_bench::CpuPerMessage::column(r.cpu_us_per_message);
                println!(
                    "{:>8} {:>9} {:>12.2} {:>12.2} {:>12.2} {:>14.2} {:>14.2} {:>14.0} {:>30}",
                    r.members,
                    r.messages,
                    r.all_members.p50_ms,
                    r.all_members.p99_ms,
                    r.all_members.max_ms,
                    r.delivery.p50_ms,
                    r.delivery.p99_ms,
                    r.deliveries_per_sec,
                    cpu
                );
            }
            serde_json::to_value(&rows)?
        }
        BenchScenario::Abuse { samples, flood } => {
            let r = hermet_bench::abuse::abuse(&client, samples, flood).await?;
            println!("{:>24} {:>10} {:>10} {:>10}", "sign-in", "p50 ms", "p99 ms", "mean ms");
            for (name, s) in [
                ("unknown account", &r.sign_in_unknown_account),
                ("known, wrong password", &r.sign_in_wrong_password),
                ("known, right password", &r.sign_in_right_password),
            ] {
                println!("{name:>24} {:>10.2} {:>10.2} {:>10.2}", s.p50_ms, s.p99_ms, s.mean_ms);
            }
            println!(
                "http_requests_total series: {} before, {} after {} made-up requests; /metrics {} bytes",
                r.series_before, r.series_after, r.flood_requests, r.metrics_bytes_after
            );
            serde_json::to_value(&r)?
        }
        BenchScenario::Idle { connections, server_pid, hold_secs } => {
            let r = hermet_bench::fanout::idle(&client, connections, server_pid, hold_secs).await?;
            println!(
                "{} idle connections: server RSS {:.1} MB → {:.1} MB ({:.1} KB per connection)",
                r.connections, r.rss_before_mb, r.rss_after_mb, r.per_connection_kb
            );
            serde_json::to_value(&r)?
        }
        BenchScenario::Pipeline { .. }
        | BenchScenario::Search { .. }
        | BenchScenario::Baseline { .. }
        | BenchScenario::Faults { .. } => {
            unreachable!("runs without a server")
        }
    };
    write_json(json, &value)
}

fn write_json(json: Option<std::path::PathBuf>, value: &serde_json::Value) -> anyhow::Result<()> {
    if let Some(path) = json {
        std::fs::write(&path, serde_json::to_vec_pretty(value)?)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
