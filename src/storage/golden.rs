//! Golden bytes: the exact encoding of everything a replica writes to its
//! disk or sends to a peer, pinned in `snapshots/`. A change to a persisted
//! type (a field added, a variant moved, an integer widened) changes these
//! bytes and fails here. Such a change needs a new format version and a
//! reader of the old one; accepting new golden bytes without both would
//! make the next build misread this one's data.
//!
//! Each snapshot lists values by name, their bytes in hexadecimal, 32 to a
//! line.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use bytes::Bytes;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, LogId, Membership, SnapshotMeta, StoredMembership, Vote,
};

use super::log_store::Record;
use super::snapshot::SnapshotStream;
use super::{backup, frame, snapshot, vote};
use crate::ids::{GroupKey, Member, NodeId};
use crate::machine::command::{Command, CommandResult, DataOp, Outcome, WriteId};
use crate::machine::kv::Session;
use crate::machine::session::SessionLimits;
use crate::machine::shard::config::Config;
use crate::machine::shard::controller::{ControllerError, ControllerOp, ControllerState};
use crate::machine::shard::group::{GroupShards, ShardStatus};
use crate::machine::shard::ShardOp;
use crate::machine::{Applied, Head, Role, ShardData};
use crate::raft::{codec, TypeConfig};

/// Named byte strings, printed for a snapshot.
#[derive(Default)]
struct Golden(String);

impl Golden {
    fn add(&mut self, name: &str, bytes: &[u8]) {
        writeln!(self.0, "{name} ({} bytes)", bytes.len()).unwrap();
        for line in bytes.chunks(32) {
            let hex: String = line.iter().map(|b| format!("{b:02x}")).collect();
            writeln!(self.0, "  {hex}").unwrap();
        }
    }

    /// Adds the peer and log encoding (bincode) of `value`.
    fn encoded<T: serde::Serialize>(&mut self, name: &str, value: &T) {
        self.add(name, &codec::encode(value).unwrap());
    }
}

fn log_id(term: u64, node: NodeId, index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(term, node), index)
}

fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn session() -> Session {
    Session {
        seq: 3,
        result: CommandResult::Cas {
            swapped: false,
            current: Some(bytes("v")),
        },
        last_active: 9,
    }
}

fn sessions() -> BTreeMap<u64, Session> {
    BTreeMap::from([(5, session())])
}

fn groups() -> BTreeMap<u64, BTreeMap<NodeId, String>> {
    BTreeMap::from([(1, BTreeMap::from([(1, "n1:7101".to_string())]))])
}

fn config() -> Config {
    Config {
        num: 2,
        shards: vec![1, 0, 1],
        groups: groups(),
    }
}

fn membership() -> StoredMembership<NodeId, Member> {
    let nodes = BTreeMap::from([
        (1, Member::new("n1:7001", "")),
        (2, Member::new("n2:7001", "n2:7101")),
    ]);
    StoredMembership::new(
        Some(log_id(1, 1, 1)),
        Membership::new(vec![BTreeSet::from([1, 2])], nodes),
    )
}

fn put() -> Command {
    Command::Data {
        id: Some(WriteId {
            client_id: 7,
            seq: 3,
            opened_at: 5,
        }),
        op: DataOp::Put {
            key: bytes("k"),
            value: bytes("v"),
        },
        stamp: 9,
    }
}

/// One of every log command's shape.
fn commands() -> Vec<(&'static str, Command)> {
    let mut commands = data_commands();
    commands.extend(shard_commands());
    commands.push((
        "batch",
        Command::Batch(vec![
            put(),
            Command::CloseSession {
                client_id: 7,
                stamp: 13,
            },
        ]),
    ));
    commands
}

fn data_commands() -> Vec<(&'static str, Command)> {
    vec![
        ("data put", put()),
        (
            "data delete, no write id",
            Command::Data {
                id: None,
                op: DataOp::Delete { key: bytes("k") },
                stamp: 10,
            },
        ),
        (
            "data cas, from absent",
            Command::Data {
                id: None,
                op: DataOp::Cas {
                    key: bytes("k"),
                    expected: None,
                    new: Some(bytes("v")),
                },
                stamp: 11,
            },
        ),
        (
            "data cas, to absent",
            Command::Data {
                id: None,
                op: DataOp::Cas {
                    key: bytes("k"),
                    expected: Some(bytes("v")),
                    new: None,
                },
                stamp: 12,
            },
        ),
        (
            "close session",
            Command::CloseSession {
                client_id: 7,
                stamp: 13,
            },
        ),
    ]
}

