//! The one place where values become bytes and back (bincode 2 over serde).
//!
//! Storage records and wire frames are encoded here so the format and its limits
//! are decided once. A frame is a 4-byte big-endian body length followed by one
//! bincode body; the length is checked against the caller's maximum before any
//! buffer is made for the body.

use serde::{de::DeserializeOwned, Serialize};
use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;
use tokio::io::{AsyncRead, ReadBuf};

/// Largest value this codec decodes, in bytes: a guard against corrupt length fields.
pub const DECODE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// A value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Encoding failed (a type the format cannot express).
    #[error("encode: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    /// The bytes are not a valid value of the expected type.
    #[error("decode: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    /// Bytes were left over after the value: the input is not one value.
    #[error("decode: {0} trailing bytes")]
    Trailing(usize),
    /// The encoded body is longer than the frame maximum.
    #[error("encode: body of {len} bytes is over the frame maximum of {max} bytes")]
    TooLarge {
        /// Body length, in bytes.
        len: usize,
        /// The maximum, in bytes.
        max: usize,
    },
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_BYTES_MAX>()
}

/// Encodes a value.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    Ok(bincode::serde::encode_to_vec(value, config())?)
}

/// Decodes exactly one value from `bytes`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, config())?;
    if used != bytes.len() {
        return Err(CodecError::Trailing(bytes.len() - used));
    }
    Ok(value)
}

/// Decodes one value from the front of `bytes` and says how many bytes it took:
/// for formats that lay several values end to end (the membership protocol's
/// header, then its updates).
pub fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), CodecError> {
    Ok(bincode::serde::decode_from_slice(bytes, config())?)
}

/// Bytes of a frame's length prefix (big-endian `u32`).
pub const FRAME_HEADER_BYTES: usize = 4;

/// Largest frame body any caller may allow, in bytes: a `max` above it is lowered
/// to it, so no frame is bigger than the codec's own decode limit.
pub const FRAME_BODY_BYTES_LIMIT: usize = DECODE_BYTES_MAX;

/// A frame could not be read. The reader stays where it stopped: after a
/// `TooLarge` or `Truncated` the stream is out of step and must be abandoned.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announces more than the maximum; nothing was allocated.
    #[error("frame body of {len} bytes is over the maximum of {max} bytes")]
    TooLarge {
        /// Announced body length, in bytes.
        len: usize,
        /// The maximum, in bytes.
        max: usize,
    },
    /// The input ended inside a frame (in the prefix or the body).
    #[error("frame truncated")]
    Truncated,
    /// The body is not one valid value of the expected type.
    #[error("frame body: {0}")]
    Decode(#[from] CodecError),
    /// The transport failed.
    #[error("frame read: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes `value` as one frame (prefix + body); refuses a body over `max` bytes.
pub fn encode_frame<T: Serialize>(value: &T, max: usize) -> Result<Vec<u8>, CodecError> {
    let max = max.min(FRAME_BODY_BYTES_LIMIT);
    let mut frame = vec![0u8; FRAME_HEADER_BYTES];
    bincode::serde::encode_into_std_write(value, &mut frame, config())?;
    let len = frame.len() - FRAME_HEADER_BYTES;
    if len > max {
        return Err(CodecError::TooLarge { len, max });
    }
    // `len <= FRAME_BODY_BYTES_LIMIT < u32::MAX`, so the cast is exact.
    frame[..FRAME_HEADER_BYTES].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(frame)
}

/// The body length a frame prefix announces, if it is at most `max` (itself capped
/// at [`FRAME_BODY_BYTES_LIMIT`]). Every frame reader asks this before allocating.
pub fn frame_body_len(header: [u8; FRAME_HEADER_BYTES], max: usize) -> Result<usize, FrameError> {
    let max = max.min(FRAME_BODY_BYTES_LIMIT);
    let len = u32::from_be_bytes(header) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(len)
}

/// Decodes `bytes` as exactly one frame whose body is at most `max` bytes.
pub fn decode_frame<T: DeserializeOwned>(bytes: &[u8], max: usize) -> Result<T, FrameError> {
    let (header, rest) = bytes
        .split_first_chunk::<FRAME_HEADER_BYTES>()
        .ok_or(FrameError::Truncated)?;
    let len = frame_body_len(*header, max)?;
    let body = rest.get(..len).ok_or(FrameError::Truncated)?;
    if rest.len() > len {
        return Err(CodecError::Trailing(rest.len() - len).into());
    }
    Ok(decode_body(body)?)
}

/// Reads one frame whose body is at most `max` bytes. `Ok(None)` is a clean end of
/// input before the first byte of a frame; an end anywhere else is `Truncated`.
/// The body buffer is allocated only after its length passed the check.
pub async fn read_frame<T, R>(reader: &mut R, max: usize) -> Result<Option<T>, FrameError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    let mut header = [0u8; FRAME_HEADER_BYTES];
    match read_full(reader, &mut header).await? {
        0 => return Ok(None),
        FRAME_HEADER_BYTES => {}
        _ => return Err(FrameError::Truncated),
    }
    let len = frame_body_len(header, max)?;
    let mut body = vec![0u8; len];
    if read_full(reader, &mut body).await? != len {
        return Err(FrameError::Truncated);
    }
    Ok(Some(decode_body(&body)?))
}

