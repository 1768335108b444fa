//! Node names: 1–63 characters of `[a-z0-9-]` that are also a valid TLS server name.

use crate::error::ClusterError;

/// Longest node name, in characters: a node name is one DNS label, at most 63.
pub const NODE_NAME_CHARS_MAX: usize = 63;

/// A name every node certificate also carries, so it cannot name a node.
pub const RESERVED_NAME: &str = "localhost";

/// Checks that `name` can name a node.
pub fn validate_node_name(name: &str) -> Result<(), ClusterError> {
    if is_valid_node_name(name) {
        Ok(())
    } else {
        Err(ClusterError::InvalidNodeName(name.to_owned()))
    }
}

/// Whether `name` is 1–63 characters of `[a-z0-9-]`, not [`RESERVED_NAME`], and a
/// DNS name rustls accepts (no hyphen at either end, not all digits).
pub fn is_valid_node_name(name: &str) -> bool {
    (1..=NODE_NAME_CHARS_MAX).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name != RESERVED_NAME
        && rustls::pki_types::DnsName::try_from(name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["a", "node-1", "1a", &"x".repeat(63)] {
            assert!(is_valid_node_name(good), "{good}");
        }
        for bad in [
            "",
            "Node",
            "a_b",
            "a.b",
            "é",
            &"x".repeat(64),
            "localhost",
            "-a",
            "a-",
            "123",
        ] {
            assert!(validate_node_name(bad).is_err(), "{bad}");
        }
    }
}
