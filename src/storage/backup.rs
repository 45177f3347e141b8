//! Backup files: one group's applied state as of one log index, as `shoal
//! snapshot save` writes it, `shoal snapshot status` checks it and
//! `shoal-node --restore` seeds a new group from it.
//!
//! ```text
//! magic "SHOALBAK" | version: u32 LE
//! frame 0          header: bincode of Header (group, snapshot metadata,
//!                  state size, chunk count)
//! frames 1 ..= n   the state, in chunks of at most BACKUP_CHUNK_SIZE_BYTES
//! frame n + 1      trailer: file size: u64 LE | crc32c: u32 LE of every
//!                  byte before the trailer frame
//! ```
//!
//! Frames are the log's ([`super::frame`]: `len | crc32c | lsn | batch |
//! payload`), numbered from 0, each a batch of its own, so every frame
//! carries its own checksum and its place in the file. The state is exactly
//! a Raft snapshot's data ([`StateMachineStore::capture`]): one encoding of
//! the applied state, shared with the snapshot files and snapshot transfers.
//! Reading a backup checks everything and names the byte offset of the
//! first damage it finds: a damaged frame is found by its checksum, a cut
//! file by the missing trailer.
//!
//! [`StateMachineStore::capture`]: super::StateMachineStore::capture

use std::collections::{BTreeMap, BTreeSet};

use openraft::{CommittedLeaderId, LogId, Membership, StoredMembership};
use serde::{Deserialize, Serialize};

use super::disk::DiskRef;
use super::frame;
use super::log_store::WAL_DIR;
use super::snapshot::{self, Damage, Meta, FORMER_SNAPSHOT_DIR};
use super::state_machine::install_engine;
use crate::format::{Encoding, NewerFormat};
use crate::ids::{GroupKey, Member, NodeId};
use crate::limits::BACKUP_CHUNK_SIZE_BYTES;
use crate::machine::kv::Session;
use crate::machine::{Head, Role};
use crate::raft::codec;

const MAGIC: &[u8; 8] = b"SHOALBAK";
/// Version 2 holds the snapshot stream; version 1, written before the
/// state machine moved to disk, the state as one bincode value, which
/// [`legacy`] turns into the stream when read.
const VERSION: u32 = Encoding::Backup.version();
/// Magic and version, before the first frame.
const PREFIX_SIZE_BYTES: usize = 12;
/// The trailer frame's payload: file size and checksum.
const TRAILER_SIZE_BYTES: usize = 12;

/// What a backup file says about itself before its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The group the state was taken from (written as its number, if any).
    #[serde(with = "group_number")]
    pub group: GroupKey,
    /// The snapshot metadata: last applied log id and membership.
    pub meta: Meta,
    /// Size of the state, in bytes.
    pub state_size_bytes: u64,
    /// Frames the state is cut into.
    pub chunks: u64,
}

/// A group written as its number, absent for a standalone group.
mod group_number {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::ids::GroupKey;

    pub fn serialize<S: Serializer>(group: &GroupKey, s: S) -> Result<S::Ok, S::Error> {
        group.number().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<GroupKey, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map_or(GroupKey::Standalone, GroupKey::from_number))
    }
}

/// A verified backup file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    /// Its header.
    pub header: Header,
    /// The state: a Raft snapshot's data.
    pub state: Vec<u8>,
    /// The file's size in bytes.
    pub size_bytes: u64,
    /// CRC32C of every byte before the trailer frame, as the trailer holds it.
    pub checksum: u32,
}

/// The group whose role `role` is.
pub fn group_of(role: &Role) -> GroupKey {
    match role {
        Role::Standalone => GroupKey::Standalone,
        Role::Controller(_) => GroupKey::Controller,
        Role::Data(shards) => GroupKey::Data(shards.group),
    }
}

/// Encodes a backup of `group`'s state `state`, which `meta` describes.
pub fn encode(group: GroupKey, meta: &Meta, state: &[u8]) -> Vec<u8> {
    encode_version(VERSION, group, meta, state)
}

