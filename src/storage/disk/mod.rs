//! The disk seam: the few file operations Shoal's storage needs.
//!
//! Storage never touches the filesystem directly; it goes through a [`Disk`].
//! [`OsDisk`] is the real one (files under a data directory, `fsync` for real,
//! directory `fsync` after create, rename and remove). The simulator supplies a
//! fault-injecting implementation that lives outside the simulated node, so
//! that what survives a crash is exactly what was synced.
//!
//! The contract (what an implementation must honour and storage may assume):
//! - A file's contents are durable once [`Disk::sync`] on it returns `Ok`.
//! - A file's *name* (its creation, a rename onto it, a removal) is durable once
//!   [`Disk::sync_dir`] on its directory returns `Ok`.
//! - After a crash, unsynced appends may be gone entirely or torn (a prefix of
//!   them survives, cut at a sector boundary); synced bytes are intact.
//! - Any operation may fail with an I/O error; a failed `sync` means the data
//!   may or may not be durable, so callers must not carry on as if it were.
//! - A [`RandomFile`] is written in place: after a crash, any subset of the
//!   sectors written since its last [`RandomFile::sync`] may hold the new
//!   bytes, the rest the old ones (disks reorder writes).
//!
//! Paths are relative to the disk's root and use `/` separators.

mod os;

use std::fmt::Debug;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

pub use os::{OsDisk, LOCK_FILE};

/// A boxed future returned by [`Disk`] methods.
pub type DiskFuture<'a, T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send + 'a>>;

/// A shared disk handle.
pub type DiskRef = Arc<dyn Disk>;

/// Size of a disk sector: the unit in which a crash may tear a write.
pub const SECTOR_SIZE_BYTES: usize = 512;

/// The file operations storage needs. See the module docs for the contract.
pub trait Disk: Debug + Send + Sync + 'static {
    /// Creates `dir` and any missing parents (durable after `sync_dir` of the
    /// parent).
    fn create_dir(&self, dir: &str) -> DiskFuture<'_, ()>;

    /// Creates an empty file, replacing any file of that name.
    fn create(&self, path: &str) -> DiskFuture<'_, ()>;

    /// Appends `data` to the end of an existing file.
    fn append<'a>(&'a self, path: &'a str, data: &'a [u8]) -> DiskFuture<'a, ()>;

    /// Reads a whole file.
    fn read(&self, path: &str) -> DiskFuture<'_, Vec<u8>>;

    /// Cuts a file to `len` bytes.
    fn truncate(&self, path: &str, len: u64) -> DiskFuture<'_, ()>;

    /// Makes a file's contents durable.
    fn sync(&self, path: &str) -> DiskFuture<'_, ()>;

    /// Appends `data` to an existing file and makes the file durable: the
    /// write-ahead log's every batch, so a disk may do both in one step.
    fn append_and_sync<'a>(&'a self, path: &'a str, data: &'a [u8]) -> DiskFuture<'a, ()> {
        Box::pin(async move {
            self.append(path, data).await?;
            self.sync(path).await
        })
    }

    /// Renames a file, replacing any file at `to`.
    fn rename<'a>(&'a self, from: &'a str, to: &'a str) -> DiskFuture<'a, ()>;

    /// Removes a file. Removing a missing file is not an error.
    fn remove(&self, path: &str) -> DiskFuture<'_, ()>;

    /// Names of the files directly in `dir`, sorted. A missing directory
    /// lists as empty.
    fn list(&self, dir: &str) -> DiskFuture<'_, Vec<String>>;

    /// Makes the names in `dir` (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &str) -> DiskFuture<'_, ()>;

    /// Opens a file for reads and writes in place, creating it empty if
    /// missing (its name durable after `sync_dir`).
    fn open_random(&self, path: &str) -> DiskFuture<'_, Arc<dyn RandomFile>>;

    /// Waits as long as one operation may take: [`RandomFile`] calls are
    /// synchronous, so a caller about to make a costly one (a sync) waits
    /// here first. A real disk takes its time in the call itself.
    fn pause(&self) -> DiskFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
}

/// A file read and written in place at byte offsets, synchronously: the
/// shape an embedded storage engine drives (see [`super::engine`]). Calls
/// block briefly; a caller that needs many makes them in batches.
pub trait RandomFile: Debug + Send + Sync + 'static {
    /// The file's length in bytes.
    fn len(&self) -> io::Result<u64>;

    /// Fills `out` from `offset`; reading past the end is an error.
    fn read_at(&self, offset: u64, out: &mut [u8]) -> io::Result<()>;

    /// Writes `data` at `offset`, growing the file if needed.
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;

    /// Sets the length; new bytes read as zero.
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// Makes the contents and length durable.
    fn sync(&self) -> io::Result<()>;
}

/// Reads of a damaged file before trusting what it holds.
const READS_PER_FILE_MAX: usize = 8;

/// A file that could not be read reliably.
#[derive(Debug, thiserror::Error)]
pub enum StableReadError {
    /// The disk failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// Every read looked damaged and no two agreed.
    #[error("reads disagree {READS_PER_FILE_MAX} times in a row")]
    Unstable,
}

/// Reads a file. While a read looks damaged, reads again, until two reads
/// agree: a damaged read may be a transient fault, damage that persists is
/// believed.
pub async fn read_stable(
    disk: &DiskRef,
    path: &str,
    looks_damaged: impl Fn(&[u8]) -> bool,
) -> Result<Vec<u8>, StableReadError> {
    let mut previous: Option<Vec<u8>> = None;
    for _ in 0..READS_PER_FILE_MAX {
        let bytes = disk.read(path).await?;
        if !looks_damaged(&bytes) || previous.as_ref() == Some(&bytes) {
            return Ok(bytes);
        }
        previous = Some(bytes);
    }
    Err(StableReadError::Unstable)
}

/// Fills `out` from `offset` of `file`, reading the range twice, and again
/// until two reads in a row agree: a read damaged in flight must not reach
/// a reader that trusts it (the engine's pages, a received snapshot being
/// installed). Damage at rest reads the same every time and is left to the
/// reader's own checksums.
pub fn read_at_agreed(file: &dyn RandomFile, offset: u64, out: &mut [u8]) -> io::Result<()> {
    file.read_at(offset, out)?;
    let mut again = vec![0; out.len()];
    for _ in 0..READS_PER_FILE_MAX {
        file.read_at(offset, &mut again)?;
        if again == out {
            return Ok(());
        }
        out.copy_from_slice(&again);
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{} bytes at offset {offset}: reads disagree {READS_PER_FILE_MAX} times in a row",
            out.len()
        ),
    ))
}
