//! The `fixit` command line: run the demo city, check a node config.

mod demo;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "fixit",
    version,
    about = "fixit-edge: an edge runtime for local-service marketplaces"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node on a temporary data dir with a simulated city, printing a live summary.
    Demo(demo::DemoArgs),
    /// Validate a node config file and print it back resolved.
    CheckConfig {
        /// The TOML file.
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Demo(args) => runtime.block_on(demo::run(args)),
        Command::CheckConfig { config } => {
            let config = fixit_actors::config::NodeConfig::load(&config)?;
            println!("{config:#?}");
            Ok(())
        }
    }
}
