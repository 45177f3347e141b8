//! Unit tests of the applied state: scans, shards served, batches.

use super::command::{DataOp, WriteId};
use super::shard::config::Config;
use super::*;

/// Data group 1 of a two-shard cluster owning `owners[s] == 1` shards,
/// holding `keys` (each put through the state machine).
fn group_with(owners: &[u64], keys: &[&str]) -> Applied {
    let mut applied = Applied::new(GroupKey::Data(1), owners.len() as u32);
    let groups = [1, 2].map(|g| (g, [(1, format!("g{g}"))].into())).into();
    let config = Config {
        num: 1,
        shards: owners.to_vec(),
        groups,
    };
    let Role::Data(group) = &mut applied.role else {
        unreachable!("a data group")
    };
    assert!(group.reconfigure(&config));
    for (seq, key) in keys.iter().enumerate() {
        let id = Some(WriteId {
            client_id: 9,
            seq: seq as u64 + 1,
            opened_at: 1,
        });
        let op = DataOp::Put {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: "v".into(),
        };
        let command = Command::Data { id, op, stamp: 1 };
        let result = applied.apply_command(&command, &SessionLimits::default());
        assert_eq!(result, CommandResult::Put);
    }
    applied
}

/// Keys `k0, k1, ...` with their shards in a two-shard cluster.
fn keys_by_shard() -> Vec<(String, ShardId)> {
    (0..8)
        .map(|i| format!("k{i}"))
        .map(|k| {
            let shard = shard_of(k.as_bytes(), 2);
            (k, shard)
        })
        .collect()
}

#[test]
fn a_batch_answers_as_its_commands_applied_one_by_one() {
    let keys = keys_by_shard();
    let (mine, theirs) = (
        &keys.iter().find(|(_, s)| *s == 0).unwrap().0,
        &keys.iter().find(|(_, s)| *s == 1).unwrap().0,
    );
    let write = |seq, op| Command::Data {
        id: Some(WriteId {
            client_id: 5,
            seq,
            opened_at: 1,
        }),
        op,
        stamp: 10 + seq,
    };
    let key = |k: &String| Bytes::copy_from_slice(k.as_bytes());
    let commands = vec![
        write(
            1,
            DataOp::Put {
                key: key(mine),
                value: "a".into(),
            },
        ),
        write(
            2,
            DataOp::Cas {
                key: key(mine),
                expected: Some("a".into()),
                new: Some("b".into()),
            },
        ),
        write(
            2,
            DataOp::Cas {
                key: key(mine),
                expected: Some("a".into()),
                new: Some("b".into()),
            },
        ),
        write(3, DataOp::Delete { key: key(theirs) }),
        Command::CloseSession {
            client_id: 5,
            stamp: 20,
        },
    ];
    let limits = SessionLimits::default();
    let mut one_by_one = group_with(&[1, 2], &[]);
    let expected: Vec<Outcome> = commands
        .iter()
        .map(|c| Outcome {
            result: one_by_one.apply_command(c, &limits),
            stamp: one_by_one.kv.sessions.clock(),
        })
        .collect();
    let mut batched = group_with(&[1, 2], &[]);
    let result = batched.apply_command(&Command::Batch(commands), &limits);
    assert_eq!(result, CommandResult::Batch(expected.clone()));
    // Each kind of answer is there: a put, a swap, a retry answered
    // from the session, a key served elsewhere, a closed session.
    assert!(matches!(
        expected[1].result,
        CommandResult::Cas { swapped: true, .. }
    ));
    assert_eq!(expected[2].result, expected[1].result);
    assert!(matches!(
        expected[3].result,
        CommandResult::WrongGroup { .. }
    ));
    assert_eq!(expected[4].result, CommandResult::SessionClosed(true));
    assert_eq!(batched.get(mine.as_bytes()), Ok(Some("b".into())));
}

#[test]
fn a_scan_returns_served_shards_in_range_in_order_up_to_the_limit() {
    let keys = keys_by_shard();
    let names: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
    let applied = group_with(&[1, 1], &names);
    let all = applied.scan(b"k1", b"k6", 100, &[0, 1]).unwrap();
    let found: Vec<&[u8]> = all.entries.iter().map(|(k, _)| k.as_ref()).collect();
    assert_eq!(found, [&b"k1"[..], b"k2", b"k3", b"k4", b"k5"]);
    assert_eq!(all.served, [0, 1]);
    assert_eq!(
        applied.scan(b"k1", b"", 2, &[0, 1]).unwrap().entries.len(),
        2
    );
    // Only the requested shards, and only those served.
    let shard_one = applied.scan(b"", b"", 100, &[1]).unwrap();
    assert!(shard_one.entries.iter().all(|(k, _)| shard_of(k, 2) == 1));
    assert_eq!(shard_one.served, [1]);
}

