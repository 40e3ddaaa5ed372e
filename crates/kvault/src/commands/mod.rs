//! One module per subcommand. Each prints its documented JSON result on stdout.

mod archive;
mod backup;
pub mod cat;
mod cluster_info;
mod drain;
mod jobs;
mod keys;
mod migrate;
mod restore;
mod sample;
mod schedule;
mod serve;
mod token;

use serde::Serialize;

use crate::cli::{Cli, Command};
use crate::context::Context;
use crate::exit::CliError;
use crate::progress::Display;

pub async fn run(cli: Cli) -> Result<(), CliError> {
    if let Command::Completions(args) = &cli.command {
        // Needs no configuration: it runs at install time.
        let mut command = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(args.shell, &mut command, "kvault", &mut std::io::stdout());
        return Ok(());
    }
    let context = Context::load(cli.config.as_deref())?
        .with_ad_hoc(cli.ad_hoc)
        .with_progress(Display::detect(cli.quiet));
    match cli.command {
        Command::Serve => serve::run(context).await,
        Command::Backup(args) => backup::run(&context, args).await,
        Command::Restore(args) => restore::run(&context, args).await,
        Command::Verify(args) => archive::verify(&context, args).await,
        Command::List(args) => archive::list(&context, args).await,
        Command::Show(args) => archive::show(&context, args).await,
        Command::Cat(args) => cat::run(&context, args).await,
        Command::Migrate(args) => migrate::run(&context, args).await,
        Command::Drain(args) => drain::run(&context, args).await,
        Command::Schedule(args) => schedule::run(&context, args).await,
        Command::Jobs(args) => jobs::run(&context, args).await,
        Command::Topics(args) => cluster_info::topics(&context, args).await,
        Command::Groups(args) => cluster_info::groups(&context, args).await,
        Command::SampleData(args) => sample::run(&context, args).await,
        Command::Keys(args) => keys::run(&context, args).await,
        Command::Token(args) => token::run(&context, args),
        Command::Completions(_) => Ok(()),
    }
}

/// Pretty JSON on stdout: what pipelines parse and people read.
fn print_json(value: &impl Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::internal(format!("cannot encode result: {e}")))?;
    println!("{text}");
    Ok(())
}
