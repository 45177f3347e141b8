//! The protobuf forms of the state machine's public types: shard
//! configurations and controller operations travel as messages any
//! language can read (`proto/shoal.proto`), never as Shoal's own encoding.

use std::collections::BTreeMap;

use crate::error::KvError;
use crate::ids::{GroupId, NodeId};
use crate::machine::shard::config::Config;
use crate::machine::shard::controller::ControllerOp;
use crate::proto;
use crate::proto::reconfigure_request::Op;

fn members(groups: &BTreeMap<GroupId, BTreeMap<NodeId, String>>) -> BTreeMap<u64, proto::Members> {
    groups
        .iter()
        .map(|(group, members)| {
            let members = proto::Members {
                members: members.clone(),
            };
            (*group, members)
        })
        .collect()
}

fn from_members(
    groups: BTreeMap<u64, proto::Members>,
) -> BTreeMap<GroupId, BTreeMap<NodeId, String>> {
    groups.into_iter().map(|(g, m)| (g, m.members)).collect()
}

impl From<&Config> for proto::ShardConfig {
    fn from(config: &Config) -> proto::ShardConfig {
        proto::ShardConfig {
            num: config.num,
            shards: config.shards.clone(),
            groups: members(&config.groups),
        }
    }
}

impl From<proto::ShardConfig> for Config {
    fn from(config: proto::ShardConfig) -> Config {
        Config {
            num: config.num,
            shards: config.shards,
            groups: from_members(config.groups),
        }
    }
}

impl From<&ControllerOp> for proto::ReconfigureRequest {
    fn from(op: &ControllerOp) -> proto::ReconfigureRequest {
        let op = match op {
            ControllerOp::Join(groups) => Op::Join(proto::Join {
                groups: members(groups),
            }),
            ControllerOp::Leave(groups) => Op::Leave(proto::Leave {
                groups: groups.iter().copied().collect(),
            }),
            ControllerOp::Move { shard, group } => Op::Move(proto::Move {
                shard: *shard,
                group: *group,
            }),
        };
        proto::ReconfigureRequest { op: Some(op) }
    }
}

impl TryFrom<proto::ReconfigureRequest> for ControllerOp {
    type Error = KvError;

    /// A request without an operation is refused.
    fn try_from(request: proto::ReconfigureRequest) -> Result<ControllerOp, KvError> {
        Ok(match request.op {
            Some(Op::Join(join)) => ControllerOp::Join(from_members(join.groups)),
            Some(Op::Leave(leave)) => ControllerOp::Leave(leave.groups.into_iter().collect()),
            Some(Op::Move(m)) => ControllerOp::Move {
                shard: m.shard,
                group: m.group,
            },
            None => {
                return Err(KvError::Refused(
                    "a reconfiguration needs an operation".into(),
                ))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_and_operations_round_trip() {
        let groups: BTreeMap<GroupId, BTreeMap<NodeId, String>> =
            [(1, [(1, "10.0.0.1:7000".to_string())].into())].into();
        let config = Config {
            num: 3,
            shards: vec![1, 0, 1],
            groups: groups.clone(),
        };
        assert_eq!(Config::from(proto::ShardConfig::from(&config)), config);
        for op in [
            ControllerOp::Join(groups),
            ControllerOp::Leave([1, 2].into()),
            ControllerOp::Move { shard: 2, group: 1 },
        ] {
            let wire = proto::ReconfigureRequest::from(&op);
            assert_eq!(ControllerOp::try_from(wire).unwrap(), op);
        }
        let empty = proto::ReconfigureRequest { op: None };
        assert!(matches!(
            ControllerOp::try_from(empty),
            Err(KvError::Refused(_))
        ));
    }
}
