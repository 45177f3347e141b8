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
    /// Give up on an operation after this many milliseconds.
    #[arg(long, default_value_t = 10_000)]
    deadline_ms: u64,
    #[command(subcommand)]
    command: Command,
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
    /// Show the contacted member's view of the group.
    Status,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mut config = ClientConfig::new(args.endpoints);
    config.deadline = Duration::from_millis(args.deadline_ms);
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
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
