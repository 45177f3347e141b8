//! A simulated Shoal group: each replica is a madsim node running the same
//! `shoal::server::node::run` as the real binary, with its storage held here,
//! outside the node, so that a killed and restarted node finds its state as a
//! disk would keep it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use madsim::runtime::{Handle, NodeHandle};
use shoal::client::{Client, ClientConfig};
use shoal::raft::NodeId;
use shoal::server::node::{run, NodeConfig};
use shoal::storage::state_machine::Applied;
use shoal::storage::Storage;

/// Port every simulated replica serves on.
const PORT: u16 = 7000;

struct Replica {
    node: NodeHandle,
    storage: Storage,
}

/// A running simulated group.
pub struct Cluster {
    handle: Handle,
    replicas: BTreeMap<NodeId, Replica>,
    peers: BTreeMap<NodeId, String>,
    /// Where the harness itself talks to the group from.
    observer: NodeHandle,
    clients_made: u8,
}

/// The address of replica `id`.
fn replica_addr(id: NodeId) -> SocketAddr {
    let id = u8::try_from(id).expect("at most 254 replicas");
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, id)), PORT)
}

impl Cluster {
    /// Starts `replicas` replicas with ids 1..=replicas.
    pub fn start(replicas: u64) -> Cluster {
        assert!(
            (1..=254).contains(&replicas),
            "replicas out of range: {replicas}"
        );
        let handle = Handle::current();
        let peers: BTreeMap<NodeId, String> = (1..=replicas)
            .map(|id| (id, replica_addr(id).to_string()))
            .collect();
        let mut cluster = Cluster {
            observer: handle
                .create_node()
                .name("observer")
                .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 2, 1)))
                .build(),
            handle,
            replicas: BTreeMap::new(),
            peers,
            clients_made: 0,
        };
        for id in 1..=replicas {
            cluster.add_replica(id);
        }
        cluster
    }

    fn add_replica(&mut self, id: NodeId) {
        let config = NodeConfig {
            id,
            listen: replica_addr(id),
            peers: self.peers.clone(),
            cluster_name: "sim".to_string(),
        };
        let storage = Storage::in_memory();
        let node_storage = storage.clone();
        let node = self
            .handle
            .create_node()
            .name(format!("replica-{id}"))
            .ip(replica_addr(id).ip())
            .init(move || {
                let (config, storage) = (config.clone(), node_storage.clone());
                async move {
                    let shutdown = shoal::runtime::shutdown_signal();
                    if let Err(e) = run(config, storage, shutdown).await {
                        tracing::error!(id, error = %e, "replica stopped with an error");
                    }
                }
            })
            .build();
        self.replicas.insert(id, Replica { node, storage });
    }

    /// Replica ids, in order.
    pub fn ids(&self) -> Vec<NodeId> {
        self.replicas.keys().copied().collect()
    }

    /// Client endpoints of every replica.
    pub fn endpoints(&self) -> Vec<String> {
        self.peers.values().cloned().collect()
    }

    /// Crashes replica `id`: its tasks stop at once, its storage stays.
    pub fn kill(&self, id: NodeId) {
        tracing::info!(id, "nemesis: kill");
        self.handle.kill(self.replicas[&id].node.id());
    }

    /// Starts a killed replica again on the storage it left behind.
    pub fn restart(&self, id: NodeId) {
        tracing::info!(id, "nemesis: restart");
        self.handle.restart(self.replicas[&id].node.id());
    }

    /// A fresh simulated machine for one client.
    pub fn client_node(&mut self) -> NodeHandle {
        self.clients_made += 1;
        let n = self.clients_made;
        self.handle
            .create_node()
            .name(format!("client-{n}"))
            .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 1, n)))
            .build()
    }

    /// A client configuration for this group.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig::new(self.endpoints())
    }

    /// Runs `f` with a client on the observer machine.
    pub async fn observe<F, Fut, T>(&self, f: F) -> T
    where
        F: FnOnce(Client) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let client = Client::new(self.client_config());
        self.observer
            .spawn(f(client))
            .await
            .expect("observer task panicked")
    }

    /// The replica that is leader in the highest term any replica reports,
    /// waiting up to `wait` for one to emerge.
    pub async fn leader(&self, wait: Duration) -> Option<NodeId> {
        let endpoints = self.peers.clone();
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
                    return Some(id);
                }
                if tokio::time::Instant::now() >= deadline {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
    }

    /// What replica `id` has applied, read straight from its storage.
    pub fn applied(&self, id: NodeId) -> Applied {
        self.replicas[&id].storage.state_machine.read().clone()
    }
}
