//! The one place where values become bytes and back (bincode 2 over serde).
//!
//! Storage records and, later, wire frames are encoded here so the format and its
//! limits are decided once.

use serde::{de::DeserializeOwned, Serialize};

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
