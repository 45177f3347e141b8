//! What the load talks to: a Shoal cluster through the client library, or
//! etcd through its v3 gRPC API. Both answer the same three operations, so
//! the load code is one.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use shoal::client::{Client, ClientConfig, SharedConnections};
use tonic::transport::{Channel, Endpoint};

mod etcd {
    tonic::include_proto!("etcdserverpb");
}
use etcd::kv_client::KvClient;
use etcd::maintenance_client::MaintenanceClient;

/// A system under load, and how its clients share connections.
pub enum Target {
    /// A Shoal cluster; client `c` uses pool `c % pools.len()`, or its own
    /// connections when there are no pools.
    Shoal {
        config: ClientConfig,
        pools: Vec<SharedConnections>,
    },
    /// etcd's leader, over `channels` (one HTTP/2 connection each); client
    /// `c` uses channel `c % channels.len()`.
    Etcd { channels: Vec<Channel> },
}

/// One client's handle on the target; it sends one request at a time.
pub enum Conn {
    Shoal(Client),
    Etcd(KvClient<Channel>),
}

impl Target {
    /// Shoal with `config`; `conns` connections per member shared by
    /// `clients` clients (equal: each client its own).
    pub fn shoal(config: ClientConfig, clients: usize, conns: usize) -> Target {
        let pools = if conns >= clients {
            Vec::new()
        } else {
            (0..conns.max(1))
                .map(|_| SharedConnections::default())
                .collect()
        };
        Target::Shoal { config, pools }
    }

    /// etcd whose members serve clients at `endpoints` (`host:port`): finds
    /// the leader and opens `conns` connections to it, as Shoal's clients
    /// send to their group's leader.
    pub async fn etcd(endpoints: &[String], conns: usize) -> anyhow::Result<Target> {
        let leader = etcd_leader(endpoints).await?;
        let mut channels = Vec::new();
        for _ in 0..conns.max(1) {
            channels.push(etcd_channel(&leader).await?);
        }
        Ok(Target::Etcd { channels })
    }

    /// The handle of client number `c`.
    pub fn conn(&self, c: usize) -> Conn {
        match self {
            Target::Shoal { config, pools } => {
                let mut config = config.clone();
                config.connections = pools.get(c % pools.len().max(1)).cloned();
                Conn::Shoal(Client::new(config))
            }
            Target::Etcd { channels } => {
                Conn::Etcd(KvClient::new(channels[c % channels.len()].clone()))
            }
        }
    }
}

async fn etcd_channel(addr: &str) -> anyhow::Result<Channel> {
    Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("cannot connect to etcd at {addr}"))
}

/// The member of `endpoints` that leads, by asking each for its status.
async fn etcd_leader(endpoints: &[String]) -> anyhow::Result<String> {
    for addr in endpoints {
        let Ok(channel) = etcd_channel(addr).await else {
            continue;
        };
        let Ok(status) = MaintenanceClient::new(channel)
            .status(etcd::StatusRequest {})
            .await
        else {
            continue;
        };
        let status = status.into_inner();
        let member = status.header.map_or(0, |h| h.member_id);
        if member != 0 && member == status.leader {
            return Ok(addr.clone());
        }
    }
    anyhow::bail!("no etcd member of {endpoints:?} says it leads")
}

impl Conn {
    /// Stores `value` under `key`.
    pub async fn put(&mut self, key: Bytes, value: Bytes) -> anyhow::Result<()> {
        match self {
            Conn::Shoal(client) => client.put(key, value).await?,
            Conn::Etcd(kv) => {
                let request = etcd::PutRequest {
                    key,
                    value,
                    ..Default::default()
                };
                kv.put(request).await?;
            }
        }
        Ok(())
    }

    /// Reads `key`, linearizably; returns whether it exists.
    pub async fn get(&mut self, key: Bytes) -> anyhow::Result<bool> {
        Ok(match self {
            Conn::Shoal(client) => client.get(key).await?.is_some(),
            Conn::Etcd(kv) => {
                let request = etcd::RangeRequest {
                    key,
                    ..Default::default()
                };
                !kv.range(request).await?.into_inner().kvs.is_empty()
            }
        })
    }

    /// Reads up to `limit` keys from `start` on, linearizably; returns how
    /// many it found.
    pub async fn scan(&mut self, start: Bytes, limit: u32) -> anyhow::Result<usize> {
        Ok(match self {
            Conn::Shoal(client) => client.scan(start, Bytes::new(), limit).await?.len(),
            Conn::Etcd(kv) => {
                let request = etcd::RangeRequest {
                    key: start,
                    // "\0": every key from `key` on.
                    range_end: Bytes::from_static(b"\0"),
                    limit: i64::from(limit),
                    ..Default::default()
                };
                kv.range(request).await?.into_inner().kvs.len()
            }
        })
    }

    /// Ends the client's session, if it has one.
    pub async fn close(self) {
        if let Conn::Shoal(mut client) = self {
            client.close_session().await.ok();
        }
    }
}
