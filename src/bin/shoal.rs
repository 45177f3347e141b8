//! `shoal`: the command-line client.
//!
//! Exit status: 0 on success, 1 when `get` finds no value, `cas` does not
//! swap or `snapshot status` finds the file damaged, 2 on an error.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use shoal::client::{Client, ClientConfig};
use shoal::storage::backup::Unreadable;
use shoal::tls::TlsFiles;

/// Talk to a Shoal group.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Members of the group as HOST:PORT, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        env = "SHOAL_ENDPOINTS",
        default_value = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"
    )]
    endpoints: Vec<String>,
    /// The shard controller's members, comma-separated HOST:PORT: talk to a
    /// sharded cluster (instead of one group at --endpoints).
    #[arg(long, value_delimiter = ',', env = "SHOAL_CONTROLLER")]
    controller: Vec<String>,
    /// Any nodes of a cluster, comma-separated HOST:PORT, which route each
    /// request themselves (for a client that reaches only some nodes).
    #[arg(
        long,
        value_delimiter = ',',
        env = "SHOAL_VIA",
        conflicts_with = "controller"
    )]
    via: Vec<String>,
    /// Give up on an operation after this many milliseconds.
    #[arg(long, default_value_t = 10_000)]
    deadline_ms: u64,
    /// CA certificate (PEM) the nodes' certificates chain to: talk TLS.
    #[arg(long, env = "SHOAL_CACERT")]
    cacert: Option<PathBuf>,
    /// This client's certificate (PEM), for nodes that require one or that
    /// trust its name as an administrator's.
    #[arg(long, env = "SHOAL_CERT", requires = "key")]
    cert: Option<PathBuf>,
    /// The private key of --cert (PEM).
    #[arg(long, env = "SHOAL_KEY", requires = "cert")]
    key: Option<PathBuf>,
    /// File holding the cluster token, which administration accepts in
    /// place of an administrator's certificate.
    #[arg(long, env = "SHOAL_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum EndpointCommand {
    /// One row per member of every group: id, address, role, term, leader,
    /// applied index, lag behind the group's most advanced member, keys.
    Status,
    /// Whether every member answers and knows a leader (exit 1 if not).
    Health,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the value of KEY.
    Get { key: String },
    /// Set KEY to VALUE.
    Put { key: String, value: String },
    /// Remove KEY.
    Delete { key: String },
    /// Set KEY to NEW only if it holds EXPECTED.
    Cas {
        key: String,
        /// The value KEY must hold; omit to require that KEY does not exist.
        #[arg(long)]
        expected: Option<String>,
        /// The value to store; omit to delete KEY.
        #[arg(long)]
        new: Option<String>,
    },
    /// Print the keys in [START, END) with their values (END empty: to the
    /// end). Each shard's part is linearizable; the whole is not one snapshot.
    Scan {
        start: String,
        #[arg(default_value = "")]
        end: String,
        /// At most this many keys.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show the contacted member's view of the group.
    Status,
    /// Every member of the cluster, one by one.
    Endpoint {
        #[command(subcommand)]
        command: EndpointCommand,
    },
    /// Change the sharded cluster (needs --controller).
    Admin {
        #[command(subcommand)]
        command: Admin,
    },
    /// Back up one group's state, and check backup files.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
}

#[derive(Debug, Subcommand)]
enum SnapshotCommand {
    /// Save a consistent copy of one group's state (as of one applied index
    /// at its leader) to FILE: written to FILE.tmp, checked, synced, renamed.
    Save {
        file: PathBuf,
        /// With --controller: data group N, or 0 for the shard controller
        /// (the default).
        #[arg(long)]
        group: Option<u64>,
    },
    /// Check every byte of FILE and show what it holds (exit 1 if damaged).
    Status { file: PathBuf },
}

#[derive(Debug, Subcommand)]
enum Admin {
    /// Add a data group and rebalance shards onto it.
    Join {
        #[arg(long)]
        group: u64,
        /// Its members as ID=HOST:PORT, comma-separated.
        #[arg(long, value_delimiter = ',')]
        members: Vec<String>,
    },
    /// Remove a data group; its shards move to the others.
    Leave {
        #[arg(long)]
        group: u64,
    },
    /// Give one shard to one group.
    Move {
        #[arg(long)]
        shard: u32,
        #[arg(long)]
        group: u64,
    },
    /// Show the latest configuration: each group's shards and members.
    Status,
    /// Add a running replica (started with --join) to the group at
    /// --endpoints.
    AddReplica {
        #[arg(long)]
        node: u64,
        /// Its client address.
        #[arg(long)]
        addr: String,
        /// Its peer address, if it serves its peers on another.
        #[arg(long, default_value = "")]
        peer_addr: String,
    },
    /// Remove a replica from the group at --endpoints.
    RemoveReplica {
        #[arg(long)]
        node: u64,
    },
}

