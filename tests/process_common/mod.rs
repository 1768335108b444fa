//! `fixit node` as a real child process: start it and read its HTTP address from its
//! JSON log, stop it with SIGTERM or SIGKILL, and never leak it (a dropped
//! [`NodeProcess`] is killed and reaped).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub(crate) const FIXIT: &str = env!("CARGO_BIN_EXE_fixit");

/// A running `fixit node` child.
pub(crate) struct NodeProcess {
    child: Option<Child>,
    /// Its HTTP bridge, as logged.
    pub(crate) http: String,
}

impl NodeProcess {
    /// Starts `fixit node --config config` and waits (30 s at most) for the log
    /// line naming its listeners.
    pub(crate) fn start(config: &Path) -> NodeProcess {
        let mut child = Command::new(FIXIT)
            .args(["node", "--log-format", "json", "--config"])
            .arg(config)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("fixit node starts");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let Some(Ok(line)) = lines.next() else { break };
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if let Some(http) = entry["fields"]["http"].as_str() {
                // Keep draining the log so the child never blocks on a full pipe.
                std::thread::spawn(move || for _ in lines.by_ref() {});
                return NodeProcess {
                    child: Some(child),
                    http: http.to_owned(),
                };
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the node never logged its addresses");
    }

    /// SIGTERM, then waits up to 30 s for the exit.
    pub(crate) fn terminate(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        for _ in 0..300 {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the node did not stop within 30 s of SIGTERM");
    }

    /// SIGKILL (`kill -9`): no flush, no goodbye.
    pub(crate) fn kill9(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
