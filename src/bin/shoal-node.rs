//! `shoal-node`: runs one Shoal replica, or a whole local cluster with `--dev`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Parser;
use shoal::server::config::NodeConfig;
use shoal::server::node::run;
use shoal::storage::disk::OsDisk;
use shoal::storage::Storage;

/// Every request allocates (messages, headers, buffers): the node spends a
/// tenth of its time in the C library's allocator under load, less in
/// mimalloc, which starts no threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Run a Shoal node.
///
/// Settings come from `--config FILE` (TOML) and flags; a flag overrides the
/// file. Example file for a replica of data group 1 of a sharded cluster:
///
///   id = 1
///   listen = "127.0.0.1:7004"
///   peers = ["1=127.0.0.1:7004", "2=127.0.0.1:7005", "3=127.0.0.1:7006"]
///   data_dir = "data/g1-1"
///   group = 1
///   controller = ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"]
///   token_file = "cluster.token"
///
/// A node needs mutual TLS (cacert, cert, key) or a cluster token to tell
/// its peers and administrators from anyone else. Without `group` the replica belongs to a standalone group serving every
/// key; `group = 0` makes it a shard controller replica.
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Args {
    /// TOML file with any of: id, listen, peer_listen, http_listen,
    /// metrics_listen, peers, peer_addrs, data_dir, cluster_name, group,
    /// shard_count, controller, join, snapshot_every_entries,
    /// entries_kept_after_snapshot, wal_segment_size_max, cacert, cert, key,
    /// client_cert_auth, admin_names, peer_names, token_file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// This replica's id (one of the peers).
    #[arg(long)]
    id: Option<u64>,
    /// Address to serve gRPC on, e.g. 127.0.0.1:7001.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Address to serve peers on (Raft, shard transfer), apart from
    /// clients; this node's entry in --peer-addrs must name it.
    #[arg(long)]
    peer_listen: Option<SocketAddr>,
    /// Members' peer addresses as ID=HOST:PORT, comma-separated, for those
    /// that serve peers apart from clients.
    #[arg(long, value_delimiter = ',')]
    peer_addrs: Vec<String>,
    /// Address to serve the HTTP/JSON gateway on, e.g. 127.0.0.1:8001
    /// (none if absent).
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// Address to serve metrics on: Prometheus text at /metrics, and
    /// /health and /ready (none if absent).
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Group members as ID=HOST:PORT, comma-separated, this node included.
    #[arg(long, value_delimiter = ',')]
    peers: Vec<String>,
    /// Directory for this replica's data.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Cluster name shared by all members.
    #[arg(long)]
    cluster_name: Option<String>,
    /// Raft group: 0 for the shard controller, N > 0 for data group N;
    /// omit for a standalone group.
    #[arg(long)]
    group: Option<u64>,
    /// Shards in the cluster (must match across the cluster; default 64).
    #[arg(long)]
    shard_count: Option<u32>,
    /// Shard controller members, comma-separated HOST:PORT (data groups).
    #[arg(long, value_delimiter = ',')]
    controller: Vec<String>,
    /// Start as a new replica that waits to be added to a running group
    /// (`shoal admin add-replica`) instead of forming the group.
    #[arg(long)]
    join: bool,
    /// CA certificate (PEM) that peers' and clients' certificates must chain
    /// to; with --cert and --key, the node serves TLS and its peers must
    /// present certificates (mutual TLS).
    #[arg(long)]
    cacert: Option<PathBuf>,
    /// This node's certificate (PEM), served to callers and shown to peers.
    #[arg(long)]
    cert: Option<PathBuf>,
    /// The private key of --cert (PEM).
    #[arg(long)]
    key: Option<PathBuf>,
    /// Refuse clients without a certificate that chains to --cacert.
    #[arg(long)]
    client_cert_auth: bool,
    /// Certificate names trusted as administrators, comma-separated.
    #[arg(long, value_delimiter = ',')]
    admin_names: Vec<String>,
    /// Certificate names trusted as peers, comma-separated (default: any
    /// certificate that chains to --cacert).
    #[arg(long, value_delimiter = ',')]
    peer_names: Vec<String>,
    /// File holding the cluster token, a secret that identifies peers and
    /// administrators (the way to do so without TLS).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Seed this replica of a new group from a backup file (`shoal snapshot
    /// save`) before it starts: every member of the new group starts with
    /// the same file and the new group's peers. Refused unless the data
    /// directory is empty, and if the file is damaged.
    #[arg(long)]
    restore: Option<PathBuf>,
    /// Log lines as text, or as JSON objects (one per line) for log shippers.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Start a local cluster in this process, on 127.0.0.1 ports from
    /// `--dev-base-port` up, keeping data under `--data-dir` (default:
    /// shoal-dev-data); ignores the other settings. With `--dev-groups 0`
    /// (the default) it is one standalone group of `--dev-nodes` replicas.
    #[arg(long)]
    dev: bool,
    /// Replicas per group in the `--dev` cluster.
    #[arg(long, default_value_t = 3)]
    dev_nodes: u64,
    /// Data groups in the `--dev` cluster, joined at start (plus a shard
    /// controller group on the first ports).
    #[arg(long, default_value_t = 0)]
    dev_groups: u64,
    /// More data groups started but not joined: join them with `shoal admin`.
    #[arg(long, default_value_t = 0)]
    dev_standby_groups: u64,
    /// First port of the `--dev` cluster.
    #[arg(long, default_value_t = 7001)]
    dev_base_port: u16,
    /// Run the `--dev` cluster with mutual TLS, under a throw-away CA whose
    /// certificates are written to <data dir>/tls.
    #[arg(long, requires = "dev")]
    tls: bool,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

impl Args {
    /// The settings given as flags, as configuration-file keys.
    fn as_table(&self) -> toml::Table {
        let mut table = toml::Table::new();
        let mut set = |key: &str, value: Option<toml::Value>| {
            if let Some(value) = value {
                table.insert(key.to_string(), value);
            }
        };
        let list = |items: &[String]| {
            (!items.is_empty())
                .then(|| toml::Value::Array(items.iter().cloned().map(toml::Value::from).collect()))
        };
        set("id", self.id.map(|id| toml::Value::Integer(id as i64)));
        set("listen", self.listen.map(|a| a.to_string().into()));
        set(
            "peer_listen",
            self.peer_listen.map(|a| a.to_string().into()),
        );
        set("peer_addrs", list(&self.peer_addrs));
        set(
            "http_listen",
            self.http_listen.map(|a| a.to_string().into()),
        );
        set(
            "metrics_listen",
            self.metrics_listen.map(|a| a.to_string().into()),
        );
        set("peers", list(&self.peers));
        set(
            "data_dir",
            self.data_dir
                .as_ref()
                .map(|d| d.display().to_string().into()),
        );
        set("cluster_name", self.cluster_name.clone().map(Into::into));
        set("group", self.group.map(|g| toml::Value::Integer(g as i64)));
        set("shard_count", self.shard_count.map(|n| i64::from(n).into()));
        set("controller", list(&self.controller));
        set("join", self.join.then_some(true.into()));
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string().into());
        set("cacert", path(&self.cacert));
        set("cert", path(&self.cert));
        set("key", path(&self.key));
        set("token_file", path(&self.token_file));
        set(
            "client_cert_auth",
            self.client_cert_auth.then_some(true.into()),
        );
        set("admin_names", list(&self.admin_names));
        set("peer_names", list(&self.peer_names));
        table
    }
}

