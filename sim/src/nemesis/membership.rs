//! Membership under load: data groups joining and leaving the sharded
//! cluster, single shards moving, all through the shard controller as an
//! operator would; and replicas added to or removed from a group (a Raft
//! membership change).

use rand::Rng;
use shoal::client::{Client, ClientConfig, ClientError};
use shoal::error::KvError;
use shoal::ids::NodeId;
use shoal::ids::{GroupId, GroupKey};
use shoal::machine::shard::controller::ControllerOp;

use std::sync::atomic::Ordering;

use super::Nemesis;
use crate::check::contract::{config_breach, valid_change};
use crate::scenario::MembershipAction;
use crate::schedule::FaultAction;

impl Nemesis<'_> {
    /// Decides a membership change; `None` (recorded as skipped) when there
    /// is nothing eligible.
    pub(super) async fn change(
        &self,
        action: MembershipAction,
        group: Option<GroupId>,
    ) -> Option<FaultAction> {
        let decided = match action {
            MembershipAction::AddReplica => Some(FaultAction::AddReplica {
                group: self.random_group(),
            }),
            MembershipAction::RemoveReplica => {
                let group = self.random_group();
                let members = self.voters(group);
                (members.len() > 1).then(|| FaultAction::RemoveReplica {
                    group,
                    node: members[self.rng().gen_range(0..members.len())],
                })
            }
            MembershipAction::Join | MembershipAction::Leave | MembershipAction::Move => {
                self.reshard(action, group).await
            }
        };
        if decided.is_none() {
            self.record(format!("membership {action:?} skipped: nothing eligible"));
        }
        decided
    }

    /// Decides a join, leave or move from the controller's latest
    /// configuration.
    async fn reshard(
        &self,
        action: MembershipAction,
        group: Option<GroupId>,
    ) -> Option<FaultAction> {
        let latest = self
            .cluster
            .observe(|mut client| async move { client.query(None).await })
            .await
            .ok()?;
        let joined: Vec<GroupId> = latest.groups.keys().copied().collect();
        let standby: Vec<GroupId> = self
            .cluster
            .groups()
            .into_iter()
            .filter_map(GroupKey::data)
            .filter(|g| !joined.contains(g))
            .collect();
        let pick = |pool: &[GroupId]| {
            (!pool.is_empty()).then(|| pool[self.rng().gen_range(0..pool.len())])
        };
        match action {
            MembershipAction::Join => group
                .or_else(|| pick(&standby))
                .map(|group| FaultAction::Join { group }),
            MembershipAction::Leave if joined.len() > 1 => group
                .or_else(|| pick(&joined))
                .map(|group| FaultAction::Leave { group }),
            MembershipAction::Move => group.or_else(|| pick(&joined)).and_then(|group| {
                // A shard the group does not own yet, so that it really moves.
                let elsewhere: Vec<u32> = (0..latest.shard_count())
                    .filter(|s| latest.owner(*s) != Some(group))
                    .collect();
                (!elsewhere.is_empty()).then(|| FaultAction::Move {
                    shard: elsewhere[self.rng().gen_range(0..elsewhere.len())],
                    group,
                })
            }),
            _ => None,
        }
    }

    /// Makes a decided membership change, recording how it went.
    pub(super) async fn apply_change(&self, change: FaultAction) {
        let op = match change {
            FaultAction::Join { group } => {
                ControllerOp::Join([(group, self.cluster.members(group))].into())
            }
            FaultAction::Leave { group } => ControllerOp::Leave([group].into()),
            FaultAction::Move { shard, group } => ControllerOp::Move { shard, group },
            FaultAction::AddReplica { group } => return self.add_replica(group).await,
            FaultAction::RemoveReplica { group, node } => {
                return self.remove_replica(group, node).await
            }
            other => unreachable!("not a membership change: {other:?}"),
        };
        let what = format!("{op:?}");
        let call = self.t0.elapsed();
        let asked = op.clone();
        let result = self
            .cluster
            .observe(move |mut client| async move { client.reconfigure(&asked).await })
            .await;
        match result {
            Ok(config) => {
                let previous = self.config_num.swap(config.num, Ordering::Relaxed);
                if let Some(what) = config_breach(&op, &config, previous) {
                    self.breach(call, what);
                }
                self.record(format!("controller {what} -> configuration {}", config.num))
            }
            Err(e) => {
                if let ClientError::Rejected(KvError::Refused(why)) = &e {
                    self.refused(&op, call, why).await;
                }
                self.record(format!("controller {what} failed: {e}"))
            }
        }
    }

    /// A change the controller refused must be one it may refuse: invalid
    /// against its newest configuration, asked for after the refusal.
    async fn refused(&self, op: &ControllerOp, call: std::time::Duration, why: &str) {
        let latest = self
            .cluster
            .observe(|mut client| async move { client.query(None).await })
            .await;
        if let Ok(latest) = latest {
            if valid_change(op, &latest) {
                let what = format!(
                    "{op:?} refused ({why}) though valid against configuration {}",
                    latest.num
                );
                self.breach(call, what);
            }
        }
    }

    async fn add_replica(&self, group: GroupKey) {
        let Some((_, node_id, member)) = self.cluster.take_spare(group) else {
            self.record(format!("add replica skipped: group {group:?} has no spare"));
            return;
        };
        let result = self
            .with_group(group, move |mut client| async move {
                client.add_replica(node_id, member).await
            })
            .await;
        self.record_members(format!("add replica {node_id} to group {group:?}"), result);
    }

    async fn remove_replica(&self, group: GroupKey, node_id: NodeId) {
        let result = self
            .with_group(group, move |mut client| async move {
                client.remove_replica(node_id).await
            })
            .await;
        self.record_members(
            format!("remove replica {node_id} from group {group:?}"),
            result,
        );
    }

    /// Runs `f` with a client of `group` itself (every replica's address),
    /// as an operator changing its members would.
    async fn with_group<F, Fut, T>(&self, group: GroupKey, f: F) -> T
    where
        F: FnOnce(Client) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let endpoints = self.cluster.addresses(group);
        self.cluster
            .observe(move |_| {
                f(Client::new(ClientConfig {
                    credentials: crate::cluster::operator(),
                    ..ClientConfig::new(endpoints)
                }))
            })
            .await
    }

    fn record_members<T, E: std::fmt::Display>(
        &self,
        what: String,
        result: Result<std::collections::BTreeMap<NodeId, T>, E>,
    ) {
        match result {
            Ok(members) => self.record(format!(
                "{what} -> members {:?}",
                members.keys().collect::<Vec<_>>()
            )),
            Err(e) => self.record(format!("{what} failed: {e}")),
        }
    }

    /// The node ids of the voters of `group`.
    fn voters(&self, group: GroupKey) -> Vec<NodeId> {
        self.cluster
            .voters_of(group)
            .into_iter()
            .map(|id| self.cluster.node_id(id))
            .collect()
    }
}
