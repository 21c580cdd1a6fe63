//! `pipeline`: the command-line front of attn-spectra.
//!
//! This file owns the process: it parses arguments, dispatches to one module per subcommand,
//! prints errors with their causes, and chooses the exit code (0 success, 1 a failed run,
//! 2 bad usage or a bad query).

mod backend;
mod cli;
mod commands;
mod progress;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Inspect(args) => commands::inspect::run(args),
        Command::Run(args) => commands::run::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(1)
        }
    }
}
