//! `--spawn-node`: a `fixit node` child process (this same binary) on a temporary
//! data dir with a config sized for the run, its listeners read from its JSON log,
//! and a stop by SIGTERM that always happens — at the end, on error, or when the
//! handle is dropped (SIGKILL if it does not exit in time).

use super::toml_text::node_config_toml;
use anyhow::Context;
use fixit_actors::config::NodeConfig;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Longest wait for the child to log its listeners.
const START_WAIT_MAX: Duration = Duration::from_secs(60);

/// Longest wait for the child to exit after SIGTERM before SIGKILL.
const STOP_WAIT_MAX: Duration = Duration::from_secs(60);

/// Pause between two looks at whether the child exited.
const EXIT_POLL: Duration = Duration::from_millis(100);

/// Log filter of the child: warnings, plus the line naming its listeners.
const CHILD_LOG_FILTER: &str = "warn,fixit_edge::server=info,fixit_cluster::membership=info";

/// A running `fixit node` child.
pub struct SpawnedNode {
    child: Option<Child>,
    /// The config it runs with.
    pub config: NodeConfig,
    /// Its QUIC client listener.
    pub quic: SocketAddr,
    /// Its HTTP bridge.
    pub http: SocketAddr,
    /// Its stderr, line by line.
    pub log: PathBuf,
}

impl SpawnedNode {
    /// Writes `config` to `dir/node.toml` and starts `binary node` on it; returns
    /// once the node logged its listeners.
    pub async fn start(
        binary: &Path,
        config: NodeConfig,
        dir: &Path,
    ) -> anyhow::Result<SpawnedNode> {
        SpawnedNode::start_with_env(binary, config, dir, &[]).await
    }

    /// [`SpawnedNode::start`] with extra environment variables (a chaos run's
    /// `FAILPOINTS`); the log in `dir/node.log` is appended to, so a restarted
    /// node's lines follow its earlier ones.
    pub async fn start_with_env(
        binary: &Path,
        config: NodeConfig,
        dir: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<SpawnedNode> {
        let config_path = dir.join("node.toml");
        std::fs::write(&config_path, node_config_toml(&config)?)
            .with_context(|| format!("writing {}", config_path.display()))?;
        let log = dir.join("node.log");
        let mut child = Command::new(binary)
            .args(["--log-format", "json", "node", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", CHILD_LOG_FILTER)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {} node", binary.display()))?;
        let stderr = child.stderr.take().context("the child's stderr")?;
        let mut node = SpawnedNode {
            child: Some(child),
            config,
            quic: SocketAddr::from(([127, 0, 0, 1], 0)),
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            log: log.clone(),
        };
        let listeners = copy_log_until_serving(stderr, log.clone())?;
        let waited = tokio::task::spawn_blocking(move || listeners.recv_timeout(START_WAIT_MAX))
            .await
            .context("waiting for the node")?;
        match waited {
            Ok((quic, http)) => {
                node.quic = quic;
                node.http = http;
                Ok(node)
            }
            Err(_) => anyhow::bail!(
                "the node did not log its listeners within {} s; its log: {}\n{}",
                START_WAIT_MAX.as_secs(),
                log.display(),
                log_tail(&log)
            ),
        }
    }

    /// SIGKILL (`kill -9`: no flush, no goodbye) and reap.
    pub fn kill9(&mut self) -> anyhow::Result<ExitStatus> {
        let mut child = self.child.take().context("the node was already stopped")?;
        child.kill()?;
        Ok(child.wait()?)
    }

    /// SIGTERM, then waits (bounded) for the exit; SIGKILL past the bound.
    pub async fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        let Some(child) = self.child.take() else {
            anyhow::bail!("the node was already stopped");
        };
        tokio::task::spawn_blocking(move || terminate(child))
            .await
            .context("stopping the node")?
    }
}

impl Drop for SpawnedNode {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            if let Err(error) = terminate(child) {
                eprintln!("stopping the spawned node: {error:#}");
            }
        }
    }
}

/// SIGTERM `child` and reap it; SIGKILL if it is still running after [`STOP_WAIT_MAX`].
fn terminate(mut child: Child) -> anyhow::Result<ExitStatus> {
    if let Some(status) = child.try_wait()? {
        return Ok(status);
    }
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    if !matches!(sent, Ok(status) if status.success()) {
        child.kill()?;
        return Ok(child.wait()?);
    }
    let deadline = Instant::now() + STOP_WAIT_MAX;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        std::thread::sleep(EXIT_POLL);
    }
    child.kill()?;
    child.wait()?;
    anyhow::bail!(
        "the node did not stop within {} s of SIGTERM and was killed",
        STOP_WAIT_MAX.as_secs()
    )
}

/// Copies the child's log lines to `log` on a thread until the child closes
/// stderr; the listeners of the first "serving" line are sent on the channel.
fn copy_log_until_serving(
    stderr: std::process::ChildStderr,
    log: PathBuf,
) -> anyhow::Result<mpsc::Receiver<(SocketAddr, SocketAddr)>> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("opening {}", log.display()))?;
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sender = Some(sender);
        // Ends when the child closes stderr (it exited).
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(file, "{line}");
            if let (Some(listeners), Some(to)) = (listeners_of(&line), &sender) {
                let _ = to.send(listeners);
                sender = None;
            }
        }
    });
    Ok(receiver)
}

/// The QUIC and HTTP addresses of the node's "serving" log line.
fn listeners_of(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let entry: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = &entry["fields"];
    let quic = fields["quic"].as_str()?.parse().ok()?;
    let http = fields["http"].as_str()?.parse().ok()?;
    Some((quic, http))
}

/// The last lines of a log file, for an error message.
fn log_tail(log: &Path) -> String {
    const TAIL_LINES: usize = 20;
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serving_line_names_both_listeners() {
        let line = r#"{"level":"INFO","fields":{"message":"serving","quic":"127.0.0.1:4433","http":"127.0.0.1:8080"}}"#;
        let (quic, http) = listeners_of(line).expect("listeners");
        assert_eq!((quic.port(), http.port()), (4433, 8080));
        assert_eq!(listeners_of(r#"{"fields":{"message":"other"}}"#), None);
    }
}
