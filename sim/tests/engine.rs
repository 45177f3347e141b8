//! Crash-consistency of the state machine's engine on the simulated disk:
//! random batches of puts, deletes, shard drops and sessions, committed in
//! batches with periodic checkpoints, with crashes, torn in-place writes,
//! failed writes and syncs, and flipped bits on reads. After every recovery
//! the engine holds exactly the state after some committed batch: never
//! before the last checkpoint, never beyond what was committed. Damage at
//! rest is reported with its key and file, never served.
#![cfg(madsim)]

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shoal::storage::disk::DiskRef;
use shoal::storage::engine::{Batch, Commit, Counts, Engine, EngineError, EngineOptions};
use shoal_sim::disk::{DiskFaults, SimDisk};

const FILE: &str = "engine.redb";
const SHARDS: u32 = 4;
const CACHE_BYTES: usize = 256 * 1024;

/// What the engine holds: data by (shard, key), sessions, and the number
/// of the batch that made it (the state record).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Model {
    data: BTreeMap<(u32, Vec<u8>), Vec<u8>>,
    sessions: BTreeMap<u64, Vec<u8>>,
    batch: u64,
}

impl Model {
    fn counts(&self) -> Counts {
        Counts {
            keys: self.data.len() as u64,
            bytes: self
                .data
                .iter()
                .map(|((_, k), v)| (k.len() + v.len()) as u64)
                .sum(),
        }
    }
}

/// Everything `engine` holds, read back through its public reads.
fn read_all(engine: &Engine) -> Result<(Model, Counts), EngineError> {
    let reader = engine.reader()?;
    let mut model = Model::default();
    for shard in 0..SHARDS {
        for entry in reader.scan(shard, Bound::Unbounded, None)? {
            let (key, value) = entry?;
            let got = reader.get(shard, &key)?;
            assert_eq!(got.as_deref(), Some(value.as_ref()), "get agrees with scan");
            model.data.insert((shard, key.to_vec()), value.to_vec());
        }
    }
    model.sessions = reader.sessions()?.into_iter().collect();
    model.batch = reader.state()?.map_or(0, |b| {
        u64::from_le_bytes(b.try_into().expect("a batch number"))
    });
    Ok((model, reader.counts()?))
}

/// One random batch applied to `model` and to a [`Batch`].
fn random_batch(rng: &mut ChaCha8Rng, model: &mut Model) -> Batch {
    let mut batch = Batch::default();
    for _ in 0..rng.gen_range(1..12) {
        let shard = rng.gen_range(0..SHARDS);
        let key = format!("k{:03}", rng.gen_range(0..60)).into_bytes();
        match rng.gen_range(0..20) {
            0 => {
                batch.drop_shard(shard);
                model.data.retain(|(s, _), _| *s != shard);
            }
            1..=4 => {
                batch.delete(shard, &key);
                model.data.remove(&(shard, key));
            }
            5 => {
                let client = rng.gen_range(0..8);
                if rng.gen_bool(0.3) {
                    batch.session(client, None);
                    model.sessions.remove(&client);
                } else {
                    let encoded = vec![rng.gen(); rng.gen_range(1..40)];
                    batch.session(client, Some(encoded.clone()));
                    model.sessions.insert(client, encoded);
                }
            }
            _ => {
                let value = vec![rng.gen::<u8>(); rng.gen_range(0..700)];
                batch.put(shard, &key, Bytes::from(value.clone()));
                model.data.insert((shard, key), value);
            }
        }
    }
    model.batch += 1;
    batch.state(model.batch.to_le_bytes().to_vec());
    batch
}

/// A recovery that broke the engine's promise.
#[derive(Debug)]
struct Violation(String);

async fn open(disk: &DiskRef) -> Engine {
    // Opening reads pages, and a read may fail (an injected EIO): try again,
    // as a restarted replica would.
    let mut last = None;
    for _ in 0..20 {
        let options = EngineOptions {
            cache_bytes: CACHE_BYTES,
            ..EngineOptions::default()
        };
        match Engine::open(disk, FILE, &options).await {
            Ok(engine) => return engine,
            Err(e) => last = Some(e),
        }
    }
    panic!("the engine does not open: {last:?}");
}

/// Runs one trial of `batches` random batches on a disk with `faults`,
/// checkpointing with `checkpoint` (a broken variant passes `Batched`).
async fn trial(seed: u64, faults: DiskFaults, checkpoint: Commit) -> Result<Exercised, Violation> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let sim = SimDisk::new(seed, faults);
    let disk: DiskRef = Arc::new(sim.clone());
    let mut engine = open(&disk).await;
    // States after each batch, by batch number.
    let mut states = vec![Model::default()];
    let mut checkpointed = 0;
    let mut beyond_checkpoint = 0;
    for _ in 0..120 {
        let mut model = states.last().expect("a state").clone();
        let batch = random_batch(&mut rng, &mut model);
        let is_checkpoint = rng.gen_ratio(1, 5);
        let commit = if is_checkpoint {
            checkpoint
        } else {
            Commit::Batched
        };
        states.push(model);
        let committed = engine.commit(&batch, commit).is_ok();
        if committed && is_checkpoint {
            checkpointed = states.len() - 1;
        }
        if committed && rng.gen_ratio(6, 7) {
            continue;
        }
        // A crash (or the failed commit ends the process, as it does a
        // replica's): the engine reopens at a state it committed.
        sim.crash();
        drop(engine);
        engine = open(&disk).await;
        let (found, counts) = match read_all(&engine) {
            Ok(read) => read,
            Err(e) => return Err(Violation(format!("seed {seed}: reads fail: {e}"))),
        };
        let n = found.batch as usize;
        if n < checkpointed || n >= states.len() {
            return Err(Violation(format!(
                "seed {seed}: recovered batch {n}, checkpoint {checkpointed}, last {}",
                states.len() - 1
            )));
        }
        if found != states[n] || counts != states[n].counts() {
            return Err(Violation(format!("seed {seed}: batch {n} recovered wrong")));
        }
        beyond_checkpoint += u64::from(n > checkpointed);
        states.truncate(n + 1);
        checkpointed = n;
    }
    Ok(Exercised {
        beyond_checkpoint,
        torn_files: sim.stats().torn_files,
        bitflips: sim.stats().bitflips,
    })
}