/// Fills `buf` from `reader` until it is full or the input ends; returns the bytes
/// read. Each round either makes progress or stops, so it ends after at most
/// `buf.len()` rounds.
async fn read_full<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let read = poll_fn(|cx| {
            let mut window = ReadBuf::new(&mut buf[filled..]);
            match Pin::new(&mut *reader).poll_read(cx, &mut window) {
                Poll::Ready(Ok(())) => Poll::Ready(Ok(window.filled().len())),
                Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await?;
        if read == 0 {
            break;
        }
        filled += read;
    }
    Ok(filled)
}

/// Decodes exactly one value from a frame body under a bincode limit scaled to
/// the body's length, so a lying length inside the body (a string or list
/// claiming megabytes in a small frame) is refused before its buffer is made.
///
/// bincode counts what it decodes at its in-memory size: a `u64` counts 8
/// bytes even when its varint took 1, a length prefix 8, an enum tag 4. A body
/// of small integers therefore counts up to 8 times its length, and any body a
/// few bytes over its own length (a cluster envelope: 21 bytes over). The limit
/// is the smallest power of two of at least 1 KiB and at least 8 × the body
/// plus 64 bytes, so at most 16 × the body (and at least 1 KiB). It was the
/// next power of four at or above the body's length: bodies within about 20
/// bytes below 1, 4, 16, 64 or 256 KiB were refused as `LimitExceeded` — a
/// shard follower sent such an AppendEntries was sent the same one for ever
/// and fell behind for good.
fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, CodecError> {
    const KIB: usize = 1024;
    match body.len().saturating_mul(8).saturating_add(64) {
        0..=KIB => decode_limited::<T, KIB>(body),
        need if need <= 2 * KIB => decode_limited::<T, { 2 * KIB }>(body),
        need if need <= 4 * KIB => decode_limited::<T, { 4 * KIB }>(body),
        need if need <= 8 * KIB => decode_limited::<T, { 8 * KIB }>(body),
        need if need <= 16 * KIB => decode_limited::<T, { 16 * KIB }>(body),
        need if need <= 32 * KIB => decode_limited::<T, { 32 * KIB }>(body),
        need if need <= 64 * KIB => decode_limited::<T, { 64 * KIB }>(body),
        need if need <= 128 * KIB => decode_limited::<T, { 128 * KIB }>(body),
        need if need <= 256 * KIB => decode_limited::<T, { 256 * KIB }>(body),
        need if need <= 512 * KIB => decode_limited::<T, { 512 * KIB }>(body),
        need if need <= 1024 * KIB => decode_limited::<T, { 1024 * KIB }>(body),
        need if need <= 2048 * KIB => decode_limited::<T, { 2048 * KIB }>(body),
        need if need <= 4096 * KIB => decode_limited::<T, { 4096 * KIB }>(body),
        need if need <= 8192 * KIB => decode_limited::<T, { 8192 * KIB }>(body),
        _ => decode_limited::<T, DECODE_BYTES_MAX>(body),
    }
}

fn decode_limited<T: DeserializeOwned, const LIMIT_BYTES: usize>(
    bytes: &[u8],
) -> Result<T, CodecError> {
    let config = bincode::config::standard().with_limit::<LIMIT_BYTES>();
    let (value, used) = bincode::serde::decode_from_slice(bytes, config)?;
    if used != bytes.len() {
        return Err(CodecError::Trailing(bytes.len() - used));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let value = (7u64, String::from("plumber"), -5i64);
        let bytes = encode(&value).unwrap();
        assert_eq!(decode::<(u64, String, i64)>(&bytes).unwrap(), value);
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            decode::<(u64, String, i64)>(&longer),
            Err(CodecError::Trailing(1))
        ));
        assert!(decode::<(u64, String, i64)>(&[0xff, 0xff, 0xff]).is_err());
    }
}

