//! Key and certificate files: written once (never overwritten), private keys with
//! mode 0600, synced to disk. Shared by the cluster CA and the client listener.

use std::io::Write;
use std::path::Path;

/// Writes a new file at `path` (creating its directory); fails if it exists.
pub fn write_new(path: &Path, text: &str, private: bool) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}