fn shard_commands() -> Vec<(&'static str, Command)> {
    let data = vec![(bytes("k"), bytes("v"))];
    vec![
        (
            "controller join",
            Command::Shard(ShardOp::Controller(ControllerOp::Join(groups()))),
        ),
        (
            "controller leave",
            Command::Shard(ShardOp::Controller(ControllerOp::Leave(BTreeSet::from([
                1,
            ])))),
        ),
        (
            "controller move",
            Command::Shard(ShardOp::Controller(ControllerOp::Move {
                shard: 2,
                group: 1,
            })),
        ),
        (
            "reconfigure",
            Command::Shard(ShardOp::Reconfigure(config())),
        ),
        (
            "install",
            Command::Shard(ShardOp::Install {
                num: 2,
                shard: 1,
                data: data.clone(),
                sessions: sessions(),
                expired_through: 4,
            }),
        ),
        (
            "install part",
            Command::Shard(ShardOp::InstallPart {
                num: 2,
                shard: 1,
                data,
            }),
        ),
        ("drop", Command::Shard(ShardOp::Drop { num: 2, shard: 1 })),
        (
            "handed over",
            Command::Shard(ShardOp::HandedOver { num: 2, shard: 1 }),
        ),
    ]
}

/// One of every command result's shape (results are kept in sessions).
fn results() -> Vec<(&'static str, CommandResult)> {
    vec![
        ("none", CommandResult::None),
        ("put", CommandResult::Put),
        ("delete", CommandResult::Delete { existed: true }),
        (
            "cas",
            CommandResult::Cas {
                swapped: true,
                current: None,
            },
        ),
        ("stale sequence", CommandResult::StaleSequence),
        (
            "session expired",
            CommandResult::SessionExpired { horizon: 4 },
        ),
        ("session closed", CommandResult::SessionClosed(true)),
        ("wrong group", CommandResult::WrongGroup { config_num: 2 }),
        ("controller ok", CommandResult::Controller(Ok(3))),
        (
            "controller refused",
            CommandResult::Controller(Err(ControllerError::UnknownGroup(4))),
        ),
        ("shard", CommandResult::Shard(false)),
        (
            "batch",
            CommandResult::Batch(vec![Outcome {
                result: CommandResult::Put,
                stamp: 9,
            }]),
        ),
    ]
}

/// One head of every role.
fn heads() -> Vec<(&'static str, Head)> {
    let mut controller = ControllerState::new(3);
    controller.apply(&ControllerOp::Join(groups())).unwrap();
    let data = GroupShards {
        group: 1,
        config: config(),
        previous: Some(Config::initial(3)),
        status: BTreeMap::from([
            (0, ShardStatus::Serving),
            (1, ShardStatus::Pulling { from: 2 }),
            (2, ShardStatus::Handover { from: 2 }),
        ]),
    };
    let head = |role| Head {
        last_applied: Some(log_id(3, 2, 40)),
        membership: membership(),
        role,
        clock: 17,
        expired_through: 4,
    };
    vec![
        ("standalone", head(Role::Standalone)),
        ("controller", head(Role::Controller(controller))),
        ("data group", head(Role::Data(data))),
        ("fresh", Head::default()),
    ]
}

fn entry(index: u64, payload: EntryPayload<TypeConfig>) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(3, 2, index),
        payload,
    }
}

#[test]
fn log_commands_and_results() {
    let mut golden = Golden::default();
    for (name, command) in commands() {
        golden.encoded(&format!("command: {name}"), &command);
    }
    for (name, result) in results() {
        golden.encoded(&format!("result: {name}"), &result);
    }
    insta::assert_snapshot!(golden.0);
}

#[test]
fn write_ahead_log() {
    let mut golden = Golden::default();
    let mut framed = Vec::new();
    frame::encode(7, 5, b"payload", &mut framed);
    golden.add("frame: record 7 of the batch from 5", &framed);
    let records = [
        (
            "entry: blank",
            Record::Entry(entry(41, EntryPayload::Blank)),
        ),
        (
            "entry: command",
            Record::Entry(entry(42, EntryPayload::Normal(put()))),
        ),
        (
            "entry: membership",
            Record::Entry(entry(
                43,
                EntryPayload::Membership(membership().membership().clone()),
            )),
        ),
        ("truncate", Record::Truncate { from: 42 }),
        ("purge", Record::Purge(log_id(3, 2, 40))),
        ("committed", Record::Committed(Some(log_id(3, 2, 42)))),
        ("committed: none", Record::Committed(None)),
    ];
    for (name, record) in &records {
        golden.encoded(&format!("record: {name}"), record);
    }
    golden.add("vote file", &vote::encode(&Vote::new_committed(3, 2)));
    golden.add("vote file: not committed", &vote::encode(&Vote::new(4, 1)));
    insta::assert_snapshot!(golden.0);
}

