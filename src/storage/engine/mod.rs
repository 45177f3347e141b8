//! The state machine's on-disk engine: an ordered key-value store in one
//! file, [redb](https://docs.rs/redb) (a copy-on-write B-tree), reached
//! through the disk seam so that every fault the simulator injects reaches it.
//!
//! Layout, in three tables:
//! - `data`: `shard (u32 BE) ‖ key` → `crc32c ‖ value`, so one shard is one
//!   contiguous range: moving or dropping a shard costs what it holds;
//! - `sessions`: client id → `crc32c ‖` the caller's encoding of its session;
//! - `meta`: `format` (this layout's version), `counts` (keys and bytes
//!   stored) and `state` (the caller's record of what the data describes,
//!   such as the last applied log id).
//!
//! A [`Batch`] commits all three at once: the data, its sessions and its
//! state are never seen apart. [`Commit::Batched`] is visible at once and
//! durable with the next [`Commit::Checkpoint`]; a crash returns the engine
//! to its last checkpoint, never to anything in between.
//!
//! Every stored value carries a CRC32C of its key and bytes, checked on every
//! read: damage at rest is reported as [`EngineError::Damaged`] naming the
//! file and key, never served.

mod backend;
mod reader;

pub use reader::{Reader, Scan};

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use redb::{Database, Durability, ReadOnlyTable, ReadableDatabase, ReadableTable, TableDefinition};

use super::disk::DiskRef;
use crate::format::{Encoding, NewerFormat};
use crate::ids::ShardId;
use backend::DiskBackend;

/// The engine layout this build reads and writes.
pub const ENGINE_FORMAT: u32 = Encoding::Engine.version();

/// Bytes of pages the engine caches in memory unless told otherwise.
pub const CACHE_SIZE_BYTES_DEFAULT: usize = 64 * 1024 * 1024;

const DATA: TableDefinition<&[u8], &[u8]> = TableDefinition::new("data");
const SESSIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("sessions");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const META_FORMAT: &str = "format";
const META_COUNTS: &str = "counts";
const META_STATE: &str = "state";

/// Size of the checksum in front of every stored value.
const CRC_SIZE_BYTES: usize = 4;

/// Bytes the engine read from and wrote to its file (past its cache),
/// shared with whoever watches (cloning a counter shares it).
#[derive(Debug, Clone, Default)]
pub struct EngineIo {
    /// Bytes read from the file.
    pub read_bytes: Counter,
    /// Bytes written to the file.
    pub written_bytes: Counter,
}

/// How an engine is opened.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Bytes of pages cached in memory.
    pub cache_bytes: usize,
    /// Where its reads and writes are counted.
    pub io: EngineIo,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            cache_bytes: CACHE_SIZE_BYTES_DEFAULT,
            io: EngineIo::default(),
        }
    }
}

/// Why the engine could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine file could not be read or written.
    #[error("{file}: {source}")]
    Engine {
        /// The engine file.
        file: String,
        /// What redb (or the disk under it) said.
        #[source]
        source: Box<redb::Error>,
    },
    /// A stored value does not match its checksum.
    #[error("{file}: the stored value of {what} is damaged (checksum mismatch)")]
    Damaged {
        /// The engine file.
        file: String,
        /// Which value: a key with its shard, a session, a meta record.
        what: String,
    },
    /// The file was written by a newer Shoal.
    #[error("{file}: {source}")]
    Newer {
        /// The engine file.
        file: String,
        /// The format found.
        source: NewerFormat,
    },
    /// The file holds an older version of the layout, which this build
    /// does not migrate.
    #[error("{file}: engine format {found}, but this build reads format {ENGINE_FORMAT}")]
    Format {
        /// The engine file.
        file: String,
        /// The version found.
        found: u32,
    },
}

/// How a commit is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Visible at once; durable with the next checkpoint.
    Batched,
    /// Durable (with everything committed before it) when it returns.
    Checkpoint,
}

/// Keys and bytes (of keys and values) the engine holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Stored keys.
    pub keys: u64,
    /// Bytes of stored keys and values.
    pub bytes: u64,
}

impl Counts {
    /// Counts one row of `bytes` (key and value) gone; `false` if the
    /// counts hold fewer than that, leaving them as they were.
    fn remove(&mut self, bytes: usize) -> bool {
        match (
            self.keys.checked_sub(1),
            self.bytes.checked_sub(bytes as u64),
        ) {
            (Some(keys), Some(bytes)) => {
                *self = Counts { keys, bytes };
                true
            }
            _ => false,
        }
    }
}