/// The node's configuration: the config file's, with the flags laid over it.
fn load(args: &Args) -> anyhow::Result<NodeConfig> {
    let mut table = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            text.parse::<toml::Table>()
                .with_context(|| format!("in config file {}", path.display()))?
        }
        None => toml::Table::new(),
    };
    table.extend(args.as_table());
    let mut config = NodeConfig::from_table(table).with_context(|| match &args.config {
        Some(path) => format!("in the configuration ({} and flags)", path.display()),
        None => "in the configuration flags".to_string(),
    })?;
    if let Some(path) = &config.token_file {
        config.token = Some(shoal::tls::read_token(path)?);
    }
    if config.data_dir.is_none() {
        bail!("missing --data-dir (or `data_dir` in the config file)");
    }
    Ok(config)
}

/// Opens a replica's storage in `data_dir`.
async fn open_storage(config: &NodeConfig, data_dir: &Path) -> anyhow::Result<Storage> {
    let disk = OsDisk::open(data_dir)
        .with_context(|| format!("opening data dir {}", data_dir.display()))?;
    Storage::open(
        Arc::new(disk),
        &config.storage_options(),
        Default::default(),
    )
    .await
    .with_context(|| format!("recovering the replica in {}", data_dir.display()))
}

/// Seeds the empty `data_dir` from the backup `file`: its state becomes the
/// replica's installed snapshot, with the group's members as its membership.
/// Nothing is written unless the file is whole and the directory empty.
async fn restore(config: &NodeConfig, data_dir: &Path, file: &Path) -> anyhow::Result<()> {
    use shoal::storage::backup;
    use shoal::storage::disk::LOCK_FILE;
    if config.join {
        bail!("--restore seeds a new group; a replica started with --join gets its state from the group");
    }
    config.validate().context("invalid configuration")?;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let backup = backup::decode(&bytes)
        .map_err(|e| anyhow::anyhow!("refusing to restore {}: {e}", file.display()))?;
    let (meta, data) =
        backup::restored_snapshot(&backup, config.group, config.shard_count, &config.members())
            .with_context(|| format!("refusing to restore from {}", file.display()))?;
    if let Ok(entries) = std::fs::read_dir(data_dir) {
        let names: Vec<String> = entries
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .filter(|name| name != LOCK_FILE)
            .collect();
        if !names.is_empty() {
            bail!(
                "refusing to restore into {}: the data directory is not empty ({})",
                data_dir.display(),
                names.join(", ")
            );
        }
    }
    let disk: shoal::storage::disk::DiskRef = Arc::new(
        OsDisk::open(data_dir)
            .with_context(|| format!("opening data dir {}", data_dir.display()))?,
    );
    backup::seed(&disk, LOCK_FILE, &meta, &data)
        .await
        .with_context(|| format!("restoring into {}", data_dir.display()))?;
    tracing::info!(
        backup = %file.display(),
        index = meta.last_log_id.map_or(0, |id| id.index),
        "replica seeded from the backup"
    );
    Ok(())
}

#[path = "shoal-node/dev.rs"]
mod dev;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Quiet by default: a node says it serves, and what goes wrong. openraft
    // reports every unreachable peer as an error, which is routine while a
    // group starts (a fatal consensus error stops the node and says why);
    // storage recovery reports only trouble. RUST_LOG overrides this.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,shoal::storage=warn,openraft=off".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match args.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    if args.dev {
        return dev::run(&args).await;
    }
    let config = load(&args)?;
    let data_dir = config
        .data_dir
        .clone()
        .expect("load requires a data directory");
    if let Some(file) = &args.restore {
        restore(&config, &data_dir, file).await?;
    }
    let storage = open_storage(&config, &data_dir).await?;
    run(config, storage, shoal::runtime::shutdown_signal()).await?;
    Ok(())
}
