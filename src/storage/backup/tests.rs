use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use openraft::{CommittedLeaderId, LogId, SnapshotMeta};

use super::*;
use crate::machine::command::{Command, DataOp};
use crate::machine::session::SessionLimits;
use crate::machine::Applied;
use crate::storage::snapshot::SnapshotStream;

/// The snapshot stream of `applied`.
fn stream_of(applied: &Applied) -> Vec<u8> {
    let sessions = applied.kv.sessions.table();
    SnapshotStream::generate(&applied.head(), sessions, applied.kv.data.clone())
        .unwrap()
        .read_all()
        .unwrap()
}

/// A standalone group's state after `keys` puts of `value_size` bytes.
fn state(keys: u64, value_size: usize) -> (Meta, Vec<u8>) {
    let mut applied = Applied::new(GroupKey::Standalone, 64);
    for i in 0..keys {
        let command = Command::Data {
            id: None,
            stamp: i,
            op: DataOp::Put {
                key: Bytes::from(format!("key-{i}")),
                value: Bytes::from(vec![i as u8; value_size]),
            },
        };
        applied.apply_command(&command, &SessionLimits::default());
    }
    let log_id = Some(LogId::new(CommittedLeaderId::new(3, 1), 42));
    applied.last_applied = log_id;
    let meta = SnapshotMeta {
        last_log_id: log_id,
        last_membership: applied.membership.clone(),
        snapshot_id: "3-1-42".into(),
    };
    (meta, stream_of(&applied))
}

#[test]
fn round_trip() {
    let (meta, data) = state(3, 10);
    let file = encode(GroupKey::Standalone, &meta, &data);
    let backup = decode(&file).unwrap();
    assert_eq!(backup.header.meta, meta);
    assert_eq!(backup.header.group, GroupKey::Standalone);
    assert_eq!(backup.header.chunks, 1);
    assert_eq!(backup.state, data);
    assert_eq!(backup.size_bytes, file.len() as u64);
    assert_eq!(backup.check().unwrap(), (0, 3));
}

#[test]
fn a_large_state_is_cut_into_chunks() {
    // Just over two chunks of values.
    let (meta, data) = state(17, 128 * 1024);
    assert!(data.len() > 2 * BACKUP_CHUNK_SIZE_BYTES);
    let file = encode(GroupKey::Standalone, &meta, &data);
    let backup = decode(&file).unwrap();
    assert_eq!(backup.header.chunks, 3);
    assert_eq!(backup.state, data);
}

#[test]
fn every_flipped_byte_is_found_where_it_is() {
    let (meta, data) = state(2, 3);
    let file = encode(GroupKey::Standalone, &meta, &data);
    // The frames' starts: the damage must be reported in the frame it is in.
    let header_len = u32::from_le_bytes(file[12..16].try_into().unwrap()) as usize;
    let chunk_at = 12 + frame::HEADER_SIZE_BYTES + header_len;
    let chunk_len = u32::from_le_bytes(file[chunk_at..chunk_at + 4].try_into().unwrap()) as usize;
    let trailer_at = chunk_at + frame::HEADER_SIZE_BYTES + chunk_len;
    let starts = [0, 8, 12, chunk_at, trailer_at];
    for byte in 0..file.len() {
        let expected = *starts.iter().rfind(|&&s| s <= byte).unwrap() as u64;
        for flip in 1..=255u8 {
            let mut damaged = file.clone();
            damaged[byte] ^= flip;
            match decode(&damaged) {
                Ok(_) => panic!("flip {flip:#x} of byte {byte} went unseen"),
                Err(Unreadable::Damaged(found)) => assert_eq!(
                    found.offset, expected,
                    "flip {flip:#x} of byte {byte}: {}",
                    found.reason
                ),
                // A damaged version field that names a later version reads
                // as a later Shoal's file: refused all the same.
                Err(Unreadable::Newer(newer)) => assert!(
                    (8..12).contains(&byte) && newer.found > VERSION,
                    "flip {flip:#x} of byte {byte}: {newer}"
                ),
            }
        }
    }
}

