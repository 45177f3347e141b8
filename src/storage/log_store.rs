//! The Raft log store: entries, the vote and the committed index, kept in
//! memory for reads and made durable in a write-ahead log ([`Wal`]).
//!
//! Every change is a [`Record`]. The same [`LogData::apply`] gives a record its
//! meaning live and during recovery, so the two cannot drift apart.
//!
//! Group commit: changes go, in order, to one flusher task that takes every
//! queued record, writes them as one batch, syncs once, and only then
//! acknowledges them (openraft's flush callback for entries, a reply for
//! truncations and purges). An entry is therefore durable before the leader
//! counts this replica for it. The vote is kept apart, in the [`vote`] file,
//! synced before `save_vote` returns.
//!
//! Segments are rotated when full. The newest segment always holds a
//! checkpoint (committed index, purge point): one is written when a segment
//! is begun and again whenever the log is opened, so that older segments hold
//! nothing still needed once their entries are purged, and are deleted
//! oldest first.
//!
//! [`vote`]: super::vote

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogId, StorageError, StorageIOError, Vote};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::disk::DiskRef;
use super::vote;
use super::wal::{Wal, WalError};
use super::{StorageMetrics, StorageOpenError};
use crate::ids::NodeId;
use crate::raft::{codec, TypeConfig};
use crate::runtime::{planted, reached, PlantedBug, Situation};

/// Directory of the write-ahead log on the disk.
pub const WAL_DIR: &str = "wal";

/// Most records the flusher writes with one sync.
const RECORDS_PER_BATCH_MAX: usize = 1024;

/// Most records queued for the flusher before writers wait.
const RECORDS_QUEUED_MAX: usize = 4096;

/// One durable change to the log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) enum Record {
    Entry(Entry<TypeConfig>),
    /// Remove entries from this index on.
    Truncate {
        from: u64,
    },
    /// Remove entries up to and including this one.
    Purge(LogId<NodeId>),
    Committed(Option<LogId<NodeId>>),
}

#[derive(Debug, Default)]
struct LogData {
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId<NodeId>>,
    last_purged: Option<LogId<NodeId>>,
    entries: BTreeMap<u64, Entry<TypeConfig>>,
}

impl LogData {
    /// Gives a record its effect; used live and during recovery.
    fn apply(&mut self, record: Record) {
        match record {
            Record::Entry(entry) => {
                let index = entry.log_id.index;
                if self.last_purged.is_some_and(|p| index <= p.index) {
                    return;
                }
                // Writing index i ends the log there: anything after it
                // belongs to a log this one has replaced.
                self.entries.split_off(&index);
                // The log may begin anywhere (after a purge, or after the
                // state a restart recovered), but never has a hole.
                debug_assert!(
                    self.entries
                        .keys()
                        .next_back()
                        .is_none_or(|last| *last + 1 == index),
                    "entry {index} leaves a gap after entry {:?}",
                    self.entries.keys().next_back()
                );
                self.entries.insert(index, entry);
            }
            Record::Truncate { from } => {
                self.entries.split_off(&from);
            }
            Record::Purge(log_id) => {
                if self.last_purged >= Some(log_id) {
                    return;
                }
                self.last_purged = Some(log_id);
                self.entries = self.entries.split_off(&(log_id.index + 1));
            }
            Record::Committed(committed) => self.committed = committed,
        }
    }
}

/// What the flusher knows to be written: enough to checkpoint a new segment
/// and to tell which old segments are dead.
#[derive(Debug, Default)]
struct Written {
    committed: Option<LogId<NodeId>>,
    last_purged: Option<LogId<NodeId>>,
    /// Segment number → highest entry index written to it.
    segments: BTreeMap<u64, Option<u64>>,
}

impl Written {
    fn note(&mut self, record: &Record, segment: u64) {
        let highest = self.segments.entry(segment).or_default();
        match record {
            Record::Entry(entry) => *highest = (*highest).max(Some(entry.log_id.index)),
            Record::Truncate { .. } => {}
            Record::Purge(log_id) => self.last_purged = self.last_purged.max(Some(*log_id)),
            Record::Committed(committed) => self.committed = *committed,
        }
    }

