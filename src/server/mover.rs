//! A data group's shard mover, active on the leader: adopts the controller's
//! next configuration once the current one is settled, pulls incoming
//! shards from their previous owners, and tells previous owners to drop
//! shards once received. Every step goes through the group's Raft log; a
//! step that fails is simply tried again on the next round.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::replica::Replica;
use crate::client::link::{peer, GroupLink};
use crate::client::{Client, ClientConfig, ClientError};
use crate::ids::{GroupId, ShardId};
use crate::machine::command::Command;
use crate::machine::shard::group::ShardStatus;
use crate::machine::shard::ShardOp;
use crate::machine::{Role, ShardData};
use crate::proto::ShardRequest;
use crate::raft::codec;
use crate::runtime::{buggify_delay, reached, FaultSite, Situation};

/// How often a data group's leader looks for shard work.
const SHARD_WORK_INTERVAL: Duration = Duration::from_millis(100);

/// How long one step's call to another group may take.
const STEP_DEADLINE: Duration = Duration::from_secs(2);

/// Longest pause the shard pull and install fault sites put in.
const BUGGIFY_MOVE_DELAY_MAX: Duration = Duration::from_millis(1000);

/// Calls to another data group: pulling a shard from it and telling it to
/// drop one.
struct PeerGroup {
    config: ClientConfig,
    link: GroupLink,
}

impl PeerGroup {
    fn new(endpoints: Vec<String>) -> PeerGroup {
        let mut config = ClientConfig::new(endpoints);
        config.deadline = STEP_DEADLINE;
        // Drawn as a client's identity would be, though this link sends no
        // writes: the draw keeps every run's random sequence as it was.
        let mut rng = crate::runtime::rng();
        let _identity: u64 = rand::Rng::gen(&mut rng);
        let link = GroupLink::new(config.endpoints.clone(), &mut rng);
        PeerGroup { config, link }
    }

    /// Takes a shard the group gave away at configuration `num`.
    async fn pull_shard(&mut self, num: u64, shard: ShardId) -> Result<ShardData, ClientError> {
        let deadline = tokio::time::Instant::now() + self.config.deadline;
        let request = ShardRequest { num, shard };
        let reply = self
            .link
            .call(&self.config, deadline, |ch| async move {
                peer(ch).pull_shard(request).await
            })
            .await?;
        codec::decode(&reply.shard).map_err(|e| {
            ClientError::Rpc(tonic::Status::internal(format!("undecodable shard: {e}")))
        })
    }

    /// Tells the group to delete a shard given away at `num`.
    async fn drop_shard(&mut self, num: u64, shard: ShardId) -> Result<(), ClientError> {
        let deadline = tokio::time::Instant::now() + self.config.deadline;
        let request = ShardRequest { num, shard };
        self.link
            .call(&self.config, deadline, |ch| async move {
                peer(ch).drop_shard(request).await
            })
            .await?;
        Ok(())
    }
}

/// Runs the shard mover of the data group `replica` belongs to, for ever.
pub async fn move_shards(replica: Replica, controller: Vec<String>) {
    let mut controller = Client::new(ClientConfig {
        deadline: STEP_DEADLINE,
        ..ClientConfig::new(controller)
    });
    let mut peers: BTreeMap<GroupId, PeerGroup> = BTreeMap::new();
    // Incoming shards this replica has counted as started, by configuration.
    let mut started: BTreeSet<(u64, ShardId)> = BTreeSet::new();
    let propose = |op: ShardOp| {
        let raft = replica.raft.clone();
        async move {
            let committed = raft.client_write(Command::Shard(op)).await;
            if let Err(e) = &committed {
                tracing::debug!(error = %e, "shard step not committed; will retry");
            }
            committed.is_ok()
        }
    };
    let mut led = false;
    loop {
        tokio::time::sleep(SHARD_WORK_INTERVAL).await;
        let leads = replica.is_leader();
        let took_over = leads && !led;
        led = leads;
        if !leads {
            continue;
        }
        let Role::Data(group) = replica.state_machine.read().role.clone() else {
            return;
        };
        if took_over && !group.settled() {
            reached(Situation::ShardMoveResumedByNewLeader);
        }
        if group.settled() {
            if let Ok(next) = controller.query(Some(group.config.num + 1)).await {
                if next.num == group.config.num + 1 {
                    tracing::info!(num = next.num, "adopting configuration");
                    propose(ShardOp::Reconfigure(next)).await;
                }
            }
            continue;
        }
        let num = group.config.num;
        started.retain(|(n, _)| *n >= num);
        for (shard, status) in &group.status {
            let (from, pulling) = match status {
                ShardStatus::Pulling { from } => (*from, true),
                ShardStatus::Handover { from } => (*from, false),
                _ => continue,
            };
            let peer = peers
                .entry(from)
                .or_insert_with(|| PeerGroup::new(group.members_of(from)));
            if pulling {
                if started.insert((num, *shard)) {
                    replica.metrics.shard_moves_started.inc();
                }
                buggify_delay(FaultSite::ShardPullDelay, BUGGIFY_MOVE_DELAY_MAX).await;
                match peer.pull_shard(num, *shard).await {
                    Ok(received) => {
                        let keys = received.data.len();
                        tracing::info!(num, shard, from, keys, "shard received");
                        buggify_delay(FaultSite::ShardInstallDelay, BUGGIFY_MOVE_DELAY_MAX).await;
                        if propose(received.install(num, *shard)).await {
                            replica.metrics.shard_moves_finished.inc();
                        }
                    }
                    Err(_) => reached(Situation::ShardPullRetried),
                }
            } else if peer.drop_shard(num, *shard).await.is_ok() {
                propose(ShardOp::HandedOver { num, shard: *shard }).await;
            }
        }
    }
}
