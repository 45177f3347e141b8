//! The binary encoding of consensus messages carried in `RaftMessage.payload`.
//!
//! Messages are openraft's own types, encoded with bincode 1 (fixed-width
//! little-endian integers, length-prefixed sequences): a stable, specified
//! format. Decoding never trusts its input: a malformed payload is an error,
//! not a panic.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A payload that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("raft message codec: {0}")]
pub struct CodecError(#[from] bincode::Error);

/// Encodes a consensus message.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, CodecError> {
    Ok(bincode::serialize(message)?)
}

/// Decodes a value from its complete encoding. No length prefix inside may
/// claim more than `bytes` holds, so garbage cannot force a huge allocation.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    use bincode::Options;
    let options = bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .with_limit(bytes.len() as u64);
    Ok(options.deserialize(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::command::{Command, DataOp, WriteId};

    #[test]
    fn round_trip_and_garbage() {
        let command = Command::Data {
            id: Some(WriteId {
                client_id: 7,
                seq: 3,
                opened_at: 5,
            }),
            op: DataOp::Put {
                key: "k".into(),
                value: "v".into(),
            },
            stamp: 9,
        };
        let bytes = encode(&command).unwrap();
        assert_eq!(decode::<Command>(&bytes).unwrap(), command);
        assert!(decode::<Command>(&bytes[..bytes.len() - 1]).is_err());
        // A length prefix claiming more than the limit is refused, not allocated.
        let mut huge = bytes.clone();
        // (command tag 4, write id 1 + 24, operation tag 4, then the key's.)
        huge[33..41].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode::<Command>(&huge).is_err());
    }

    #[test]
    fn state_larger_than_a_message_decodes() {
        // Snapshots are larger than any one message.
        let big = vec![7u8; crate::limits::RAFT_MESSAGE_SIZE_MAX + 1];
        assert_eq!(decode::<Vec<u8>>(&encode(&big).unwrap()).unwrap(), big);
    }
}
