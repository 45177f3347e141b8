//! Snapshots: a replica's applied state as one byte stream, generated from
//! the engine as it is read (never whole in memory) and installed into a
//! fresh engine file that replaces the old one at once.
//!
//! ```text
//! magic "SHOALSS2"
//! head:    len: u32 LE | bincode of (Head, sessions) | crc32c: u32 LE
//! entries: shard: u32 BE | key_len: u32 LE | value_len: u32 LE | key | value
//! end:     u32::MAX | entries: u64 LE | crc32c: u32 LE of every entry byte
//! ```
//!
//! Entries come shard by shard in key order. The head has its own checksum
//! so that a restore can give the state a new head (a new group's history)
//! without touching the entries. The same stream is a Raft snapshot's data,
//! a backup's state and what `--restore` installs.

use std::collections::BTreeMap;
use std::io;
use std::ops::Bound;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use openraft::SnapshotMeta;
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

use super::disk::{read_at_agreed, DiskRef, RandomFile};
use super::engine::{Batch, Commit, Engine, EngineError, EngineOptions};
use crate::ids::{Member, NodeId, ShardId};
use crate::machine::data::Data;
use crate::machine::kv::Session;
use crate::machine::Head;
use crate::raft::codec;

/// Snapshot metadata as openraft defines it.
pub type Meta = SnapshotMeta<NodeId, Member>;

/// Directory the snapshots of the former format lived in (a data directory
/// holding files there is of that format).
pub const FORMER_SNAPSHOT_DIR: &str = "snapshots";

const MAGIC: &[u8; 8] = b"SHOALSS2";
const END: u32 = u32::MAX;
/// Bytes of entries generated at a time.
const CHUNK_SIZE_BYTES: usize = 1024 * 1024;
/// Bytes of entries installed per engine commit.
const INSTALL_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// Where and why a stream is not a valid snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at byte offset {offset}: {reason}")]
pub struct Damage {
    /// Byte offset at which the problem shows.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
}

fn damage(offset: u64, reason: impl Into<String>) -> Damage {
    Damage {
        offset,
        reason: reason.into(),
    }
}

/// The encoded head: magic, length, head and sessions, checksum.
pub fn encode_head(head: &Head, sessions: &BTreeMap<u64, Session>) -> Vec<u8> {
    let body = codec::encode(&(head, sessions)).expect("a head always encodes");
    let mut bytes = Vec::with_capacity(body.len() + 16);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&body);
    bytes.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    bytes
}

/// Reads a stream's head from its first bytes; returns it and its length.
pub fn decode_head(bytes: &[u8]) -> Result<((Head, BTreeMap<u64, Session>), usize), Damage> {
    if bytes.get(..8) != Some(MAGIC.as_slice()) {
        return Err(damage(0, "not a snapshot (bad magic)"));
    }
    let len = bytes
        .get(8..12)
        .map(|b| u32::from_le_bytes(b.try_into().expect("four bytes")) as usize)
        .ok_or_else(|| damage(8, "cut short in the head"))?;
    let body = bytes
        .get(12..12 + len)
        .ok_or_else(|| damage(12, "cut short in the head"))?;
    let crc = bytes
        .get(12 + len..16 + len)
        .map(|b| u32::from_le_bytes(b.try_into().expect("four bytes")))
        .ok_or_else(|| damage(12 + len as u64, "cut short in the head"))?;
    if crc32c::crc32c(body) != crc {
        return Err(damage(12, "the head's checksum does not match"));
    }
    let head =
        codec::decode(body).map_err(|e| damage(12, format!("the head does not decode: {e}")))?;
    Ok((head, 16 + len))
}

/// Generates a snapshot's bytes from the data, a piece at a time.
#[derive(Debug, Clone)]
struct Generator {
    /// The stream's length in bytes.
    len: u64,
    head: Vec<u8>,
    data: Data,
    shards: Vec<ShardId>,
    /// Where entries resume: a shard's index in `shards`, and the last key
    /// of it already generated.
    next_shard: usize,
    after: Option<Bytes>,
    entries: u64,
    crc: u32,
    done: bool,
}

