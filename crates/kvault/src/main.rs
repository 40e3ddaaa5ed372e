//! `kvault`: the server (`kvault serve`) and the CLI for the same operations.
//!
//! - [`cli`]: the command-line shape.
//! - [`context`]: loads the configuration and builds the archive store and cluster clients.
//! - [`commands`]: one module per subcommand; each prints its JSON result on stdout.
//! - [`progress`]: the progress line long runs print on stderr.
//! - [`exit`]: how failures become messages and exit codes a CI pipeline can trust.

mod cli;
mod commands;
mod compose;
mod context;
mod exit;
mod keys;
mod progress;
mod reach;

/// jemalloc instead of glibc's malloc, for the whole process: with the unprefixed feature it
/// also serves librdkafka's C allocations (linked statically into this binary). A restore
/// allocates a message and its headers per record in one thread and frees them in
/// librdkafka's polling thread; glibc's per-thread arenas made that ~17% of a restore's CPU.
/// Measured on a 1M-record restore: 4.0 -> 2.9 CPU seconds, 2.7 -> 2.3-2.5 s wall, peak RSS
/// about the same (docs/performance.md).
#[cfg(all(target_os = "linux", not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use clap::Parser;

use crate::cli::{Cli, Command, LogFormat};

/// How long a finished command waits for Kafka clients to tear down before it exits.
const TEARDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return exit::CliError::internal(format!("cannot start runtime: {e}")).report(),
    };
    let serving = matches!(cli.command, Command::Serve);
    let outcome = runtime.block_on(commands::run(cli));
    if !serving {
        // A command is done once its result is printed: what may still run on the blocking
        // pool is the teardown of Kafka clients whose every record was settled (about 0.15 s
        // for a producer). The exit waits for it all the same: a client of a TLS cluster that
        // is still tearing down when the process exits would run under OpenSSL's exit-time
        // cleanup. The bound only guards against a teardown that hangs. The server shuts down
        // in full.
        runtime.shutdown_timeout(TEARDOWN_GRACE);
    }
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => err.report(),
    }
}

/// Logs go to stderr so stdout carries only the JSON result. The server logs at `info`, CLI
/// commands at `warn` (without librdkafka's own lines) unless RUST_LOG says otherwise.
fn init_logging(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    // librdkafka logs every failed connection attempt (hundreds a minute while a broker is
    // down); a command says what went wrong in its one error line instead. RUST_LOG shows them.
    let default_level = match cli.command {
        Command::Serve => "info",
        _ => "warn,librdkafka=off,rdkafka=off",
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // Colours only on a terminal: a log file or collector gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
