//! HTTP bridge (being written).