impl Generator {
    fn new(head: Vec<u8>, data: Data) -> io::Result<Generator> {
        let shards = data.shards().map_err(io::Error::other)?;
        // Every entry is 12 bytes of framing and its key and value; the
        // storage's counts say how many and how large, without a read.
        let (keys, bytes) = match data.committed_counts() {
            Some(counts) => counts.map_err(io::Error::other)?,
            None => data
                .entries()
                .map_err(io::Error::other)?
                .iter()
                .fold((0, 0), |(n, b), (_, k, v)| {
                    (n + 1, b + (k.len() + v.len()) as u64)
                }),
        };
        Ok(Generator {
            len: head.len() as u64 + 12 * keys + bytes + 16,
            head,
            data,
            shards,
            next_shard: 0,
            after: None,
            entries: 0,
            crc: 0,
            done: false,
        })
    }

    /// The next piece (empty once the end was given), at least one entry
    /// or about `CHUNK_SIZE_BYTES` of them.
    fn next_piece(&mut self) -> io::Result<Vec<u8>> {
        if !self.head.is_empty() {
            return Ok(std::mem::take(&mut self.head));
        }
        if self.done {
            return Ok(Vec::new());
        }
        let mut piece = Vec::new();
        while piece.len() < CHUNK_SIZE_BYTES {
            let Some(&shard) = self.shards.get(self.next_shard) else {
                piece.extend_from_slice(&END.to_le_bytes());
                piece.extend_from_slice(&self.entries.to_le_bytes());
                piece.extend_from_slice(&self.crc.to_le_bytes());
                self.done = true;
                break;
            };
            let start = match &self.after {
                Some(key) => Bound::Excluded(key.as_ref()),
                None => Bound::Unbounded,
            };
            let mut last = None;
            for entry in self
                .data
                .range(shard, start, None)
                .map_err(io::Error::other)?
            {
                let (key, value) = entry.map_err(io::Error::other)?;
                let at = piece.len();
                piece.extend_from_slice(&shard.to_be_bytes());
                piece.extend_from_slice(&(key.len() as u32).to_le_bytes());
                piece.extend_from_slice(&(value.len() as u32).to_le_bytes());
                piece.extend_from_slice(&key);
                piece.extend_from_slice(&value);
                self.crc = crc32c::crc32c_append(self.crc, &piece[at..]);
                self.entries += 1;
                last = Some(key);
                if piece.len() >= CHUNK_SIZE_BYTES {
                    break;
                }
            }
            match last {
                Some(key) if piece.len() >= CHUNK_SIZE_BYTES => self.after = Some(key),
                _ => {
                    self.next_shard += 1;
                    self.after = None;
                }
            }
        }
        Ok(piece)
    }
}

/// A snapshot's bytes as openraft reads and writes them: generated from
/// the data as read (a snapshot to send), or held in a file (one received).
#[derive(Debug)]
pub struct SnapshotStream {
    source: Source,
    pos: u64,
}

#[derive(Debug)]
enum Source {
    Generated {
        /// The generator at the start, to begin again after a seek back.
        start: Box<Generator>,
        at: Box<Generator>,
        /// The current piece and the stream offset it begins at.
        piece: Vec<u8>,
        piece_at: u64,
    },
    File(Arc<dyn RandomFile>),
}

impl SnapshotStream {
    /// The snapshot of `data` under `head` (and `sessions`).
    pub fn generate(
        head: &Head,
        sessions: &BTreeMap<u64, Session>,
        data: Data,
    ) -> io::Result<SnapshotStream> {
        let start = Generator::new(encode_head(head, sessions), data)?;
        Ok(SnapshotStream {
            source: Source::Generated {
                at: Box::new(start.clone()),
                start: Box::new(start),
                piece: Vec::new(),
                piece_at: 0,
            },
            pos: 0,
        })
    }

    /// A snapshot held in `file` (empty: to be written).
    pub fn in_file(file: Arc<dyn RandomFile>) -> SnapshotStream {
        SnapshotStream {
            source: Source::File(file),
            pos: 0,
        }
    }

    /// Reads up to `out.len()` bytes at the current position.
    fn read_here(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match &mut self.source {
            Source::File(file) => {
                let len = file.len()?;
                let n = (len.saturating_sub(self.pos) as usize).min(out.len());
                read_at_agreed(file.as_ref(), self.pos, &mut out[..n])?;
                self.pos += n as u64;
                Ok(n)
            }
            Source::Generated {
                start,
                at,
                piece,
                piece_at,
            } => {
                if self.pos < *piece_at {
                    **at = (**start).clone();
                    piece.clear();
                    *piece_at = 0;
                }
                while self.pos >= *piece_at + piece.len() as u64 {
                    *piece_at += piece.len() as u64;
                    *piece = at.next_piece()?;
                    if piece.is_empty() {
                        return Ok(0);
                    }
                }
                let from = (self.pos - *piece_at) as usize;
                let n = (piece.len() - from).min(out.len());
                out[..n].copy_from_slice(&piece[from..from + n]);
                self.pos += n as u64;
                Ok(n)
            }
        }
    }

