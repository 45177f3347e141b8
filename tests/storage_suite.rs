//! openraft's own storage test suite, run against Shoal's log and state
//! machine stores on the real disk: the stores honour openraft's contract
//! (log state, vote, truncate, purge, apply, snapshots).
#![cfg(not(madsim))]

use std::path::PathBuf;
use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};
use openraft::{StorageError, StorageIOError};
use shoal::ids::NodeId;
use shoal::raft::TypeConfig;
use shoal::storage::disk::OsDisk;
use shoal::storage::{LogStore, StateMachineStore, Storage, StorageOptions};

/// A scratch directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct OnDisk;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for OnDisk {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            TempDir(std::env::temp_dir().join(format!("shoal-suite-{}-{n}", std::process::id())));
        let disk = OsDisk::open(&dir.0).map_err(|e| StorageIOError::write(&e))?;
        // Small segments so that rotation and segment deletion happen too.
        let options = StorageOptions {
            wal_segment_size_max: 512,
            ..StorageOptions::default()
        };
        let storage = Storage::open(Arc::new(disk), &options, Default::default())
            .await
            .map_err(|e| StorageIOError::read(&e))?;
        Ok((dir, storage.log, storage.state_machine))
    }
}

#[test]
fn shoal_storage_passes_the_openraft_suite() {
    Suite::test_all(OnDisk).unwrap();
}
