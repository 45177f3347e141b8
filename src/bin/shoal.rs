//! `shoal`: the command-line client.
//!
//! Exit status: 0 on success, 1 when `get` finds no value or `cas` does not
//! swap, 2 on an error.

use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use shoal::client::{Client, ClientConfig};

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
        #[arg(long)]
        addr: String,
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
    fn client_config(&self) -> ClientConfig {
        let mut config = if !self.via.is_empty() {
            ClientConfig::by_nodes(self.via.clone())
        } else if self.controller.is_empty() {
            ClientConfig::new(self.endpoints.clone())
        } else {
            ClientConfig::sharded(self.controller.clone())
        };
        config.deadline = Duration::from_millis(self.deadline_ms);
        config
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
    let mut client = Client::new(args.client_config());
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
        Command::Endpoint { command } => endpoint(&mut client, command).await,
        Command::Status => client.status().await.map(|status| {
            println!("node:         {}", status.node_id);
            println!("role:         {}", status.role);
            println!("term:         {}", status.term);
            match status.leader_id {
                Some(leader) => println!("leader:       {leader}"),
                None => println!("leader:       (none)"),
            }
            println!("last applied: {}", status.last_applied);
            for (id, addr) in &status.members {
                println!("member:       {id} {addr}");
            }
            ExitCode::SUCCESS
        }),
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

async fn admin(
    client: &mut Client,
    command: Admin,
) -> Result<ExitCode, shoal::client::ClientError> {
    use shoal::machine::shard::controller::ControllerOp;
    let op = match command {
        Admin::AddReplica { node, addr } => {
            return print_members(client.add_replica(node, addr).await?)
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
