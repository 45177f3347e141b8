//! A Shoal node: one replica of a Raft group serving the client API.
//!
//! [`run`] is the entry point both worlds share: `shoal-node` calls it on real
//! tokio, and the simulator calls it inside each simulated machine.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use openraft::BasicNode;
use serde::{Deserialize, Serialize};

use crate::client::{Client, ClientConfig};
use crate::proto::kv_server::KvServer;
use crate::proto::raft_server::RaftServer;
use crate::raft::network::Network;
use crate::raft::{self, NodeId, ShoalRaft, RAFT_MESSAGE_SIZE_MAX};
use crate::server::kv::KvService;
use crate::server::raft::RaftService;
use crate::shard::group::ShardStatus;
use crate::shard::{GroupId, GroupRole, ShardOp, SHARD_COUNT_DEFAULT};
use crate::storage::kv::{Command, Op};
use crate::storage::state_machine::Role;
use crate::storage::{StateMachineStore, Storage};

/// Largest client request accepted by the gRPC layer. Larger than the value
/// limit so that an oversize value reaches [`crate::error::check_value`] and
/// gets Shoal's typed error; requests past this size fail in the transport.
pub const CLIENT_MESSAGE_SIZE_MAX: usize = 4 * 1024 * 1024;

/// What a node needs to know to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This replica's id; must be one of `peers`.
    pub id: NodeId,
    /// Address the gRPC server binds (client API and Raft transport).
    pub listen: SocketAddr,
    /// Every member of the group, this node included: id → address that
    /// peers and clients dial.
    pub peers: BTreeMap<NodeId, String>,
    /// Name shared by all members; guards against wiring two clusters together.
    #[serde(default = "default_cluster_name")]
    pub cluster_name: String,
    /// Snapshot the state after this many entries applied since the last one.
    #[serde(default = "default_snapshot_every_entries")]
    pub snapshot_every_entries: u64,
    /// Entries kept in the log behind a snapshot, so that a follower a little
    /// behind catches up from the log rather than by snapshot.
    #[serde(default = "default_entries_kept_after_snapshot")]
    pub entries_kept_after_snapshot: u64,
    /// The Raft group this replica belongs to: absent for a standalone group
    /// that serves every key, 0 for the shard controller, any other number
    /// for a data group.
    #[serde(default)]
    pub group: Option<GroupId>,
    /// Shards in the cluster (sharded clusters; fixed when it is created).
    #[serde(default = "default_shard_count")]
    pub shard_count: u32,
    /// The shard controller's members (data groups).
    #[serde(default)]
    pub controller: Vec<String>,
    /// Start as a new replica waiting to be added to a running group (with
    /// `shoal admin add-replica`), instead of forming the group from `peers`.
    #[serde(default)]
    pub join: bool,
}

fn default_shard_count() -> u32 {
    SHARD_COUNT_DEFAULT
}

fn default_cluster_name() -> String {
    "shoal".to_string()
}

fn default_snapshot_every_entries() -> u64 {
    10_000
}

fn default_entries_kept_after_snapshot() -> u64 {
    1_000
}

/// A configuration that cannot describe a working node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The node's own id is missing from the peer list.
    #[error("node id {0} is not among the peers {1:?}")]
    IdNotInPeers(NodeId, Vec<NodeId>),
    /// A peer entry is not of the form `ID=HOST:PORT`.
    #[error("peer {0:?} is not of the form ID=HOST:PORT")]
    BadPeer(String),
    /// Two peer entries share an id.
    #[error("peer id {0} appears twice")]
    DuplicatePeer(NodeId),
    /// A sharded cluster needs at least one shard.
    #[error("shard count must be at least 1")]
    NoShards,
    /// A data group must know where the shard controller is.
    #[error("a data group needs the shard controller's addresses")]
    NoController,
}

