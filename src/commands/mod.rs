//! One module per subcommand of `pipeline` (and per stage of `pipeline run`).

pub mod aggregate;
pub mod demo;
pub mod extract;
pub mod fetch;
pub mod inspect;
pub mod plan;
pub mod report;
pub mod run;
pub mod sql;
pub mod test;

/// A usage error found after parsing (a flag that does not fit the rest of the command
/// line): exit code 2, like clap's own.
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}
