//! The register workload: clients read, write, compare-and-swap and delete a
//! small set of hot keys, so that operations overlap and race. Every
//! operation is recorded with its call and return times for the
//! linearizability checker.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shoal::client::CasOutcome;

use super::Worker;
use crate::cluster::Cluster;
use crate::history::{KeyedOp, RegisterOp, LIVENESS_CLIENT};
use crate::scenario::Mix;

/// The hot key numbered `i` (names sort as numbers up to 1,000).
pub fn key(i: u32) -> Bytes {
    Bytes::from(format!("reg-{i:03}"))
}

/// Runs one client of the register workload: operations on hot keys drawn
/// uniformly; a scan reads every hot key at once.
pub async fn run_client(worker: Worker) {
    let keys = worker.spec.keys;
    let space = KeySpace {
        name: key,
        draw: Box::new(move |rng| rng.gen_range(0..keys)),
        scan: Box::new(move |_| (0, keys)),
        value_size: 0,
    };
    run_ops(worker, space).await;
}

/// After everything, reads each of the `keys` hot keys once more, so that
/// the final state is checked for linearizability too.
pub(super) async fn read_hot_keys(
    cluster: &Cluster,
    keys: u32,
    t0: tokio::time::Instant,
) -> Vec<KeyedOp> {
    cluster
        .observe(move |mut client| async move {
            let mut ops = Vec::new();
            for k in 0..keys {
                let key = key(k);
                let call = t0.elapsed();
                if let Ok(value) = client.get(key.clone()).await {
                    ops.push(KeyedOp {
                        client: LIVENESS_CLIENT,
                        key,
                        op: RegisterOp::Read(Some(value)),
                        call,
                        ret: Some(t0.elapsed()),
                    });
                }
            }
            ops
        })
        .await
}

/// The keys a register-style client works on.
pub(super) struct KeySpace {
    /// Key number `i`; names sort as their numbers do.
    pub name: fn(u32) -> Bytes,
    /// Draws the key of the next operation.
    pub draw: Box<dyn FnMut(&mut ChaCha8Rng) -> u32 + Send>,
    /// Draws the keys of the next scan: from, and how many.
    pub scan: Box<dyn FnMut(&mut ChaCha8Rng) -> (u32, u32) + Send>,
    /// Bytes each written value is padded to.
    pub value_size: usize,
}

/// Runs one client: operations drawn from the workload's mix on keys drawn
/// from `space`, each recorded for the linearizability checker, until
/// `ops_per_client` or `duration_ms` runs out. A scan is recorded as one
/// read per key in its range, each over the scan's interval (a key it did
/// not return read as absent): true of any scan that is linearizable per
/// shard.
pub(super) async fn run_ops(mut worker: Worker, mut space: KeySpace) {
    let mut rng = ChaCha8Rng::seed_from_u64(worker.seed);
    let mix = worker.spec.mix.clone().unwrap_or_default();
    let value_size = space.value_size;
    // The last value this client saw per key: a CAS from it often succeeds.
    let mut last_seen: BTreeMap<u32, Bytes> = BTreeMap::new();
    let mut n = 0;
    while worker.keep_going(n) {
        let k = (space.draw)(&mut rng);
        let key = (space.name)(k);
        let fresh = value(worker.index, n, value_size);
        n += 1;
        let call = worker.now();
        let (op, ok) = match mix.pick(&mut rng) {
            Choice::Get => match worker.client.get(key.clone()).await {
                Ok(value) => {
                    remember(&mut last_seen, k, value.clone());
                    (RegisterOp::Read(Some(value)), true)
                }
                // A read that got no answer tells nothing: leave it out.
                Err(_) => {
                    worker.progress.finish(false);
                    continue;
                }
            },
            Choice::Scan => {
                let (from, count) = (space.scan)(&mut rng);
                scan(&mut worker, space.name, (from, count), call, &mut last_seen).await;
                continue;
            }
            Choice::Put => {
                let ok = worker.client.put(key.clone(), fresh.clone()).await.is_ok();
                (RegisterOp::Write(Some(fresh)), ok)
            }
            Choice::Delete => {
                let existed = worker.client.delete(key.clone()).await.ok();
                (RegisterOp::Delete { existed }, existed.is_some())
            }
            Choice::Cas => cas(&mut worker, (k, key.clone()), fresh, &mut last_seen).await,
        };
        let ret = ok.then(|| worker.now());
        worker.progress.finish(ok);
        worker.record(KeyedOp {
            client: worker.index,
            key,
            op,
            call,
            ret,
        });
    }
}

