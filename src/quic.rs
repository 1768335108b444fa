//! QUIC client protocol server (being written).