    /// The records that open a new segment.
    fn checkpoint(&self) -> Vec<Record> {
        let mut records = Vec::new();
        records.extend(self.committed.map(|c| Record::Committed(Some(c))));
        records.extend(self.last_purged.map(Record::Purge));
        records
    }

    /// Old segments that hold nothing needed: a prefix of the segments
    /// before the newest whose entries are all purged.
    fn dead_segments(&self, newest: u64) -> Vec<u64> {
        let purged = self.last_purged.map(|p| p.index);
        self.segments
            .iter()
            .take_while(|(seq, highest)| {
                **seq < newest && (highest.is_none() || **highest <= purged)
            })
            .map(|(seq, _)| *seq)
            .collect()
    }
}

/// Who is told when a record is durable.
enum Done {
    Nothing,
    Flushed(LogFlushed<TypeConfig>),
    Reply(oneshot::Sender<io::Result<()>>),
}

impl Done {
    fn complete(self, result: &io::Result<()>) {
        let result = match result {
            Ok(()) => Ok(()),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        };
        match self {
            Done::Nothing => {}
            Done::Flushed(callback) => callback.log_io_completed(result),
            Done::Reply(reply) => {
                let _ = reply.send(result);
            }
        }
    }
}

struct Op {
    record: Record,
    done: Done,
}

/// The log of one replica. Clones share it: openraft reads it from the
/// replication tasks while the core appends.
#[derive(Debug, Clone)]
pub struct LogStore {
    data: Arc<Mutex<LogData>>,
    writer: mpsc::Sender<Op>,
    disk: DiskRef,
    /// One past the last index the durable snapshot covers.
    snapshot_covers: Arc<AtomicU64>,
    /// A purge beyond the durable snapshot, made durable once a snapshot
    /// covers it: openraft may purge before the snapshot it installs is on
    /// disk, and a crash in between must not lose entries nothing else holds.
    deferred_purge: Arc<Mutex<Option<LogId<NodeId>>>>,
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Op").field("record", &self.record).finish()
    }
}

impl LogStore {
    /// Recovers the log from `disk` and starts its flusher task.
    pub async fn open(
        disk: DiskRef,
        segment_size_max: u64,
        snapshot_covers: Arc<AtomicU64>,
        metrics: Arc<StorageMetrics>,
    ) -> Result<LogStore, StorageOpenError> {
        let (mut wal, segments) = Wal::open(disk.clone(), WAL_DIR, segment_size_max).await?;
        let mut data = LogData::default();
        let mut written = Written::default();
        for segment in segments {
            written.segments.entry(segment.seq).or_default();
            for (i, payload) in segment.records.iter().enumerate() {
                // The frame's checksum matched, so a record that does not
                // decode was written by incompatible code: refuse it.
                let record: Record = codec::decode(payload).map_err(|e| WalError::Io {
                    path: format!("{WAL_DIR}/ segment {} record {i}", segment.seq),
                    source: io::Error::new(io::ErrorKind::InvalidData, e),
                })?;
                written.note(&record, segment.seq);
                data.apply(record);
            }
        }
        // Leadership never survives a restart. The vote is kept, but as not
        // committed: a replica that led must win a new election, in a new
        // term, before it leads again. Entries a leader sends out before they
        // are synced locally can be lost in a crash while its followers keep
        // them; resuming the old term with the shorter log would serve reads
        // that miss committed writes and reuse log positions the followers
        // already hold.
        data.vote = vote::load(&disk).await?.map(|mut vote| {
            vote.committed &= planted(PlantedBug::LeaderSurvivesRestart);
            vote
        });
        tracing::info!(
            entries = data.entries.len(),
            last_purged = ?data.last_purged,
            vote = ?data.vote,
            "log recovered"
        );
        // The newest segment may lack its checkpoint (a crash right after it
        // was begun): write one now, before any old segment can be deleted.
        let mut buffer = Vec::new();
        write_checkpoint(&mut wal, &mut written, &mut buffer)
            .await
            .map_err(|source| WalError::Io {
                path: WAL_DIR.to_string(),
                source,
            })?;
        let (writer, queue) = mpsc::channel(RECORDS_QUEUED_MAX);
        tokio::spawn(flush_loop(wal, written, queue, metrics));
        Ok(LogStore {
            data: Arc::new(Mutex::new(data)),
            writer,
            disk,
            snapshot_covers,
            deferred_purge: Arc::default(),
        })
    }

