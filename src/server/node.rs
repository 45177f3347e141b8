//! A Shoal node: one replica of a Raft group serving its services.
//!
//! [`run`] is the entry point both worlds share: `shoal-node` calls it on real
//! tokio, and the simulator calls it inside each simulated machine.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use super::admin::AdminService;
use super::auth::Access;
use super::config::{ConfigError, NodeConfig};
use super::http;
use super::kv::KvService;
use super::metrics::{self, NodeMetrics};
use super::mover::move_shards;
use super::peer::PeerService;
use super::pool::ClientPool;
use super::propose::Proposer;
use super::read_index::ReadIndexer;
use super::replica::Replica;
use crate::client::{ClientConfig, Credentials};
use crate::ids::{GroupKey, NodeId};
use crate::limits::{CLIENT_MESSAGE_SIZE_MAX, RAFT_MESSAGE_SIZE_MAX};
use crate::proto::admin_server::AdminServer;
use crate::proto::kv_server::KvServer;
use crate::proto::peer_server::PeerServer;
use crate::raft::network::Network;
use crate::raft::{self, ShoalRaft};
use crate::storage::Storage;
use crate::tls::{ClientTls, ServerTls, TlsError};

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
    #[error("serving on {addr}")]
    Serve {
        /// The listen address.
        addr: SocketAddr,
        /// The transport's error.
        #[source]
        error: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The TLS files cannot be used.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// The HTTP gateway failed (for example, its address is taken).
    #[error("serving HTTP on {addr}")]
    Http {
        /// The HTTP address.
        addr: SocketAddr,
        /// Why.
        #[source]
        error: std::io::Error,
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
    let (server_tls, credentials) = security(&config)?;
    let raft = start_raft(&config, storage.clone(), credentials.clone()).await?;
    tracing::info!(
        id = config.id,
        listen = %config.listen,
        peer_listen = ?config.peer_listen,
        tls = server_tls.is_some(),
        "node serving"
    );

    let metrics = Arc::new(NodeMetrics::new(&storage.metrics));
    let replica = Replica {
        raft: raft.clone(),
        state_machine: storage.state_machine.clone(),
        clients: Arc::new(ClientPool::new(routing_clients(&config, &credentials))),
        proposer: Proposer::start(raft.clone(), metrics.clone()),
        reads: ReadIndexer::start(raft.clone()),
        metrics,
        access: Arc::new(Access::new(&config)),
    };
    // Serve until asked to stop, or until consensus stops on a fatal error
    // (a failed disk, say): a replica that cannot persist must not serve.
    let fatal = std::sync::Mutex::new(None);
    let mut gateway = Gateway::start(&config, &replica);
    let gateway_error = std::sync::Mutex::new(None);
    let stop = async {
        tokio::select! {
            biased;
            () = shutdown => {}
            error = fatal_error(&replica) => *fatal.lock().expect("fatal lock") = Some(error),
            error = gateway.failure() => {
                *gateway_error.lock().expect("gateway lock") = Some(error);
            }
        }
    };
    let mover = matches!(config.group, GroupKey::Data(_)).then(|| {
        let controller = config.controller.clone();
        tokio::spawn(move_shards(
            replica.clone(),
            controller,
            credentials.clone(),
        ))
    });
    let reloads = reload_on_hangup(config.id, &server_tls, &credentials);
    let served = serve(&config, &replica, server_tls, stop).await;

    tracing::info!(id = config.id, "node stopping");
    for task in [reloads, mover].into_iter().flatten() {
        task.abort();
    }
    let gateway_error = gateway
        .stop(gateway_error.into_inner().expect("gateway lock"))
        .await;
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(id = config.id, error = %e, "raft did not stop cleanly");
    }
    if let Some(error) = fatal.into_inner().expect("fatal lock") {
        return Err(NodeError::Raft(error));
    }
    if let Some((addr, error)) = gateway_error {
        return Err(NodeError::Http { addr, error });
    }
    served
}

/// Serves the node's gRPC services from `replica` until `stop` resolves:
/// clients, administrators and peers on `listen`, or peers apart on
/// `peer_listen`. Either listener failing stops both.
async fn serve(
    config: &NodeConfig,
    replica: &Replica,
    tls: Option<Arc<ServerTls>>,
    stop: impl Future<Output = ()> + Send,
) -> Result<(), NodeError> {
    use crate::runtime::serve_grpc;
    use tonic::transport::Server;
    let kv = KvServer::new(KvService::new(replica.clone()))
        .max_decoding_message_size(CLIENT_MESSAGE_SIZE_MAX);
    let admin = AdminServer::new(AdminService::new(replica.clone()))
        .max_decoding_message_size(CLIENT_MESSAGE_SIZE_MAX);
    let peer = PeerServer::new(PeerService::new(replica.clone()))
        .max_decoding_message_size(RAFT_MESSAGE_SIZE_MAX)
        .max_encoding_message_size(RAFT_MESSAGE_SIZE_MAX);
    let failed = |addr| move |error| NodeError::Serve { addr, error };
    let (listen, clients) = (config.listen, Server::builder().add_service(kv));
    let Some(peer_listen) = config.peer_listen else {
        let all = clients.add_service(admin).add_service(peer);
        return serve_grpc(all, listen, tls, stop)
            .await
            .map_err(failed(listen));
    };
    let (stopping, mut stopped) = tokio::sync::watch::channel(false);
    let stop = async move {
        stop.await;
        let _ = stopping.send(true);
    };
    let peers_stop = async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let clients = serve_grpc(clients.add_service(admin), listen, tls.clone(), stop);
    let peers = serve_grpc(
        Server::builder().add_service(peer),
        peer_listen,
        tls,
        peers_stop,
    );
    tokio::try_join!(async { clients.await.map_err(failed(listen)) }, async {
        peers.await.map_err(failed(peer_listen))
    },)
    .map(|_| ())
}

