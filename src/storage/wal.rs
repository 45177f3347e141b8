//! A segmented write-ahead log of framed records on a [`Disk`].
//!
//! Segments are files `DIR/LSN.wal`, named by the number of their first record
//! (zero-padded to 20 digits) and written strictly in order; records are
//! numbered consecutively across segments (see [`frame`]). Naming a segment by
//! its first record keeps recovery exact after old segments are deleted, and
//! lets it check that no records are missing between segments. Only the newest segment is ever appended to, and an older one is
//! always fully synced, so only the newest may end in a torn tail: recovery
//! cuts it off. Damage anywhere else is corruption: recovery refuses to go on
//! and names the file and offset.
//!
//! The log knows nothing of what its records mean; the Raft log store
//! ([`super::log_store`]) gives them meaning and decides when old segments are
//! no longer needed.

use std::io;

use super::disk::{read_stable, DiskRef, StableReadError};
use super::frame::{self, Tail};
use crate::runtime::{planted, reached, PlantedBug, Situation};

/// Extension of segment files.
const SEGMENT_SUFFIX: &str = ".wal";

/// Why a log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The disk failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The disk's error.
        source: io::Error,
    },
    /// A record is damaged where a crash cannot have damaged it.
    #[error("{path}: corrupt record at offset {offset}")]
    Corrupt {
        /// The segment file.
        path: String,
        /// Where the damaged record starts.
        offset: u64,
    },
    /// Reads of a damaged file never agreed twice.
    #[error("{path}: reads of a damaged file never agreed")]
    Unstable {
        /// The file.
        path: String,
    },
}

fn io_error(path: &str) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_string(),
        source,
    }
}

/// The records of one segment, as recovered.
#[derive(Debug)]
pub struct RecoveredSegment {
    /// The segment's number.
    pub seq: u64,
    /// Its records' payloads, in order.
    pub records: Vec<Vec<u8>>,
}

/// An open log, positioned to append after the last good record.
#[derive(Debug)]
pub struct Wal {
    disk: DiskRef,
    dir: String,
    /// The segment being appended to: number, path and length.
    current: (u64, String, u64),
    next_lsn: u64,
    /// Segment size past which the owner should [`Wal::rotate`].
    segment_size_max: u64,
    /// Number of the first record of the batch being framed.
    batch: u64,
    /// Whether the newest segment holds writes not yet synced.
    unsynced: bool,
}

fn segment_path(dir: &str, seq: u64) -> String {
    format!("{dir}/{seq:020}{SEGMENT_SUFFIX}")
}

impl Wal {
    /// Opens the log in `dir`, creating it if absent, and returns its records
    /// segment by segment. A torn tail on the newest segment is cut off.
    pub async fn open(
        disk: DiskRef,
        dir: &str,
        segment_size_max: u64,
    ) -> Result<(Wal, Vec<RecoveredSegment>), WalError> {
        disk.create_dir(dir).await.map_err(io_error(dir))?;
        disk.sync_dir("").await.map_err(io_error(dir))?;
        let seqs = segment_seqs(&disk, dir).await?;
        let mut recovered = Vec::new();
        let mut next_lsn = seqs.first().copied().unwrap_or(1);
        let mut current = None;
        for (i, &seq) in seqs.iter().enumerate() {
            let path = segment_path(dir, seq);
            let newest = i + 1 == seqs.len();
            if seq != next_lsn {
                // The previous segment ends before this one begins (or
                // overlaps it): records are missing.
                return Err(WalError::Corrupt { path, offset: 0 });
            }
            let (records, len) = recover_segment(&disk, &path, seq, newest).await?;
            next_lsn += records.len() as u64;
            recovered.push(RecoveredSegment { seq, records });
            if newest {
                current = Some((seq, path, len));
            }
        }
        let current = match current {
            Some(current) => current,
            None => {
                let path = segment_path(dir, 1);
                disk.create(&path).await.map_err(io_error(&path))?;
                disk.sync_dir(dir).await.map_err(io_error(dir))?;
                recovered.push(RecoveredSegment {
                    seq: 1,
                    records: Vec::new(),
                });
                (1, path, 0)
            }
        };
        let wal = Wal {
            disk,
            dir: dir.to_string(),
            current,
            next_lsn,
            segment_size_max,
            batch: next_lsn,
            unsynced: false,
        };
        Ok((wal, recovered))
    }

    /// Begins a batch: the records framed until the next call are written,
    /// then synced, together. Only one batch may be unsynced at a time.
    pub fn start_batch(&mut self) {
        self.batch = self.next_lsn;
    }