/// Changes committed together.
#[derive(Debug, Default)]
pub struct Batch {
    /// Shards whose every key goes, before `writes` apply.
    dropped: BTreeSet<ShardId>,
    /// Stored key → new value (`None`: deleted).
    writes: BTreeMap<Vec<u8>, Option<Bytes>>,
    sessions: BTreeMap<u64, Option<Vec<u8>>>,
    state: Option<Vec<u8>>,
}

impl Batch {
    /// Sets `key` of `shard` to `value`.
    pub fn put(&mut self, shard: ShardId, key: &[u8], value: Bytes) {
        self.writes.insert(stored_key(shard, key), Some(value));
    }

    /// Deletes `key` of `shard`.
    pub fn delete(&mut self, shard: ShardId, key: &[u8]) {
        self.writes.insert(stored_key(shard, key), None);
    }

    /// Deletes every key of `shard`, including those this batch wrote.
    pub fn drop_shard(&mut self, shard: ShardId) {
        let (lower, upper) = shard_bounds(shard);
        let doomed: Vec<Vec<u8>> = self
            .writes
            .range::<[u8], _>((bound_ref(&lower), bound_ref(&upper)))
            .map(|(k, _)| k.clone())
            .collect();
        for key in doomed {
            self.writes.remove(&key);
        }
        self.dropped.insert(shard);
    }

    /// Stores `client`'s session (`None`: removes it).
    pub fn session(&mut self, client: u64, encoded: Option<Vec<u8>>) {
        self.sessions.insert(client, encoded);
    }

    /// Sets the state record.
    pub fn state(&mut self, encoded: Vec<u8>) {
        self.state = Some(encoded);
    }

    /// Whether the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.dropped.is_empty()
            && self.writes.is_empty()
            && self.sessions.is_empty()
            && self.state.is_none()
    }
}

/// An open engine file.
#[derive(Debug)]
pub struct Engine {
    db: Database,
    file: Arc<str>,
}

impl Engine {
    /// Opens (or creates) the engine file `path` on `disk`, at its last
    /// checkpoint. Refuses a file of another format.
    pub async fn open(
        disk: &DiskRef,
        path: &str,
        options: &EngineOptions,
    ) -> Result<Engine, EngineError> {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let names = disk.list(dir).await.map_err(|e| io_failed(path, e))?;
        if !names.iter().any(|n| n == name) {
            // A new engine is made whole under another name first: a crash
            // while it is made leaves no half-made engine at `path`.
            let fresh = format!("{path}.new");
            drop(Engine::create(disk, &fresh, options).await?);
            disk.rename(&fresh, path)
                .await
                .map_err(|e| io_failed(path, e))?;
        }
        // Every open makes the name durable: an earlier attempt may have
        // renamed the file and then failed to.
        disk.sync_dir(dir).await.map_err(|e| io_failed(path, e))?;
        Engine::open_file(disk, path, options).await
    }

    /// Creates an empty engine at `path`, replacing any file there. A crash
    /// may leave a half-made file: the caller renames it into place only
    /// once complete.
    pub async fn create(
        disk: &DiskRef,
        path: &str,
        options: &EngineOptions,
    ) -> Result<Engine, EngineError> {
        disk.remove(path).await.map_err(|e| io_failed(path, e))?;
        Engine::open_file(disk, path, options).await
    }

    async fn open_file(
        disk: &DiskRef,
        path: &str,
        options: &EngineOptions,
    ) -> Result<Engine, EngineError> {
        let handle = disk
            .open_random(path)
            .await
            .map_err(|e| io_failed(path, e))?;
        let db = redb::Builder::new()
            .set_cache_size(options.cache_bytes)
            .create_with_backend(DiskBackend::new(handle, options.io.clone()))
            .map_err(|e| EngineError::Engine {
                file: path.to_string(),
                source: Box::new(e.into()),
            })?;
        let engine = Engine {
            db,
            file: path.into(),
        };
        engine.check_format()?;
        Ok(engine)
    }

    /// The engine file's path.
    pub fn file(&self) -> &str {
        &self.file
    }

    fn failed(&self, e: impl Into<redb::Error>) -> EngineError {
        EngineError::Engine {
            file: self.file.to_string(),
            source: Box::new(e.into()),
        }
    }

