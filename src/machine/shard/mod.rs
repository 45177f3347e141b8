//! Sharding: which shard a key lives in ([`shard_of`]), which group serves
//! each shard ([`config`], kept by the shard [`controller`] and computed with
//! [`assign`]), and how a data group moves shards in and out ([`group`]).
//!
//! **The shard function** (fixed forever; changing it would move every key):
//! `shard_of(key) = crc32c(key) mod shard_count`, where crc32c is CRC-32C
//! (Castagnoli polynomial 0x1EDC6F41, reflected, initial value and final XOR
//! 0xFFFFFFFF), computed over the key's bytes, read as an unsigned 32-bit
//! integer.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::kv::Session;
use crate::ids::ShardId;

pub mod assign;
pub mod config;
pub mod controller;
pub mod group;

/// The default number of shards of a new cluster.
pub const SHARD_COUNT_DEFAULT: u32 = 64;

/// A change to a group's sharding state, carried through its Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardOp {
    /// A controller operation (controller group only).
    Controller(controller::ControllerOp),
    /// Adopt the next configuration (data groups).
    Reconfigure(config::Config),
    /// Install a pulled shard's data and de-duplication entries.
    Install {
        /// The configuration the shard moved in.
        num: u64,
        /// The shard.
        shard: ShardId,
        /// Its keys and values.
        data: Vec<(Bytes, Bytes)>,
        /// The previous owner's de-duplication table.
        sessions: BTreeMap<u64, Session>,
        /// The previous owner's eviction horizon (see
        /// [`crate::machine::ShardData`]).
        expired_through: u64,
    },
    /// Delete a shard given away, now that the new owner has it.
    Drop {
        /// The configuration the shard moved in.
        num: u64,
        /// The shard.
        shard: ShardId,
    },
    /// The previous owner confirmed it deleted a shard received from it.
    HandedOver {
        /// The configuration the shard moved in.
        num: u64,
        /// The shard.
        shard: ShardId,
    },
    /// (Last, so that the older variants keep their encoding.) Install part of a pulled shard's data, before its last part (an
    /// `Install`). A shard too large for one log entry moves in parts.
    InstallPart {
        /// The configuration the shard moves in.
        num: u64,
        /// The shard.
        shard: ShardId,
        /// Some of its keys and values.
        data: Vec<(Bytes, Bytes)>,
    },
}

/// The shard that holds `key`.
pub fn shard_of(key: &[u8], shard_count: u32) -> ShardId {
    assert!(shard_count > 0, "a cluster has at least one shard");
    crc32c::crc32c(key) % shard_count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shard_function_is_pinned() {
        // CRC-32C check value: crc32c("123456789") = 0xE3069283.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        let shards: Vec<ShardId> = ["", "a", "key-000001", "user:42"]
            .iter()
            .map(|k| shard_of(k.as_bytes(), SHARD_COUNT_DEFAULT))
            .collect();
        // Pinned: these must never change.
        assert_eq!(shards, PINNED);
    }

    /// Computed independently of this code (a bit-at-a-time CRC-32C).
    const PINNED: [ShardId; 4] = [0, 48, 19, 45];
}
