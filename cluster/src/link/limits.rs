//! The limits of a node's cluster links, validated, and the QUIC transport
//! settings derived from them.

use crate::backoff::BackoffPolicy;
use crate::error::ClusterError;
use fixit_actors::codec::{FRAME_BODY_BYTES_LIMIT, FRAME_HEADER_BYTES};
use quinn::{IdleTimeout, TransportConfig, VarInt};
use std::time::Duration;

/// Every bound of the link layer; units are in the names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkLimits {
    /// Largest envelope or reply body, in bytes: a frame is refused from its prefix.
    pub frame_bytes_max: u32,
    /// Calls a peer may have open on one connection at once (QUIC stream limit).
    pub streams_per_connection_max: u32,
    /// Calls this node may have in flight to one peer; past it, `Busy`.
    pub calls_per_peer_max: u32,
    /// Incoming connections served at once: bounds what many peers can pin.
    pub incoming_connections_max: u32,
    /// A link with no packet for this long is dead, in ms.
    pub idle_timeout_ms: u32,
    /// Keep-alive period, in ms: well under the idle timeout so live links stay up.
    pub keep_alive_interval_ms: u64,
    /// Time one connection attempt may take, in ms.
    pub connect_timeout_ms: u64,
    /// Time a new stream has to deliver its envelope, in ms.
    pub first_frame_timeout_ms: u64,
    /// Longest a handler may run whatever the envelope's deadline says, in ms.
    pub call_duration_max_ms: u64,
    /// Hint returned with `Busy`, in ms.
    pub busy_retry_after_ms: u64,
    /// Reconnect schedule of a down peer.
    pub backoff: BackoffPolicy,
}

impl Default for LinkLimits {
    fn default() -> LinkLimits {
        LinkLimits {
            frame_bytes_max: 1024 * 1024,
            streams_per_connection_max: 256,
            calls_per_peer_max: 256,
            incoming_connections_max: 1024,
            idle_timeout_ms: 10_000,
            keep_alive_interval_ms: 2_000,
            connect_timeout_ms: 5_000,
            first_frame_timeout_ms: 5_000,
            call_duration_max_ms: 60_000,
            busy_retry_after_ms: 50,
            backoff: BackoffPolicy::default(),
        }
    }
}

fn invalid(name: &'static str, reason: &'static str) -> ClusterError {
    ClusterError::InvalidLimit { name, reason }
}

impl LinkLimits {
    /// Checks every field against its valid range.
    pub fn validate(&self) -> Result<(), ClusterError> {
        if self.frame_bytes_max == 0 || self.frame_bytes_max as usize > FRAME_BODY_BYTES_LIMIT {
            return Err(invalid("frame_bytes_max", "1 to 16 MiB"));
        }
        if self.streams_per_connection_max == 0 || self.calls_per_peer_max == 0 {
            return Err(invalid(
                "streams_per_connection_max/calls_per_peer_max",
                "at least 1",
            ));
        }
        if self.incoming_connections_max == 0 {
            return Err(invalid("incoming_connections_max", "at least 1"));
        }
        if self.idle_timeout_ms == 0
            || self.keep_alive_interval_ms == 0
            || self.keep_alive_interval_ms >= u64::from(self.idle_timeout_ms)
        {
            return Err(invalid(
                "keep_alive_interval_ms/idle_timeout_ms",
                "both above 0, keep-alive below the idle timeout",
            ));
        }
        if self.connect_timeout_ms == 0
            || self.first_frame_timeout_ms == 0
            || self.call_duration_max_ms == 0
        {
            return Err(invalid("timeouts", "above 0 ms"));
        }
        if self.backoff.initial_ms == 0 || self.backoff.max_ms < self.backoff.initial_ms {
            return Err(invalid(
                "backoff",
                "initial_ms above 0 and max_ms at least initial_ms",
            ));
        }
        Ok(())
    }

    /// Flow-control window of one stream: one full frame.
    fn stream_window(&self) -> VarInt {
        VarInt::from_u32(
            self.frame_bytes_max
                .saturating_add(FRAME_HEADER_BYTES as u32),
        )
    }

    fn common_transport(&self) -> TransportConfig {
        let mut transport = TransportConfig::default();
        transport
            .max_concurrent_uni_streams(VarInt::from_u32(0))
            .stream_receive_window(self.stream_window())
            .max_idle_timeout(Some(IdleTimeout::from(VarInt::from_u32(
                self.idle_timeout_ms,
            ))))
            .keep_alive_interval(Some(Duration::from_millis(self.keep_alive_interval_ms)));
        transport
    }

    /// Accepting side: at most `streams_per_connection_max` calls per connection.
    pub(crate) fn server_transport(&self) -> TransportConfig {
        let mut transport = self.common_transport();
        transport.max_concurrent_bidi_streams(VarInt::from_u32(self.streams_per_connection_max));
        transport
    }

    /// Connecting side: the peer may open no stream on a connection we made.
    pub(crate) fn client_transport(&self) -> TransportConfig {
        let mut transport = self.common_transport();
        transport.max_concurrent_bidi_streams(VarInt::from_u32(0));
        transport
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_limits_are_refused() {
        assert!(LinkLimits::default().validate().is_ok());
        let zero_frames = LinkLimits {
            frame_bytes_max: 0,
            ..LinkLimits::default()
        };
        assert!(zero_frames.validate().is_err());
        let slow_keep_alive = LinkLimits {
            keep_alive_interval_ms: 20_000,
            ..LinkLimits::default()
        };
        assert!(slow_keep_alive.validate().is_err());
    }
}
