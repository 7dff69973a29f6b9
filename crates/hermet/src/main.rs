use std::process::ExitCode;

use clap::Parser;
use hermet::cli::{Cli, Command};
use hermet::config::Config;
use hermet::startup::{self, Application};
use hermet::telemetry;
use tokio_util::sync::CancellationToken;

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
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
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
        Command::Migrate => {
            let report = startup::migrate(&config).await?;
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
    }
}