#[test]
fn every_truncation_is_found() {
    let (meta, data) = state(2, 3);
    let file = encode(GroupKey::Standalone, &meta, &data);
    for len in 0..file.len() {
        let found = damage_of(&file[..len]);
        assert!(found.offset <= len as u64, "cut at {len}: {found:?}");
    }
    let mut longer = file.clone();
    longer.push(0);
    assert_eq!(damage_of(&longer).offset, file.len() as u64);
}

/// The damage `decode` finds in `file`.
fn damage_of(file: &[u8]) -> Damage {
    match decode(file) {
        Err(Unreadable::Damaged(damage)) => damage,
        other => panic!("expected damage, found {other:?}"),
    }
}

#[test]
fn a_later_version_is_refused_as_newer_not_damaged() {
    let (meta, data) = state(2, 3);
    let mut file = encode(GroupKey::Standalone, &meta, &data);
    file[8..12].copy_from_slice(&(VERSION + 1).to_le_bytes());
    let refused = decode(&file).unwrap_err();
    assert_eq!(
        refused.to_string(),
        format!(
            "written by a newer Shoal: backup format {}, this binary reads up to {VERSION}",
            VERSION + 1
        )
    );
}

#[test]
fn a_restored_snapshot_starts_a_new_history() {
    let (meta, data) = state(3, 10);
    let backup = decode(&encode(GroupKey::Standalone, &meta, &data)).unwrap();
    let peers: BTreeMap<NodeId, Member> =
        [(4, Member::new("a:1", "")), (5, Member::new("b:2", "b:3"))].into();
    let (restored, data) = restored_snapshot(&backup, GroupKey::Standalone, 64, &peers).unwrap();
    let log_id = LogId::new(CommittedLeaderId::new(0, 0), 42);
    assert_eq!(restored.last_log_id, Some(log_id));
    assert_eq!(restored.last_membership.log_id(), &Some(log_id));
    let voters: Vec<NodeId> = restored.last_membership.membership().voter_ids().collect();
    assert_eq!(voters, vec![4, 5]);
    let (head, _, keys) = snapshot::check(&data).unwrap();
    assert_eq!(head.last_applied, Some(log_id));
    assert_eq!(keys, 3);
    let ((_, _), entries_at) = backup.head().unwrap();
    assert!(
        data.ends_with(&backup.state[entries_at..]),
        "the entries are kept"
    );
    assert!(matches!(
        restored_snapshot(&backup, GroupKey::Controller, 64, &peers),
        Err(RestoreError::WrongGroup { .. })
    ));
}

#[test]
fn a_data_group_restores_only_into_a_cluster_of_its_shard_count() {
    let applied = Applied::new(GroupKey::Data(2), 16);
    let meta = SnapshotMeta {
        last_log_id: None,
        last_membership: applied.membership.clone(),
        snapshot_id: "empty".into(),
    };
    let file = encode(GroupKey::Data(2), &meta, &stream_of(&applied));
    let backup = decode(&file).unwrap();
    let peers: BTreeMap<NodeId, Member> = [(1, Member::new("a:1", ""))].into();
    assert!(restored_snapshot(&backup, GroupKey::Data(2), 16, &peers).is_ok());
    assert!(matches!(
        restored_snapshot(&backup, GroupKey::Data(2), 64, &peers),
        Err(RestoreError::ShardCount {
            backup: 16,
            replica: 64
        })
    ));
    assert!(matches!(
        restored_snapshot(&backup, GroupKey::Data(3), 16, &peers),
        Err(RestoreError::WrongGroup { .. })
    ));
}

/// Runs a future that never waits (the memory disk answers at once).
fn ready<T>(future: impl std::future::Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut context) {
        std::task::Poll::Ready(value) => value,
        std::task::Poll::Pending => panic!("the memory disk never waits"),
    }
}

/// A disk in memory, enough for seeding.
#[derive(Debug, Default)]
struct MemDisk(std::sync::Mutex<BTreeMap<String, Vec<u8>>>);