#[test]
fn a_scan_skips_shards_the_group_does_not_serve() {
    // Shard 1 belongs to group 2: group 1 neither serves nor scans it.
    let keys = keys_by_shard();
    let mine: Vec<&str> = keys
        .iter()
        .filter(|(_, s)| *s == 0)
        .map(|(k, _)| k.as_str())
        .collect();
    let applied = group_with(&[1, 2], &mine);
    let part = applied.scan(b"", b"", 100, &[0, 1]).unwrap();
    assert_eq!(part.served, [0]);
    assert_eq!(part.entries.len(), mine.len());
    let (other, _) = keys.iter().find(|(_, s)| *s == 1).unwrap();
    assert_eq!(
        applied.get(other.as_bytes()),
        Err(KvError::WrongGroup { config_num: 1 })
    );
}

#[test]
fn a_shard_goes_to_its_new_owner_only_while_leaving_at_that_configuration() {
    let keys = keys_by_shard();
    let names: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
    let mut applied = group_with(&[1, 1], &names);
    assert!(matches!(
        applied.shard_for_new_owner(1, 1, None, usize::MAX),
        Err(KvError::NotYet(_))
    ));
    // Configuration 2 gives shard 1 to group 2.
    let mut next = match &applied.role {
        Role::Data(group) => group.config.clone(),
        _ => unreachable!("a data group"),
    };
    (next.num, next.shards) = (2, vec![1, 2]);
    let command = Command::Shard(ShardOp::Reconfigure(next));
    let result = applied.apply_command(&command, &SessionLimits::default());
    assert_eq!(result, CommandResult::Shard(true));
    let ShardData { data, sessions, .. } =
        applied.shard_for_new_owner(2, 1, None, usize::MAX).unwrap();
    assert!(!data.is_empty() && data.iter().all(|(k, _)| shard_of(k, 2) == 1));
    assert_eq!(sessions.keys().copied().collect::<Vec<_>>(), [9]);
    assert!(matches!(
        applied.shard_for_new_owner(2, 0, None, usize::MAX),
        Err(KvError::NotYet(_))
    ));
    let controller = Applied::new(GroupKey::Controller, 2);
    assert!(matches!(
        controller.shard_for_new_owner(2, 1, None, usize::MAX),
        Err(KvError::Refused(_))
    ));
}

#[test]
fn a_shard_moves_in_parts_and_only_its_last_carries_the_sessions() {
    let keys = keys_by_shard();
    let names: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
    let mut giver = group_with(&[1, 1], &names);
    let mut next = match &giver.role {
        Role::Data(group) => group.config.clone(),
        _ => unreachable!("a data group"),
    };
    (next.num, next.shards) = (2, vec![1, 2]);
    let reconfigure = Command::Shard(ShardOp::Reconfigure(next.clone()));
    giver.apply_command(&reconfigure, &SessionLimits::default());
    // Group 2 takes shard 1 at configuration 2, three keys' bytes a part.
    let mut taker = group_with(&[1, 1], &[]);
    if let Role::Data(group) = &mut taker.role {
        group.group = 2;
    }
    taker.apply_command(&reconfigure, &SessionLimits::default());
    let (mut after, mut parts) = (None, 0);
    loop {
        let part = giver
            .shard_for_new_owner(2, 1, after.as_deref(), 3 * 3)
            .unwrap();
        assert!(part.data.len() <= 3, "{part:?}");
        assert_eq!(part.complete, !part.sessions.is_empty());
        after = part.data.last().map(|(k, _)| k.clone());
        let complete = part.complete;
        let result = taker.apply_command(
            &Command::Shard(part.install(2, 1)),
            &SessionLimits::default(),
        );
        assert_eq!(result, CommandResult::Shard(true));
        parts += 1;
        if complete {
            break;
        }
    }
    let moved: Vec<&String> = keys
        .iter()
        .filter(|(_, s)| *s == 1)
        .map(|(k, _)| k)
        .collect();
    assert!(parts > 1, "{} keys moved in one part", moved.len());
    for key in moved {
        assert_eq!(
            taker.get(key.as_bytes()).unwrap(),
            Some(Bytes::from("v")),
            "{key}"
        );
    }
    assert_eq!(
        taker
            .kv
            .sessions
            .table()
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        [9]
    );
}
