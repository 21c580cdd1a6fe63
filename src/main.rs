//! `pipeline`: the command-line front of attn-spectra.
//!
//! This file owns the process: it parses arguments, dispatches to one module per subcommand,
//! prints errors with their causes, and chooses the exit code (0 success, 1 a failed run,
//! 2 bad usage or a bad query).

mod backend;
mod cli;
mod commands;
mod context;
mod progress;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    one_malloc_arena();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Demo(args) => commands::demo::run(args),
        Command::Inspect(args) => commands::inspect::run(args),
        Command::Run(args) => commands::run::run(args),
        Command::Plan(args) => commands::plan::run(args),
        Command::Sql(args) => commands::sql::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            // A query DataFusion rejected is bad input, like bad usage.
            let bad_query = err
                .downcast_ref::<attn_spectra_sql::SqlError>()
                .is_some_and(|e| e.is_query_error());
            // So is a demo directory holding other files where the demo's go.
            let demo_clash = matches!(
                err.downcast_ref::<attn_spectra_demo::DemoError>(),
                Some(attn_spectra_demo::DemoError::Conflict { .. })
            );
            // And a flag that does not fit the command (`--shard` with a stage it cannot cut).
            let usage = err.downcast_ref::<commands::Usage>().is_some();
            // And a dataset location that cannot be used: an unknown URL scheme, missing
            // credentials, a bucket that does not exist.
            let bad_location = err
                .downcast_ref::<attn_spectra::dataset::LocationError>()
                .is_some_and(|e| e.is_usage());
            ExitCode::from(if bad_query || demo_clash || usage || bad_location {
                2
            } else {
                1
            })
        }
    }
}

/// One malloc arena for the whole process (glibc). The extract allocates each layer's
/// matrices (megabytes each) on its reader thread and frees them on the analysis threads,
/// while the engine's threads allocate their own scratch; with glibc's default of an arena
/// per thread, every arena keeps its own high-water mark: 400-500 MB peak RSS on the
/// seven-model benchmark (`scripts/bench_extract.py`) against 265-320 MB with one arena, at
/// the same speed (the allocations are few and large, so one lock is not contended).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn one_malloc_arena() {
    // SAFETY: `mallopt` sets a tunable of the C allocator and nothing else; it runs first in
    // `main`, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn one_malloc_arena() {}
