//! Backups of format version 1, written while the state machine lived in
//! memory: their state is the whole applied state as one bincode value. It
//! is read into the snapshot stream that version 2 holds, so such a backup
//! restores into this version's engine (the way across the change of data
//! directory format).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use openraft::{LogId, StoredMembership};
use serde::{Deserialize, Serialize};

use crate::ids::{Member, NodeId};
use crate::machine::data::{Data, Empty};
use crate::machine::session::Sessions;
use crate::machine::{Head, Role};
use crate::raft::codec;
use crate::storage::snapshot::SnapshotStream;

/// The format version whose state this module reads.
pub(super) const VERSION: u32 = 1;

/// The applied state as version 1 encoded it (fields in their order).
#[derive(Serialize, Deserialize)]
pub(super) struct AppliedV1 {
    pub(super) last_applied: Option<LogId<NodeId>>,
    pub(super) membership: StoredMembership<NodeId, Member>,
    pub(super) kv: KvV1,
    pub(super) role: Role,
}

/// Version 1's data and de-duplication table.
#[derive(Serialize, Deserialize)]
pub(super) struct KvV1 {
    pub(super) data: BTreeMap<Bytes, Bytes>,
    pub(super) sessions: Sessions,
}

/// The snapshot stream of a version 1 state.
pub(super) fn state(v1: &[u8]) -> Result<Vec<u8>, String> {
    let old: AppliedV1 =
        codec::decode(v1).map_err(|e| format!("the version 1 state does not decode: {e}"))?;
    let sessions = &old.kv.sessions;
    let head = Head {
        last_applied: old.last_applied,
        membership: old.membership,
        clock: sessions.clock(),
        expired_through: sessions.expired_through(),
        role: old.role,
    };
    let mut data = Data::new(Arc::new(Empty), head.role.shard_count());
    for (key, value) in old.kv.data {
        data.insert(key, value);
    }
    SnapshotStream::generate(&head, sessions.table(), data)
        .and_then(SnapshotStream::read_all)
        .map_err(|e| format!("the version 1 state does not convert: {e}"))
}