    /// Every byte of the stream (a backup holds the state whole).
    pub fn read_all(mut self) -> io::Result<Vec<u8>> {
        self.pos = 0;
        let mut all = Vec::new();
        let mut buf = vec![0; CHUNK_SIZE_BYTES];
        loop {
            let n = self.read_here(&mut buf)?;
            if n == 0 {
                return Ok(all);
            }
            all.extend_from_slice(&buf[..n]);
        }
    }

    /// The stream's length in bytes.
    pub fn len(&self) -> io::Result<u64> {
        match &self.source {
            Source::File(file) => file.len(),
            Source::Generated { start, .. } => Ok(start.len),
        }
    }

    /// Fills `out` from offset `at`.
    pub fn read_exact_at(&mut self, at: u64, out: &mut [u8]) -> io::Result<()> {
        self.pos = at;
        let mut filled = 0;
        while filled < out.len() {
            match self.read_here(&mut out[filled..])? {
                0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "read past the end",
                    ))
                }
                n => filled += n,
            }
        }
        Ok(())
    }
}

impl crate::raft::SnapshotBytes for SnapshotStream {
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any> {
        self
    }
}

impl AsyncRead for SnapshotStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.read_here(buf.initialize_unfilled())?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for SnapshotStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let Source::File(file) = &self.source else {
            return Poll::Ready(Err(io::Error::other("a generated snapshot is read-only")));
        };
        file.write_at(self.pos, data)?;
        self.pos += data.len() as u64;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncSeek for SnapshotStream {
    fn start_seek(mut self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        self.pos = match position {
            io::SeekFrom::Start(at) => at,
            io::SeekFrom::Current(by) => self.pos.saturating_add_signed(by),
            io::SeekFrom::End(by) => self.len()?.saturating_add_signed(by),
        };
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Poll::Ready(Ok(self.pos))
    }
}

/// Reads a snapshot sequentially from bytes at offsets, `CHUNK_SIZE_BYTES`
/// (or one larger entry) at a time: a read per chunk, not per field.
struct Cursor<'a> {
    read: &'a mut (dyn FnMut(u64, &mut [u8]) -> io::Result<()> + Send),
    len: u64,
    pos: u64,
    /// Bytes read ahead, from stream offset `buffered_at`.
    buffered: Vec<u8>,
    buffered_at: u64,
}

impl<'a> Cursor<'a> {
    fn new(read: &'a mut (dyn FnMut(u64, &mut [u8]) -> io::Result<()> + Send), len: u64) -> Self {
        Cursor {
            read,
            len,
            pos: 0,
            buffered: Vec::new(),
            buffered_at: 0,
        }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<Vec<u8>, InstallError> {
        if self.pos + n as u64 > self.len {
            return Err(InstallError::Damaged(damage(
                self.pos,
                format!("cut short in {what}"),
            )));
        }
        let end = self.pos + n as u64;
        if self.pos < self.buffered_at || end > self.buffered_at + self.buffered.len() as u64 {
            let ahead = (self.len - self.pos).min(CHUNK_SIZE_BYTES.max(n) as u64);
            self.buffered.resize(ahead as usize, 0);
            (self.read)(self.pos, &mut self.buffered).map_err(InstallError::Io)?;
            self.buffered_at = self.pos;
        }
        let from = (self.pos - self.buffered_at) as usize;
        let out = self.buffered[from..from + n].to_vec();
        self.pos = end;
        Ok(out)
    }

    fn word(&mut self, what: &str) -> Result<u32, InstallError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes(b.try_into().expect("four bytes")))
    }
}

/// Why a snapshot could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The snapshot is damaged.
    #[error("damaged snapshot {0}")]
    Damaged(Damage),
    /// The disk failed.
    #[error(transparent)]
    Io(io::Error),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Reads a head at the cursor.
fn read_head(cursor: &mut Cursor<'_>) -> Result<(Head, BTreeMap<u64, Session>), InstallError> {
    let magic_and_len = cursor.take(12, "the head")?;
    let head_len = u32::from_le_bytes(magic_and_len[8..].try_into().expect("four bytes")) as usize;
    let mut head_bytes = magic_and_len;
    head_bytes.extend(cursor.take(head_len + 4, "the head")?);
    let (head, _) = decode_head(&head_bytes).map_err(InstallError::Damaged)?;
    Ok(head)
}

