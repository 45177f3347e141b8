//! `shoal-node --dev`: a whole local cluster in one process, with its data,
//! cluster token and (with `--tls`) throw-away certificates under one
//! directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use shoal::client::{Client, ClientConfig, Credentials};
use shoal::ids::GroupKey;
use shoal::machine::shard::controller::ControllerOp;
use shoal::server::config::NodeConfig;
use shoal::server::node::run as run_node;

use shoal::tls::{dev, dev_certificates, TlsFiles};

use super::{open_storage, Args};

/// A `--dev` replica's HTTP gateway listens this far above its gRPC port.
const DEV_HTTP_PORT_OFFSET: u64 = 1000;
/// A `--dev` replica's metrics endpoint listens this far above its gRPC port.
const DEV_METRICS_PORT_OFFSET: u64 = 2000;
/// A `--dev` replica serves its peers this far above its gRPC port.
const DEV_PEER_PORT_OFFSET: u64 = 3000;

/// One group of a `--dev` cluster: `nodes` replicas on consecutive ports.
fn dev_group(
    group: GroupKey,
    nodes: u64,
    first_port: u64,
    controller: &[String],
) -> anyhow::Result<Vec<NodeConfig>> {
    let addr = |i: u64| format!("127.0.0.1:{}", first_port + i - 1);
    let peer_addr = |i: u64| format!("127.0.0.1:{}", first_port + i - 1 + DEV_PEER_PORT_OFFSET);
    let peers: BTreeMap<u64, String> = (1..=nodes).map(|id| (id, addr(id))).collect();
    (1..=nodes)
        .map(|id| {
            let mut config = NodeConfig::new(id, addr(id).parse()?, peers.clone());
            config.peer_listen = Some(peer_addr(id).parse()?);
            config.peer_addrs = (1..=nodes).map(|id| (id, peer_addr(id))).collect();
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
    fn print_banner(&self, args: &Args, data_root: &Path, (client, admin): &(String, String)) {
        let (nodes, endpoints) = (args.dev_nodes, self.endpoints.join(","));
        if self.members.is_empty() {
            println!(
                "Shoal dev group of {nodes} replicas, data in {}.",
                data_root.display()
            );
            println!(
                "Talk to it:  cargo run --bin shoal --{client} --endpoints {endpoints} put hello world"
            );
            println!("Administration (shoal admin ...) needs:{admin}");
        } else {
            println!(
                "Shoal dev cluster: shard controller on {endpoints}, {} data groups of {nodes} replicas, data in {}.",
                self.members.len(),
                data_root.display()
            );
            println!(
                "Talk to it:  cargo run --bin shoal --{client} --controller {endpoints} put hello world"
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
                "Standby group {group}: cargo run --bin shoal --{admin} --controller {endpoints} admin join --group {group} --members {}",
                list.join(",")
            );
        }
        println!("Stop it with Ctrl-C.");
    }
}

/// How a `--dev` cluster's nodes and administrators prove who they are: a
/// cluster token kept in the data directory (made on first start), and with
/// `--tls` a throw-away CA and certificates (likewise).
struct DevSecurity {
    token_file: PathBuf,
    tls_dir: Option<PathBuf>,
}

impl DevSecurity {
    fn prepare(args: &Args, data_root: &Path) -> anyhow::Result<DevSecurity> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(data_root)
            .with_context(|| format!("creating {}", data_root.display()))?;
        let token_file = data_root.join("cluster.token");
        if !token_file.exists() {
            let mut rng = shoal::runtime::rng();
            let token: String = (0..32)
                .map(|_| char::from_digit(rand::Rng::gen_range(&mut rng, 0..16), 16).unwrap())
                .collect();
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&token_file)
                .with_context(|| format!("creating {}", token_file.display()))?;
            std::io::Write::write_all(&mut file, token.as_bytes())?;
        }
        let tls_dir = args.tls.then(|| data_root.join("tls"));
        if let Some(dir) = tls_dir.as_ref().filter(|d| !d.join(dev::CA).exists()) {
            dev_certificates(dir)?;
        }
        Ok(DevSecurity {
            token_file,
            tls_dir,
        })
    }

    fn apply(&self, config: &mut NodeConfig) -> anyhow::Result<()> {
        config.token = Some(shoal::tls::read_token(&self.token_file)?);
        config.token_file = Some(self.token_file.clone());
        if let Some(dir) = &self.tls_dir {
            config.cacert = Some(dir.join(dev::CA));
            config.cert = Some(dir.join(dev::NODE.0));
            config.key = Some(dir.join(dev::NODE.1));
            config.admin_names = vec![dev::ADMIN_NAME.to_string()];
            config.peer_names = vec![dev::NODE_NAME.to_string()];
        }
        Ok(())
    }

    /// The `shoal` flags a client needs, and those an administrator needs.
    fn flags(&self) -> (String, String) {
        let token = format!("--token-file {}", self.token_file.display());
        match &self.tls_dir {
            None => (String::new(), format!(" {token}")),
            Some(dir) => {
                let ca = format!(" --cacert {}", dir.join(dev::CA).display());
                let (cert, key) = dev::ADMIN;
                let admin = format!(
                    "{ca} --cert {} --key {}",
                    dir.join(cert).display(),
                    dir.join(key).display()
                );
                (ca, admin)
            }
        }
    }

    fn credentials(&self) -> anyhow::Result<Credentials> {
        let files = TlsFiles {
            cacert: self.tls_dir.as_ref().map(|d| d.join(dev::CA)),
            ..TlsFiles::default()
        };
        Ok(shoal::tls::credentials(&files, Some(&self.token_file))?)
    }
}

/// Runs the `--dev` cluster until Ctrl-C or a replica stops.
pub async fn run(args: &Args) -> anyhow::Result<()> {
    let data_root = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("shoal-dev-data"));
    let security = DevSecurity::prepare(args, &data_root)?;
    let DevCluster {
        mut replicas,
        members,
        endpoints,
    } = {
        let cluster = DevCluster::plan(args)?;
        cluster.print_banner(args, &data_root, &security.flags());
        cluster
    };
    for (_, config) in &mut replicas {
        security.apply(config)?;
    }
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
            let result = run_node(config, storage, shutdown).await;
            let _ = ended.send(());
            result.with_context(|| format!("replica {name}"))
        }));
    }
    let serve = async {
        if args.dev_groups > 0 {
            let credentials = security.credentials()?;
            join_dev_groups(&endpoints, &members, args.dev_groups, credentials).await?;
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
    credentials: Credentials,
) -> anyhow::Result<()> {
    let mut client = Client::new(ClientConfig {
        credentials,
        ..ClientConfig::new(controller.to_vec())
    });
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
