//! A simulated Shoal group: each replica is a madsim node running the same
//! `shoal::server::node::run` as the real binary, on a [`SimDisk`] held here,
//! outside the node. Every start of a replica begins by applying crash
//! semantics to its disk, so a killed and restarted replica finds exactly
//! what it had synced.
//!
//! A supervisor task plays the role of systemd (`life.rs`): a replica whose
//! process exits (storage refused to open, or the node stopped on a fatal
//! error such as a failed disk) is restarted after a pause, as a fresh
//! process: every task of the old one is gone, and the disk is as a crash
//! left it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::runtime::{Handle, NodeHandle};
use rand::Rng;
use shoal::client::{Client, ClientConfig};

use shoal::ids::{GroupId, GroupKey, Member, NodeId};
use shoal::machine::Applied;
use shoal::server::config::NodeConfig;
use shoal::storage::{Storage, StorageMetrics};

use crate::disk::{DiskFaults, SimDisk};
use crate::scenario::limits::{
    CLIENTS_MAX, GROUPS_MAX, REPLICAS_PER_GROUP_MAX, SPARE_REPLICAS_PER_GROUP_MAX,
};
use crate::scenario::ClusterSpec;

mod access;
mod layout;
mod life;

use life::{incarnation, Life};

pub use access::operator;
use access::CLUSTER_TOKEN;
pub use layout::ReplicaId;
use layout::{peer_addr, replica_addr, replica_id};

/// Port every simulated replica serves clients on (and peers on the next).
pub(crate) const PORT: u16 = 7000;

struct Replica {
    /// Its group and its id within the group.
    name: shoal::ids::ReplicaId,
    node: NodeHandle,
    /// Who may start the replica's next incarnation.
    life: Arc<Mutex<Life>>,
    /// Incarnations started so far.
    incarnations: Arc<AtomicU64>,
    disk: SimDisk,
    metrics: Arc<StorageMetrics>,
    /// The storage of the replica's current incarnation.
    storage: Arc<Mutex<Option<Storage>>>,
    /// Why the replica's storage refused to open because of damage: never
    /// expected, since the simulated disk damages only unsynced tails.
    corruption: Arc<Mutex<Vec<String>>>,
}

/// A running simulated cluster: one standalone group, or a shard controller
/// group and data groups.
pub struct Cluster {
    handle: Handle,
    replicas: BTreeMap<ReplicaId, Replica>,
    /// Each group's members: node id → address.
    peers: BTreeMap<GroupKey, BTreeMap<NodeId, String>>,
    /// Spare replicas not yet added to their group.
    spares: Mutex<std::collections::BTreeSet<ReplicaId>>,
    /// Where the harness itself talks to the group from.
    observer: NodeHandle,
    clients_made: u8,
}

/// Looks at what one replica has applied, in place (the state can be large).
#[derive(Clone)]
pub struct Probe(Arc<Mutex<Option<Storage>>>);

impl Probe {
    /// `f` of the replica's applied state; `None` before it first opens its
    /// storage.
    pub fn with<R>(&self, f: impl FnOnce(&Applied) -> R) -> Option<R> {
        let slot = self.0.lock().expect("storage slot");
        slot.as_ref().map(|s| f(&s.state_machine.read()))
    }
}

