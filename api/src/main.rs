//! `nodai`: parse the command line, start logging, run the server until
//! SIGTERM or Ctrl-C; or `nodai check` a data dir.

use clap::Parser;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

use api::config::{Cli, Command};

// glibc's malloc took an eighth of the CPU at high ingest rates, much of
// it waiting on its arena locks between the request tasks, the fold and
// the archiver; mimalloc keeps a heap per thread (BENCHMARKS.md, "Ingest").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        Command::Serve(args) => *args,
        Command::Check(args) => return check(&args),
    };
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

/// `nodai check`: prints what it found; exit 0 when all is well, 1 when
/// something is wrong, 2 when it could not look.
fn check(args: &api::config::CheckArgs) -> ExitCode {
    match api::check::run(&args.data_dir, args.repair) {
        Ok(found) => {
            for line in &found.lines {
                println!("{line}");
            }
            match found.problems {
                0 => ExitCode::SUCCESS,
                n => {
                    println!("{n} problem(s)");
                    ExitCode::from(1)
                }
            }
        }
        Err(error) => {
            eprintln!("nodai check: {error}");
            ExitCode::from(2)
        }
    }
}