    /// Writes the format on a new file; refuses a file of another format.
    fn check_format(&self) -> Result<(), EngineError> {
        let reader = self.reader()?;
        match reader.meta_record(META_FORMAT)? {
            Some(bytes) => {
                let found = bytes
                    .get(..4)
                    .map_or(0, |b| u32::from_le_bytes(b.try_into().expect("four bytes")));
                NewerFormat::check(Encoding::Engine, found).map_err(|source| {
                    EngineError::Newer {
                        file: self.file.to_string(),
                        source,
                    }
                })?;
                if found != ENGINE_FORMAT {
                    return Err(EngineError::Format {
                        file: self.file.to_string(),
                        found,
                    });
                }
                Ok(())
            }
            None => {
                let txn = self.db.begin_write().map_err(|e| self.failed(e))?;
                {
                    let mut meta = txn.open_table(META).map_err(|e| self.failed(e))?;
                    let format = seal(META_FORMAT.as_bytes(), &ENGINE_FORMAT.to_le_bytes());
                    meta.insert(META_FORMAT, format.as_slice())
                        .map_err(|e| self.failed(e))?;
                    txn.open_table(DATA).map_err(|e| self.failed(e))?;
                    txn.open_table(SESSIONS).map_err(|e| self.failed(e))?;
                }
                txn.commit().map_err(|e| self.failed(e))
            }
        }
    }

    /// Commits `batch` atomically.
    pub fn commit(&self, batch: &Batch, commit: Commit) -> Result<(), EngineError> {
        let mut txn = self.db.begin_write().map_err(|e| self.failed(e))?;
        if commit == Commit::Batched {
            txn.set_durability(Durability::None)
                .map_err(|e| self.failed(redb::StorageError::Corrupted(e.to_string())))?;
        } else {
            // A checkpoint records the allocator's state, so that opening
            // after a crash does not walk every page.
            txn.set_quick_repair(true);
        }
        {
            let mut meta = txn.open_table(META).map_err(|e| self.failed(e))?;
            let mut counts = match meta.get(META_COUNTS).map_err(|e| self.failed(e))? {
                Some(stored) => decode_counts(&self.open_value(
                    META_COUNTS.as_bytes(),
                    stored.value(),
                    || "the counts".into(),
                )?),
                None => Counts::default(),
            };
            let mut data = txn.open_table(DATA).map_err(|e| self.failed(e))?;
            for shard in &batch.dropped {
                let (lower, upper) = shard_bounds(*shard);
                let range = (bound_ref(&lower), bound_ref(&upper));
                let mut uncounted = false;
                data.retain_in::<&[u8], _>(range, |k, v| {
                    uncounted |= !counts.remove(k.len() - 4 + v.len() - CRC_SIZE_BYTES);
                    false
                })
                .map_err(|e| self.failed(e))?;
                if uncounted {
                    return Err(self.uncounted());
                }
            }
            for (key, value) in &batch.writes {
                let old = match value {
                    Some(value) => {
                        let sealed = seal(key, value);
                        counts.keys += 1;
                        counts.bytes += (key.len() - 4 + value.len()) as u64;
                        data.insert(key.as_slice(), sealed.as_slice())
                    }
                    None => data.remove(key.as_slice()),
                }
                .map_err(|e| self.failed(e))?;
                if let Some(old) = old {
                    if !counts.remove(key.len() - 4 + old.value().len() - CRC_SIZE_BYTES) {
                        return Err(self.uncounted());
                    }
                }
            }
            let mut sessions = txn.open_table(SESSIONS).map_err(|e| self.failed(e))?;
            for (client, encoded) in &batch.sessions {
                match encoded {
                    Some(encoded) => {
                        let sealed = seal(&client.to_be_bytes(), encoded);
                        sessions.insert(*client, sealed.as_slice())
                    }
                    None => sessions.remove(*client),
                }
                .map_err(|e| self.failed(e))?;
            }
            if let Some(state) = &batch.state {
                let sealed = seal(META_STATE.as_bytes(), state);
                meta.insert(META_STATE, sealed.as_slice())
                    .map_err(|e| self.failed(e))?;
            }
            let sealed = seal(META_COUNTS.as_bytes(), &encode_counts(counts));
            meta.insert(META_COUNTS, sealed.as_slice())
                .map_err(|e| self.failed(e))?;
        }
        txn.commit().map_err(|e| self.failed(e))
    }

    /// A consistent view of everything committed so far; later commits do
    /// not change it.
    pub fn reader(&self) -> Result<Reader, EngineError> {
        fn open<K: redb::Key + 'static, V: redb::Value + 'static>(
            txn: &redb::ReadTransaction,
            table: TableDefinition<K, V>,
        ) -> Result<Option<ReadOnlyTable<K, V>>, redb::TableError> {
            match txn.open_table(table) {
                Ok(table) => Ok(Some(table)),
                // A new file, before its format is written.
                Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
                Err(e) => Err(e),
            }
        }
        let txn = self.db.begin_read().map_err(|e| self.failed(e))?;
        Ok(Reader {
            data: open(&txn, DATA).map_err(|e| self.failed(e))?,
            sessions: open(&txn, SESSIONS).map_err(|e| self.failed(e))?,
            meta: open(&txn, META).map_err(|e| self.failed(e))?,
            file: self.file.clone(),
        })
    }