fn encode_version(version: u32, group: GroupKey, meta: &Meta, state: &[u8]) -> Vec<u8> {
    let chunks = state.chunks(BACKUP_CHUNK_SIZE_BYTES);
    let header = Header {
        group,
        meta: meta.clone(),
        state_size_bytes: state.len() as u64,
        chunks: chunks.len() as u64,
    };
    let header = codec::encode(&header).expect("a backup header always encodes");
    let mut file = Vec::with_capacity(state.len() + 4096);
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(&version.to_le_bytes());
    frame::encode(0, 0, &header, &mut file);
    let mut lsn = 1;
    for chunk in chunks {
        frame::encode(lsn, lsn, chunk, &mut file);
        lsn += 1;
    }
    let checksum = crc32c::crc32c(&file);
    let size = (file.len() + frame::HEADER_SIZE_BYTES + TRAILER_SIZE_BYTES) as u64;
    let mut trailer = size.to_le_bytes().to_vec();
    trailer.extend_from_slice(&checksum.to_le_bytes());
    frame::encode(lsn, lsn, &trailer, &mut file);
    assert_eq!(
        file.len() as u64,
        size,
        "the trailer states the file's size"
    );
    file
}

fn damage(offset: usize, reason: impl Into<String>) -> Damage {
    Damage {
        offset: offset as u64,
        reason: reason.into(),
    }
}

/// Frame `lsn` of `file`, starting at `at`, or the damage found there.
fn frame_at<'a>(file: &'a [u8], at: usize, lsn: u64, what: &str) -> Result<&'a [u8], Damage> {
    let Some(found) = frame::record_at(file, at) else {
        let claimed = file
            .get(at..at + 4)
            .map(|len| u32::from_le_bytes(len.try_into().unwrap()) as usize);
        let reason = match claimed {
            Some(len) if at + frame::HEADER_SIZE_BYTES + len <= file.len() => {
                format!("{what} is damaged (checksum mismatch)")
            }
            _ => format!(
                "the file ends inside {what} ({} bytes): truncated, or its length is damaged",
                file.len()
            ),
        };
        return Err(damage(at, reason));
    };
    if found.lsn != lsn || found.batch != lsn {
        return Err(damage(at, format!("{what} is out of place")));
    }
    Ok(&file[found.payload])
}

