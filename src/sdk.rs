//! Rust client SDK over QUIC (being written).
