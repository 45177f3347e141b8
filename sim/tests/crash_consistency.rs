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
                    wal.sync().await.unwrap();
                    synced = written.len();
                    if wal.should_rotate() {
                        wal.rotate().await.unwrap();
                    }
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
    let faults = DiskFaults {
        torn_write_rate: 1.0,
        ..DiskFaults::default()
    };
    let disk = SimDisk::new(7, faults);
    let (mut wal, _) = open(&disk).await.unwrap();
    append(&mut wal, b"synced").await;
    wal.sync().await.unwrap();
    // An unsynced write longer than a sector, so a tear can keep part of it.
    append(&mut wal, &[0xab; 2000]).await;
    disk.crash();
    let (mut wal, recovered) = open(&disk).await.unwrap();
    assert_eq!(recovered, vec![b"synced".to_vec()]);
    append(&mut wal, b"after").await;
    wal.sync().await.unwrap();
    disk.crash();
    let (_, recovered) = open(&disk).await.unwrap();
    assert_eq!(recovered, vec![b"synced".to_vec(), b"after".to_vec()]);
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
    // Damage the second record of the first segment (header 16 + 40 bytes each).
    let first = format!("wal/{}", files[0]);
    disk.corrupt(&first, 56 + 20, 3);
    match open(&disk).await {
        Err(WalError::Corrupt { path, offset }) => assert_eq!((path, offset), (first, 56)),
        other => panic!("expected corruption, got {:?}", other.map(|(_, r)| r.len())),
    }
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
    }
    wal.sync().await.unwrap();
    disk.set_faults(true);
    for _ in 0..20 {
        let (_, recovered) = open(&disk).await.unwrap();
        assert_eq!(recovered, payloads);
    }
    assert!(disk.stats().bitflips > 0);
}

#[madsim::test]
async fn a_damaged_snapshot_refuses_to_open() {
    let disk = SimDisk::new(5, DiskFaults::default());
    let disk_ref: DiskRef = Arc::new(disk.clone());
    let meta = shoal::storage::snapshot::Meta {
        last_log_id: None,
        last_membership: Default::default(),
        snapshot_id: "empty".into(),
    };
    let state =
        shoal::raft::codec::encode(&shoal::storage::state_machine::Applied::default()).unwrap();
    shoal::storage::snapshot::write(&disk_ref, &meta, &state)
        .await
        .unwrap();
    let options = StorageOptions::default();
    let metrics = Arc::new(StorageMetrics::default());
    assert!(Storage::open(disk_ref.clone(), &options, metrics.clone())
        .await
        .is_ok());

    disk.corrupt("snapshots/00000000000000000000.snap", 30, 0);
    match Storage::open(disk_ref, &options, metrics).await {
        Err(StorageOpenError::Snapshot(e)) => {
            let message = e.to_string();
            assert!(
                message.contains("snapshots/00000000000000000000.snap"),
                "{message}"
            );
            assert!(message.contains("checksum mismatch"), "{message}");
        }
        other => panic!("expected a damaged snapshot, got {:?}", other.map(|_| ())),
    }
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
