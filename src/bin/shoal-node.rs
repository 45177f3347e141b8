//! `shoal-node`: runs one Shoal replica, or a whole local group with `--dev`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;
use serde::Deserialize;
use shoal::server::node::{parse_peers, run, NodeConfig};
use shoal::storage::disk::OsDisk;
use shoal::storage::{Storage, StorageOptions};

/// Run a Shoal node.
///
/// Settings come from `--config FILE` (TOML) and flags; a flag overrides the
/// file. Example file:
///
///   id = 1
///   listen = "127.0.0.1:7001"
///   peers = ["1=127.0.0.1:7001", "2=127.0.0.1:7002", "3=127.0.0.1:7003"]
///   data_dir = "data/1"
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Args {
    /// TOML file with any of: id, listen, peers, data_dir, cluster_name.
    #[arg(long)]
    config: Option<PathBuf>,
    /// This replica's id (one of the peers).
    #[arg(long)]
    id: Option<u64>,
    /// Address to serve gRPC on, e.g. 127.0.0.1:7001.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Group members as ID=HOST:PORT, comma-separated, this node included.
    #[arg(long, value_delimiter = ',')]
    peers: Vec<String>,
    /// Directory for this replica's data.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Cluster name shared by all members.
    #[arg(long)]
    cluster_name: Option<String>,
    /// Start a local group of `--dev-nodes` replicas in this process, on
    /// 127.0.0.1 ports from `--dev-base-port` up, keeping data under
    /// `--data-dir` (default: shoal-dev-data); ignores the other settings.
    #[arg(long)]
    dev: bool,
    /// Replicas in the `--dev` group.
    #[arg(long, default_value_t = 3)]
    dev_nodes: u64,
    /// First port of the `--dev` group.
    #[arg(long, default_value_t = 7001)]
    dev_base_port: u16,
}

/// The settings a config file may hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    id: Option<u64>,
    listen: Option<SocketAddr>,
    #[serde(default)]
    peers: Vec<String>,
    data_dir: Option<PathBuf>,
    cluster_name: Option<String>,
}

fn load(args: &Args) -> anyhow::Result<(NodeConfig, PathBuf)> {
    let file = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            toml::from_str::<FileConfig>(&text)
                .with_context(|| format!("in config file {}", path.display()))?
        }
        None => FileConfig::default(),
    };
    let Some(id) = args.id.or(file.id) else {
        bail!("missing --id (or `id` in the config file)")
    };
    let Some(listen) = args.listen.or(file.listen) else {
        bail!("missing --listen (or `listen` in the config file)")
    };
    let peers = if args.peers.is_empty() {
        &file.peers
    } else {
        &args.peers
    };
    if peers.is_empty() {
        bail!("missing --peers (or `peers` in the config file)");
    }
    let Some(data_dir) = args.data_dir.clone().or(file.data_dir) else {
        bail!("missing --data-dir (or `data_dir` in the config file)")
    };
    let mut config = NodeConfig::new(id, listen, parse_peers(peers.iter().map(String::as_str))?);
    if let Some(name) = args.cluster_name.clone().or(file.cluster_name) {
        config.cluster_name = name;
    }
    config.validate()?;
    Ok((config, data_dir))
}

/// Opens a replica's storage in `data_dir`.
async fn open_storage(data_dir: &std::path::Path) -> anyhow::Result<Storage> {
    let disk = OsDisk::open(data_dir)
        .with_context(|| format!("opening data dir {}", data_dir.display()))?;
    let storage = Storage::open(
        std::sync::Arc::new(disk),
        &StorageOptions::default(),
        Default::default(),
    )
    .await
    .with_context(|| format!("recovering the replica in {}", data_dir.display()))?;
    Ok(storage)
}

/// The replicas of a `--dev` group.
fn dev_group(nodes: u64, base_port: u16) -> anyhow::Result<Vec<NodeConfig>> {
    if nodes == 0 || nodes > 9 {
        bail!("--dev-nodes must be between 1 and 9");
    }
    let addr = |id: u64| format!("127.0.0.1:{}", u64::from(base_port) + id - 1);
    let peers: std::collections::BTreeMap<u64, String> =
        (1..=nodes).map(|id| (id, addr(id))).collect();
    (1..=nodes)
        .map(|id| {
            let mut config = NodeConfig::new(id, addr(id).parse()?, peers.clone());
            config.cluster_name = "shoal-dev".to_string();
            Ok(config)
        })
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        .init();
    let args = Args::parse();

    if args.dev {
        let group = dev_group(args.dev_nodes, args.dev_base_port)?;
        let data_root = args
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("shoal-dev-data"));
        let endpoints: Vec<&str> = group[0].peers.values().map(String::as_str).collect();
        println!(
            "Shoal dev group of {} replicas, data in {}.",
            group.len(),
            data_root.display()
        );
        println!(
            "Talk to it:  cargo run --bin shoal -- --endpoints {} put hello world",
            endpoints.join(",")
        );
        println!("Stop it with Ctrl-C.");
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut replicas = Vec::new();
        for config in group {
            let mut stopped = stopped.clone();
            let storage = open_storage(&data_root.join(config.id.to_string())).await?;
            replicas.push(tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                };
                run(config, storage, shutdown).await
            }));
        }
        shoal::runtime::shutdown_signal().await;
        let _ = stop.send(true);
        for replica in replicas {
            replica.await.context("replica task")??;
        }
        return Ok(());
    }

    let (config, data_dir) = load(&args)?;
    let storage = open_storage(&data_dir).await?;
    run(config, storage, shoal::runtime::shutdown_signal()).await?;
    Ok(())
}