#[test]
fn state_snapshots_and_backups() {
    let mut golden = Golden::default();
    for (name, head) in heads() {
        golden.encoded(&format!("head: {name}"), &head);
    }
    golden.encoded("session", &session());
    golden.add(
        "snapshot head (with sessions)",
        &snapshot::encode_head(&heads()[0].1, &sessions()),
    );
    // A small standalone state, whole: the stream a snapshot carries and a
    // backup holds.
    let mut applied = Applied::new(GroupKey::Standalone, 1);
    for (key, value) in [("a", "1"), ("b", "22")] {
        let command = Command::Data {
            id: None,
            op: DataOp::Put {
                key: bytes(key),
                value: bytes(value),
            },
            stamp: 1,
        };
        applied.apply_command(&command, &SessionLimits::default());
    }
    applied.last_applied = Some(log_id(3, 2, 40));
    applied.membership = membership();
    let stream = SnapshotStream::generate(&applied.head(), &sessions(), applied.kv.data.clone())
        .unwrap()
        .read_all()
        .unwrap();
    golden.add("snapshot stream", &stream);
    let meta = SnapshotMeta {
        last_log_id: applied.last_applied,
        last_membership: applied.membership.clone(),
        snapshot_id: "3-2-40".into(),
    };
    golden.add(
        "backup file of data group 2",
        &backup::encode(GroupKey::Data(2), &meta, &stream),
    );
    insta::assert_snapshot!(golden.0);
}

#[test]
fn peer_messages() {
    let mut golden = Golden::default();
    let vote = Vote::new_committed(3, 2);
    golden.encoded(
        "append entries",
        &AppendEntriesRequest::<TypeConfig> {
            vote,
            prev_log_id: Some(log_id(3, 2, 41)),
            entries: vec![entry(42, EntryPayload::Normal(put()))],
            leader_commit: Some(log_id(3, 2, 41)),
        },
    );
    type Reply<T> = Result<T, openraft::error::RaftError<NodeId>>;
    let replies: [(&str, Reply<AppendEntriesResponse<NodeId>>); 4] = [
        ("success", Ok(AppendEntriesResponse::Success)),
        (
            "partial success",
            Ok(AppendEntriesResponse::PartialSuccess(Some(log_id(
                3, 2, 41,
            )))),
        ),
        ("conflict", Ok(AppendEntriesResponse::Conflict)),
        (
            "higher vote",
            Ok(AppendEntriesResponse::HigherVote(Vote::new(4, 1))),
        ),
    ];
    for (name, reply) in &replies {
        golden.encoded(&format!("append entries reply: {name}"), reply);
    }
    golden.encoded(
        "vote request",
        &VoteRequest::new(Vote::new(4, 1), Some(log_id(3, 2, 42))),
    );
    let granted: Reply<VoteResponse<NodeId>> = Ok(VoteResponse::new(
        Vote::new(4, 1),
        Some(log_id(3, 2, 42)),
        true,
    ));
    golden.encoded("vote reply", &granted);
    golden.encoded(
        "install snapshot",
        &InstallSnapshotRequest::<TypeConfig> {
            vote,
            meta: SnapshotMeta {
                last_log_id: Some(log_id(3, 2, 40)),
                last_membership: membership(),
                snapshot_id: "3-2-40".into(),
            },
            offset: 0,
            data: b"SHOALSS2".to_vec(),
            done: false,
        },
    );
    let installed: Result<InstallSnapshotResponse<NodeId>, openraft::error::RaftError<NodeId>> =
        Ok(InstallSnapshotResponse { vote });
    golden.encoded("install snapshot reply", &installed);
    shard_transfers(&mut golden);
    insta::assert_snapshot!(golden.0);
}

/// The parts of a shard its new owner pulls.
fn shard_transfers(golden: &mut Golden) {
    for (name, data) in [
        (
            "a part",
            ShardData {
                data: vec![(bytes("k"), bytes("v"))],
                sessions: BTreeMap::new(),
                expired_through: 4,
                complete: false,
            },
        ),
        (
            "the last part",
            ShardData {
                data: Vec::new(),
                sessions: sessions(),
                expired_through: 4,
                complete: true,
            },
        ),
    ] {
        golden.encoded(&format!("shard pulled: {name}"), &data);
    }
}