    /// Frames `payload` as the next record of the current batch into `out`;
    /// [`Wal::write`] it.
    pub fn frame(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        frame::encode(self.next_lsn, self.batch, payload, out);
        self.next_lsn += 1;
    }

    /// Appends framed records to the newest segment (not yet durable).
    pub async fn write(&mut self, framed: &[u8]) -> io::Result<()> {
        self.disk.append(&self.current.1, framed).await?;
        self.current.2 += framed.len() as u64;
        self.unsynced = true;
        Ok(())
    }

    /// Makes everything written so far durable.
    pub async fn sync(&mut self) -> io::Result<()> {
        self.disk.sync(&self.current.1).await?;
        self.unsynced = false;
        Ok(())
    }

    /// Appends framed records and makes everything written so far durable.
    pub async fn write_and_sync(&mut self, framed: &[u8]) -> io::Result<()> {
        self.disk.append_and_sync(&self.current.1, framed).await?;
        self.current.2 += framed.len() as u64;
        self.unsynced = false;
        Ok(())
    }

    /// The newest segment's number (the number of its first record).
    pub fn current_seq(&self) -> u64 {
        self.current.0
    }

    /// Whether the newest segment has grown past its size limit.
    pub fn should_rotate(&self) -> bool {
        self.current.2 >= self.segment_size_max.max(1)
    }

    /// Starts a new segment, first syncing what was written to the old one:
    /// only the newest segment may have an unsynced (tearable) tail.
    pub async fn rotate(&mut self) -> io::Result<u64> {
        assert!(self.current.2 > 0, "rotating an empty segment");
        if self.unsynced {
            self.sync().await?;
        }
        let seq = self.next_lsn;
        let path = segment_path(&self.dir, seq);
        self.disk.create(&path).await?;
        self.disk.sync_dir(&self.dir).await?;
        self.current = (seq, path, 0);
        Ok(seq)
    }

    /// Deletes old segments, which must precede the newest one.
    pub async fn remove(&mut self, seqs: &[u64]) -> io::Result<()> {
        for &seq in seqs {
            assert!(seq < self.current.0, "removing the newest segment {seq}");
            self.disk.remove(&segment_path(&self.dir, seq)).await?;
        }
        self.disk.sync_dir(&self.dir).await
    }
}

/// The first record numbers of the segments in `dir`, in order.
async fn segment_seqs(disk: &DiskRef, dir: &str) -> Result<Vec<u64>, WalError> {
    let mut seqs: Vec<u64> = disk
        .list(dir)
        .await
        .map_err(io_error(dir))?
        .iter()
        .filter_map(|name| name.strip_suffix(SEGMENT_SUFFIX)?.parse().ok())
        .collect();
    seqs.sort_unstable();
    Ok(seqs)
}

/// Reads one segment whose first record is `first_lsn`: its records and its
/// length. A torn tail is cut off the `newest` segment (the normal result of
/// a crash); anywhere else it is corruption.
async fn recover_segment(
    disk: &DiskRef,
    path: &str,
    first_lsn: u64,
    newest: bool,
) -> Result<(Vec<Vec<u8>>, u64), WalError> {
    let bytes = read_stable(disk, path, |bytes| {
        frame::scan(bytes, first_lsn).tail != Tail::Clean
    })
    .await
    .map_err(|e| match e {
        StableReadError::Io(source) => WalError::Io {
            path: path.to_string(),
            source,
        },
        StableReadError::Unstable => WalError::Unstable {
            path: path.to_string(),
        },
    })?;
    let scan = frame::scan(&bytes, first_lsn);
    let mut len = bytes.len() as u64;
    match scan.tail {
        Tail::Clean => {}
        Tail::Torn { .. } if newest && planted(PlantedBug::TornTailKept) => {}
        Tail::Torn { at } if newest => {
            tracing::warn!(path, offset = at, "cutting off a torn tail");
            reached(Situation::TornTailCut);
            disk.truncate(path, at as u64)
                .await
                .map_err(io_error(path))?;
            disk.sync(path).await.map_err(io_error(path))?;
            len = at as u64;
        }
        Tail::Torn { at } | Tail::Corrupt { at } => {
            return Err(WalError::Corrupt {
                path: path.to_string(),
                offset: at as u64,
            })
        }
    }
    let records = scan
        .records
        .into_iter()
        .map(|r| bytes[r.payload].to_vec())
        .collect();
    Ok((records, len))
}