/// Reads the entries at the cursor, giving each to `each`, and checks
/// their end. Returns how many there were.
fn read_entries(
    cursor: &mut Cursor<'_>,
    mut each: impl FnMut(ShardId, Vec<u8>, Vec<u8>) -> Result<(), InstallError>,
) -> Result<u64, InstallError> {
    let (mut entries, mut crc) = (0u64, 0);
    loop {
        let at = cursor.pos;
        let shard = u32::from_be_bytes(cursor.take(4, "an entry")?.try_into().expect("four bytes"));
        if shard == END {
            let count = u64::from_le_bytes(cursor.take(8, "the end")?.try_into().expect("eight"));
            let sum = cursor.word("the end")?;
            if count != entries || sum != crc {
                let reason = "the entries' count or checksum does not match";
                return Err(InstallError::Damaged(damage(at, reason)));
            }
            if cursor.pos != cursor.len {
                return Err(InstallError::Damaged(damage(
                    cursor.pos,
                    "bytes after the end",
                )));
            }
            return Ok(entries);
        }
        let key_len = cursor.word("an entry")?;
        let value_len = cursor.word("an entry")?;
        let key = cursor.take(key_len as usize, "an entry")?;
        let value = cursor.take(value_len as usize, "an entry")?;
        crc = crc32c::crc32c_append(crc, &shard.to_be_bytes());
        crc = crc32c::crc32c_append(crc, &key_len.to_le_bytes());
        crc = crc32c::crc32c_append(crc, &value_len.to_le_bytes());
        crc = crc32c::crc32c_append(crc32c::crc32c_append(crc, &key), &value);
        entries += 1;
        each(shard, key, value)?;
    }
}

/// Checks a whole snapshot held in memory; returns its head, sessions and
/// number of entries.
pub fn check(bytes: &[u8]) -> Result<(Head, BTreeMap<u64, Session>, u64), Damage> {
    read(bytes, |_, _, _| ())
}

/// Reads a whole snapshot held in memory, checking it, giving each entry
/// (shard, key, value) to `each`; returns its head, sessions and number of
/// entries.
pub fn read(
    bytes: &[u8],
    mut each: impl FnMut(ShardId, Vec<u8>, Vec<u8>),
) -> Result<(Head, BTreeMap<u64, Session>, u64), Damage> {
    let mut read = |at: u64, out: &mut [u8]| {
        let at = at as usize;
        out.copy_from_slice(&bytes[at..at + out.len()]);
        Ok(())
    };
    let mut cursor = Cursor::new(&mut read, bytes.len() as u64);
    let checked = read_head(&mut cursor).and_then(|(head, sessions)| {
        let entries = read_entries(&mut cursor, |shard, key, value| {
            each(shard, key, value);
            Ok(())
        })?;
        Ok((head, sessions, entries))
    });
    checked.map_err(|e| match e {
        InstallError::Damaged(d) => d,
        other => damage(cursor.pos, other.to_string()),
    })
}

/// Installs the snapshot `len` bytes long that `read` reads into a new
/// engine file at `path` (replacing any), checked end to end, and durable
/// when this returns. Returns its head and sessions.
pub async fn install(
    disk: &DiskRef,
    path: &str,
    options: &EngineOptions,
    len: u64,
    read: &mut (dyn FnMut(u64, &mut [u8]) -> io::Result<()> + Send),
) -> Result<(Head, BTreeMap<u64, Session>), InstallError> {
    let mut cursor = Cursor::new(read, len);
    let (head, sessions) = read_head(&mut cursor)?;
    let engine = Engine::create(disk, path, options).await?;
    let (mut batch, mut batch_bytes) = (Batch::default(), 0);
    read_entries(&mut cursor, |shard, key, value| {
        batch_bytes += key.len() + value.len();
        batch.put(shard, &key, Bytes::from(value));
        if batch_bytes >= INSTALL_BATCH_BYTES {
            engine.commit(&std::mem::take(&mut batch), Commit::Batched)?;
            batch_bytes = 0;
        }
        Ok(())
    })?;
    for (client, session) in &sessions {
        batch.session(
            *client,
            Some(codec::encode(session).expect("a session encodes")),
        );
    }
    batch.state(codec::encode(&head).expect("a head encodes"));
    engine.commit(&batch, Commit::Checkpoint)?;
    Ok((head, sessions))
}