/// What a trial went through, so the test can show it met the faults.
#[derive(Debug, Default)]
struct Exercised {
    /// Recoveries that landed past the last acknowledged checkpoint (a
    /// checkpoint whose sync failed yet reached the disk).
    beyond_checkpoint: u64,
    torn_files: u64,
    bitflips: u64,
}

#[madsim::test]
async fn recovery_lands_on_a_committed_batch_at_or_after_the_last_checkpoint() {
    // A failed sync ends the process with its writes in flight: that is
    // where torn in-place writes come from.
    let torn = DiskFaults {
        torn_write_rate: 0.5,
        sync_eio_rate: 0.1,
        ..DiskFaults::default()
    };
    let failing = DiskFaults {
        write_eio_rate: 0.002,
        read_bitflip_rate: 0.01,
        ..torn.clone()
    };
    let mut total = Exercised::default();
    for seed in 0..100 {
        for (seed, faults) in [(seed, &torn), (1000 + seed, &failing)] {
            let seen = trial(seed, faults.clone(), Commit::Checkpoint)
                .await
                .unwrap_or_else(|v| panic!("{}", v.0));
            total.beyond_checkpoint += seen.beyond_checkpoint;
            total.torn_files += seen.torn_files;
            total.bitflips += seen.bitflips;
        }
    }
    assert!(
        total.beyond_checkpoint > 0 && total.torn_files > 20 && total.bitflips > 20,
        "the trials met too few faults: {total:?}"
    );
}

#[madsim::test]
async fn the_check_catches_checkpoints_that_are_not_durable() {
    // A broken engine whose checkpoints are ordinary batched commits loses
    // acknowledged checkpoints on a crash; the trial must say so.
    let mut caught = 0;
    for seed in 0..10 {
        if trial(seed, DiskFaults::default(), Commit::Batched)
            .await
            .is_err()
        {
            caught += 1;
        }
    }
    assert!(caught >= 5, "caught on {caught} of 10 seeds");
}

#[madsim::test]
async fn a_flipped_bit_at_rest_is_reported_with_its_key_and_file() {
    let sim = SimDisk::new(7, DiskFaults::default());
    let disk: DiskRef = Arc::new(sim.clone());
    let engine = open(&disk).await;
    let needle = b"the-needle-value-that-appears-once".to_vec();
    let mut batch = Batch::default();
    batch.put(2, b"other", Bytes::from_static(b"fine"));
    batch.put(2, b"needle", Bytes::from(needle.clone()));
    engine.commit(&batch, Commit::Checkpoint).unwrap();
    sim.crash();
    drop(engine);
    let bytes = disk.read(FILE).await.unwrap();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .expect("the value is in the file");
    sim.corrupt(FILE, at + 5, 3);
    let engine = open(&disk).await;
    let reader = engine.reader().unwrap();
    assert_eq!(
        reader.get(2, b"other").unwrap().as_deref(),
        Some(&b"fine"[..])
    );
    let error = reader.get(2, b"needle").unwrap_err().to_string();
    assert!(
        error.contains("engine.redb") && error.contains("\"needle\" (shard 2)"),
        "{error}"
    );
    let scanned: Vec<_> = reader.scan(2, Bound::Unbounded, None).unwrap().collect();
    assert!(scanned
        .iter()
        .any(|e| matches!(e, Err(EngineError::Damaged { .. }))));
}

#[madsim::test]
async fn dropping_a_shard_leaves_the_others_and_the_counts_right() {
    let disk: DiskRef = Arc::new(SimDisk::new(3, DiskFaults::default()));
    let engine = open(&disk).await;
    let mut batch = Batch::default();
    for shard in 0..SHARDS {
        for i in 0..50 {
            batch.put(
                shard,
                format!("key{i:02}").as_bytes(),
                Bytes::from(vec![1; 10]),
            );
        }
    }
    engine.commit(&batch, Commit::Batched).unwrap();
    let mut drop = Batch::default();
    drop.drop_shard(1);
    drop.put(1, b"after", Bytes::from_static(b"x"));
    engine.commit(&drop, Commit::Checkpoint).unwrap();
    let reader = engine.reader().unwrap();
    let shard_one: Vec<_> = reader
        .scan(1, Bound::Unbounded, None)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        shard_one,
        [(Bytes::from_static(b"after"), Bytes::from_static(b"x"))]
    );
    assert_eq!(
        reader
            .scan(2, Bound::Included(b"key10"), Some(b"key13"))
            .unwrap()
            .count(),
        3
    );
    assert_eq!(
        reader.counts().unwrap(),
        Counts {
            keys: 151,
            bytes: 150 * 15 + 6
        }
    );
}