impl crate::storage::disk::Disk for MemDisk {
    fn create_dir(&self, _: &str) -> crate::storage::disk::DiskFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
    fn create(&self, path: &str) -> crate::storage::disk::DiskFuture<'_, ()> {
        self.0.lock().unwrap().insert(path.to_string(), Vec::new());
        Box::pin(async { Ok(()) })
    }
    fn append<'a>(
        &'a self,
        path: &'a str,
        data: &'a [u8],
    ) -> crate::storage::disk::DiskFuture<'a, ()> {
        self.0
            .lock()
            .unwrap()
            .get_mut(path)
            .unwrap()
            .extend_from_slice(data);
        Box::pin(async { Ok(()) })
    }
    fn read(&self, path: &str) -> crate::storage::disk::DiskFuture<'_, Vec<u8>> {
        let bytes = self.0.lock().unwrap().get(path).cloned();
        Box::pin(async move { bytes.ok_or_else(|| std::io::ErrorKind::NotFound.into()) })
    }
    fn truncate(&self, path: &str, len: u64) -> crate::storage::disk::DiskFuture<'_, ()> {
        if let Some(bytes) = self.0.lock().unwrap().get_mut(path) {
            bytes.truncate(len as usize);
        }
        Box::pin(async { Ok(()) })
    }
    fn sync(&self, _: &str) -> crate::storage::disk::DiskFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
    fn rename<'a>(
        &'a self,
        from: &'a str,
        to: &'a str,
    ) -> crate::storage::disk::DiskFuture<'a, ()> {
        let mut files = self.0.lock().unwrap();
        let bytes = files.remove(from).unwrap();
        files.insert(to.to_string(), bytes);
        Box::pin(async { Ok(()) })
    }
    fn remove(&self, path: &str) -> crate::storage::disk::DiskFuture<'_, ()> {
        self.0.lock().unwrap().remove(path);
        Box::pin(async { Ok(()) })
    }
    fn list(&self, dir: &str) -> crate::storage::disk::DiskFuture<'_, Vec<String>> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let names = self
            .0
            .lock()
            .unwrap()
            .keys()
            .filter_map(|p| p.strip_prefix(&prefix).map(String::from))
            .filter(|p| !p.contains('/'))
            .collect();
        Box::pin(async move { Ok(names) })
    }
    fn sync_dir(&self, _: &str) -> crate::storage::disk::DiskFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
    fn open_random(
        &self,
        path: &str,
    ) -> crate::storage::disk::DiskFuture<'_, Arc<dyn crate::storage::disk::RandomFile>> {
        let refused = std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!("{path}: the memory disk holds no files written in place"),
        );
        Box::pin(async move { Err(refused) })
    }
}

#[test]
fn seeding_is_refused_on_a_disk_that_holds_anything() {
    let (meta, data) = state(3, 10);
    let disk: DiskRef = Arc::new(MemDisk::default());
    ready(async {
        disk.create("LOCK").await.unwrap();
        disk.create("wal/00000001.wal").await.unwrap();
        let refused = seed(&disk, "LOCK", &meta, &data).await;
        assert!(
            matches!(refused, Err(RestoreError::NotEmpty(_))),
            "{refused:?}"
        );
    });
}

#[test]
fn a_version_1_backup_reads_as_the_snapshot_stream() {
    use super::legacy::{AppliedV1, KvV1};
    let keys: BTreeMap<Bytes, Bytes> = (0..5)
        .map(|i| (Bytes::from(format!("k{i}")), Bytes::from(format!("v{i}"))))
        .collect();
    let log_id = Some(LogId::new(CommittedLeaderId::new(2, 1), 9));
    let mut applied = Applied::new(GroupKey::Standalone, 64);
    applied.last_applied = log_id;
    let v1 = AppliedV1 {
        last_applied: log_id,
        membership: applied.membership.clone(),
        kv: KvV1 {
            data: keys.clone(),
            sessions: applied.kv.sessions.clone(),
        },
        role: applied.role.clone(),
    };
    let meta = SnapshotMeta {
        last_log_id: log_id,
        last_membership: applied.membership.clone(),
        snapshot_id: "2-1-9".into(),
    };
    let file = encode_version(1, GroupKey::Standalone, &meta, &codec::encode(&v1).unwrap());
    let backup = decode(&file).unwrap();
    let mut read = BTreeMap::new();
    let (head, _, count) = snapshot::read(&backup.state, |_, k, v| {
        read.insert(Bytes::from(k), Bytes::from(v));
    })
    .unwrap();
    assert_eq!((head.last_applied, count), (log_id, 5));
    assert_eq!(read, keys);
    assert_eq!(backup.check().unwrap(), (0, 5));
}
