//! TLS material for the client listener (being written).