impl Args {
    /// How the client reaches the cluster: through nodes that route, a
    /// shard controller, or one group's members.
    fn client_config(&self) -> Result<ClientConfig, shoal::tls::TlsError> {
        let mut config = if !self.via.is_empty() {
            ClientConfig::by_nodes(self.via.clone())
        } else if self.controller.is_empty() {
            ClientConfig::new(self.endpoints.clone())
        } else {
            ClientConfig::sharded(self.controller.clone())
        };
        config.deadline = Duration::from_millis(self.deadline_ms);
        let files = TlsFiles {
            cacert: self.cacert.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
        };
        config.credentials = shoal::tls::credentials(&files, self.token_file.as_deref())?;
        Ok(config)
    }
}

async fn endpoint(
    client: &mut Client,
    command: EndpointCommand,
) -> Result<ExitCode, shoal::client::ClientError> {
    use shoal::client::endpoints::{healthy, table};
    let endpoints = client.endpoints().await?;
    Ok(match command {
        EndpointCommand::Status => {
            print!("{}", table(&endpoints));
            ExitCode::SUCCESS
        }
        EndpointCommand::Health => {
            let mut all = true;
            for endpoint in &endpoints {
                match healthy(endpoint) {
                    Ok(took) => println!("{} is healthy: answered in {took:?}", endpoint.addr),
                    Err(why) => {
                        all = false;
                        println!("{} is unhealthy: {why}", endpoint.addr);
                    }
                }
            }
            if all {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let Ok(config) = args.client_config().map_err(|e| eprintln!("error: {e}")) else {
        return ExitCode::from(2);
    };
    let mut client = Client::new(config);
    let result = match args.command {
        Command::Get { key } => client.get(key).await.map(|value| match value {
            Some(value) => {
                println!("{}", String::from_utf8_lossy(&value));
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("(not found)");
                ExitCode::from(1)
            }
        }),
        Command::Put { key, value } => client.put(key, value).await.map(|()| {
            println!("OK");
            ExitCode::SUCCESS
        }),
        Command::Delete { key } => client.delete(key).await.map(|existed| {
            println!("{}", if existed { "deleted" } else { "(not found)" });
            ExitCode::SUCCESS
        }),
        Command::Cas { key, expected, new } => client
            .compare_and_swap(key, expected.map(Bytes::from), new.map(Bytes::from))
            .await
            .map(|outcome| {
                let current = match &outcome.current {
                    Some(value) => String::from_utf8_lossy(value).into_owned(),
                    None => "(none)".to_string(),
                };
                if outcome.swapped {
                    println!("swapped (was {current})");
                    ExitCode::SUCCESS
                } else {
                    println!("not swapped (current {current})");
                    ExitCode::from(1)
                }
            }),
        Command::Scan { start, end, limit } => {
            client.scan(start, end, limit).await.map(|entries| {
                for (key, value) in entries {
                    println!(
                        "{}\t{}",
                        String::from_utf8_lossy(&key),
                        String::from_utf8_lossy(&value)
                    );
                }
                ExitCode::SUCCESS
            })
        }
        Command::Admin { command } => admin(&mut client, command).await,
        Command::Snapshot { command } => return snapshot(&mut client, command).await,
        Command::Endpoint { command } => endpoint(&mut client, command).await,
        Command::Status => client.status().await.map(print_status),
    };
    // Every invocation is a session of its own: end it, so the cluster's
    // de-duplication tables do not keep it until it expires.
    if let Err(e) = client.close_session().await {
        tracing::debug!(error = %e, "the session was not closed; it will expire");
    }
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Prints one member's view of its group.
fn print_status(status: shoal::proto::StatusResponse) -> ExitCode {
    println!("node:         {}", status.node_id);
    println!("role:         {}", status.role);
    println!("term:         {}", status.term);
    match status.leader_id {
        Some(leader) => println!("leader:       {leader}"),
        None => println!("leader:       (none)"),
    }
    println!("last applied: {}", status.last_applied);
    for (id, addr) in &status.members {
        match status.peer_members.get(id).filter(|peer| *peer != addr) {
            Some(peer) => println!("member:       {id} {addr} (peers: {peer})"),
            None => println!("member:       {id} {addr}"),
        }
    }
    ExitCode::SUCCESS
}

async fn admin(
    client: &mut Client,
    command: Admin,
) -> Result<ExitCode, shoal::client::ClientError> {
    use shoal::machine::shard::controller::ControllerOp;
    let op = match command {
        Admin::AddReplica {
            node,
            addr,
            peer_addr,
        } => {
            let member = shoal::ids::Member::new(addr, peer_addr);
            return print_members(client.add_replica(node, member).await?);
        }
        Admin::RemoveReplica { node } => return print_members(client.remove_replica(node).await?),
        Admin::Status => {
            print!("{}", client.query(None).await?.table());
            return Ok(ExitCode::SUCCESS);
        }
        Admin::Join { group, members } => {
            let members =
                match shoal::server::config::parse_peers(members.iter().map(String::as_str)) {
                    Ok(members) => members,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return Ok(ExitCode::from(2));
                    }
                };
            ControllerOp::Join([(group, members)].into())
        }
        Admin::Leave { group } => ControllerOp::Leave([group].into()),
        Admin::Move { shard, group } => ControllerOp::Move { shard, group },
    };
    print!("{}", client.reconfigure(&op).await?.table());
    Ok(ExitCode::SUCCESS)
}

fn print_members(
    members: std::collections::BTreeMap<u64, String>,
) -> Result<ExitCode, shoal::client::ClientError> {
    for (id, addr) in members {
        println!("member {id} {addr}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `shoal snapshot ...`: errors are printed here (exit 2), damage found in
/// a file too (exit 1).
async fn snapshot(client: &mut Client, command: SnapshotCommand) -> ExitCode {
    let result = match command {
        SnapshotCommand::Save { file, group } => save_snapshot(client, &file, group).await,
        SnapshotCommand::Status { file } => std::fs::read(&file)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))
            .map(|bytes| match check_backup(&bytes) {
                Ok(summary) => {
                    print!("{summary}");
                    ExitCode::SUCCESS
                }
                Err(Unreadable::Damaged(damage)) => {
                    eprintln!(
                        "error: {} is damaged at byte offset {}: {}",
                        file.display(),
                        damage.offset,
                        damage.reason
                    );
                    ExitCode::from(1)
                }
                Err(newer @ Unreadable::Newer(_)) => {
                    eprintln!("error: {}: {newer}", file.display());
                    ExitCode::from(2)
                }
            }),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(2)
    })
}

/// Verifies a backup file; describes it, or says why it cannot be read.
fn check_backup(bytes: &[u8]) -> Result<String, Unreadable> {
    let backup = shoal::storage::backup::decode(bytes)?;
    let (sessions, keys) = backup.check()?;
    let header = &backup.header;
    let last = match header.meta.last_log_id {
        Some(id) => format!("index {} (term {})", id.index, id.leader_id.term),
        None => "nothing".to_string(),
    };
    let members: Vec<String> = header
        .meta
        .last_membership
        .membership()
        .nodes()
        .map(|(id, node)| format!("{id}={}", node.addr))
        .collect();
    Ok(format!(
        "group:        {}\nlast applied: {last}\nmembers:      {}\nkeys:         {}\n\
         sessions:     {}\nstate:        {} bytes in {} chunks\n\
         file:         {} bytes, crc32c {:08x}\n",
        header.group,
        members.join(","),
        keys,
        sessions,
        header.state_size_bytes,
        header.chunks,
        backup.size_bytes,
        backup.checksum,
    ))
}

/// Streams a backup into FILE.tmp, checks and syncs it, and renames it to
/// FILE (then syncs the directory).
async fn save_snapshot(
    client: &mut Client,
    file: &Path,
    group: Option<u64>,
) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    let mut tmp = file.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut stream = client.save_snapshot(group).await?;
    let mut out =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let received = async {
        while let Some(chunk) = stream.next().await? {
            out.write_all(&chunk)?;
        }
        out.sync_all()?;
        let written = std::fs::read(&tmp)?;
        check_backup(&written).map_err(|d| anyhow::anyhow!("the backup arrived damaged {d}"))
    };
    let summary = match received.await {
        Ok(summary) => summary,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.context(format!("saving {}", file.display())));
        }
    };
    std::fs::rename(&tmp, file).with_context(|| format!("renaming {}", tmp.display()))?;
    let dir = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    println!("saved {}", file.display());
    print!("{summary}");
    Ok(ExitCode::SUCCESS)
}
