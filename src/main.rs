//! The `fixit` command line (subcommands arrive with the client-access issue).

fn main() {}
