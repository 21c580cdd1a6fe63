//! One module per subcommand of `pipeline` (and per stage of `pipeline run`).

pub mod aggregate;
pub mod demo;
pub mod extract;
pub mod fetch;
pub mod inspect;
pub mod report;
pub mod run;
pub mod sql;
pub mod test;