/// Scans `count` keys (named by `name`) from key number `from`, called at
/// `call`, and records one read per key, a key the scan did not return read
/// as absent.
async fn scan(
    worker: &mut Worker,
    name: fn(u32) -> Bytes,
    (from, count): (u32, u32),
    call: Duration,
    last_seen: &mut BTreeMap<u32, Bytes>,
) {
    let (start, end) = (name(from), name(from + count));
    let result = worker.client.scan(start.clone(), end.clone(), count).await;
    worker.progress.finish(result.is_ok());
    let Ok(entries) = result else { return };
    if let Some(what) = scan_breach(&entries, &start, &end, count) {
        worker.breach(call, what);
    }
    let ret = worker.now();
    let found: BTreeMap<Bytes, Bytes> = entries.into_iter().collect();
    for i in from..from + count {
        let key = name(i);
        let value = found.get(&key).cloned();
        remember(last_seen, i, value.clone());
        worker.record(KeyedOp {
            client: worker.index,
            key,
            op: RegisterOp::Read(Some(value)),
            call,
            ret: Some(ret),
        });
    }
}

/// What a scan's answer breaks of its contract, if anything: every key in
/// `[start, end)`, in increasing order (so no key twice), at most `limit`.
pub fn scan_breach(
    entries: &[(Bytes, Bytes)],
    start: &[u8],
    end: &[u8],
    limit: u32,
) -> Option<String> {
    if entries.len() > limit as usize {
        return Some(format!(
            "scan returned {} keys past its limit of {limit}",
            entries.len()
        ));
    }
    if let Some((key, _)) = entries
        .iter()
        .find(|(k, _)| &k[..] < start || (!end.is_empty() && &k[..] >= end))
    {
        let show = String::from_utf8_lossy;
        return Some(format!(
            "scan of [{}, {}) returned {}",
            show(start),
            show(end),
            show(key)
        ));
    }
    let unordered = entries.windows(2).find(|pair| pair[0].0 >= pair[1].0);
    unordered.map(|pair| {
        format!(
            "scan returned {} before {}",
            String::from_utf8_lossy(&pair[0].0),
            String::from_utf8_lossy(&pair[1].0)
        )
    })
}

/// Compare-and-swaps key number `k` from the value last seen there to
/// `fresh`: the operation to record, and whether it was answered.
async fn cas(
    worker: &mut Worker,
    (k, key): (u32, Bytes),
    fresh: Bytes,
    last_seen: &mut BTreeMap<u32, Bytes>,
) -> (RegisterOp, bool) {
    let expected = last_seen.get(&k).cloned();
    match worker
        .client
        .compare_and_swap(key, expected.clone(), Some(fresh.clone()))
        .await
    {
        Ok(CasOutcome { swapped, current }) => {
            remember(
                last_seen,
                k,
                if swapped {
                    Some(fresh.clone())
                } else {
                    current.clone()
                },
            );
            let op = RegisterOp::Cas {
                expected,
                new: Some(fresh),
                swapped: Some(swapped),
                current: Some(current),
            };
            (op, true)
        }
        Err(_) => {
            let op = RegisterOp::Cas {
                expected,
                new: Some(fresh),
                swapped: None,
                current: None,
            };
            (op, false)
        }
    }
}

fn remember(last_seen: &mut BTreeMap<u32, Bytes>, k: u32, value: Option<Bytes>) {
    match value {
        Some(value) => last_seen.insert(k, value),
        None => last_seen.remove(&k),
    };
}

/// A value unique in the run (client and operation number), padded to
/// `size` bytes.
fn value(client: u32, n: u32, size: usize) -> Bytes {
    let mut value = format!("c{client}-{n}").into_bytes();
    if value.len() < size {
        value.resize(size, b'.');
    }
    Bytes::from(value)
}

/// An operation kind drawn from a [`Mix`].
enum Choice {
    Get,
    Put,
    Cas,
    Delete,
    Scan,
}

impl Mix {
    fn pick(&self, rng: &mut ChaCha8Rng) -> Choice {
        let total = self.get + self.put + self.cas + self.delete + self.scan;
        let mut draw = rng.gen_range(0..total.max(1));
        for (weight, choice) in [
            (self.get, Choice::Get),
            (self.put, Choice::Put),
            (self.cas, Choice::Cas),
            (self.delete, Choice::Delete),
            (self.scan, Choice::Scan),
        ] {
            if draw < weight {
                return choice;
            }
            draw -= weight;
        }
        Choice::Get
    }
}
