//! `shoal-bench`: drives a load against a Shoal cluster through the client
//! library, or against etcd through its v3 API with the same load code, and
//! prints what it measured: requests per second, latency percentiles and
//! errors (`--json` for scripts).
//!
//! Every client has its own identity and sends one request at a time; keys
//! are `key-` and a zero-padded number, chosen at random from `--keys`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args as ClapArgs, Parser, Subcommand};
use shoal::client::ClientConfig;
use shoal::tls::TlsFiles;

mod drive;
mod run;

use drive::Target;
use run::{Keys, Load, Mix, Outcome, Until};

/// The allocator the node uses too: the generator shares the machine with
/// the servers, so what it spends in allocation the servers lose.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    version,
    about = "Load generator for Shoal clusters (and etcd, for comparison)"
)]
struct Args {
    /// A standalone group's members (host:port, comma-separated).
    #[arg(long, value_delimiter = ',', global = true)]
    endpoints: Vec<String>,
    /// A sharded cluster's shard controller members instead.
    #[arg(long, value_delimiter = ',', global = true)]
    controller: Vec<String>,
    /// etcd members' client addresses instead (host:port, plaintext): the
    /// same load through etcd's v3 API, sent to its leader.
    #[arg(long, value_delimiter = ',', global = true)]
    etcd: Vec<String>,
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
    /// Puts to random keys.
    Put(Common),
    /// Linearizable gets of random keys.
    Get(Common),
    /// Gets and puts of random keys.
    Mixed {
        #[command(flatten)]
        common: Common,
        /// Percent of requests that are gets.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=100))]
        reads: u32,
    },
    /// Linearizable scans from random keys.
    Scan {
        #[command(flatten)]
        common: Common,
        /// Keys each scan reads.
        #[arg(long, default_value_t = 10)]
        limit: u32,
    },
    /// Puts each of `--keys` keys once, in order (to fill a cluster).
    Fill {
        #[command(flatten)]
        common: Common,
        /// The first key's number (to add to an earlier fill).
        #[arg(long, default_value_t = 0)]
        first: u64,
    },
}

/// What every load takes.
#[derive(ClapArgs)]
struct Common {
    /// Concurrent clients.
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Connections the clients share (default: one per client).
    #[arg(long)]
    conns: Option<usize>,
    /// Bytes of each key.
    #[arg(long, default_value_t = 16)]
    key_size: usize,
    /// Bytes of each value.
    #[arg(long, default_value_t = 256)]
    val_size: usize,
    /// Size of the key space.
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// Seconds the load runs (unless `--total` is given).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Requests in all, instead of a duration.
    #[arg(long, conflicts_with = "duration")]
    total: Option<u64>,
    /// Requests per second from all clients together (open loop; latency
    /// counts from when a request was due). Default: closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// Seed of the key choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object instead of a line of text.
    #[arg(long)]
    json: bool,
}

impl Command {
    fn load(&self) -> (&Common, Mix, Keys) {
        match self {
            Command::Put(common) => (common, Mix::Put, random(common)),
            Command::Get(common) => (common, Mix::Get, random(common)),
            Command::Mixed { common, reads } => {
                (common, Mix::Mixed { reads: *reads }, random(common))
            }
            Command::Scan { common, limit } => {
                (common, Mix::Scan { limit: *limit }, random(common))
            }
            Command::Fill { common, first } => {
                let keys = Keys::Sequence {
                    first: *first,
                    count: common.keys,
                };
                (common, Mix::Put, keys)
            }
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Command::Put(_) => "put",
            Command::Get(_) => "get",
            Command::Mixed { .. } => "mixed",
            Command::Scan { .. } => "scan",
            Command::Fill { .. } => "fill",
        }
    }
}

fn random(common: &Common) -> Keys {
    Keys::Random { count: common.keys }
}

fn shoal_config(args: &Args) -> anyhow::Result<ClientConfig> {
    let mut config = if args.controller.is_empty() {
        anyhow::ensure!(
            !args.endpoints.is_empty(),
            "give --endpoints, --controller or --etcd"
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (common, mix, keys) = args.command.load();
    let until = match (common.total, &args.command) {
        (Some(total), _) => Until::Requests(total),
        (None, Command::Fill { .. }) => Until::Requests(u64::MAX),
        (None, _) => Until::Elapsed(Duration::from_secs_f64(common.duration)),
    };
    let load = Load {
        mix,
        keys,
        clients: common.clients,
        key_size: common.key_size,
        value_size: common.val_size,
        until,
        rate: common.rate,
        seed: common.seed,
    };
    load.check()?;
    let conns = common.conns.unwrap_or(common.clients);
    anyhow::ensure!(conns > 0, "--conns must be at least 1");
    let target = if args.etcd.is_empty() {
        Target::shoal(shoal_config(&args)?, common.clients, conns)
    } else {
        Target::etcd(&args.etcd, conns).await?
    };
    let system = if args.etcd.is_empty() {
        "shoal"
    } else {
        "etcd"
    };
    let outcome = run::run(Arc::new(target), Arc::new(load)).await?;
    let report = Report {
        system,
        load: args.command.name(),
        common,
        conns,
        outcome: &outcome,
    };
    if common.json {
        println!("{}", report.json());
    } else {
        println!("{}", report.text());
    }
    Ok(())
}

/// What is printed of a finished load.
struct Report<'a> {
    system: &'static str,
    load: &'static str,
    common: &'a Common,
    conns: usize,
    outcome: &'a Outcome,
}

const PERCENTILES: [(&str, f64); 4] = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)];

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Report<'_> {
    fn text(&self) -> String {
        let o = self.outcome;
        let mut line = format!(
            "{} {}: {} clients, {} conns, {}-byte keys, {}-byte values: {} requests in {:.1} s, {:.0}/s, {} errors; latency ms",
            self.system, self.load, self.common.clients, self.conns, self.common.key_size,
            self.common.val_size, o.requests, o.elapsed.as_secs_f64(), o.rate(), o.errors,
        );
        for (name, p) in PERCENTILES {
            line += &format!(" {name} {:.2}", ms(o.percentile(p)));
        }
        line += &format!(" max {:.2}", ms(o.percentile(1.0)));
        if let Some(error) = &o.first_error {
            line += &format!("\nfirst error: {error}");
        }
        line
    }

    fn json(&self) -> serde_json::Value {
        let o = self.outcome;
        let mut latency = serde_json::Map::new();
        for (name, p) in PERCENTILES.into_iter().chain([("max", 1.0)]) {
            latency.insert(name.into(), ms(o.percentile(p)).into());
        }
        serde_json::json!({
            "system": self.system,
            "load": self.load,
            "clients": self.common.clients,
            "conns": self.conns,
            "key_size": self.common.key_size,
            "val_size": self.common.val_size,
            "requests": o.requests,
            "errors": o.errors,
            "first_error": o.first_error,
            "seconds": o.elapsed.as_secs_f64(),
            "per_second": o.rate(),
            "latency_ms": latency,
        })
    }
}
