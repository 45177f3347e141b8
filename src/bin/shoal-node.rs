//! `shoal-node`: runs one Shoal replica, or a whole local cluster with `--dev`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Parser;
use shoal::client::{Client, ClientConfig};
use shoal::ids::GroupKey;
use shoal::machine::shard::controller::ControllerOp;
use shoal::server::config::NodeConfig;
use shoal::server::node::run;
use shoal::storage::disk::OsDisk;
use shoal::storage::Storage;

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
///
/// Without `group` the replica belongs to a standalone group serving every
/// key; `group = 0` makes it a shard controller replica.
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Args {
    /// TOML file with any of: id, listen, peers, data_dir, cluster_name,
    /// group, shard_count, controller, join, snapshot_every_entries,
    /// entries_kept_after_snapshot.
    #[arg(long)]
    config: Option<PathBuf>,
    /// This replica's id (one of the peers).
    #[arg(long)]
    id: Option<u64>,
    /// Address to serve gRPC on, e.g. 127.0.0.1:7001.
    #[arg(long)]
    listen: Option<SocketAddr>,
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
    let config = NodeConfig::from_table(table).with_context(|| match &args.config {
        Some(path) => format!("in the configuration ({} and flags)", path.display()),
        None => "in the configuration flags".to_string(),
    })?;
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
    let backup = backup::decode(&bytes).map_err(|damage| {
        anyhow::anyhow!(
            "refusing to restore: {} is damaged at byte offset {}: {}",
            file.display(),
            damage.offset,
            damage.reason
        )
    })?;
    let (meta, data) =
        backup::restored_snapshot(&backup, config.group, config.shard_count, &config.peers)
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

/// One group of a `--dev` cluster: `nodes` replicas on consecutive ports.
/// A `--dev` replica's HTTP gateway listens this far above its gRPC port.
const DEV_HTTP_PORT_OFFSET: u64 = 1000;
/// A `--dev` replica's metrics endpoint listens this far above its gRPC port.
const DEV_METRICS_PORT_OFFSET: u64 = 2000;

fn dev_group(
    group: GroupKey,
    nodes: u64,
    first_port: u64,
    controller: &[String],
) -> anyhow::Result<Vec<NodeConfig>> {
    let addr = |i: u64| format!("127.0.0.1:{}", first_port + i - 1);
    let peers: BTreeMap<u64, String> = (1..=nodes).map(|id| (id, addr(id))).collect();
    (1..=nodes)
        .map(|id| {
            let mut config = NodeConfig::new(id, addr(id).parse()?, peers.clone());
            let http = format!("127.0.0.1:{}", first_port + id - 1 + DEV_HTTP_PORT_OFFSET);
            config.http_listen = Some(http.parse()?);
            let metrics = format!(
                "127.0.0.1:{}",
                first_port + id - 1 + DEV_METRICS_PORT_OFFSET
            );
            config.metrics_listen = Some(metrics.parse()?);
            config.cluster_name = "shoal-dev".to_string();
            config.group = group;
            config.controller = controller.to_vec();
            Ok(config)
        })
        .collect()
}

/// The replicas of a `--dev` cluster, each with the name of its data
/// directory, and each data group's members.
struct DevCluster {
    replicas: Vec<(String, NodeConfig)>,
    members: BTreeMap<u64, BTreeMap<u64, String>>,
    /// The standalone group's members, or the shard controller's.
    endpoints: Vec<String>,
}

impl DevCluster {
    fn plan(args: &Args) -> anyhow::Result<DevCluster> {
        if args.dev_nodes == 0 || args.dev_nodes > 9 {
            bail!("--dev-nodes must be between 1 and 9");
        }
        let base = u64::from(args.dev_base_port);
        let nodes = args.dev_nodes;
        let mut cluster = DevCluster {
            replicas: Vec::new(),
            members: BTreeMap::new(),
            endpoints: Vec::new(),
        };
        if args.dev_groups + args.dev_standby_groups == 0 {
            for config in dev_group(GroupKey::Standalone, nodes, base, &[])? {
                cluster.endpoints.push(config.listen.to_string());
                cluster.replicas.push((config.id.to_string(), config));
            }
            return Ok(cluster);
        }
        cluster.endpoints = (0..nodes)
            .map(|i| format!("127.0.0.1:{}", base + i))
            .collect();
        for config in dev_group(GroupKey::Controller, nodes, base, &[])? {
            cluster
                .replicas
                .push((format!("controller-{}", config.id), config));
        }
        for group in 1..=args.dev_groups + args.dev_standby_groups {
            let first_port = base + group * nodes;
            let configs = dev_group(GroupKey::Data(group), nodes, first_port, &cluster.endpoints)?;
            let members = configs.iter().map(|c| (c.id, c.listen.to_string()));
            cluster.members.insert(group, members.collect());
            for config in configs {
                cluster
                    .replicas
                    .push((format!("g{group}-{}", config.id), config));
            }
        }
        Ok(cluster)
    }

    /// Tells the person at the terminal what runs and how to talk to it.
    fn print_banner(&self, args: &Args, data_root: &Path) {
        let (nodes, endpoints) = (args.dev_nodes, self.endpoints.join(","));
        if self.members.is_empty() {
            println!(
                "Shoal dev group of {nodes} replicas, data in {}.",
                data_root.display()
            );
            println!(
                "Talk to it:  cargo run --bin shoal -- --endpoints {endpoints} put hello world"
            );
        } else {
            println!(
                "Shoal dev cluster: shard controller on {endpoints}, {} data groups of {nodes} replicas, data in {}.",
                self.members.len(),
                data_root.display()
            );
            println!(
                "Talk to it:  cargo run --bin shoal -- --controller {endpoints} put hello world"
            );
        }
        let (_, first) = &self.replicas[0];
        let http = first.http_listen.expect("dev replicas serve HTTP");
        println!("Or over HTTP: curl -X PUT --data-binary world http://{http}/v1/kv/hello");
        let metrics = first.metrics_listen.expect("dev replicas serve metrics");
        println!("Metrics: curl http://{metrics}/metrics (and /health, /ready)");
        for (group, members) in self.members.range(args.dev_groups + 1..) {
            let list: Vec<String> = members.iter().map(|(id, a)| format!("{id}={a}")).collect();
            println!(
                "Standby group {group}: cargo run --bin shoal -- --controller {endpoints} admin join --group {group} --members {}",
                list.join(",")
            );
        }
        println!("Stop it with Ctrl-C.");
    }
}

async fn dev(args: &Args) -> anyhow::Result<()> {
    let data_root = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("shoal-dev-data"));
    let DevCluster {
        replicas,
        members,
        endpoints,
    } = {
        let cluster = DevCluster::plan(args)?;
        cluster.print_banner(args, &data_root);
        cluster
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (ended, mut first_end) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for (name, config) in replicas {
        let storage = open_storage(&config, &data_root.join(&name)).await?;
        let mut stopped = stopped.clone();
        let ended = ended.clone();
        tasks.push(tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            let result = run(config, storage, shutdown).await;
            let _ = ended.send(());
            result.with_context(|| format!("replica {name}"))
        }));
    }
    let serve = async {
        if args.dev_groups > 0 {
            join_dev_groups(&endpoints, &members, args.dev_groups).await?;
        }
        shoal::runtime::shutdown_signal().await;
        anyhow::Ok(())
    };
    // Until asked to stop, or until a replica stops by itself (it cannot
    // bind its address, say): then the whole cluster stops and says why.
    let served = tokio::select! {
        biased;
        _ = first_end.recv() => Ok(()),
        served = serve => served,
    };
    let _ = stop.send(true);
    for task in tasks {
        task.await.context("replica task")??;
    }
    served
}

/// Joins the first `count` dev groups that have not joined yet.
async fn join_dev_groups(
    controller: &[String],
    members: &BTreeMap<u64, BTreeMap<u64, String>>,
    count: u64,
) -> anyhow::Result<()> {
    let mut client = Client::new(ClientConfig::new(controller.to_vec()));
    let latest = client
        .query(None)
        .await
        .context("asking the shard controller")?;
    let joining: BTreeMap<u64, BTreeMap<u64, String>> = members
        .iter()
        .filter(|(g, _)| **g <= count && !latest.groups.contains_key(g))
        .map(|(g, m)| (*g, m.clone()))
        .collect();
    if !joining.is_empty() {
        let config = client.reconfigure(&ControllerOp::Join(joining)).await?;
        print!("{}", config.table());
    }
    Ok(())
}

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
        return dev(&args).await;
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