    fn data(&self) -> MutexGuard<'_, LogData> {
        self.data.lock().expect("log store lock poisoned")
    }

    /// Writes a deferred purge once the durable snapshot covers it.
    async fn settle_deferred_purge(&self) -> io::Result<()> {
        let ready = {
            let deferred = self.deferred_purge.lock().expect("deferred purge lock");
            deferred.filter(|p| p.index < self.snapshot_covers.load(Ordering::Acquire))
        };
        let Some(purge) = ready else {
            return Ok(());
        };
        self.submit(Record::Purge(purge), Done::Nothing).await?;
        let mut deferred = self.deferred_purge.lock().expect("deferred purge lock");
        if *deferred == Some(purge) {
            *deferred = None;
        }
        Ok(())
    }

    /// Queues a record for the disk and applies it in memory, in one step:
    /// memory and disk see records in the same order, and a record that
    /// cannot be queued changes nothing.
    async fn submit(&self, record: Record, done: Done) -> io::Result<()> {
        let permit = self
            .writer
            .reserve()
            .await
            .map_err(|_| io::Error::other("the log's flusher has stopped"))?;
        let mut data = self.data();
        data.apply(record.clone());
        permit.send(Op { record, done });
        Ok(())
    }

    /// The last entry purged from the log, if any.
    pub fn last_purged(&self) -> Option<LogId<NodeId>> {
        self.data().last_purged
    }

    /// Appends entries (with indexes following the log's last) and returns a
    /// receiver that resolves once they are durable: the same group-commit
    /// path as openraft's appends, for tools and benchmarks.
    pub async fn append_entries(
        &self,
        entries: Vec<Entry<TypeConfig>>,
    ) -> io::Result<oneshot::Receiver<io::Result<()>>> {
        let (reply, durable) = oneshot::channel();
        self.append_then(entries, Done::Reply(reply)).await?;
        Ok(durable)
    }

    /// Appends entries; `done` is told when the last one is durable.
    async fn append_then(
        &self,
        entries: impl IntoIterator<Item = Entry<TypeConfig>>,
        done: Done,
    ) -> io::Result<()> {
        self.settle_deferred_purge().await?;
        let mut entries = entries.into_iter().peekable();
        if entries.peek().is_none() {
            done.complete(&Ok(()));
            return Ok(());
        }
        let mut done = Some(done);
        while let Some(entry) = entries.next() {
            let this = match entries.peek() {
                Some(_) => Done::Nothing,
                None => done.take().expect("the last entry carries the notice"),
            };
            self.submit(Record::Entry(entry), this).await?;
        }
        Ok(())
    }

    /// Submits a record and waits until it is durable.
    async fn submit_durable(&self, record: Record) -> io::Result<()> {
        let (reply, durable) = oneshot::channel();
        self.submit(record, Done::Reply(reply)).await?;
        durable
            .await
            .map_err(|_| io::Error::other("the log's flusher has stopped"))?
    }
}

