//! The `fixit` command line: run a node, the demo city, issue tokens, call a node.

mod demo;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use fixit_actors::clock::SystemClock;
use fixit_actors::config::NodeConfig;
use fixit_edge::auth::{now_s, Principal, Role, TokenKey};
use std::path::PathBuf;
use std::sync::Arc;

/// mimalloc instead of glibc malloc: cheaper small allocations on the node's hot
/// paths and freed memory returned to the system (see docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "fixit",
    version,
    about = "fixit-edge: an edge runtime for local-service marketplaces"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Lines for people.
    Human,
    /// One JSON object per line, for machines.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run one node: actors on its sled data dir, QUIC client listener, HTTP bridge.
    Node {
        /// The node's TOML config.
        #[arg(long, default_value = "config/node.toml")]
        config: PathBuf,
    },
    /// Run a node on a temporary data dir with a simulated city and a live dashboard.
    Demo(demo::DemoArgs),
    /// Bearer tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Call a node over QUIC.
    Client(fixit_edge::cli_client::ClientArgs),
    /// Load a node or cluster with simulated customers and providers; report latencies.
    Load(fixit_edge::load::LoadArgs),
    /// Chaos scenarios against real node processes, then the invariant checker
    /// (or `chaos check`: the checker alone on stopped nodes' data dirs).
    Chaos(fixit_chaos::harness::ChaosArgs),
    /// Cluster certificates: nodes link over mutual TLS from one cluster CA.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Validate a node config file and print it back resolved.
    CheckConfig {
        /// The TOML file.
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Make the cluster CA (ca-cert.pem, ca-key.pem) in a directory.
    Init {
        /// Directory for the CA; existing files are never overwritten.
        #[arg(long)]
        out: PathBuf,
    },
    /// Make a node certificate signed by the cluster CA.
    Node {
        /// The node's name (1-63 of a-z, 0-9, '-'); also its TLS server name.
        #[arg(long)]
        name: String,
        /// The directory holding the CA; the node's files are written there too.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a signed token for a principal.
    Issue {
        /// customer, provider or admin.
        #[arg(long)]
        role: Role,
        /// The principal's id (customer, provider or operator id).
        #[arg(long)]
        sub: u64,
        /// Lifetime in seconds (at most the config's auth.token_ttl_max_s).
        #[arg(long, default_value_t = 3600)]
        ttl_s: u64,
        /// The node config naming the secret file.
        #[arg(long, default_value = "config/node.toml")]
        config: PathBuf,
    },
}

fn init_logs(format: LogFormat) {
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}

/// Logs to `path` (appended), for commands whose terminal is read by people.
fn init_logs_to_file(format: LogFormat, path: &std::path::Path) -> anyhow::Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening the log file {}", path.display()))?;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file));
    match format {
        LogFormat::Human => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    Ok(())
}

fn log_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into())
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // The whole chain, no backtrace: this is a message for a person.
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Demo(args) => init_logs_to_file(cli.log_format, &args.log_file())?,
        _ => init_logs(cli.log_format),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Node { config } => {
            let config = NodeConfig::load(&config)?;
            let armed = fixit_actors::failpoints::arm_from_env().map_err(anyhow::Error::msg)?;
            if armed > 0 {
                tracing::warn!(armed, "failpoints armed from FAILPOINTS");
            }
            runtime.block_on(fixit_edge::server::run_until_signal(
                config,
                Arc::new(SystemClock),
            ))
        }
        Command::Demo(args) => runtime.block_on(demo::run(args)),
        Command::Token {
            command:
                TokenCommand::Issue {
                    role,
                    sub,
                    ttl_s,
                    config,
                },
        } => issue_token(role, sub, ttl_s, &config),
        Command::Client(args) => runtime.block_on(fixit_edge::cli_client::run(args)),
        Command::Load(args) => runtime.block_on(fixit_edge::load::run(args)),
        Command::Chaos(args) => {
            let binary = std::env::current_exe()?;
            runtime.block_on(fixit_chaos::harness::run(args, binary))
        }
        Command::Certs { command } => certs(command),
        Command::CheckConfig { config } => {
            let config = NodeConfig::load(&config)?;
            println!("{config:#?}");
            Ok(())
        }
    }
}

fn certs(command: CertsCommand) -> anyhow::Result<()> {
    use fixit_cluster::ClusterCa;
    match command {
        CertsCommand::Init { out } => {
            ClusterCa::create(&out)?;
            println!("cluster CA written to {}", out.display());
        }
        CertsCommand::Node { name, dir } => {
            let paths = ClusterCa::load(&dir)?.issue_node(&name, &dir)?;
            println!("{}\n{}", paths.cert.display(), paths.key.display());
        }
    }
    Ok(())
}

fn issue_token(role: Role, sub: u64, ttl_s: u64, config: &std::path::Path) -> anyhow::Result<()> {
    let config = NodeConfig::load(config)?;
    anyhow::ensure!(
        (1..=config.auth.token_ttl_max_s).contains(&ttl_s),
        "--ttl-s must be 1 to {} (auth.token_ttl_max_s)",
        config.auth.token_ttl_max_s
    );
    let key = TokenKey::load_or_create(&config.auth.secret_file)?;
    println!("{}", key.issue(Principal { role, sub }, now_s() + ttl_s));
    Ok(())
}
