//! A node's configuration: one [`NodeConfig`], read from a TOML table (a
//! configuration file with command-line flags laid over it) or built in code,
//! from which the Raft settings and storage options derive.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use crate::ids::{GroupKey, Member, NodeId};
use crate::machine::shard::SHARD_COUNT_DEFAULT;
use crate::raft::RaftSettings;
use crate::storage::StorageOptions;
use crate::tls::TlsFiles;

/// What a node needs to know to run.
///
/// In a configuration file every field is a key of the same name; `peers`
/// is a list of `"ID=HOST:PORT"` strings and `group` a number (absent: a
/// standalone group; 0: the shard controller; N: data group N).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This replica's id; must be one of `peers`.
    pub id: NodeId,
    /// Address the gRPC server binds: clients and administrators, and peers
    /// too unless `peer_listen` is set.
    pub listen: SocketAddr,
    /// Address to serve peers on (Raft, shard transfer), apart from
    /// clients, as etcd has peer URLs apart from client URLs.
    #[serde(default)]
    pub peer_listen: Option<SocketAddr>,
    /// Address of the HTTP/JSON gateway (none if absent).
    #[serde(default)]
    pub http_listen: Option<SocketAddr>,
    /// Address of the metrics endpoint: `/metrics`, `/health`, `/ready`
    /// (none if absent).
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Every member of the group, this node included: id → address that
    /// peers and clients dial.
    #[serde(deserialize_with = "peer_entries")]
    pub peers: BTreeMap<NodeId, String>,
    /// The members' peer addresses, `"ID=HOST:PORT"`, for those that serve
    /// their peers apart (the others are reached at their `peers` address).
    #[serde(default, deserialize_with = "peer_entries")]
    pub peer_addrs: BTreeMap<NodeId, String>,
    /// Directory for this replica's data (required by the node binary; the
    /// simulator keeps data on simulated disks).
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
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
    /// Size at which a write-ahead log segment is closed and a new one begun.
    #[serde(default = "default_wal_segment_size_max")]
    pub wal_segment_size_max: u64,
    /// The Raft group this replica belongs to.
    #[serde(default)]
    pub group: GroupKey,
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
    /// TLS on the node's listener and towards its peers (PEM files). With
    /// them, peers authenticate each other with certificates that chain to
    /// `cacert` (mutual TLS).
    #[serde(default)]
    pub cacert: Option<PathBuf>,
    /// This node's certificate (served to callers, and presented to peers).
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// The private key of `cert`.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Refuse callers that present no certificate chaining to `cacert` (by
    /// default a client may connect without one and be an anonymous user of
    /// the data).
    #[serde(default)]
    pub client_cert_auth: bool,
    /// Certificate names (subject common name, else first DNS name) trusted
    /// as administrators: shard-controller changes, replica changes.
    #[serde(default)]
    pub admin_names: Vec<String>,
    /// Certificate names trusted as peers (Raft, shard transfer). Empty: any
    /// certificate that chains to `cacert`.
    #[serde(default)]
    pub peer_names: Vec<String>,
    /// A file holding the cluster token, a secret that identifies peers and
    /// administrators as a bearer token (the way to do so without TLS).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// The cluster token itself (read from `token_file` by the node binary,
    /// set directly by code that builds a configuration).
    #[serde(skip)]
    pub token: Option<String>,
    /// Live client sessions (de-duplication entries) a group keeps at most;
    /// beyond it the least recently active is evicted. Must be the same on
    /// every member of a group, like `shard_count`.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// Milliseconds a client session may stay idle before it is evicted.
    /// Must be the same on every member of a group.
    #[serde(default = "default_session_idle_timeout_ms")]
    pub session_idle_timeout_ms: u64,
    /// Bytes of the state machine's engine pages cached in memory.
    #[serde(default = "default_engine_cache_bytes")]
    pub engine_cache_bytes: usize,
    /// Entries applied between two durable checkpoints of the state
    /// machine's engine: the most a restart re-applies from the log.
    #[serde(default = "default_checkpoint_every_entries")]
    pub checkpoint_every_entries: u64,
}

fn default_engine_cache_bytes() -> usize {
    crate::storage::engine::CACHE_SIZE_BYTES_DEFAULT
}

fn default_checkpoint_every_entries() -> u64 {
    crate::storage::CHECKPOINT_EVERY_ENTRIES_DEFAULT
}

fn default_max_sessions() -> usize {
    crate::machine::session::MAX_SESSIONS_DEFAULT
}

fn default_session_idle_timeout_ms() -> u64 {
    crate::machine::session::SESSION_IDLE_TIMEOUT_MS_DEFAULT
}

fn default_shard_count() -> u32 {
    SHARD_COUNT_DEFAULT
}

