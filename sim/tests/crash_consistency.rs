//! Crash-consistency of the write-ahead log and snapshots on the simulated
//! disk: random operation sequences with crashes at random points; after
//! recovery the log holds a prefix of what was written that includes every
//! synced record; torn tails recover; damage at rest is detected and named.
#![cfg(madsim)]

use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shoal::storage::disk::{Disk, DiskRef};
use shoal::storage::wal::{Wal, WalError};
use shoal::storage::{Storage, StorageMetrics, StorageOpenError, StorageOptions};
use shoal_sim::disk::{DiskFaults, SimDisk};

const SEGMENT_SIZE_MAX: u64 = 300;

async fn open(disk: &SimDisk) -> Result<(Wal, Vec<Vec<u8>>), WalError> {
    let disk: DiskRef = Arc::new(disk.clone());
    let (wal, segments) = Wal::open(disk, "wal", SEGMENT_SIZE_MAX).await?;
    Ok((wal, segments.into_iter().flat_map(|s| s.records).collect()))
}

async fn append(wal: &mut Wal, payload: &[u8]) {
    let mut framed = Vec::new();
    wal.frame(payload, &mut framed);
    wal.write(&framed).await.unwrap();
}

#[madsim::test]
async fn recovery_keeps_a_prefix_with_every_synced_record() {
    let mut torn_recoveries = 0;
    for trial in 0..300u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(trial);
        let faults = DiskFaults {
            torn_write_rate: 0.5,
            ..DiskFaults::default()
        };
        let disk = SimDisk::new(trial, faults);
        let (mut wal, recovered) = open(&disk).await.unwrap();
        assert!(recovered.is_empty());
        let mut written: Vec<Vec<u8>> = Vec::new();
        let mut synced = 0;
        for _ in 0..rng.gen_range(1..60) {
            match rng.gen_range(0..10) {
                0..=5 => {
                    let mut payload = vec![0u8; rng.gen_range(0..120)];
                    rng.fill(&mut payload[..]);
                    append(&mut wal, &payload).await;
                    written.push(payload);
                }
                6..=8 => {
                    // A batch may end unsynced (the log does so for
                    // committed-index records); rotating syncs it.
                    if rng.gen_bool(0.7) {
                        wal.sync().await.unwrap();
                        synced = written.len();
                    }
                    if wal.should_rotate() {
                        wal.rotate().await.unwrap();
                        synced = written.len();
                    }
                    wal.start_batch();
                }
                _ => {
                    disk.crash();
                    let (reopened, recovered) = open(&disk).await.unwrap();
                    check_prefix(trial, &written, synced, &recovered);
                    torn_recoveries += usize::from(recovered.len() > synced);
                    written.truncate(recovered.len());
                    synced = written.len();
                    wal = reopened;
                }
            }
        }
        disk.crash();
        let (_, recovered) = open(&disk).await.unwrap();
        check_prefix(trial, &written, synced, &recovered);
    }
    // Some crashes kept torn (partial) unsynced records: the tear path ran.
    assert!(torn_recoveries > 0);
}

fn check_prefix(trial: u64, written: &[Vec<u8>], synced: usize, recovered: &[Vec<u8>]) {
    assert!(
        recovered.len() >= synced,
        "trial {trial}: {} records recovered, {synced} were synced",
        recovered.len()
    );
    assert!(
        recovered.len() <= written.len(),
        "trial {trial}: invented records"
    );
    assert_eq!(
        recovered,
        &written[..recovered.len()],
        "trial {trial}: not a prefix"
    );
}

#[madsim::test]
async fn a_torn_tail_is_cut_and_the_log_goes_on() {
    let mut torn = 0;
    for seed in 0..20 {
        let faults = DiskFaults {
            torn_write_rate: 1.0,
            ..DiskFaults::default()
        };
        let disk = SimDisk::new(seed, faults);
        let (mut wal, _) = open(&disk).await.unwrap();
        append(&mut wal, b"synced").await;
        wal.sync().await.unwrap();
        wal.start_batch();
        // An unsynced batch longer than a sector, so a tear can keep part of it.
        for _ in 0..4 {
            append(&mut wal, &[0xab; 500]).await;
        }
        disk.crash();
        let (mut wal, recovered) = open(&disk).await.unwrap();
        // Whole records of the torn batch may survive; never a partial one.
        assert_eq!(recovered[0], b"synced".to_vec());
        assert!(recovered[1..].iter().all(|r| r == &vec![0xab; 500]));
        append(&mut wal, b"after").await;
        wal.sync().await.unwrap();
        disk.crash();
        let (_, again) = open(&disk).await.unwrap();
        assert_eq!(again.len(), recovered.len() + 1);
        assert_eq!(again.last().unwrap(), &b"after".to_vec());
        torn += disk.stats().torn_files;
    }
    // The tear path ran: some crashes kept part of the unsynced batch.
    assert!(torn > 0);
}