    /// The counts say fewer keys or bytes than the rows being removed: the
    /// counts record does not describe the rows.
    fn uncounted(&self) -> EngineError {
        EngineError::Damaged {
            file: self.file.to_string(),
            what: "the counts (fewer than the rows they count)".into(),
        }
    }

    fn open_value(
        &self,
        key: &[u8],
        stored: &[u8],
        what: impl FnOnce() -> String,
    ) -> Result<Vec<u8>, EngineError> {
        unseal(key, stored)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| EngineError::Damaged {
                file: self.file.to_string(),
                what: what(),
            })
    }
}

fn io_failed(file: &str, e: std::io::Error) -> EngineError {
    EngineError::Engine {
        file: file.to_string(),
        source: Box::new(redb::StorageError::Io(e).into()),
    }
}

/// `shard ‖ key`, the engine's key of `key`.
fn stored_key(shard: ShardId, key: &[u8]) -> Vec<u8> {
    let mut stored = Vec::with_capacity(4 + key.len());
    stored.extend_from_slice(&shard.to_be_bytes());
    stored.extend_from_slice(key);
    stored
}

/// The stored-key range of one shard.
fn shard_bounds(shard: ShardId) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let lower = Bound::Included(shard.to_be_bytes().to_vec());
    let upper = match shard.checked_add(1) {
        Some(next) => Bound::Excluded(next.to_be_bytes().to_vec()),
        None => Bound::Unbounded,
    };
    (lower, upper)
}

fn bound_ref(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(b) => Bound::Included(b.as_slice()),
        Bound::Excluded(b) => Bound::Excluded(b.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn describe_key(shard: ShardId, key: &[u8]) -> String {
    format!("key {:?} (shard {shard})", String::from_utf8_lossy(key))
}

/// `crc32c(key ‖ value) ‖ value`: the checksum covers the key too, so a
/// value found under another key is damage as well.
fn seal(key: &[u8], value: &[u8]) -> Vec<u8> {
    let crc = crc32c::crc32c_append(crc32c::crc32c(key), value);
    let mut sealed = Vec::with_capacity(CRC_SIZE_BYTES + value.len());
    sealed.extend_from_slice(&crc.to_le_bytes());
    sealed.extend_from_slice(value);
    sealed
}

/// The value [`seal`] sealed under `key`, if its checksum holds.
fn unseal<'a>(key: &[u8], stored: &'a [u8]) -> Option<&'a [u8]> {
    let (crc, value) = stored.split_at_checked(CRC_SIZE_BYTES)?;
    let crc = u32::from_le_bytes(crc.try_into().ok()?);
    (crc32c::crc32c_append(crc32c::crc32c(key), value) == crc).then_some(value)
}

fn encode_counts(counts: Counts) -> Vec<u8> {
    let mut bytes = counts.keys.to_le_bytes().to_vec();
    bytes.extend_from_slice(&counts.bytes.to_le_bytes());
    bytes
}

fn decode_counts(bytes: &[u8]) -> Counts {
    let word = |i: usize| {
        bytes.get(i * 8..i * 8 + 8).map_or(0, |b| {
            u64::from_le_bytes(b.try_into().expect("eight bytes"))
        })
    };
    Counts {
        keys: word(0),
        bytes: word(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The engine's own rows, byte for byte (the values inside `state` and
    /// `sessions` are the caller's: `storage::golden` pins those).
    #[test]
    fn rows_are_pinned() {
        let mut rows = String::new();
        let mut add = |name: &str, bytes: &[u8]| {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            rows.push_str(&format!("{name}: {hex}\n"));
        };
        let key = stored_key(3, b"k");
        add("data key: shard 3, key k", &key);
        add("data value: v", &seal(&key, b"v"));
        add(
            "session value of client 5",
            &seal(&5u64.to_be_bytes(), b"session"),
        );
        add(
            "meta format",
            &seal(META_FORMAT.as_bytes(), &ENGINE_FORMAT.to_le_bytes()),
        );
        let counts = Counts { keys: 2, bytes: 7 };
        add(
            "meta counts: 2 keys, 7 bytes",
            &seal(META_COUNTS.as_bytes(), &encode_counts(counts)),
        );
        add("meta state", &seal(META_STATE.as_bytes(), b"state"));
        insta::assert_snapshot!(rows);
    }
}
