//! Every encoding a replica writes to its disk or sends to a peer, with the
//! format version this build writes.
//!
//! | encoding | where | tag |
//! |---|---|---|
//! | [`Encoding::Engine`] | `state.redb`: its tables, rows, head and sessions | the `format` meta record |
//! | [`Encoding::Snapshot`] | a replica's state as one stream: Raft snapshots, a backup's state | magic `SHOALSS` and the version digit |
//! | [`Encoding::Backup`] | `shoal snapshot save` files | magic `SHOALBAK` and a u32 |
//! | [`Encoding::Vote`] | the `vote` file | magic `SHOALVOT` (version 1 implied) |
//! | [`Encoding::Log`] | write-ahead log segments, their records and the log's commands | none yet (version 1 implied) |
//! | [`Encoding::Peer`] | consensus messages and shard transfers | none yet (version 1 implied) |
//!
//! The exact bytes of each are pinned by golden-bytes tests
//! (`storage/golden.rs`, the engine's rows in `storage/engine`), and
//! `tests/fixtures.rs` opens the data directories earlier releases wrote.
//! A tag newer than this build knows is refused with [`NewerFormat`], never
//! reported as damage.

/// One encoding that outlives the process that wrote it, or leaves the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Encoding {
    /// The state machine's engine file.
    Engine,
    /// A replica's applied state as one byte stream.
    Snapshot,
    /// A backup file.
    Backup,
    /// The Raft vote file.
    Vote,
    /// The write-ahead log and the commands it holds.
    Log,
    /// Messages between replicas.
    Peer,
}

impl Encoding {
    /// Every encoding.
    pub const ALL: [Encoding; 6] = [
        Encoding::Engine,
        Encoding::Snapshot,
        Encoding::Backup,
        Encoding::Vote,
        Encoding::Log,
        Encoding::Peer,
    ];

    /// Its name in messages.
    pub const fn name(self) -> &'static str {
        match self {
            Encoding::Engine => "engine",
            Encoding::Snapshot => "snapshot",
            Encoding::Backup => "backup",
            Encoding::Vote => "vote file",
            Encoding::Log => "log",
            Encoding::Peer => "peer message",
        }
    }

    /// The version this build writes, the newest it reads.
    pub const fn version(self) -> u32 {
        match self {
            Encoding::Snapshot | Encoding::Backup => 2,
            Encoding::Engine | Encoding::Vote | Encoding::Log | Encoding::Peer => 1,
        }
    }
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Data in a format newer than this build reads: written by a later Shoal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "written by a newer Shoal: {encoding} format {found}, this binary reads up to {}",
    encoding.version()
)]
pub struct NewerFormat {
    /// What was being read.
    pub encoding: Encoding,
    /// The version its tag names.
    pub found: u32,
}

impl NewerFormat {
    /// `Err` if `found` is newer than this build's version of `encoding`.
    pub fn check(encoding: Encoding, found: u32) -> Result<(), NewerFormat> {
        match found > encoding.version() {
            true => Err(NewerFormat { encoding, found }),
            false => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_version_is_named_with_what_this_build_reads() {
        assert_eq!(NewerFormat::check(Encoding::Backup, 2), Ok(()));
        assert_eq!(NewerFormat::check(Encoding::Backup, 1), Ok(()));
        let newer = NewerFormat::check(Encoding::Backup, 3).unwrap_err();
        assert_eq!(
            newer.to_string(),
            "written by a newer Shoal: backup format 3, this binary reads up to 2"
        );
        let names: std::collections::BTreeSet<&str> =
            Encoding::ALL.iter().map(|e| e.name()).collect();
        assert_eq!(names.len(), Encoding::ALL.len());
    }
}