impl NodeConfig {
    /// A configuration with default settings.
    pub fn new(id: NodeId, listen: SocketAddr, peers: BTreeMap<NodeId, String>) -> NodeConfig {
        NodeConfig {
            id,
            listen,
            peers,
            cluster_name: default_cluster_name(),
            snapshot_every_entries: default_snapshot_every_entries(),
            entries_kept_after_snapshot: default_entries_kept_after_snapshot(),
            group: None,
            shard_count: default_shard_count(),
            controller: Vec::new(),
            join: false,
        }
    }

    /// What this replica's group is for.
    pub fn role(&self) -> GroupRole {
        match self.group {
            None => GroupRole::Standalone,
            Some(0) => GroupRole::Controller {
                shard_count: self.shard_count,
            },
            Some(group) => GroupRole::Data {
                group,
                shard_count: self.shard_count,
            },
        }
    }

    /// Checks that the configuration can run.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.peers.contains_key(&self.id) {
            return Err(ConfigError::IdNotInPeers(
                self.id,
                self.peers.keys().copied().collect(),
            ));
        }
        if self.shard_count == 0 {
            return Err(ConfigError::NoShards);
        }
        if matches!(self.group, Some(g) if g != 0) && self.controller.is_empty() {
            return Err(ConfigError::NoController);
        }
        Ok(())
    }
}

/// Parses peers written as `ID=HOST:PORT` entries.
pub fn parse_peers<'a>(
    entries: impl IntoIterator<Item = &'a str>,
) -> Result<BTreeMap<NodeId, String>, ConfigError> {
    let mut peers = BTreeMap::new();
    for entry in entries {
        let (id, addr) = entry
            .split_once('=')
            .ok_or_else(|| ConfigError::BadPeer(entry.to_string()))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|_| ConfigError::BadPeer(entry.to_string()))?;
        let addr = addr.trim();
        if addr
            .rsplit_once(':')
            .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
        {
            return Err(ConfigError::BadPeer(entry.to_string()));
        }
        if peers.insert(id, addr.to_string()).is_some() {
            return Err(ConfigError::DuplicatePeer(id));
        }
    }
    Ok(peers)
}

/// Why a node stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// Consensus failed to start or stopped on a fatal error.
    #[error("raft: {0}")]
    Raft(String),
    /// The gRPC server failed (for example, the address is taken).
    #[error("serving on {addr}: {source}")]
    Serve {
        /// The listen address.
        addr: SocketAddr,
        /// The transport's error.
        source: tonic::transport::Error,
    },
}

/// Starts the replica: opens consensus over `storage`, forms the group on
/// first start, and serves gRPC on `config.listen` until `shutdown` resolves.
pub async fn run(
    config: NodeConfig,
    storage: Storage,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), NodeError> {
    config.validate()?;
    let raft = start_raft(&config, storage.clone()).await?;
    tracing::info!(id = config.id, listen = %config.listen, "node serving");

    let kv = KvServer::new(KvService::new(raft.clone(), storage.state_machine.clone()))
        .max_decoding_message_size(CLIENT_MESSAGE_SIZE_MAX);
    let transport = RaftServer::new(RaftService::new(raft.clone()))
        .max_decoding_message_size(RAFT_MESSAGE_SIZE_MAX)
        .max_encoding_message_size(RAFT_MESSAGE_SIZE_MAX);
    // Serve until asked to stop, or until consensus stops on a fatal error
    // (a failed disk, say): a replica that cannot persist must not serve.
    let fatal = std::sync::Mutex::new(None);
    let stop = async {
        let mut metrics = raft.metrics();
        tokio::select! {
            biased;
            () = shutdown => {}
            error = fatal_error(&mut metrics) => *fatal.lock().expect("fatal lock") = Some(error),
        }
    };
    let mover = matches!(config.role(), GroupRole::Data { .. }).then(|| {
        tokio::spawn(move_shards(
            raft.clone(),
            storage.state_machine.clone(),
            config.controller.clone(),
        ))
    });
    let served = tonic::transport::Server::builder()
        .add_service(kv)
        .add_service(transport)
        .serve_with_shutdown(config.listen, stop)
        .await;

    tracing::info!(id = config.id, "node stopping");
    if let Some(mover) = mover {
        mover.abort();
    }
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(id = config.id, error = %e, "raft did not stop cleanly");
    }
    if let Some(error) = fatal.into_inner().expect("fatal lock") {
        return Err(NodeError::Raft(error));
    }
    served.map_err(|source| NodeError::Serve {
        addr: config.listen,
        source,
    })
}

