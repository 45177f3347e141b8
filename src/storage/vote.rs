//! The vote file: the replica's Raft vote, alone in a small checksummed file
//! replaced atomically (write a temporary file, sync it, rename it over the
//! old one, sync the directory).
//!
//! The vote lives apart from the write-ahead log because losing it is the one
//! loss Raft cannot survive (a replica that forgets its vote may vote twice in
//! a term), and the log's newest record is the one place where damage cannot
//! be told from a torn write. Here any damage is detected and refused.
//!
//! File `vote`: `magic "SHOALVOT" | vote (bincode) | crc32c: u32 LE`.

use openraft::Vote;

use super::disk::{read_stable, DiskRef, StableReadError};
use crate::ids::NodeId;
use crate::raft::codec;

/// The vote file's path.
pub const VOTE_FILE: &str = "vote";
const VOTE_TMP: &str = "vote.tmp";
const MAGIC: &[u8; 8] = b"SHOALVOT";

/// A vote file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum VoteError {
    /// The disk failed.
    #[error("{VOTE_FILE}: {0}")]
    Io(#[from] std::io::Error),
    /// The file is damaged.
    #[error("{VOTE_FILE}: corrupt vote file at offset {offset}: {reason}")]
    Corrupt {
        /// Where the damage shows.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
}

pub(super) fn encode(vote: &Vote<NodeId>) -> Vec<u8> {
    let mut file = MAGIC.to_vec();
    file.extend(codec::encode(vote).expect("votes always encode"));
    let crc = crc32c::crc32c(&file);
    file.extend_from_slice(&crc.to_le_bytes());
    file
}

fn decode(file: &[u8]) -> Result<Vote<NodeId>, VoteError> {
    let corrupt = |offset: usize, reason| VoteError::Corrupt {
        offset: offset as u64,
        reason,
    };
    if file.len() < MAGIC.len() + 4 {
        return Err(corrupt(file.len(), "too short"));
    }
    let (body, crc) = file.split_at(file.len() - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().unwrap()) {
        return Err(corrupt(body.len(), "checksum mismatch"));
    }
    if &body[..MAGIC.len()] != MAGIC {
        return Err(corrupt(0, "not a Shoal vote file"));
    }
    codec::decode(&body[MAGIC.len()..]).map_err(|_| corrupt(MAGIC.len(), "vote does not decode"))
}

/// Makes `vote` durable.
pub async fn save(disk: &DiskRef, vote: &Vote<NodeId>) -> std::io::Result<()> {
    disk.create(VOTE_TMP).await?;
    disk.append(VOTE_TMP, &encode(vote)).await?;
    disk.sync(VOTE_TMP).await?;
    disk.rename(VOTE_TMP, VOTE_FILE).await?;
    disk.sync_dir("").await
}

/// Reads the vote; `None` on a replica that never voted.
pub async fn load(disk: &DiskRef) -> Result<Option<Vote<NodeId>>, VoteError> {
    let names = disk.list("").await?;
    if !names.iter().any(|name| name == VOTE_FILE) {
        return Ok(None);
    }
    let file = read_stable(disk, VOTE_FILE, |bytes| decode(bytes).is_err())
        .await
        .map_err(|e| match e {
            StableReadError::Io(e) => VoteError::Io(e),
            StableReadError::Unstable => VoteError::Corrupt {
                offset: 0,
                reason: "reads disagree",
            },
        })?;
    decode(&file).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_flipped_bit_is_caught() {
        let vote = Vote::new(7, 2);
        let file = encode(&vote);
        assert_eq!(decode(&file).unwrap(), vote);
        for byte in 0..file.len() {
            let mut damaged = file.clone();
            damaged[byte] ^= 0x01;
            assert!(decode(&damaged).is_err(), "flip in byte {byte} went unseen");
        }
        let committed = Vote::new_committed(3, 1);
        assert_eq!(decode(&encode(&committed)).unwrap(), committed);
    }
}