async fn flush_loop(
    mut wal: Wal,
    mut written: Written,
    mut queue: mpsc::Receiver<Op>,
    metrics: Arc<StorageMetrics>,
) {
    let mut failure: Option<String> = None;
    let mut buffer = Vec::new();
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < RECORDS_PER_BATCH_MAX {
            match queue.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        if let Some(reason) = &failure {
            let result = Err(io::Error::other(format!(
                "the log failed earlier: {reason}"
            )));
            batch.into_iter().for_each(|op| op.done.complete(&result));
            continue;
        }

        buffer.clear();
        wal.start_batch();
        for op in &batch {
            let payload = codec::encode(&op.record).expect("log records always encode");
            wal.frame(&payload, &mut buffer);
            written.note(&op.record, wal.current_seq());
        }
        // A batch of committed-index records alone is written but not
        // synced: losing one in a crash is harmless, and the next batch's
        // sync makes it durable with its own records.
        let sync = !batch
            .iter()
            .all(|op| matches!(op.record, Record::Committed(_)));
        let mut dones: Vec<Done> = batch.into_iter().map(|op| op.done).collect();
        if planted(PlantedBug::AckBeforeFsync) {
            dones.drain(..).for_each(|done| done.complete(&Ok(())));
        }
        let started = tokio::time::Instant::now();
        let mut result = match sync {
            true => wal.write_and_sync(&buffer).await,
            false => wal.write(&buffer).await,
        };
        metrics.record_wal_batch(dones.len(), buffer.len(), sync.then(|| started.elapsed()));
        if result.is_ok() {
            result = maintain(&mut wal, &mut written, &mut buffer).await;
        }
        if let Err(e) = &result {
            tracing::error!(error = %e, "write-ahead log failed; replica stops accepting writes");
            failure = Some(e.to_string());
        }
        dones.into_iter().for_each(|done| done.complete(&result));
    }
}

/// Rotates a full segment (opening the new one with a checkpoint) and deletes
/// dead segments.
async fn maintain(wal: &mut Wal, written: &mut Written, buffer: &mut Vec<u8>) -> io::Result<()> {
    if wal.should_rotate() {
        wal.rotate().await?;
        write_checkpoint(wal, written, buffer).await?;
    }
    let dead = written.dead_segments(wal.current_seq());
    if !dead.is_empty() {
        wal.remove(&dead).await?;
        for seq in dead {
            written.segments.remove(&seq);
        }
    }
    Ok(())
}

/// Writes and syncs a checkpoint batch into the newest segment.
async fn write_checkpoint(
    wal: &mut Wal,
    written: &mut Written,
    buffer: &mut Vec<u8>,
) -> io::Result<()> {
    let records = written.checkpoint();
    if records.is_empty() {
        return Ok(());
    }
    buffer.clear();
    wal.start_batch();
    for record in records {
        let payload = codec::encode(&record).expect("log records always encode");
        wal.frame(&payload, buffer);
        written.note(&record, wal.current_seq());
    }
    wal.write_and_sync(buffer).await
}

fn write_error(e: io::Error) -> StorageError<NodeId> {
    StorageIOError::write_logs(&e).into()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        Ok(self
            .data()
            .entries
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let data = self.data();
        let last = data.entries.values().next_back().map(|e| *e.get_log_id());
        Ok(LogState {
            last_purged_log_id: data.last_purged,
            last_log_id: last.or(data.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        vote::save(&self.disk, vote)
            .await
            .map_err(|e| StorageIOError::write_vote(&e))?;
        self.data().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.data().vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        // Losing the committed index in a crash is harmless (it is learned
        // again from the leader), so nobody waits for it to be durable.
        self.submit(Record::Committed(committed), Done::Nothing)
            .await
            .map_err(write_error)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.data().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.append_then(entries, Done::Flushed(callback))
            .await
            .map_err(write_error)
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        reached(Situation::LogSuffixTruncated);
        self.submit_durable(Record::Truncate { from: log_id.index })
            .await
            .map_err(write_error)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let covered = log_id.index < self.snapshot_covers.load(Ordering::Acquire);
        if !covered {
            // Purge in memory now; on disk once a snapshot covers it.
            self.data().apply(Record::Purge(log_id));
            let mut deferred = self.deferred_purge.lock().expect("deferred purge lock");
            *deferred = (*deferred).max(Some(log_id));
            return Ok(());
        }
        self.submit_durable(Record::Purge(log_id))
            .await
            .map_err(write_error)
    }
}