#[madsim::test]
async fn a_flipped_bit_at_rest_is_detected_and_named() {
    let disk = SimDisk::new(1, DiskFaults::default());
    let (mut wal, _) = open(&disk).await.unwrap();
    for i in 0..30u8 {
        append(&mut wal, &[i; 40]).await;
        wal.sync().await.unwrap();
        if wal.should_rotate() {
            wal.rotate().await.unwrap();
        }
    }
    let files = disk.list("wal").await.unwrap();
    assert!(
        files.len() > 2,
        "the test needs several segments: {files:?}"
    );
    // Damage the second record of the first segment (header 24 + 40 bytes each).
    let first = format!("wal/{}", files[0]);
    disk.corrupt(&first, 64 + 20, 3);
    match open(&disk).await {
        Err(WalError::Corrupt { path, offset }) => assert_eq!((path, offset), (first, 64)),
        other => panic!("expected corruption, got {:?}", other.map(|(_, r)| r.len())),
    }
    // In the newest segment too: damage followed by a later batch.
    let disk = SimDisk::new(2, DiskFaults::default());
    let (mut wal, _) = open(&disk).await.unwrap();
    for i in 0..3u8 {
        append(&mut wal, &[i; 40]).await;
        wal.sync().await.unwrap();
        wal.start_batch();
    }
    let only = format!("wal/{}", disk.list("wal").await.unwrap()[0]);
    disk.corrupt(&only, 64 + 30, 0);
    assert!(matches!(
        open(&disk).await,
        Err(WalError::Corrupt { offset: 64, .. })
    ));
}

#[madsim::test]
async fn transient_read_flips_do_not_disturb_recovery() {
    let faults = DiskFaults {
        read_bitflip_rate: 0.3,
        ..DiskFaults::default()
    };
    let disk = SimDisk::new(3, faults);
    disk.set_faults(false);
    let (mut wal, _) = open(&disk).await.unwrap();
    let payloads: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 30]).collect();
    for payload in &payloads {
        append(&mut wal, payload).await;
        wal.sync().await.unwrap();
        wal.start_batch();
    }
    disk.set_faults(true);
    for _ in 0..20 {
        let (_, recovered) = open(&disk).await.unwrap();
        assert_eq!(recovered, payloads);
    }
    assert!(disk.stats().bitflips > 0);
}

#[madsim::test]
async fn a_data_directory_of_the_former_format_is_refused_and_left_alone() {
    let disk = SimDisk::new(5, DiskFaults::default());
    let disk_ref: DiskRef = Arc::new(disk.clone());
    disk.create_dir("snapshots").await.unwrap();
    disk.create("snapshots/00000000000000000100.snap")
        .await
        .unwrap();
    let options = StorageOptions::default();
    let metrics = Arc::new(StorageMetrics::default());
    match Storage::open(disk_ref.clone(), &options, metrics).await {
        Err(e @ StorageOpenError::FormerFormat) => {
            let message = e.to_string();
            assert!(message.contains("older Shoal"), "{message}");
            assert!(message.contains("restore a backup"), "{message}");
        }
        other => panic!(
            "expected the former format refused, got {:?}",
            other.map(|_| ())
        ),
    }
    assert_eq!(disk.file_count(""), 0, "nothing written beside it");
    assert_eq!(disk.file_count("snapshots"), 1);
}

#[madsim::test]
async fn a_full_disk_fails_writes_cleanly_and_loses_nothing_synced() {
    let faults = DiskFaults {
        capacity_bytes: Some(2_000),
        ..DiskFaults::default()
    };
    let disk = SimDisk::new(11, faults);
    let (mut wal, _) = open(&disk).await.unwrap();
    let mut synced = Vec::new();
    let full = loop {
        let mut framed = Vec::new();
        wal.frame(&[9; 100], &mut framed);
        match wal.write(&framed).await {
            Ok(()) => {
                wal.sync().await.unwrap();
                wal.start_batch();
                synced.push(vec![9u8; 100]);
            }
            Err(e) => break e,
        }
    };
    assert_eq!(full.kind(), std::io::ErrorKind::StorageFull, "{full}");
    assert!(!synced.is_empty());
    // Space is freed (faults off); the log recovers everything it synced.
    disk.crash();
    disk.set_faults(false);
    let (_, recovered) = open(&disk).await.unwrap();
    assert_eq!(recovered, synced);
}