/// Resolves when consensus reports a fatal error.
async fn fatal_error(
    metrics: &mut tokio::sync::watch::Receiver<openraft::RaftMetrics<NodeId, BasicNode>>,
) -> String {
    loop {
        if let Err(fatal) = &metrics.borrow().running_state {
            return fatal.to_string();
        }
        if metrics.changed().await.is_err() {
            return "consensus stopped".to_string();
        }
    }
}

async fn start_raft(config: &NodeConfig, storage: Storage) -> Result<ShoalRaft, NodeError> {
    let raft = ShoalRaft::new(
        config.id,
        raft::config(config),
        Network::new(config.id),
        storage.log,
        storage.state_machine,
    )
    .await
    .map_err(|e| NodeError::Raft(e.to_string()))?;

    // Every member proposes the same initial membership; openraft makes that
    // safe, and it means the group forms whichever members start first.
    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?;
    if !initialized && !config.join {
        let members: BTreeMap<NodeId, BasicNode> = config
            .peers
            .iter()
            .map(|(id, addr)| (*id, BasicNode::new(addr)))
            .collect();
        match raft.initialize(members).await {
            Ok(()) => tracing::info!(id = config.id, "group initialized"),
            Err(e) => tracing::debug!(id = config.id, error = %e, "group already initialized"),
        }
    }
    Ok(raft)
}

/// How often a data group's leader looks for shard work.
const SHARD_WORK_INTERVAL: Duration = Duration::from_millis(100);

/// A data group's shard mover, active on the leader: adopts the controller's
/// next configuration once the current one is settled, pulls incoming
/// shards from their previous owners, and tells previous owners to drop
/// shards once received. Every step goes through the group's Raft log; a
/// step that fails is simply tried again on the next round.
async fn move_shards(raft: ShoalRaft, state_machine: StateMachineStore, controller: Vec<String>) {
    let quick = |endpoints: Vec<String>| {
        let mut config = ClientConfig::new(endpoints);
        config.deadline = Duration::from_secs(2);
        Client::new(config)
    };
    let mut controller = quick(controller);
    let mut peers: BTreeMap<GroupId, Client> = BTreeMap::new();
    let propose = |op: ShardOp| {
        let raft = raft.clone();
        async move {
            if let Err(e) = raft
                .client_write(Command {
                    id: None,
                    op: Op::Shard(op),
                })
                .await
            {
                tracing::debug!(error = %e, "shard step not committed; will retry");
            }
        }
    };
    loop {
        tokio::time::sleep(SHARD_WORK_INTERVAL).await;
        let leading = {
            let metrics = raft.metrics();
            let view = metrics.borrow();
            view.current_leader == Some(view.id)
        };
        if !leading {
            continue;
        }
        let Role::Data(group) = state_machine.read().role.clone() else {
            return;
        };
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
        for (shard, status) in &group.status {
            let (from, pulling) = match status {
                ShardStatus::Pulling { from } => (*from, true),
                ShardStatus::Handover { from } => (*from, false),
                _ => continue,
            };
            let peer = peers
                .entry(from)
                .or_insert_with(|| quick(group.members_of(from)));
            if pulling {
                if let Ok((data, sessions)) = peer.pull_shard(num, *shard).await {
                    tracing::info!(num, shard, from, keys = data.len(), "shard received");
                    propose(ShardOp::Install {
                        num,
                        shard: *shard,
                        data,
                        sessions,
                    })
                    .await;
                }
            } else if peer.drop_shard(num, *shard).await.is_ok() {
                propose(ShardOp::HandedOver { num, shard: *shard }).await;
            }
        }
    }
}
