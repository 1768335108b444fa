//! `fixit client` verbs over QUIC (being written).