fn default_wal_segment_size_max() -> u64 {
    StorageOptions::default().wal_segment_size_max
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

fn peer_entries<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<NodeId, String>, D::Error> {
    let entries = Vec::<String>::deserialize(d)?;
    parse_peers(entries.iter().map(String::as_str)).map_err(serde::de::Error::custom)
}

/// A configuration that cannot describe a working node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required setting is absent.
    #[error("missing --{flag} (or `{key}` in the config file)", flag = .0.replace('_', "-"), key = .0)]
    Missing(String),
    /// The settings do not form a configuration (a bad value, an unknown key).
    #[error("{0}")]
    Invalid(String),
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
    /// Nothing tells peers and administrators apart from anyone else.
    #[error(
        "a node needs a way to recognise its peers and administrators: \
         mutual TLS (--cacert, --cert, --key) or a cluster token (--token-file)"
    )]
    NoIdentity,
    /// Some TLS files are given, not all.
    #[error("TLS needs all of --cacert, --cert and --key")]
    PartialTls,
}

/// Settings without which no node runs.
const REQUIRED: [&str; 3] = ["id", "listen", "peers"];

impl NodeConfig {
    /// A configuration with default settings.
    pub fn new(id: NodeId, listen: SocketAddr, peers: BTreeMap<NodeId, String>) -> NodeConfig {
        NodeConfig {
            id,
            listen,
            peer_listen: None,
            peer_addrs: BTreeMap::new(),
            http_listen: None,
            metrics_listen: None,
            peers,
            data_dir: None,
            cluster_name: default_cluster_name(),
            snapshot_every_entries: default_snapshot_every_entries(),
            entries_kept_after_snapshot: default_entries_kept_after_snapshot(),
            wal_segment_size_max: default_wal_segment_size_max(),
            group: GroupKey::Standalone,
            shard_count: default_shard_count(),
            controller: Vec::new(),
            join: false,
            cacert: None,
            cert: None,
            key: None,
            client_cert_auth: false,
            admin_names: Vec::new(),
            peer_names: Vec::new(),
            token_file: None,
            token: None,
            max_sessions: default_max_sessions(),
            session_idle_timeout_ms: default_session_idle_timeout_ms(),
            engine_cache_bytes: default_engine_cache_bytes(),
            checkpoint_every_entries: default_checkpoint_every_entries(),
        }
    }

