//! One module per subcommand of `pipeline` (and per stage of `pipeline run`).

pub mod extract;
pub mod inspect;
pub mod run;
