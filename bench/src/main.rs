//! `shoal-bench`: drives load against a Shoal cluster through the client
//! library and prints what it measured.
//!
//! `load` writes keys `key-0000000000 ..` with values of a given size from
//! concurrent clients, each client its own identity and one request at a
//! time, and reports operations per second with latency percentiles.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::{Parser, Subcommand};
use shoal::client::{Client, ClientConfig};
use shoal::tls::TlsFiles;

#[derive(Parser)]
#[command(version, about = "Load generator for Shoal clusters")]
struct Args {
    /// A standalone group's members (host:port, comma-separated).
    #[arg(long, value_delimiter = ',', global = true)]
    endpoints: Vec<String>,
    /// A sharded cluster's shard controller members instead.
    #[arg(long, value_delimiter = ',', global = true)]
    controller: Vec<String>,
    /// The cluster token's file.
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    /// CA certificate, for a cluster serving TLS.
    #[arg(long, global = true)]
    cacert: Option<PathBuf>,
    /// Client certificate and key, for mutual TLS.
    #[arg(long, global = true)]
    cert: Option<PathBuf>,
    #[arg(long, global = true)]
    key: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes `--keys` keys once each.
    Load {
        /// Keys to write.
        #[arg(long, default_value_t = 100_000)]
        keys: u64,
        /// Bytes of each value.
        #[arg(long, default_value_t = 1024)]
        value_size: usize,
        /// Concurrent clients.
        #[arg(long, default_value_t = 32)]
        clients: u64,
        /// The first key's number (to add to an earlier load).
        #[arg(long, default_value_t = 0)]
        first: u64,
    },
}

/// The key numbered `i`.
fn key(i: u64) -> Bytes {
    Bytes::from(format!("key-{i:010}"))
}

fn config(args: &Args) -> anyhow::Result<ClientConfig> {
    let mut config = if args.controller.is_empty() {
        anyhow::ensure!(
            !args.endpoints.is_empty(),
            "give --endpoints or --controller"
        );
        ClientConfig::new(args.endpoints.clone())
    } else {
        ClientConfig::sharded(args.controller.clone())
    };
    config.deadline = Duration::from_secs(60);
    let files = TlsFiles {
        cacert: args.cacert.clone(),
        cert: args.cert.clone(),
        key: args.key.clone(),
    };
    config.credentials = shoal::tls::credentials(&files, args.token_file.as_deref())?;
    Ok(config)
}

/// One client's share: keys `first + c`, `first + c + clients`, ... below
/// `first + keys`. Returns each write's latency.
async fn load_part(
    config: ClientConfig,
    (c, clients, first, keys): (u64, u64, u64, u64),
    value: Bytes,
) -> anyhow::Result<Vec<Duration>> {
    let mut client = Client::new(config);
    let mut latencies = Vec::new();
    let mut i = first + c;
    while i < first + keys {
        let started = Instant::now();
        client
            .put(key(i), value.clone())
            .await
            .with_context(|| format!("put of key {i}"))?;
        latencies.push(started.elapsed());
        i += clients;
    }
    client.close_session().await.ok();
    Ok(latencies)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = config(&args)?;
    match args.command {
        Command::Load {
            keys,
            value_size,
            clients,
            first,
        } => {
            let value = Bytes::from(vec![b'v'; value_size]);
            let started = Instant::now();
            let parts: Vec<_> = (0..clients)
                .map(|c| {
                    let part = load_part(config.clone(), (c, clients, first, keys), value.clone());
                    tokio::spawn(part)
                })
                .collect();
            let mut latencies = Vec::with_capacity(keys as usize);
            for part in parts {
                latencies.extend(part.await??);
            }
            let elapsed = started.elapsed();
            latencies.sort_unstable();
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            println!(
                "load: {} puts of {value_size}-byte values by {clients} clients in {:.1} s: {:.0}/s, \
                 p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                latencies.len(),
                elapsed.as_secs_f64(),
                latencies.len() as f64 / elapsed.as_secs_f64(),
                ms(percentile(&latencies, 0.5)),
                ms(percentile(&latencies, 0.99)),
                ms(*latencies.last().unwrap_or(&Duration::ZERO)),
            );
        }
    }
    Ok(())
}
