//! Files a node keeps private: key and certificate files written once (never
//! overwritten), private keys with mode 0600 and synced to disk; directories of
//! keys and data with mode 0700. Shared by the cluster CA, the client listener,
//! the token secret and the database.

use std::io::Write;
use std::path::Path;

/// Writes a new file at `path` (creating its directory, owner-only, if
/// missing); fails if it exists.
pub fn write_new(path: &Path, text: &str, private: bool) -> std::io::Result<()> {
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        if !parent.exists() {
            create_private_dir(parent)?;
        }
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

/// Creates `dir` (and missing parents) readable by its owner only (0700), or
/// narrows an existing `dir` to that.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        builder.create(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    builder.create(dir)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn keys_and_their_directories_are_owner_only() {
        let root = tempfile::tempdir().unwrap();
        let key = root.path().join("keys/node.key");
        write_new(&key, "secret", true).unwrap();
        assert_eq!(mode(&key), 0o600);
        assert_eq!(mode(&root.path().join("keys")), 0o700);
        let cert = root.path().join("keys/node.pem");
        write_new(&cert, "public", false).unwrap();
        assert_eq!(mode(&cert), 0o644);
        assert!(write_new(&key, "again", true).is_err(), "never overwritten");

        let loose = root.path().join("data");
        std::fs::create_dir(&loose).unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&loose).unwrap();
        assert_eq!(mode(&loose), 0o700, "an existing directory is narrowed");
    }
}
