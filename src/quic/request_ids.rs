//! Request ids the node makes for requests that came without one: the node id, a
//! random tag per start (so ids do not repeat across restarts) and a counter.

use std::sync::atomic::{AtomicU64, Ordering};

/// Makes unique request ids.
#[derive(Debug)]
pub(crate) struct RequestIds {
    prefix: String,
    next: AtomicU64,
}

impl RequestIds {
    /// Ids for the node `node_id`.
    pub(crate) fn new(node_id: &str) -> RequestIds {
        let mut tag = [0u8; 4];
        // Without randomness the ids are still unique within this run.
        let _ = getrandom::fill(&mut tag);
        RequestIds {
            prefix: format!("{node_id}-{:08x}", u32::from_be_bytes(tag)),
            next: AtomicU64::new(1),
        }
    }

    /// The next id, e.g. `local-1-3fa2c901-17`.
    pub(crate) fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_name_the_node() {
        let ids = RequestIds::new("edge-a");
        let (first, second) = (ids.next(), ids.next());
        assert_ne!(first, second);
        assert!(first.starts_with("edge-a-"));
        assert!(fixit_protocol::wire::valid_request_id(&first));
    }
}
