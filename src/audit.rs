//! The audit log: every admin action — a command other than a read sent with an
//! admin token (deposits, withdrawals and job steps on someone's behalf,
//! revocations) and every failpoint arming — as one JSON line appended to
//! `audit.jsonl` in the data directory (mode 0600), with the principal, the
//! request id, the source address, the time, the command's fields and its
//! outcome.
//!
//! Lines are written by one thread, in order, and synced to disk in batches, so
//! recording never waits for the disk: a record is durable a few milliseconds
//! after the answer. The queue is bounded; a record that does not fit is
//! counted (`fixit_audit_records_dropped_total`) and logged as a warning rather
//! than delaying the node.

use crate::auth::Principal;
use serde::Serialize;
use serde_json::{Map, Value};
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};

/// Records queued for the writer at most.
pub const AUDIT_QUEUE_MAX: usize = 65_536;

/// The audit log's file name in the data directory.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// One audited action, as written.
#[derive(Debug, Serialize)]
pub struct AuditRecord<'a> {
    /// When it was answered, ms since the Unix epoch.
    pub at_ms: u64,
    /// Who acted.
    pub principal: Principal,
    /// The request's id (the `x-request-id` the client saw).
    pub request_id: &'a str,
    /// Where the request came from.
    pub source: IpAddr,
    /// The command's name (`deposit`, `revoke_token`, …) or `arm_failpoints`.
    pub action: &'a str,
    /// The command's fields (a proof of work is left out).
    pub fields: Map<String, Value>,
    /// `ok` or the error's kind.
    pub outcome: &'a str,
}

/// The node's audit log.
pub struct AuditLog {
    queue: SyncSender<Vec<u8>>,
}

impl AuditLog {
    /// Opens (or creates, owner-only) the log in `data_dir` — made, owner-only,
    /// by the node's store — and starts its writer.
    pub fn open(data_dir: &Path) -> std::io::Result<AuditLog> {
        let mut options = std::fs::OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(data_dir.join(AUDIT_FILE))?;
        let (queue, lines) = sync_channel(AUDIT_QUEUE_MAX);
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || write_lines(file, lines))?;
        Ok(AuditLog { queue })
    }

    /// Queues `record` for the writer.
    pub fn record(&self, record: &AuditRecord<'_>) {
        let mut line = match serde_json::to_vec(record) {
            Ok(line) => line,
            Err(error) => {
                tracing::warn!(%error, "audit record does not encode");
                return;
            }
        };
        line.push(b'\n');
        match self.queue.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                metrics::counter!("fixit_audit_records_dropped_total").increment(1);
                tracing::warn!(
                    action = record.action,
                    request_id = record.request_id,
                    "audit record dropped: the log's queue is full or its writer stopped"
                );
            }
        }
    }
}

/// Writes each line as it comes, then syncs once for everything queued meanwhile;
/// ends when every sender is gone.
fn write_lines(mut file: std::fs::File, lines: Receiver<Vec<u8>>) {
    while let Ok(line) = lines.recv() {
        let mut batch = line;
        while let Ok(more) = lines.try_recv() {
            batch.extend_from_slice(&more);
        }
        let written = file.write_all(&batch).and_then(|()| file.sync_data());
        if let Err(error) = written {
            metrics::counter!("fixit_audit_write_errors_total").increment(1);
            tracing::error!(%error, "audit log write failed");
        }
    }
}
