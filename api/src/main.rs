//! `nodai`: parse the command line, start logging, run the server until
//! SIGTERM or Ctrl-C.

use clap::Parser;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

use api::config::{Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let Command::Serve(args) = cli.command;
    let config = match api::Config::from_args(args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("nodai: {e}");
            return ExitCode::from(2);
        }
    };
    api::server::init_logging(&config.log_filter);
    let shutdown = CancellationToken::new();
    tokio::spawn(api::server::cancel_on_signal(shutdown.clone()));
    match api::server::serve(config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "nodai cannot run");
            ExitCode::FAILURE
        }
    }
}