mod log_store {
    use super::*;
    use openraft::storage::{RaftLogReader, RaftLogStorage};
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};
    use shoal::raft::TypeConfig;

    fn entry(index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    /// Opens the log store alone, as if a checkpoint covered everything,
    /// so that purges are durable at once.
    async fn open_store(disk: &SimDisk) -> shoal::storage::LogStore {
        let covers = Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));
        shoal::storage::LogStore::open(Arc::new(disk.clone()), 400, covers, Arc::default())
            .await
            .unwrap()
    }

    /// A leader's vote is kept across a restart, but not as committed: the
    /// replica must win a new election before it leads again (the
    /// `leader-bounce` scenario shows why).
    #[madsim::test]
    async fn leadership_does_not_survive_a_restart() {
        let disk = SimDisk::new(4, DiskFaults::default());
        let mut log = open_store(&disk).await;
        let mut vote = Vote::new(3, 1);
        vote.commit();
        log.save_vote(&vote).await.unwrap();
        assert_eq!(log.read_vote().await.unwrap(), Some(vote));
        drop(log);
        disk.crash();
        let mut log = open_store(&disk).await;
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 1)));
    }

    /// openraft may purge the log up to a snapshot it is still installing.
    /// A crash before the snapshot is on disk must not leave a log purged
    /// past the snapshot that survives.
    #[madsim::test]
    async fn a_purge_beyond_the_durable_snapshot_waits_for_it() {
        let disk = SimDisk::new(3, DiskFaults::default());
        let options = StorageOptions::default();
        let storage = Storage::open(Arc::new(disk.clone()), &options, Arc::default())
            .await
            .unwrap();
        let mut log = storage.log;
        log.append_entries((1..=100).map(entry).collect())
            .await
            .unwrap()
            .await
            .unwrap()
            .unwrap();
        log.purge(LogId::new(CommittedLeaderId::new(1, 1), 80))
            .await
            .unwrap();
        // In memory the purge took effect...
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(80));
        // ...but after a crash, with no snapshot on disk, the entries are back.
        disk.crash();
        let mut log = Storage::open(Arc::new(disk.clone()), &options, Arc::default())
            .await
            .unwrap()
            .log;
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, None);
        assert_eq!(log.try_get_log_entries(1..=100).await.unwrap().len(), 100);
    }

    /// Random appends, purges, votes and crashes (with torn writes) against
    /// the whole log store, segment rotation and deletion included. After
    /// every recovery: the vote is the last one saved, the purge point is at
    /// least the last one acknowledged, and every acknowledged entry after it
    /// is there.
    #[madsim::test]
    async fn the_log_store_keeps_what_it_acknowledged_across_crashes() {
        for trial in 0..60u64 {
            let mut rng = ChaCha8Rng::seed_from_u64(trial);
            let faults = DiskFaults {
                torn_write_rate: 0.5,
                ..DiskFaults::default()
            };
            let disk = SimDisk::new(trial, faults);
            let mut store = open_store(&disk).await;
            let (mut next, mut durable, mut purged, mut vote) = (1u64, 0u64, 0u64, None);
            for _ in 0..rng.gen_range(10..80) {
                match rng.gen_range(0..10) {
                    0..=5 => {
                        let count = rng.gen_range(1..5);
                        let entries = (next..next + count).map(entry).collect();
                        store
                            .append_entries(entries)
                            .await
                            .unwrap()
                            .await
                            .unwrap()
                            .unwrap();
                        next += count;
                        durable = next - 1;
                    }
                    6 if durable > purged + 2 => {
                        purged = rng.gen_range(purged + 1..durable);
                        store
                            .purge(LogId::new(CommittedLeaderId::new(1, 1), purged))
                            .await
                            .unwrap();
                    }
                    7 => {
                        let v = Vote::new(rng.gen_range(1..100), rng.gen_range(1..4));
                        store.save_vote(&v).await.unwrap();
                        vote = Some(v);
                    }
                    _ => {
                        disk.crash();
                        store = open_store(&disk).await;
                        assert_eq!(store.read_vote().await.unwrap(), vote, "trial {trial}");
                        let state = store.get_log_state().await.unwrap();
                        let purge_point = state.last_purged_log_id.map_or(0, |l| l.index);
                        assert!(
                            purge_point >= purged,
                            "trial {trial}: purge point went back"
                        );
                        let last = state.last_log_id.map_or(0, |l| l.index);
                        assert!(last >= durable, "trial {trial}: lost acknowledged entries");
                        let kept = store
                            .try_get_log_entries(purge_point + 1..=last)
                            .await
                            .unwrap();
                        let indexes: Vec<u64> = kept.iter().map(|e| e.log_id.index).collect();
                        assert_eq!(
                            indexes,
                            (purge_point + 1..=last).collect::<Vec<_>>(),
                            "trial {trial}"
                        );
                        next = last + 1;
                        durable = last;
                    }
                }
            }
        }
    }
}