/// Why a backup file cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    /// The file is damaged (or not a backup).
    #[error("damaged at byte offset {}: {}", .0.offset, .0.reason)]
    Damaged(#[from] Damage),
    /// A later Shoal wrote it (or its version field is damaged: the two
    /// cannot be told apart without the later layout).
    #[error(transparent)]
    Newer(#[from] NewerFormat),
}

/// Decodes a backup file, verifying every byte of it.
pub fn decode(file: &[u8]) -> Result<Backup, Unreadable> {
    if file.len() < PREFIX_SIZE_BYTES {
        return Err(damage(file.len(), "too short for a Shoal backup").into());
    }
    if &file[..8] != MAGIC {
        return Err(damage(0, "not a Shoal backup file").into());
    }
    let version = u32::from_le_bytes(file[8..12].try_into().unwrap());
    NewerFormat::check(Encoding::Backup, version)?;
    if version != VERSION && version != legacy::VERSION {
        return Err(damage(8, format!("unknown format version {version}")).into());
    }
    Ok(decode_version(file, version)?)
}

/// Decodes a backup file of a known `version`.
fn decode_version(file: &[u8], version: u32) -> Result<Backup, Damage> {
    let mut at = PREFIX_SIZE_BYTES;
    let header_bytes = frame_at(file, at, 0, "the header")?;
    let header: Header = codec::decode(header_bytes)
        .map_err(|e| damage(at, format!("the header does not decode: {e}")))?;
    at += frame::HEADER_SIZE_BYTES + header_bytes.len();
    let mut state = Vec::with_capacity(header.state_size_bytes.min(1 << 30) as usize);
    for lsn in 1..=header.chunks {
        let what = format!("chunk {lsn} of {}", header.chunks);
        let chunk = frame_at(file, at, lsn, &what)?;
        if chunk.len() > BACKUP_CHUNK_SIZE_BYTES {
            return Err(damage(at, format!("{what} is larger than a chunk may be")));
        }
        state.extend_from_slice(chunk);
        at += frame::HEADER_SIZE_BYTES + chunk.len();
    }
    let trailer_at = at;
    let trailer = frame_at(file, at, header.chunks + 1, "the trailer")?;
    if trailer.len() != TRAILER_SIZE_BYTES {
        return Err(damage(at, "the trailer has the wrong size"));
    }
    let size = u64::from_le_bytes(trailer[0..8].try_into().unwrap());
    let checksum = u32::from_le_bytes(trailer[8..12].try_into().unwrap());
    at += frame::HEADER_SIZE_BYTES + trailer.len();
    if at != file.len() || size != file.len() as u64 {
        return Err(damage(
            at.min(file.len()),
            format!("the file is {} bytes, its trailer says {size}", file.len()),
        ));
    }
    if crc32c::crc32c(&file[..trailer_at]) != checksum {
        // Every frame checked out and the magic matched: the version, the
        // one field no frame covers, is what differs.
        return Err(damage(
            8,
            "the format version is damaged (whole-file checksum mismatch)",
        ));
    }
    if state.len() as u64 != header.state_size_bytes {
        return Err(damage(
            PREFIX_SIZE_BYTES,
            "the state's size disagrees with the header",
        ));
    }
    if version == legacy::VERSION {
        state = legacy::state(&state).map_err(|reason| damage(PREFIX_SIZE_BYTES, reason))?;
    }
    Ok(Backup {
        header,
        state,
        size_bytes: size,
        checksum,
    })
}

impl Backup {
    /// The head and sessions of the state the backup holds, checked
    /// against its header; and where the state's entries begin.
    pub fn head(&self) -> Result<((Head, BTreeMap<u64, Session>), usize), Damage> {
        let first_chunk = PREFIX_SIZE_BYTES as u64;
        let (head, len) = snapshot::decode_head(&self.state).map_err(|d| Damage {
            offset: first_chunk + d.offset,
            reason: d.reason,
        })?;
        if head.0.last_applied != self.header.meta.last_log_id {
            return Err(damage(
                PREFIX_SIZE_BYTES,
                "the state and the header disagree on the last applied index",
            ));
        }
        if group_of(&head.0.role) != self.header.group {
            return Err(damage(
                PREFIX_SIZE_BYTES,
                "the state and the header disagree on the group",
            ));
        }
        Ok((head, len))
    }

    /// Checks the whole state, entries included; returns its sessions and
    /// keys.
    pub fn check(&self) -> Result<(usize, u64), Damage> {
        self.head()?;
        let (_, sessions, keys) = snapshot::check(&self.state).map_err(|d| {
            let reason = format!("{} (at byte {} of the state)", d.reason, d.offset);
            damage(PREFIX_SIZE_BYTES, reason)
        })?;
        Ok((sessions.len(), keys))
    }
}

/// Why a backup cannot seed a replica.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The backup is of another group than the replica's.
    #[error("the backup is of the {backup}, but this replica belongs to the {replica}")]
    WrongGroup {
        /// The backup's group.
        backup: GroupKey,
        /// The replica's.
        replica: GroupKey,
    },
    /// The backup is of a cluster with another shard count.
    #[error("the backup is of a cluster of {backup} shards, but this replica's has {replica}")]
    ShardCount {
        /// The backup's shard count.
        backup: u32,
        /// The replica's.
        replica: u32,
    },
    /// The backup's state is damaged.
    #[error("damaged backup at offset {}: {}", .0.offset, .0.reason)]
    Damaged(Damage),
    /// The data directory already holds a replica's state.
    #[error("the data directory is not empty: it holds {0}")]
    NotEmpty(String),
    /// The disk failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The shards of the cluster a group of role `role` belongs to (none for
/// a standalone group).
fn shard_count_of(role: &Role) -> Option<u32> {
    match role {
        Role::Standalone => None,
        Role::Controller(controller) => Some(controller.query(None).shard_count()),
        Role::Data(shards) => Some(shards.config.shard_count()),
    }
}

/// The snapshot a new group with members `peers`, in a cluster of
/// `shard_count` shards, starts from: the backup's state, renumbered as the
/// history of a new group. Its last log id keeps the
/// backup's index but has term 0 (so that the new group's first leader, of
/// term 1, appends after it), and its membership is `peers`. Every member
/// seeded from the same backup and peers holds the same snapshot.
pub fn restored_snapshot(
    backup: &Backup,
    group: GroupKey,
    shard_count: u32,
    peers: &BTreeMap<NodeId, Member>,
) -> Result<(Meta, Vec<u8>), RestoreError> {
    if backup.header.group != group {
        return Err(RestoreError::WrongGroup {
            backup: backup.header.group,
            replica: group,
        });
    }
    let ((mut head, sessions), entries_at) = backup.head().map_err(RestoreError::Damaged)?;
    if let Some(backup) = shard_count_of(&head.role).filter(|n| *n != shard_count) {
        return Err(RestoreError::ShardCount {
            backup,
            replica: shard_count,
        });
    }
    let index = head.last_applied.map_or(0, |log_id| log_id.index);
    let log_id = Some(LogId::new(CommittedLeaderId::new(0, 0), index));
    let voters: BTreeSet<NodeId> = peers.keys().copied().collect();
    let nodes = peers.clone();
    head.last_applied = log_id;
    head.membership = StoredMembership::new(log_id, Membership::new(vec![voters], nodes));
    let meta = Meta {
        last_log_id: log_id,
        last_membership: head.membership.clone(),
        snapshot_id: format!("restored-{index}"),
    };
    let mut data = snapshot::encode_head(&head, &sessions);
    data.extend_from_slice(&backup.state[entries_at..]);
    Ok((meta, data))
}

/// Files a replica keeps on `disk` (the directory lock aside).
async fn replica_files(disk: &DiskRef, lock_file: &str) -> std::io::Result<Vec<String>> {
    let mut files: Vec<String> = disk
        .list("")
        .await?
        .into_iter()
        .filter(|name| name != lock_file)
        .collect();
    for dir in [WAL_DIR, FORMER_SNAPSHOT_DIR] {
        let inside = disk.list(dir).await?;
        files.extend(inside.into_iter().map(|name| format!("{dir}/{name}")));
    }
    Ok(files)
}

/// Makes `meta`/`data` the installed state of a replica whose `disk`
/// holds nothing yet (only `lock_file`, if it has one); its log starts after
/// the snapshot. Refused, with nothing written, if the disk holds anything.
pub async fn seed(
    disk: &DiskRef,
    lock_file: &str,
    meta: &Meta,
    data: &[u8],
) -> Result<(), RestoreError> {
    let present = replica_files(disk, lock_file).await?;
    if !present.is_empty() {
        return Err(RestoreError::NotEmpty(present.join(", ")));
    }
    let mut read = |at: u64, out: &mut [u8]| {
        let at = at as usize;
        out.copy_from_slice(&data[at..at + out.len()]);
        Ok(())
    };
    let options = super::engine::EngineOptions::default();
    install_engine(disk, &options, data.len() as u64, &mut read, Some(meta))
        .await
        .map_err(|e| match e {
            snapshot::InstallError::Damaged(d) => RestoreError::Damaged(d),
            other => RestoreError::Io(std::io::Error::other(other)),
        })?;
    Ok(())
}

mod legacy;
#[cfg(test)]
mod tests;