#[cfg(test)]
mod frame_tests {
    use super::*;
    use futures::executor::block_on;
    use proptest::prelude::*;
    use serde::Deserialize;

    /// A message shaped like the wire's: strings, lists, options, signed and float fields.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    enum Message {
        Hello {
            version: u16,
            token: String,
        },
        Call {
            id: Option<String>,
            amount: i64,
            lat: f64,
            proof: Vec<u8>,
            skills: Vec<String>,
        },
        Empty,
    }

    fn message() -> impl Strategy<Value = Message> {
        prop_oneof![
            (any::<u16>(), ".{0,40}")
                .prop_map(|(version, token)| Message::Hello { version, token }),
            (
                proptest::option::of("[a-z0-9-]{0,20}"),
                any::<i64>(),
                -90.0..90.0f64,
                proptest::collection::vec(any::<u8>(), 0..300),
                proptest::collection::vec("[a-z]{0,12}", 0..5),
            )
                .prop_map(|(id, amount, lat, proof, skills)| Message::Call {
                    id,
                    amount,
                    lat,
                    proof,
                    skills
                }),
            Just(Message::Empty),
        ]
    }

    /// How one input must be classified, judged from its prefix alone.
    fn check_length_rules(bytes: &[u8], max: usize, result: &Result<Message, FrameError>) {
        let Some((header, rest)) = bytes.split_first_chunk::<FRAME_HEADER_BYTES>() else {
            assert!(matches!(result, Err(FrameError::Truncated)), "{result:?}");
            return;
        };
        let announced = u32::from_be_bytes(*header) as usize;
        if announced > max {
            // Refused from the prefix: no body buffer was made.
            assert!(
                matches!(result, Err(FrameError::TooLarge { len, max: m }) if *len == announced && *m == max),
                "{result:?}"
            );
        } else if rest.len() < announced {
            assert!(matches!(result, Err(FrameError::Truncated)), "{result:?}");
        } else if result.is_ok() {
            assert_eq!(
                rest.len(),
                announced,
                "a decoded frame is exactly its prefix long"
            );
        }
    }

    fn read_one(bytes: &[u8], max: usize) -> Result<Option<Message>, FrameError> {
        let mut reader = bytes;
        block_on(read_frame::<Message, _>(&mut reader, max))
    }

    #[derive(Clone, Debug)]
    enum Mutation {
        Flip { at: usize, mask: u8 },
        Truncate { to: usize },
        Prefix { len: u32 },
        Append { extra: Vec<u8> },
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            (any::<usize>(), 1..=255u8).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
            any::<usize>().prop_map(|to| Mutation::Truncate { to }),
            prop_oneof![any::<u32>(), 0..400u32, Just(u32::MAX)]
                .prop_map(|len| Mutation::Prefix { len }),
            proptest::collection::vec(any::<u8>(), 1..8)
                .prop_map(|extra| Mutation::Append { extra }),
        ]
    }

    fn apply(frame: &mut Vec<u8>, mutation: &Mutation) {
        match mutation {
            Mutation::Flip { at, mask } => {
                let at = at % frame.len();
                frame[at] ^= mask;
            }
            Mutation::Truncate { to } => frame.truncate(to % frame.len()),
            Mutation::Prefix { len } => {
                frame[..FRAME_HEADER_BYTES].copy_from_slice(&len.to_be_bytes())
            }
            Mutation::Append { extra } => frame.extend_from_slice(extra),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn random_bytes_never_panic_and_obey_the_length_rules(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            max in 0..300usize,
        ) {
            let decoded = decode_frame::<Message>(&bytes, max);
            check_length_rules(&bytes, max, &decoded);
            let read = read_one(&bytes, max);
            if bytes.is_empty() {
                prop_assert!(matches!(read, Ok(None)), "{:?}", read);
            }
            if let Ok(Some(message)) = &read {
                prop_assert!(bytes.len() >= FRAME_HEADER_BYTES);
                prop_assert!(decode_frame::<Message>(&encode_frame(message, max).unwrap(), max).is_ok());
            }
        }

        #[test]
        fn valid_frames_round_trip(message in message()) {
            let frame = encode_frame(&message, FRAME_BODY_BYTES_LIMIT).unwrap();
            let body_len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
            prop_assert_eq!(frame.len(), FRAME_HEADER_BYTES + body_len);
            prop_assert_eq!(&decode_frame::<Message>(&frame, body_len).unwrap(), &message);
            let mut stream = frame.clone();
            stream.extend_from_slice(&frame);
            let mut reader = &stream[..];
            for _ in 0..2 {
                let read = block_on(read_frame::<Message, _>(&mut reader, body_len)).unwrap();
                prop_assert_eq!(read.as_ref(), Some(&message));
            }
            prop_assert!(block_on(read_frame::<Message, _>(&mut reader, body_len)).unwrap().is_none());
            if body_len > 0 {
                let smaller = encode_frame(&message, body_len - 1);
                prop_assert!(matches!(smaller, Err(CodecError::TooLarge { .. })), "{:?}", smaller);
            }
        }

        #[test]
        fn mutated_frames_never_panic_and_obey_the_length_rules(
            message in message(),
            mutation in mutation(),
            max in prop_oneof![Just(FRAME_BODY_BYTES_LIMIT), 0..400usize],
        ) {
            let mut frame = encode_frame(&message, FRAME_BODY_BYTES_LIMIT).unwrap();
            apply(&mut frame, &mutation);
            let decoded = decode_frame::<Message>(&frame, max);
            check_length_rules(&frame, max, &decoded);
            // The streaming reader refuses the same oversized and truncated inputs.
            let read = read_one(&frame, max);
            match &decoded {
                Err(FrameError::TooLarge { .. }) => {
                    prop_assert!(matches!(read, Err(FrameError::TooLarge { .. })), "{:?}", read)
                }
                Err(FrameError::Truncated) if frame.is_empty() => {
                    prop_assert!(matches!(read, Ok(None)), "{:?}", read)
                }
                Err(FrameError::Truncated) => {
                    prop_assert!(matches!(read, Err(FrameError::Truncated)), "{:?}", read)
                }
                Ok(value) => prop_assert_eq!(read.ok().flatten(), Some(value.clone())),
                Err(_) => {}
            }
        }
    }

    /// Gives a length prefix, then endless filler bytes.
    struct Endless {
        header: [u8; FRAME_HEADER_BYTES],
        sent: usize,
    }

    impl AsyncRead for Endless {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            while buf.remaining() > 0 {
                let byte = self.header.get(self.sent).copied().unwrap_or(0xAB);
                buf.put_slice(&[byte]);
                self.sent += 1;
            }
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn an_oversized_prefix_is_refused_before_reading_the_body() {
        let mut input = Endless {
            header: u32::MAX.to_be_bytes(),
            sent: 0,
        };
        let result = block_on(read_frame::<Message, _>(&mut input, 64 * 1024));
        assert!(
            matches!(result, Err(FrameError::TooLarge { len, max: 65_536 }) if len == u32::MAX as usize),
            "{result:?}"
        );
        assert_eq!(input.sent, FRAME_HEADER_BYTES, "only the prefix was read");
    }

    #[test]
    fn ends_inside_a_frame_are_truncations_and_an_end_between_frames_is_clean() {
        let frame = encode_frame(&Message::Empty, 1024).unwrap();
        assert!(matches!(read_one(&[], 1024), Ok(None)));
        assert!(matches!(
            read_one(&frame[..2], 1024),
            Err(FrameError::Truncated)
        ));
        let long = encode_frame(
            &Message::Hello {
                version: 1,
                token: "t".repeat(50),
            },
            1024,
        )
        .unwrap();
        assert!(matches!(
            read_one(&long[..10], 1024),
            Err(FrameError::Truncated)
        ));
        assert!(matches!(
            decode_frame::<Message>(&long[..10], 1024),
            Err(FrameError::Truncated)
        ));
    }

    #[test]
    fn a_small_body_claiming_a_huge_string_is_refused_without_that_allocation() {
        // Variant 0 (Hello), version 1, then a string length of 16 MiB - 1 (varint u32 form).
        let mut body = vec![0u8, 1, 252];
        body.extend_from_slice(&((DECODE_BYTES_MAX - 1) as u32).to_le_bytes());
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        let result = decode_frame::<Message>(&frame, 1024);
        // Refused by the limit check that comes before the string's buffer is made.
        assert!(
            matches!(
                result,
                Err(FrameError::Decode(CodecError::Decode(
                    bincode::error::DecodeError::LimitExceeded
                )))
            ),
            "{result:?}"
        );
    }

    /// A frame laid out like a cluster envelope (an enum tag, a byte list,
    /// an optional string, a string, a large integer, a string).
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct EnvelopeLike {
        target: u8,
        command: Vec<u8>,
        key: Option<String>,
        request_id: String,
        deadline_ms: u64,
        from: String,
    }

    fn round_trips_framed<T>(value: &T) -> bool
    where
        T: serde::Serialize + DeserializeOwned + PartialEq,
    {
        let frame = encode_frame(value, FRAME_BODY_BYTES_LIMIT).expect("encodes");
        decode_frame::<T>(&frame, FRAME_BODY_BYTES_LIMIT).is_ok_and(|back| back == *value)
    }

    /// Every body length decodes, right up to each old limit: envelopes of
    /// 1,004–1,024 bytes (and as far below 4, 16, 64 and 256 KiB) were
    /// refused as `LimitExceeded` because bincode counts an envelope 21 bytes
    /// over its length.
    #[test]
    fn frames_of_every_length_decode_near_every_limit() {
        let mut lengths: Vec<usize> = (0..5_000).collect();
        for tier in [16 * 1024, 64 * 1024, 256 * 1024, 1024 * 1024] {
            lengths.extend(tier - 80..tier + 8);
        }
        for len in lengths {
            let value = EnvelopeLike {
                target: 4,
                command: vec![0x5A; len],
                key: None,
                request_id: "raft-w1".into(),
                deadline_ms: 1_796_324_185_907,
                from: "a".into(),
            };
            assert!(round_trips_framed(&value), "command of {len} bytes");
        }
    }

    /// The worst case bincode counts: integers that take one byte on the wire
    /// and eight in memory.
    #[test]
    fn a_body_of_small_integers_decodes() {
        for count in [1, 100, 127, 1_000, 5_000, 100_000] {
            let value: Vec<u64> = (0..count).map(|n| n % 100).collect();
            assert!(round_trips_framed(&value), "{count} small integers");
        }
    }
}
