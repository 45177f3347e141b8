//! Every size bound Shoal enforces, in one place, with the checks the client
//! library and the server both run on keys and values.
//!
//! The bounds nest, checked at compile time: the largest log entry (a
//! compare-and-swap with two values of [`VALUE_SIZE_MAX`] and a key) fits a
//! client message, and an append-entries message of [`APPEND_SIZE_MAX`]
//! plus one such entry fits well within a Raft message.

use crate::error::KvError;

/// Largest key, in bytes. Keys must also be non-empty.
pub const KEY_SIZE_MAX: usize = 4096;

/// Largest value, in bytes (128 KiB).
pub const VALUE_SIZE_MAX: usize = 128 * 1024;

/// Largest client request accepted by the gRPC layer. Larger than the value
/// limit so that an oversize value reaches [`check_value`] and gets Shoal's
/// typed error; requests past this size fail in the transport.
pub const CLIENT_MESSAGE_SIZE_MAX: usize = 4 * 1024 * 1024;

/// Largest encoded consensus message accepted over gRPC.
pub const RAFT_MESSAGE_SIZE_MAX: usize = 16 * 1024 * 1024;

/// Most log entries sent in one append-entries message. Client writes
/// arrive batched, many to an entry, so a few dozen entries carry thousands
/// of writes. Messages are bounded by size too: see [`APPEND_SIZE_MAX`].
pub const ENTRIES_PER_APPEND_MAX: u64 = 32;

/// Size past which an append-entries message of several entries is not sent
/// but split: the transport answers openraft "payload too large" with how
/// many entries would fit, and openraft sends that many. A message of one
/// entry is always sent; the largest entry is a compare-and-swap carrying
/// two values of [`VALUE_SIZE_MAX`] plus a key, so a message carries at most
/// this plus that entry, under three quarters of [`RAFT_MESSAGE_SIZE_MAX`],
/// which leaves room for the entries' framing.
pub const APPEND_SIZE_MAX: usize = 4 * 1024 * 1024;

/// Snapshot chunk size for install-snapshot transfers.
pub const SNAPSHOT_CHUNK_SIZE_BYTES: u64 = 1024 * 1024;

/// Largest piece of a backup: a frame of state in a backup file, and the
/// bytes of one `SaveSnapshot` stream message (well within a client message).
pub const BACKUP_CHUNK_SIZE_BYTES: usize = 1024 * 1024;

/// The most keys and values one log entry carries: one command, or a batch
/// of commands, each counted with its identity and framing.
pub const ENTRY_PAYLOAD_SIZE_MAX: usize = 2 * VALUE_SIZE_MAX + KEY_SIZE_MAX;

/// Bytes of keys and values a shard move pulls, and installs in one log
/// entry, at a time (the last key and value may pass it by one entry).
pub const SHARD_PART_SIZE_BYTES: usize = VALUE_SIZE_MAX;
const _: () =
    assert!(SHARD_PART_SIZE_BYTES + VALUE_SIZE_MAX + KEY_SIZE_MAX <= ENTRY_PAYLOAD_SIZE_MAX);

const _: () = assert!(APPEND_SIZE_MAX + ENTRY_PAYLOAD_SIZE_MAX < RAFT_MESSAGE_SIZE_MAX / 4 * 3);
const _: () = assert!(ENTRY_PAYLOAD_SIZE_MAX < CLIENT_MESSAGE_SIZE_MAX);
const _: () = assert!(BACKUP_CHUNK_SIZE_BYTES < CLIENT_MESSAGE_SIZE_MAX / 2);

/// Checks a key against the limits.
pub fn check_key(key: &[u8]) -> Result<(), KvError> {
    if key.is_empty() {
        return Err(KvError::KeyEmpty);
    }
    if key.len() > KEY_SIZE_MAX {
        return Err(KvError::KeyTooLarge {
            actual: key.len() as u64,
            limit: KEY_SIZE_MAX as u64,
        });
    }
    Ok(())
}

/// Checks a value against the limits.
pub fn check_value(value: &[u8]) -> Result<(), KvError> {
    if value.len() > VALUE_SIZE_MAX {
        return Err(KvError::ValueTooLarge {
            actual: value.len() as u64,
            limit: VALUE_SIZE_MAX as u64,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_inclusive() {
        assert_eq!(check_key(b""), Err(KvError::KeyEmpty));
        assert!(check_key(&[1; KEY_SIZE_MAX]).is_ok());
        assert!(matches!(
            check_key(&[1; KEY_SIZE_MAX + 1]),
            Err(KvError::KeyTooLarge { actual: 4097, .. })
        ));
        assert!(check_value(b"").is_ok());
        assert!(check_value(&vec![0; VALUE_SIZE_MAX]).is_ok());
        assert!(matches!(
            check_value(&vec![0; VALUE_SIZE_MAX + 1]),
            Err(KvError::ValueTooLarge { .. })
        ));
    }
}
