//! A backup taken in simulation while a writer keeps writing, just after the
//! leader was killed: the save finds the new leader, and the backup holds
//! every write acknowledged before the save began, with its value.
//! `MADSIM_TEST_SEED=N cargo simtest -p shoal-sim --test backup`
#![cfg(madsim)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use shoal::client::Client;
use shoal::ids::GroupKey;
use shoal::storage::backup;
use shoal_sim::cluster::Cluster;
use shoal_sim::disk::DiskFaults;
use shoal_sim::scenario::ClusterSpec;

#[madsim::test]
async fn a_backup_holds_every_write_acknowledged_before_it() {
    let spec = ClusterSpec {
        replicas: 3,
        spare_replicas: 0,
        groups: 0,
        standby_groups: 0,
        shard_count: 16,
        // Raft snapshots and log purges happen while the writer writes.
        snapshot_every_entries: Some(50),
        entries_kept_after_snapshot: Some(10),
        wal_segment_size_max: None,
        checkpoint_every_entries: Some(30),
        max_sessions: None,
        session_idle_timeout_ms: None,
    };
    let mut cluster = Cluster::start(&spec, &DiskFaults::default());
    let acked: Arc<Mutex<Vec<(Bytes, Bytes)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop) = (acked.clone(), stop.clone());
        let mut client = Client::new(cluster.client_config());
        cluster.client_node().spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = Bytes::from(format!("key-{i:05}"));
                let value = Bytes::from(format!("value-{i}"));
                if client.put(key.clone(), value.clone()).await.is_ok() {
                    acked.lock().unwrap().push((key, value));
                }
                i += 1;
            }
        })
    };
    while acked.lock().unwrap().len() < 200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let leader = cluster
        .leader_of(GroupKey::Standalone, Duration::from_secs(5))
        .await
        .expect("a leader");
    cluster.kill(leader);
    let before: Vec<(Bytes, Bytes)> = acked.lock().unwrap().clone();

    let file = cluster
        .observe(|mut client| async move {
            let mut stream = client.save_snapshot(None).await.unwrap();
            let mut file = Vec::new();
            while let Some(piece) = stream.next().await.unwrap() {
                file.extend_from_slice(&piece);
            }
            file
        })
        .await;
    let during = acked.lock().unwrap().len();
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    cluster.restart(leader);

    let backup = backup::decode(&file).unwrap();
    assert_eq!(backup.header.group, GroupKey::Standalone);
    let mut saved = std::collections::BTreeMap::new();
    shoal::storage::snapshot::read(&backup.state, |_, key, value| {
        saved.insert(Bytes::from(key), Bytes::from(value));
    })
    .unwrap();
    for (key, value) in &before {
        assert_eq!(saved.get(key), Some(value), "{key:?}");
    }
    assert!(saved.len() >= before.len());
    assert!(during >= before.len());
}