    /// Reads a configuration from a TOML table (a file's, with flags laid
    /// over it) and validates it.
    pub fn from_table(table: toml::Table) -> Result<NodeConfig, ConfigError> {
        if let Some(key) = REQUIRED.iter().find(|key| !table.contains_key(**key)) {
            return Err(ConfigError::Missing(key.to_string()));
        }
        let config = NodeConfig::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        config.validate()?;
        Ok(config)
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
        if matches!(self.group, GroupKey::Data(_)) && self.controller.is_empty() {
            return Err(ConfigError::NoController);
        }
        if let Some(id) = self
            .peer_addrs
            .keys()
            .find(|id| !self.peers.contains_key(id))
        {
            return Err(ConfigError::Invalid(format!(
                "peer_addrs names replica {id}, which is not among the peers"
            )));
        }
        if self.peer_listen.is_some() != self.peer_addrs.contains_key(&self.id) {
            return Err(ConfigError::Invalid(
                "peer_listen and this node's entry in peer_addrs go together".into(),
            ));
        }
        let tls = self.tls_files();
        if tls.any() && (tls.cacert.is_none() || tls.cert.is_none() || tls.key.is_none()) {
            return Err(ConfigError::PartialTls);
        }
        if !tls.any() && self.token.is_none() && self.token_file.is_none() {
            return Err(ConfigError::NoIdentity);
        }
        if self.max_sessions == 0 || self.session_idle_timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "max_sessions and session_idle_timeout_ms must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// The group's members as its membership records them.
    pub fn members(&self) -> BTreeMap<NodeId, Member> {
        self.peers
            .iter()
            .map(|(id, addr)| (*id, Member::new(addr, self.peer_addr_of(*id))))
            .collect()
    }

    /// Where replica `id`'s peers reach it, if apart from its client
    /// address (else empty).
    pub fn peer_addr_of(&self, id: NodeId) -> String {
        self.peer_addrs.get(&id).cloned().unwrap_or_default()
    }

    /// The node's TLS files (none given: plaintext).
    pub fn tls_files(&self) -> TlsFiles {
        TlsFiles {
            cacert: self.cacert.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }

    /// The Raft settings this node runs with.
    pub fn raft_settings(&self) -> RaftSettings {
        RaftSettings {
            cluster_name: self.cluster_name.clone(),
            snapshot_every_entries: self.snapshot_every_entries,
            entries_kept_after_snapshot: self.entries_kept_after_snapshot,
        }
    }

    /// The storage options this node's replica opens with.
    pub fn storage_options(&self) -> StorageOptions {
        StorageOptions {
            wal_segment_size_max: self.wal_segment_size_max,
            group: self.group,
            node: self.id,
            shard_count: self.shard_count,
            sessions: crate::machine::session::SessionLimits {
                max_sessions: self.max_sessions,
                idle_timeout_ms: self.session_idle_timeout_ms,
            },
            engine_cache_bytes: self.engine_cache_bytes,
            checkpoint_every_entries: self.checkpoint_every_entries,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<NodeConfig, ConfigError> {
        NodeConfig::from_table(text.parse().expect("test TOML parses"))
    }

    #[test]
    fn a_file_reads_into_the_config_with_defaults() {
        let config = read(
            r#"
            id = 2
            listen = "127.0.0.1:7005"
            peers = ["1=127.0.0.1:7004", "2=127.0.0.1:7005"]
            data_dir = "data/g1-2"
            group = 1
            controller = ["127.0.0.1:7001"]
            token_file = "cluster.token"
            "#,
        )
        .unwrap();
        let mut expect = NodeConfig::new(
            2,
            "127.0.0.1:7005".parse().unwrap(),
            parse_peers(["1=127.0.0.1:7004", "2=127.0.0.1:7005"]).unwrap(),
        );
        expect.data_dir = Some("data/g1-2".into());
        expect.group = GroupKey::Data(1);
        expect.controller = vec!["127.0.0.1:7001".into()];
        expect.token_file = Some("cluster.token".into());
        assert_eq!(config, expect);
        assert_eq!(config.storage_options().group, GroupKey::Data(1));
        assert_eq!(config.raft_settings().snapshot_every_entries, 10_000);
        assert_eq!(config.storage_options().sessions.max_sessions, 10_000);
    }

    #[test]
    fn session_limits_are_read_and_must_be_positive() {
        let base = "id = 1\nlisten = \"127.0.0.1:7001\"\npeers = [\"1=127.0.0.1:7001\"]\n\
                    token_file = \"t\"\n";
        let config = read(&format!(
            "{base}max_sessions = 64\nsession_idle_timeout_ms = 5000\n"
        ));
        let sessions = config.unwrap().storage_options().sessions;
        assert_eq!(
            (sessions.max_sessions, sessions.idle_timeout_ms),
            (64, 5000)
        );
        let zero = read(&format!("{base}max_sessions = 0\n")).unwrap_err();
        assert!(zero.to_string().contains("max_sessions"));
    }

    #[test]
    fn group_zero_is_the_controller_and_absent_is_standalone() {
        let base = "id = 1\nlisten = \"127.0.0.1:7001\"\npeers = [\"1=127.0.0.1:7001\"]\n\
                    token_file = \"t\"\n";
        assert_eq!(read(base).unwrap().group, GroupKey::Standalone);
        let controller = read(&format!("{base}group = 0\n")).unwrap();
        assert_eq!(controller.group, GroupKey::Controller);
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let check = |text: &str, expect: &str| {
            let error = read(text).unwrap_err().to_string();
            assert!(
                error.contains(expect),
                "{error:?} should mention {expect:?}"
            );
        };
        check(
            "listen = \"127.0.0.1:1\"\npeers = []",
            "missing --id (or `id`",
        );
        check(
            "id = 1\nlisten = \"127.0.0.1:1\"\npeers = [\"1=127.0.0.1:1\"]\ncolour = 3",
            "unknown field `colour`",
        );
        check(
            "id = 1\nlisten = \"127.0.0.1:1\"\npeers = [\"one\"]",
            "is not of the form ID=HOST:PORT",
        );
        check(
            "id = 3\nlisten = \"127.0.0.1:1\"\npeers = [\"1=127.0.0.1:1\"]",
            "node id 3 is not among the peers",
        );
        check(
            "id = 1\nlisten = \"127.0.0.1:1\"\npeers = [\"1=127.0.0.1:1\"]\ngroup = 2",
            "needs the shard controller's addresses",
        );
        check(
            "id = 1\nlisten = \"127.0.0.1:1\"\npeers = [\"1=127.0.0.1:1\"]",
            "mutual TLS (--cacert, --cert, --key) or a cluster token (--token-file)",
        );
        check(
            "id = 1\nlisten = \"127.0.0.1:1\"\npeers = [\"1=127.0.0.1:1\"]\ncert = \"c.pem\"",
            "TLS needs all of --cacert, --cert and --key",
        );
    }
}
