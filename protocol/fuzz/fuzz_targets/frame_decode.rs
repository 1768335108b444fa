//! Fuzzes the frame decoder: arbitrary bytes, read as a frame of every message a
//! node or client decodes from the network, must never panic nor decode a frame
//! whose length prefix is over the maximum.

#![no_main]

use fixit_protocol::api::Push;
use fixit_protocol::codec::{decode_frame, FrameError, FRAME_HEADER_BYTES};
use fixit_protocol::wire::{Hello, HelloReply, ReplyFrame, StreamFrame, SubscribeReply};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;

/// The node's default `server.frame_bytes_max`.
const FRAME_BYTES_MAX: usize = 64 * 1024;

fn check<T: DeserializeOwned>(data: &[u8]) {
    let result = decode_frame::<T>(data, FRAME_BYTES_MAX);
    let announced = data
        .get(..FRAME_HEADER_BYTES)
        .map(|header| u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize);
    if let Some(len) = announced {
        if len > FRAME_BYTES_MAX {
            assert!(matches!(result, Err(FrameError::TooLarge { .. })));
        }
        if result.is_ok() {
            assert_eq!(data.len(), FRAME_HEADER_BYTES + len);
        }
    } else {
        assert!(matches!(result, Err(FrameError::Truncated)));
    }
}

fuzz_target!(|data: &[u8]| {
    check::<Hello>(data);
    check::<StreamFrame>(data);
    check::<HelloReply>(data);
    check::<ReplyFrame>(data);
    check::<SubscribeReply>(data);
    check::<Push>(data);
    check::<Vec<u8>>(data);
});
