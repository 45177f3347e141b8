//! Snapshot files: the applied state at one log index, checksummed, written
//! so that a crash leaves either the old snapshot or the new one, never a mix.
//!
//! File `snapshots/SEQ.snap` (`SEQ` = last included index + 1, zero-padded):
//!
//! ```text
//! magic "SHOALSNP" | version: u32 LE | meta_len: u32 LE | meta | data_len: u64 LE | data | crc: u32 LE
//! ```
//!
//! `meta` is openraft's snapshot metadata and `data` the encoded state (both
//! bincode); `crc` is CRC32C over everything before it. Writing goes to a
//! `.tmp` file, which is synced, renamed into place, and the directory synced;
//! only then are older snapshots removed.

use openraft::SnapshotMeta;

use super::disk::{read_stable, DiskRef, StableReadError};
use crate::ids::{Member, NodeId};
use crate::raft::codec;

/// Directory of snapshot files on the disk.
pub const SNAPSHOT_DIR: &str = "snapshots";

const MAGIC: &[u8; 8] = b"SHOALSNP";
const VERSION: u32 = 1;

/// Snapshot metadata as openraft defines it.
pub type Meta = SnapshotMeta<NodeId, Member>;

/// A snapshot file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The disk failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The disk's error.
        source: std::io::Error,
    },
    /// The file is damaged or not a snapshot.
    #[error("{path}: corrupt snapshot at offset {offset}: {reason}")]
    Corrupt {
        /// The file.
        path: String,
        /// Where the damage shows.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

/// Encodes a snapshot file.
pub fn encode(meta: &Meta, data: &[u8]) -> Vec<u8> {
    let meta = codec::encode(meta).expect("snapshot metadata always encodes");
    let mut file = Vec::with_capacity(data.len() + meta.len() + 32);
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(&VERSION.to_le_bytes());
    file.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    file.extend_from_slice(&meta);
    file.extend_from_slice(&(data.len() as u64).to_le_bytes());
    file.extend_from_slice(data);
    let crc = crc32c::crc32c(&file);
    file.extend_from_slice(&crc.to_le_bytes());
    file
}

/// Where and why a file is not a valid snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Byte offset at which the problem shows.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
}

/// Decodes a snapshot file, verifying everything.
pub fn decode(file: &[u8]) -> Result<(Meta, Vec<u8>), Damage> {
    let damage = |offset: usize, reason: &str| Damage {
        offset: offset as u64,
        reason: reason.to_string(),
    };
    if file.len() < MAGIC.len() + 4 + 4 + 8 + 4 {
        return Err(damage(file.len(), "too short"));
    }
    let (body, crc) = file.split_at(file.len() - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().unwrap()) {
        return Err(damage(body.len(), "checksum mismatch"));
    }
    if &body[..8] != MAGIC {
        return Err(damage(0, "not a Shoal snapshot"));
    }
    let version = u32::from_le_bytes(body[8..12].try_into().unwrap());
    if version != VERSION {
        return Err(damage(8, &format!("unknown version {version}")));
    }
    let meta_len = u32::from_le_bytes(body[12..16].try_into().unwrap()) as usize;
    let meta_end = 16usize
        .checked_add(meta_len)
        .filter(|end| end + 8 <= body.len());
    let Some(meta_end) = meta_end else {
        return Err(damage(12, "metadata length out of range"));
    };
    let meta: Meta = codec::decode(&body[16..meta_end]).map_err(|e| damage(16, &e.to_string()))?;
    let data_len = u64::from_le_bytes(body[meta_end..meta_end + 8].try_into().unwrap());
    if data_len != (body.len() - meta_end - 8) as u64 {
        return Err(damage(meta_end, "data length disagrees with the file size"));
    }
    Ok((meta, body[meta_end + 8..].to_vec()))
}

/// A snapshot's file name: the index after its last entry, zero-padded, so
/// that names sort by index.
fn file_name(meta: &Meta) -> String {
    let seq = meta.last_log_id.map_or(0, |id| id.index + 1);
    format!("{seq:020}.snap")
}

/// Writes a snapshot durably, then removes older snapshots and leftovers of
/// interrupted writes. Callers must not write two snapshots at once.
pub async fn write(disk: &DiskRef, meta: &Meta, data: &[u8]) -> std::io::Result<()> {
    let name = file_name(meta);
    let path = format!("{SNAPSHOT_DIR}/{name}");
    let tmp = format!("{path}.tmp");
    disk.create_dir(SNAPSHOT_DIR).await?;
    disk.sync_dir("").await?;
    disk.create(&tmp).await?;
    disk.append(&tmp, &encode(meta, data)).await?;
    disk.sync(&tmp).await?;
    disk.rename(&tmp, &path).await?;
    disk.sync_dir(SNAPSHOT_DIR).await?;
    let mut removed = false;
    for other in disk.list(SNAPSHOT_DIR).await? {
        let older = other.ends_with(".snap") && other < name;
        if older || other.ends_with(".tmp") {
            disk.remove(&format!("{SNAPSHOT_DIR}/{other}")).await?;
            removed = true;
        }
    }
    if removed {
        disk.sync_dir(SNAPSHOT_DIR).await?;
    }
    Ok(())
}

/// Loads the newest snapshot, if any, removing leftovers of interrupted
/// writes. A damaged newest snapshot is an error: it is never skipped for an
/// older one, which may no longer match the log.
pub async fn load_latest(disk: &DiskRef) -> Result<Option<(Meta, Vec<u8>)>, SnapshotError> {
    let io = |path: &str| {
        let path = path.to_string();
        move |source| SnapshotError::Io { path, source }
    };
    disk.create_dir(SNAPSHOT_DIR)
        .await
        .map_err(io(SNAPSHOT_DIR))?;
    let mut newest = None;
    for name in disk.list(SNAPSHOT_DIR).await.map_err(io(SNAPSHOT_DIR))? {
        let path = format!("{SNAPSHOT_DIR}/{name}");
        if name.ends_with(".tmp") {
            disk.remove(&path).await.map_err(io(&path))?;
        } else if name.ends_with(".snap") {
            newest = Some(path); // names sort by index
        }
    }
    let Some(path) = newest else {
        return Ok(None);
    };
    let file = read_stable(disk, &path, |bytes| decode(bytes).is_err())
        .await
        .map_err(|e| match e {
            StableReadError::Io(source) => SnapshotError::Io {
                path: path.clone(),
                source,
            },
            StableReadError::Unstable => SnapshotError::Corrupt {
                path: path.clone(),
                offset: 0,
                reason: "reads disagree".to_string(),
            },
        })?;
    decode(&file)
        .map(Some)
        .map_err(|Damage { offset, reason }| SnapshotError::Corrupt {
            path,
            offset,
            reason,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, LogId, StoredMembership};

    fn meta() -> Meta {
        SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(3, 1), 42)),
            last_membership: StoredMembership::default(),
            snapshot_id: "3-1-42".into(),
        }
    }

    #[test]
    fn round_trip_and_every_flipped_bit_is_caught() {
        let file = encode(&meta(), b"the state");
        assert_eq!(decode(&file), Ok((meta(), b"the state".to_vec())));
        for byte in 0..file.len() {
            let mut damaged = file.clone();
            damaged[byte] ^= 0x10;
            assert!(decode(&damaged).is_err(), "flip in byte {byte} went unseen");
        }
        assert!(decode(&file[..file.len() - 1]).is_err());
        assert_eq!(file_name(&meta()), "00000000000000000043.snap");
    }
}
