//! The load itself: clients each sending one request at a time, closed loop
//! (the next request as soon as the last is answered) or open loop (at a
//! fixed rate, latency counted from when the request was due), and what
//! they measured.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::drive::{Conn, Target};

/// What each request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    Put,
    Get,
    /// Gets `reads` percent of the time, puts otherwise.
    Mixed {
        reads: u32,
    },
    /// Reads `limit` keys from a random key on.
    Scan {
        limit: u32,
    },
}

/// Which keys requests name.
#[derive(Debug, Clone, Copy)]
pub enum Keys {
    /// Uniformly random among `count` keys.
    Random { count: u64 },
    /// Each of `count` keys from number `first` on, once (client `c` of `n`
    /// takes `first + c`, `first + c + n`, ...).
    Sequence { first: u64, count: u64 },
}

/// When the load ends.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    Elapsed(Duration),
    Requests(u64),
}

/// A whole load.
#[derive(Debug, Clone)]
pub struct Load {
    pub mix: Mix,
    pub keys: Keys,
    pub clients: usize,
    pub key_size: usize,
    pub value_size: usize,
    pub until: Until,
    /// Requests per second from all clients together (open loop); none:
    /// closed loop.
    pub rate: Option<f64>,
    pub seed: u64,
}

/// What one client measured.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    errors: u64,
    first_error: Option<String>,
}

/// What the whole load measured.
#[derive(Debug)]
pub struct Outcome {
    pub requests: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// Latencies of the answered requests, sorted.
    pub latencies: Vec<Duration>,
}

/// Key number `i`, `size` bytes: `key-` and the number, zero-padded.
pub fn key(i: u64, size: usize) -> Bytes {
    let width = size.saturating_sub(4);
    Bytes::from(format!("key-{i:0width$}"))
}

impl Load {
    /// Checks the load can be run as given.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.clients > 0, "--clients must be at least 1");
        let largest = match self.keys {
            Keys::Random { count } => count.saturating_sub(1),
            Keys::Sequence { first, count } => (first + count).saturating_sub(1),
        };
        let digits = largest.to_string().len();
        anyhow::ensure!(
            self.key_size >= 4 + digits,
            "--key-size {} cannot number {} keys: it needs at least {} bytes",
            self.key_size,
            largest + 1,
            4 + digits
        );
        if let Some(rate) = self.rate {
            anyhow::ensure!(rate > 0.0, "--rate must be above 0");
        }
        Ok(())
    }

    /// The key of the `n`th request of client `c`, or none when a sequence
    /// is used up.
    fn key_for(&self, c: usize, n: u64, rng: &mut StdRng) -> Option<Bytes> {
        let i = match self.keys {
            Keys::Random { count } => rng.gen_range(0..count.max(1)),
            Keys::Sequence { first, count } => {
                let i = c as u64 + n * self.clients as u64;
                if i >= count {
                    return None;
                }
                first + i
            }
        };
        Some(key(i, self.key_size))
    }
}

/// Runs `load` against `target`.
pub async fn run(target: Arc<Target>, load: Arc<Load>) -> anyhow::Result<Outcome> {
    let mut conns = Vec::with_capacity(load.clients);
    for c in 0..load.clients {
        let mut conn = target.conn(c);
        // Connects and finds the leader before the clock starts.
        conn.get(key(0, load.key_size)).await?;
        conns.push(conn);
    }
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(c, conn)| {
            let (load, issued) = (load.clone(), issued.clone());
            tokio::spawn(async move { client(c, conn, &load, &issued, started).await })
        })
        .collect();
    let mut all = Tally::default();
    for task in tasks {
        let tally = task.await?;
        all.latencies.extend(tally.latencies);
        all.errors += tally.errors;
        all.first_error = all.first_error.or(tally.first_error);
    }
    let elapsed = started.elapsed();
    all.latencies.sort_unstable();
    Ok(Outcome {
        requests: all.latencies.len() as u64 + all.errors,
        errors: all.errors,
        first_error: all.first_error,
        elapsed,
        latencies: all.latencies,
    })
}

/// One client's requests until the load ends.
async fn client(
    c: usize,
    mut conn: Conn,
    load: &Load,
    issued: &AtomicU64,
    started: Instant,
) -> Tally {
    let mut rng = StdRng::seed_from_u64(load.seed ^ (c as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let value = Bytes::from(vec![b'v'; load.value_size]);
    // Open loop: this client's share of the rate, its first request offset
    // so that the clients' requests interleave.
    let interval = load
        .rate
        .map(|rate| Duration::from_secs_f64(load.clients as f64 / rate));
    let mut tally = Tally::default();
    for n in 0.. {
        let due = match interval {
            Some(every) => started + every.mul_f64(n as f64 + c as f64 / load.clients as f64),
            None => Instant::now(),
        };
        let over = match load.until {
            Until::Elapsed(limit) => due.duration_since(started) >= limit,
            Until::Requests(total) => issued.fetch_add(1, Ordering::Relaxed) >= total,
        };
        let Some(key) = (!over).then(|| load.key_for(c, n, &mut rng)).flatten() else {
            break;
        };
        if due > Instant::now() {
            // (Only when due later: the timer rounds up to a millisecond.)
            tokio::time::sleep_until(due).await;
        }
        let result = match load.mix {
            Mix::Put => conn.put(key, value.clone()).await,
            Mix::Get => conn.get(key).await.map(drop),
            Mix::Mixed { reads } if rng.gen_range(0..100) < reads => conn.get(key).await.map(drop),
            Mix::Mixed { .. } => conn.put(key, value.clone()).await,
            Mix::Scan { limit } => conn.scan(key, limit).await.map(drop),
        };
        match result {
            Ok(()) => tally.latencies.push(due.elapsed()),
            Err(e) => {
                tally.errors += 1;
                tally.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    conn.close().await;
    tally
}

impl Outcome {
    /// The latency below which a fraction `p` of answered requests fell.
    pub fn percentile(&self, p: f64) -> Duration {
        let Some(last) = self.latencies.len().checked_sub(1) else {
            return Duration::ZERO;
        };
        self.latencies[((last as f64) * p).round() as usize]
    }

    /// Answered requests per second.
    pub fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
}
