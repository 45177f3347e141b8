//! A data group's shard mover, active on the leader: adopts the controller's
//! next configuration once the current one is settled, pulls incoming
//! shards from their previous owners, and tells previous owners to drop
//! shards once received. Every step goes through the group's Raft log; a
//! step that fails is simply tried again on the next round.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use tonic::transport::Channel;

use super::replica::Replica;
use crate::client::link::{kv, peer, GroupLink};
use crate::client::{Client, ClientConfig, ClientError, Credentials};
use crate::ids::{GroupId, ShardId};
use crate::machine::command::Command;
use crate::machine::shard::group::ShardStatus;
use crate::machine::shard::ShardOp;
use crate::machine::{Role, ShardData};
use crate::proto::{ShardRequest, StatusRequest};
use crate::raft::codec;
use crate::runtime::{buggify_delay, reached, FaultSite, Situation};

/// How often a data group's leader looks for shard work.
const SHARD_WORK_INTERVAL: Duration = Duration::from_millis(100);

/// How long one step's call to another group may take.
const STEP_DEADLINE: Duration = Duration::from_secs(2);

/// Longest pause the shard pull and install fault sites put in.
const BUGGIFY_MOVE_DELAY_MAX: Duration = Duration::from_millis(1000);

/// Calls to another data group: pulling a shard from it and telling it to
/// drop one, at its members' peer addresses, which it is asked for first at
/// their client addresses (those the controller's configuration names).
struct PeerGroup {
    config: ClientConfig,
    link: GroupLink,
    /// The link to the members' peer addresses, once known.
    peers: Option<(ClientConfig, GroupLink)>,
}

impl PeerGroup {
    fn new(endpoints: Vec<String>, credentials: &Credentials) -> PeerGroup {
        let config = step_config(endpoints, credentials);
        let link = GroupLink::new(config.endpoints.clone(), &mut crate::runtime::rng());
        PeerGroup {
            config,
            link,
            peers: None,
        }
    }

    /// Calls the group at its peer addresses (asking for them first if
    /// need be); a failure makes the next call ask again.
    async fn call<T, F, Fut>(&mut self, send: F) -> Result<T, ClientError>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let deadline = tokio::time::Instant::now() + self.config.deadline;
        let (config, link) = match &mut self.peers {
            Some(peers) => peers,
            None => {
                let status = self
                    .link
                    .call(&self.config, deadline, |ch| async move {
                        kv(ch).status(StatusRequest {}).await
                    })
                    .await?;
                let mut addrs: Vec<String> = status.peer_members.into_values().collect();
                if addrs.is_empty() {
                    addrs = self.config.endpoints.clone();
                }
                let config = step_config(addrs, &self.config.credentials);
                let link = GroupLink::new(config.endpoints.clone(), &mut crate::runtime::rng());
                self.peers.insert((config, link))
            }
        };
        let called = link.call(config, deadline, send).await;
        if called.is_err() {
            self.peers = None;
        }
        called
    }

    /// Takes a part of a shard the group gave away at configuration `num`:
    /// its keys after `after` (all: from the first).
    async fn pull_shard(
        &mut self,
        num: u64,
        shard: ShardId,
        after: Option<Bytes>,
    ) -> Result<ShardData, ClientError> {
        let request = ShardRequest { num, shard, after };
        let credentials = &self.config.credentials.clone();
        let reply = self
            .call(|ch| {
                let request = credentials.request(request.clone());
                async move { peer(ch).pull_shard(request).await }
            })
            .await?;
        codec::decode(&reply.shard).map_err(|e| {
            ClientError::Rpc(tonic::Status::internal(format!("undecodable shard: {e}")))
        })
    }

    /// Tells the group to delete a shard given away at `num`.
    async fn drop_shard(&mut self, num: u64, shard: ShardId) -> Result<(), ClientError> {
        let request = ShardRequest {
            num,
            shard,
            after: None,
        };
        let credentials = &self.config.credentials.clone();
        self.call(|ch| {
            let request = credentials.request(request.clone());
            async move { peer(ch).drop_shard(request).await }
        })
        .await?;
        Ok(())
    }
}

/// How the mover calls the group at `endpoints`: one step at a time, as a
/// peer.
fn step_config(endpoints: Vec<String>, credentials: &Credentials) -> ClientConfig {
    ClientConfig {
        deadline: STEP_DEADLINE,
        credentials: credentials.clone(),
        ..ClientConfig::new(endpoints)
    }
}

/// Runs the shard mover of the data group `replica` belongs to, for ever.
pub async fn move_shards(replica: Replica, controller: Vec<String>, credentials: Credentials) {
    let mut controller = Client::new(step_config(controller, &credentials));
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
                .or_insert_with(|| PeerGroup::new(group.members_of(from), &credentials));
            if pulling {
                if started.insert((num, *shard)) {
                    replica.metrics.shard_moves_started.inc();
                }
                buggify_delay(FaultSite::ShardPullDelay, BUGGIFY_MOVE_DELAY_MAX).await;
                if pull_in(peer, (num, *shard), &propose).await {
                    tracing::info!(num, shard, from, "shard received");
                    replica.metrics.shard_moves_finished.inc();
                }
            } else if peer.drop_shard(num, *shard).await.is_ok() {
                propose(ShardOp::HandedOver { num, shard: *shard }).await;
            }
        }
    }
}

/// Pulls shard `(num, shard)` from `peer` part by part and proposes each
/// part's install; whether the last part's install was committed. A failure
/// leaves the shard to be pulled again from its start next round
/// (installing a part again changes nothing).
async fn pull_in<F: Future<Output = bool>>(
    peer: &mut PeerGroup,
    (num, shard): (u64, ShardId),
    propose: &impl Fn(ShardOp) -> F,
) -> bool {
    let mut after = None;
    loop {
        let Ok(part) = peer.pull_shard(num, shard, after).await else {
            reached(Situation::ShardPullRetried);
            return false;
        };
        let complete = part.complete;
        after = part.data.last().map(|(key, _)| key.clone());
        buggify_delay(FaultSite::ShardInstallDelay, BUGGIFY_MOVE_DELAY_MAX).await;
        let installed = propose(part.install(num, shard)).await;
        if complete || !installed {
            return complete && installed;
        }
    }
}