/// The clients a node routes requests with: to the standalone group, or
/// through the shard controller.
fn routing_clients(config: &NodeConfig, credentials: &Credentials) -> ClientConfig {
    let members = config.peers.values().cloned().collect();
    let mut clients = match config.group {
        GroupKey::Standalone => ClientConfig::new(members),
        GroupKey::Controller => ClientConfig::sharded(members),
        GroupKey::Data(_) => ClientConfig::sharded(config.controller.clone()),
    };
    clients.credentials = credentials.clone();
    clients
}

/// The node's TLS (none: plaintext) and what it presents to its peers.
fn security(config: &NodeConfig) -> Result<(Option<Arc<ServerTls>>, Credentials), NodeError> {
    let files = config.tls_files();
    let (server, client) = if files.any() {
        (
            Some(Arc::new(ServerTls::load(&files, config.client_cert_auth)?)),
            Some(Arc::new(ClientTls::load(&files)?)),
        )
    } else {
        (None, None)
    };
    let credentials = Credentials {
        token: config.token.clone(),
        tls: client,
    };
    Ok((server, credentials))
}

/// With TLS, starts reading the TLS files again on every SIGHUP: connections
/// made from then on (to the node, and by it to its peers) use the new
/// certificates. On an error the old ones stay.
fn reload_on_hangup(
    id: NodeId,
    server: &Option<Arc<ServerTls>>,
    credentials: &Credentials,
) -> Option<tokio::task::JoinHandle<()>> {
    let (server, client) = (server.clone()?, credentials.tls.clone()?);
    Some(tokio::spawn(crate::runtime::on_hangup(
        move || match server.reload().and_then(|()| client.reload()) {
            Ok(()) => tracing::info!(id, "SIGHUP: certificates reloaded"),
            Err(e) => tracing::error!(id, error = %e, "SIGHUP: certificates not reloaded"),
        },
    )))
}

/// The HTTP gateway, when the node has an address for it.
struct Gateway {
    /// Each HTTP listener (the gateway's, the metrics') and its task.
    tasks: Vec<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Gateway {
    fn start(config: &NodeConfig, replica: &Replica) -> Gateway {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let listeners = [
            (
                config.http_listen,
                "HTTP gateway",
                http::router as fn(Replica) -> axum::Router,
            ),
            (config.metrics_listen, "metrics", metrics::router),
        ];
        let tasks = listeners
            .into_iter()
            .filter_map(|(addr, what, router)| {
                let addr = addr?;
                let mut stopped = stopped.clone();
                let stopped = async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                };
                tracing::info!(id = config.id, %addr, "{what} serving");
                let router = router(replica.clone());
                Some((
                    addr,
                    tokio::spawn(crate::runtime::serve_http(addr, router, stopped)),
                ))
            })
            .collect();
        Gateway { tasks, stop }
    }

    /// Resolves when a listener stops with an error (its address and the
    /// error); never without one.
    async fn failure(&mut self) -> (SocketAddr, std::io::Error) {
        let mut waits: Vec<_> = self
            .tasks
            .iter_mut()
            .map(|(addr, task)| {
                Box::pin(async move {
                    match task.await {
                        Ok(Err(error)) => (*addr, error),
                        Ok(Ok(())) => std::future::pending().await,
                        Err(panic) => (*addr, std::io::Error::other(panic.to_string())),
                    }
                })
            })
            .collect();
        // The first to fail, polled in listener order (a deterministic
        // choice when two are ready at once).
        std::future::poll_fn(|cx| {
            waits
                .iter_mut()
                .find_map(|wait| match wait.as_mut().poll(cx) {
                    std::task::Poll::Ready(failed) => Some(failed),
                    std::task::Poll::Pending => None,
                })
                .map_or(std::task::Poll::Pending, std::task::Poll::Ready)
        })
        .await
    }

    /// Stops every listener; returns the first error, or `failed`, the one
    /// [`Gateway::failure`] already took.
    async fn stop(
        self,
        failed: Option<(SocketAddr, std::io::Error)>,
    ) -> Option<(SocketAddr, std::io::Error)> {
        let _ = self.stop.send(true);
        let mut first = failed;
        for (addr, task) in self.tasks {
            let error = task.await.ok().and_then(Result::err);
            if first.is_none() {
                first = error.map(|e| (addr, e));
            }
        }
        first
    }
}

/// Resolves when consensus reports a fatal error. Until then, keeps the
/// consensus metrics current as consensus reports changes (so leader
/// changes are counted as they happen, not only when scraped).
async fn fatal_error(replica: &Replica) -> String {
    let mut view = replica.raft.metrics();
    loop {
        replica.metrics.observe_raft(replica);
        if let Err(fatal) = &view.borrow().running_state {
            return fatal.to_string();
        }
        if view.changed().await.is_err() {
            return "consensus stopped".to_string();
        }
    }
}

async fn start_raft(
    config: &NodeConfig,
    storage: Storage,
    credentials: Credentials,
) -> Result<ShoalRaft, NodeError> {
    let raft = ShoalRaft::new(
        config.id,
        raft::config(&config.raft_settings()),
        Network::new(config.id, credentials),
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
        match raft.initialize(config.members()).await {
            Ok(()) => tracing::info!(id = config.id, "group initialized"),
            Err(e) => tracing::debug!(id = config.id, error = %e, "group already initialized"),
        }
    }
    Ok(raft)
}
