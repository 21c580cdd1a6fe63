//! One module per subcommand of `pipeline`.

pub mod inspect;