mod snapshots {
    use super::*;
    use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, SnapshotMeta};
    use shoal::machine::data::Empty;
    use shoal::machine::{Applied, Head};
    use shoal::storage::snapshot::SnapshotStream;
    use tokio::io::AsyncWriteExt;

    /// openraft builds a snapshot in a task of its own, which can race with
    /// installing a newer snapshot from the leader. The newer one must win,
    /// on disk as in memory, whatever the interleaving.
    #[madsim::test]
    async fn a_racing_build_never_undoes_a_newer_install() {
        for seed in 0..30 {
            let faults = DiskFaults {
                latency_ms_max: 3,
                ..DiskFaults::default()
            };
            let disk = SimDisk::new(seed, faults);
            let disk_ref: DiskRef = Arc::new(disk.clone());
            let options = StorageOptions::default();
            let mut store =
                shoal::storage::StateMachineStore::open(disk_ref.clone(), &options, Arc::default())
                    .await
                    .unwrap();
            let entries: Vec<_> = (1..=300)
                .map(|i| Entry {
                    log_id: LogId::new(CommittedLeaderId::new(1, 1), i),
                    payload: EntryPayload::Blank,
                })
                .collect();
            store.apply(entries).await.unwrap();

            let head = Head {
                last_applied: Some(LogId::new(CommittedLeaderId::new(2, 1), 600)),
                ..Head::default()
            };
            let newer = Applied::restore(head, Default::default(), Arc::new(Empty));
            let meta = SnapshotMeta {
                last_log_id: newer.last_applied,
                last_membership: Default::default(),
                snapshot_id: "leader-600".into(),
            };
            let sessions = newer.kv.sessions.table();
            let data = SnapshotStream::generate(&newer.head(), sessions, newer.kv.data.clone())
                .unwrap()
                .read_all()
                .unwrap();
            let mut received = store.begin_receiving_snapshot().await.unwrap();
            received.write_all(&data).await.unwrap();
            let mut builder = store.get_snapshot_builder().await;
            let mut installer = store.clone();
            let build = tokio::spawn(async move { builder.build_snapshot().await.map(|_| ()) });
            installer.install_snapshot(&meta, received).await.unwrap();
            build.await.unwrap().unwrap();

            let current = store.get_current_snapshot().await.unwrap().unwrap();
            assert_eq!(
                current.meta.last_log_id, newer.last_applied,
                "seed {seed}: in memory"
            );
            disk.crash();
            let reopened =
                shoal::storage::StateMachineStore::open(disk_ref, &options, Arc::default())
                    .await
                    .unwrap();
            assert_eq!(
                reopened.read().last_applied,
                newer.last_applied,
                "seed {seed}: on disk"
            );
        }
    }
}

/// A sync copies only what changed since the last one; whatever the mix of
/// appends, truncations and syncs, a crash leaves exactly the synced bytes.
#[madsim::test]
async fn a_crash_keeps_exactly_what_was_synced() {
    for trial in 0..200 {
        let mut rng = ChaCha8Rng::seed_from_u64(trial);
        let disk = SimDisk::new(trial, DiskFaults::default());
        disk.create_dir("d").await.unwrap();
        disk.sync_dir("").await.unwrap();
        disk.create("d/f").await.unwrap();
        disk.sync_dir("d").await.unwrap();
        let mut live: Vec<u8> = Vec::new();
        let mut synced: Vec<u8> = Vec::new();
        for step in 0..rng.gen_range(1..30) {
            match rng.gen_range(0..4) {
                0 | 1 => {
                    let data = vec![step as u8; rng.gen_range(1..50)];
                    disk.append("d/f", &data).await.unwrap();
                    live.extend_from_slice(&data);
                }
                2 => {
                    let len = rng.gen_range(0..=live.len());
                    disk.truncate("d/f", len as u64).await.unwrap();
                    live.truncate(len);
                }
                _ => {
                    disk.sync("d/f").await.unwrap();
                    synced = live.clone();
                }
            }
        }
        disk.crash();
        assert_eq!(disk.read("d/f").await.unwrap(), synced, "trial {trial}");
    }
}