impl Cluster {
    /// Starts the replicas of `spec` with ids 1..=replicas, each on a fresh
    /// simulated disk with `faults`.
    pub fn start(spec: &ClusterSpec, faults: &DiskFaults) -> Cluster {
        let replicas = spec.replicas;
        assert!(
            (1..=REPLICAS_PER_GROUP_MAX).contains(&replicas),
            "replicas out of range: {replicas}"
        );
        assert!(
            spec.spare_replicas <= SPARE_REPLICAS_PER_GROUP_MAX,
            "spare replicas out of range: {}",
            spec.spare_replicas
        );
        assert!(
            spec.groups + spec.standby_groups <= GROUPS_MAX,
            "groups out of range: {} + {} standby",
            spec.groups,
            spec.standby_groups
        );
        let handle = Handle::current();
        let groups = spec.group_ids();
        let peers = groups
            .iter()
            .map(|g| {
                (
                    *g,
                    (1..=replicas)
                        .map(|id| (id, replica_addr(*g, id).to_string()))
                        .collect(),
                )
            })
            .collect();
        let mut cluster = Cluster {
            observer: handle
                .create_node()
                .name("observer")
                .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 2, 1)))
                .build(),
            handle,
            spares: Mutex::default(),
            replicas: BTreeMap::new(),
            peers,
            clients_made: 0,
        };
        for group in groups {
            for id in 1..=replicas + spec.spare_replicas {
                cluster.add_replica(group, id, spec, faults);
            }
        }
        cluster.supervise();
        cluster
    }

    /// Whether this is a sharded cluster.
    pub fn sharded(&self) -> bool {
        !self.peers.contains_key(&GroupKey::Standalone)
    }

    fn add_replica(
        &mut self,
        group: GroupKey,
        id: NodeId,
        spec: &ClusterSpec,
        faults: &DiskFaults,
    ) {
        let mut peers = self.peers[&group].clone();
        if !peers.contains_key(&id) {
            // A spare: it waits to be added to the running group.
            peers.insert(id, replica_addr(group, id).to_string());
            self.spares
                .lock()
                .expect("spares")
                .insert(replica_id(group, id));
        }
        let config = self.node_config(group, id, peers, spec);
        let options = config.storage_options();
        let disk = SimDisk::new(shoal::runtime::rng().gen(), faults.clone());
        let metrics = Arc::new(StorageMetrics::default());
        let slot: Arc<Mutex<Option<Storage>>> = Arc::default();
        let corruption: Arc<Mutex<Vec<String>>> = Arc::default();
        let incarnations: Arc<AtomicU64> = Arc::default();
        let replica = (
            disk.clone(),
            metrics.clone(),
            slot.clone(),
            corruption.clone(),
            incarnations.clone(),
        );
        let node = self
            .handle
            .create_node()
            .name(match group {
                GroupKey::Standalone => format!("replica-{id}"),
                GroupKey::Controller => format!("controller-{id}"),
                GroupKey::Data(g) => format!("group-{g}-{id}"),
            })
            .ip(replica_addr(group, id).ip())
            .init(move || {
                incarnations.fetch_add(1, Ordering::Relaxed);
                let (config, options, disk) = (config.clone(), options.clone(), disk.clone());
                let (metrics, slot, corruption) =
                    (metrics.clone(), slot.clone(), corruption.clone());
                incarnation(config, options, disk, metrics, slot, corruption)
            })
            .build();
        let (disk, metrics, storage, corruption, incarnations) = replica;
        self.replicas.insert(
            replica_id(group, id),
            Replica {
                name: shoal::ids::ReplicaId { group, node: id },
                node,
                life: Arc::default(),
                incarnations,
                disk,
                metrics,
                storage,
                corruption,
            },
        );
    }

    /// The configuration replica `id` of `group` runs with.
    fn node_config(
        &self,
        group: GroupKey,
        id: NodeId,
        peers: BTreeMap<NodeId, String>,
        spec: &ClusterSpec,
    ) -> NodeConfig {
        let peer_addrs = peers
            .keys()
            .map(|&member| (member, peer_addr(group, member).to_string()))
            .collect();
        let mut config = NodeConfig::new(id, replica_addr(group, id), peers);
        config.peer_listen = Some(peer_addr(group, id));
        config.peer_addrs = peer_addrs;
        config.token = Some(CLUSTER_TOKEN.to_string());
        config.join = !self.peers[&group].contains_key(&id);
        config.cluster_name = "sim".to_string();
        config.group = group;
        config.shard_count = spec.shard_count;
        config.controller = self.controller_endpoints();
        spec.tune(&mut config);
        config
    }

    /// Every replica, in order.
    pub fn ids(&self) -> Vec<ReplicaId> {
        self.replicas.keys().copied().collect()
    }

    /// The groups: `[None]` for a standalone group, else the controller
    /// (`Some(0)`) and the data groups.
    pub fn groups(&self) -> Vec<GroupKey> {
        self.peers.keys().copied().collect()
    }

    /// The replicas of one group.
    pub fn ids_of(&self, group: GroupKey) -> Vec<ReplicaId> {
        self.replicas
            .iter()
            .filter(|(_, r)| r.name.group == group)
            .map(|(id, _)| *id)
            .collect()
    }

    /// A spare replica of `group` not yet added: (replica, node id, address).
    pub fn take_spare(&self, group: GroupKey) -> Option<(ReplicaId, NodeId, Member)> {
        let mut spares = self.spares.lock().expect("spares");
        let id = *spares
            .iter()
            .find(|id| self.replicas[id].name.group == group)?;
        spares.remove(&id);
        let node_id = self.replicas[&id].name.node;
        let member = Member::new(
            replica_addr(group, node_id).to_string(),
            peer_addr(group, node_id).to_string(),
        );
        Some((id, node_id, member))
    }

    /// The current voters of `group`, as its most advanced replica knows
    /// them (replicas removed from the group, or not added yet, are not).
    pub fn voters_of(&self, group: GroupKey) -> Vec<ReplicaId> {
        let voters = |a: &Applied| -> Vec<ReplicaId> {
            a.membership
                .membership()
                .voter_ids()
                .map(|n| replica_id(group, n))
                .collect()
        };
        self.ids_of(group)
            .into_iter()
            .filter_map(|id| self.probe(id).with(|a| (a.last_applied, voters(a))))
            .max_by_key(|(last_applied, _)| *last_applied)
            .map(|(_, voters)| voters)
            .unwrap_or_default()
    }

    /// A replica's id within its group.
    pub fn node_id(&self, id: ReplicaId) -> NodeId {
        self.replicas[&id].name.node
    }

    /// Addresses of every replica of `group`, members or not.
    pub fn addresses(&self, group: GroupKey) -> Vec<String> {
        self.replicas
            .values()
            .filter(|r| r.name.group == group)
            .map(|r| replica_addr(group, r.name.node).to_string())
            .collect()
    }

    /// The members of one group, as a controller Join wants them.
    pub fn members(&self, group: GroupId) -> BTreeMap<NodeId, String> {
        self.peers[&GroupKey::Data(group)].clone()
    }

    /// The shard controller's endpoints (empty for a standalone group).
    fn controller_endpoints(&self) -> Vec<String> {
        self.peers
            .get(&GroupKey::Controller)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Cuts every link from a replica in `from` to a replica in `to` (one
    /// direction). Clients are not cut off. On connections already open,
    /// messages wait on a cut link until it heals; new connections across it
    /// are refused.
    pub fn cut(&self, from: &[ReplicaId], to: &[ReplicaId]) {
        let net = madsim::net::NetSim::current();
        for a in from {
            for b in to {
                if a != b {
                    net.clog_link(self.replicas[a].node.id(), self.replicas[b].node.id());
                }
            }
        }
    }

    /// Restores every link between replicas.
    pub fn heal_network(&self) {
        let net = madsim::net::NetSim::current();
        for a in self.replicas.values() {
            for b in self.replicas.values() {
                net.unclog_link(a.node.id(), b.node.id());
            }
        }
    }

    /// A fresh simulated machine for one client.
    pub fn client_node(&mut self) -> NodeHandle {
        assert!(
            u32::from(self.clients_made) < CLIENTS_MAX,
            "more than {CLIENTS_MAX} clients"
        );
        self.clients_made += 1;
        let n = self.clients_made;
        self.handle
            .create_node()
            .name(format!("client-{n}"))
            .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 1, n)))
            .build()
    }

    /// A client configuration for this group: a user's, who may read and
    /// write but not administer.
    pub fn client_config(&self) -> ClientConfig {
        // A standalone group's clients know every replica, spares included,
        // as an operator would list every address the group may use.
        match self.peers.get(&GroupKey::Standalone) {
            Some(_) => ClientConfig::new(self.addresses(GroupKey::Standalone)),
            None => ClientConfig::sharded(self.controller_endpoints()),
        }
    }

    /// A client configuration that goes through any replica of the cluster,
    /// spares included, and lets it route.
    pub fn client_config_via_nodes(&self) -> ClientConfig {
        let nodes = self
            .replicas
            .values()
            .map(|r| replica_addr(r.name.group, r.name.node));
        ClientConfig::by_nodes(nodes.map(|a| a.to_string()).collect())
    }

    /// Runs `f` with a client on the observer machine.
    pub async fn observe<F, Fut, T>(&self, f: F) -> T
    where
        F: FnOnce(Client) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let client = Client::new(ClientConfig {
            credentials: operator(),
            ..self.client_config()
        });
        self.observer
            .spawn(f(client))
            .await
            .expect("observer task panicked")
    }

    /// The replica that leads `group` in the highest term any of its
    /// replicas reports, waiting up to `wait` for one to emerge.
    pub async fn leader_of(&self, group: GroupKey, wait: Duration) -> Option<ReplicaId> {
        let endpoints = self.peers[&group].clone();
        self.observe(move |_| async move {
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let mut best: Option<(u64, NodeId)> = None;
                for addr in endpoints.values() {
                    let mut config = ClientConfig::new(vec![addr.clone()]);
                    config.deadline = Duration::from_millis(200);
                    config.attempt_timeout = Duration::from_millis(200);
                    if let Ok(status) = Client::new(config).status().await {
                        if status.role == "leader" && best.is_none_or(|(t, _)| status.term > t) {
                            best = Some((status.term, status.node_id));
                        }
                    }
                }
                if let Some((_, id)) = best {
                    return Some(replica_id(group, id));
                }
                if tokio::time::Instant::now() >= deadline {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
    }

    /// What replica `id` has applied, read straight from its storage
    /// (empty if it has not opened its storage yet).
    pub fn applied(&self, id: ReplicaId) -> Applied {
        self.probe(id).with(Applied::clone).unwrap_or_default()
    }

    /// A handle that looks at what replica `id` has applied.
    pub fn probe(&self, id: ReplicaId) -> Probe {
        Probe(self.replicas[&id].storage.clone())
    }

    /// Each replica's storage metrics, which its node's registry exports.
    pub fn storage_metrics(&self) -> Vec<(ReplicaId, Arc<StorageMetrics>)> {
        let replicas = self.replicas.iter();
        replicas.map(|(id, r)| (*id, r.metrics.clone())).collect()
    }

    /// One probe per replica, for observers that run alongside.
    pub fn probes(&self) -> Vec<Probe> {
        self.ids().into_iter().map(|id| self.probe(id)).collect()
    }

    /// Snapshots installed from a leader, over all replicas and incarnations.
    pub fn snapshots_installed(&self) -> u64 {
        self.replicas
            .values()
            .map(|r| r.metrics.snapshots_installed.get())
            .sum()
    }

    /// Times a replica's storage refused to open because of damage.
    pub fn corruption_reports(&self) -> Vec<String> {
        self.replicas
            .values()
            .flat_map(|r| r.corruption.lock().expect("corruption lock").clone())
            .collect()
    }

    /// How many files each replica's `dir` holds now.
    pub fn file_counts(&self, dir: &str) -> BTreeMap<ReplicaId, usize> {
        self.replicas
            .iter()
            .map(|(id, r)| (*id, r.disk.file_count(dir)))
            .collect()
    }

    /// Switches disk faults off on every replica.
    pub fn heal_disks(&self) {
        for replica in self.replicas.values() {
            replica.disk.set_faults(false);
        }
    }

    /// Injected disk faults so far, summed over replicas: (torn files, bit
    /// flips, errors).
    pub fn disk_fault_counts(&self) -> (u64, u64, u64) {
        self.replicas
            .values()
            .map(|r| r.disk.stats())
            .fold((0, 0, 0), |acc, s| {
                (acc.0 + s.torn_files, acc.1 + s.bitflips, acc.2 + s.errors)
            })
    }
}
