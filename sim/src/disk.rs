//! The simulated disk: one per replica, held by the harness outside the
//! simulated node so that it survives kills and restarts.
//!
//! It keeps, for every file, the bytes a reader sees (`live`) and the bytes
//! that would survive a crash (`durable`), and likewise for the names in
//! directories and for directories themselves (durable once their parent
//! directory is synced).
//! [`SimDisk::crash`] turns live into durable, dropping unsynced writes or
//! tearing them at a sector boundary. Seeded faults (rates set by the
//! scenario) make operations fail, reads return flipped bits, the disk fill up
//! or I/O take time. All randomness comes from one generator seeded from the
//! simulation seed, drawn in a deterministic order.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use shoal::storage::disk::{Disk, DiskFuture, RandomFile, SECTOR_SIZE_BYTES};

mod in_place;

use in_place::SimFile;

/// Fault rates of a simulated disk. Rates are probabilities per operation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskFaults {
    /// On a crash, the chance that a file's unsynced appends survive torn
    /// (a random sector-aligned prefix) rather than vanish.
    #[serde(default)]
    pub torn_write_rate: f64,
    /// Chance that a read returns one flipped bit.
    #[serde(default)]
    pub read_bitflip_rate: f64,
    /// Chance that a write (append, create, truncate, rename) fails with EIO.
    #[serde(default)]
    pub write_eio_rate: f64,
    /// Chance that a sync fails with EIO.
    #[serde(default)]
    pub sync_eio_rate: f64,
    /// Chance that a read fails with EIO.
    #[serde(default)]
    pub read_eio_rate: f64,
    /// Capacity in bytes; appends past it fail with ENOSPC.
    #[serde(default)]
    pub capacity_bytes: Option<u64>,
    /// Upper bound of each operation's simulated latency.
    #[serde(default)]
    pub latency_ms_max: u64,
}

impl DiskFaults {
    /// Its probabilities, each with its key in a scenario file.
    pub fn rates_mut(&mut self) -> [(&'static str, &mut f64); 5] {
        [
            ("faults.disk.torn_write_rate", &mut self.torn_write_rate),
            ("faults.disk.read_bitflip_rate", &mut self.read_bitflip_rate),
            ("faults.disk.write_eio_rate", &mut self.write_eio_rate),
            ("faults.disk.sync_eio_rate", &mut self.sync_eio_rate),
            ("faults.disk.read_eio_rate", &mut self.read_eio_rate),
        ]
    }
}

#[derive(Debug, Default, Clone)]
struct Inode {
    live: Vec<u8>,
    durable: Vec<u8>,
    /// `live` and `durable` agree up to here, so a sync copies only what
    /// follows (a log's sync costs its new bytes, not the whole file).
    same_until: usize,
    /// Sectors written in place since the last sync: any of them may or may
    /// not survive a crash.
    dirty: BTreeSet<usize>,
}

impl Inode {
    fn sync(&mut self) {
        if self.dirty.is_empty() {
            self.durable.truncate(self.same_until);
            self.durable
                .extend_from_slice(&self.live[self.same_until..]);
        } else {
            self.durable.clone_from(&self.live);
            self.dirty.clear();
        }
        self.same_until = self.live.len();
    }

    /// What survives a crash of an inode written in place: the synced
    /// contents, with each sector written since surviving with chance
    /// `torn_rate`. Returns it and whether any new sector survived.
    fn crash_in_place(&self, rng: &mut ChaCha8Rng, torn_rate: f64) -> (Vec<u8>, bool) {
        let mut survivor = self.durable.clone();
        let mut any = false;
        for &sector in &self.dirty {
            if !rng.gen_bool(torn_rate) {
                continue;
            }
            let start = sector * SECTOR_SIZE_BYTES;
            let end = (start + SECTOR_SIZE_BYTES).min(self.live.len());
            if start >= end {
                continue;
            }
            if survivor.len() < end {
                survivor.resize(end, 0);
            }
            survivor[start..end].copy_from_slice(&self.live[start..end]);
            any = true;
        }
        (survivor, any)
    }
}

#[derive(Debug)]
struct DiskState {
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
    /// Path → inode, as a reader sees it.
    live_names: BTreeMap<String, u64>,
    /// Path → inode, as it would survive a crash.
    durable_names: BTreeMap<String, u64>,
    /// Directories as a reader sees them, and as they would survive a crash
    /// (a directory's entry is durable once its parent is synced).
    live_dirs: BTreeSet<String>,
    durable_dirs: BTreeSet<String>,
    rng: ChaCha8Rng,
    faults: DiskFaults,
    faults_on: bool,
    stats: DiskStats,
    /// Crashes so far: a file opened before the last one belongs to a dead
    /// process, and nothing it does reaches the disk.
    generation: u64,
}

impl DiskState {
    /// Decides whether an operation fails with an injected error.
    fn fail(&mut self, eio_rate: fn(&DiskFaults) -> f64, what: &str) -> io::Result<()> {
        let rate = if self.faults_on {
            eio_rate(&self.faults)
        } else {
            0.0
        };
        if rate > 0.0 && self.rng.gen_bool(rate) {
            self.stats.errors += 1;
            return Err(io::Error::other(format!("{what}: EIO (simulated)")));
        }
        Ok(())
    }

    /// Refuses growing the live contents by `more` bytes past the capacity.
    fn reserve(&mut self, more: u64, what: &str) -> io::Result<()> {
        let capacity = if self.faults_on {
            self.faults.capacity_bytes
        } else {
            None
        };
        if let Some(capacity) = capacity {
            if SimDisk::used_bytes(self) + more > capacity {
                self.stats.errors += 1;
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    format!("{what}: no space left on device (simulated)"),
                ));
            }
        }
        Ok(())
    }

    /// Flips one bit of `bytes` with the scenario's read bit-flip rate.
    fn maybe_flip(&mut self, bytes: &mut [u8]) {
        let rate = if self.faults_on {
            self.faults.read_bitflip_rate
        } else {
            0.0
        };
        if !bytes.is_empty() && rate > 0.0 && self.rng.gen_bool(rate) {
            let at = self.rng.gen_range(0..bytes.len());
            bytes[at] ^= 1 << self.rng.gen_range(0..8);
            self.stats.bitflips += 1;
        }
    }
}

/// What a simulated disk has seen, for reports and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DiskStats {
    /// Crashes applied.
    pub crashes: u64,
    /// Files whose unsynced appends survived torn.
    pub torn_files: u64,
    /// Bits flipped in reads.
    pub bitflips: u64,
    /// Operations failed with an injected error.
    pub errors: u64,
}

/// A simulated disk. Clones share it.
#[derive(Debug, Clone)]
pub struct SimDisk {
    state: Arc<Mutex<DiskState>>,
}

fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

fn not_found(path: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{path}: no such file"))
}

impl SimDisk {
    /// An empty disk whose faults draw from a generator seeded with `seed`.
    pub fn new(seed: u64, faults: DiskFaults) -> SimDisk {
        SimDisk {
            state: Arc::new(Mutex::new(DiskState {
                inodes: BTreeMap::new(),
                next_inode: 1,
                live_names: BTreeMap::new(),
                durable_names: BTreeMap::new(),
                live_dirs: BTreeSet::from([String::new()]),
                durable_dirs: BTreeSet::from([String::new()]),
                rng: ChaCha8Rng::seed_from_u64(seed),
                faults,
                faults_on: true,
                stats: DiskStats::default(),
                generation: 0,
            })),
        }
    }

    fn state(&self) -> MutexGuard<'_, DiskState> {
        self.state.lock().expect("sim disk lock")
    }

    /// Switches injected faults on or off (crash semantics always apply).
    pub fn set_faults(&self, on: bool) {
        self.state().faults_on = on;
    }

    /// How many files `dir` holds now (live, synced or not).
    pub fn file_count(&self, dir: &str) -> usize {
        let state = self.state();
        state
            .live_names
            .keys()
            .filter(|path| split(path).0 == dir)
            .count()
    }

    /// What this disk has seen.
    pub fn stats(&self) -> DiskStats {
        self.state().stats.clone()
    }

    /// Applies a crash: names and contents fall back to what was synced,
    /// except that a file's unsynced appends may survive torn.
    pub fn crash(&self) {
        let mut state = self.state();
        let state = &mut *state;
        state.stats.crashes += 1;
        state.generation += 1;
        let torn_rate = if state.faults_on {
            state.faults.torn_write_rate
        } else {
            0.0
        };
        for inode in state.inodes.values_mut() {
            if !inode.dirty.is_empty() {
                let (survivor, torn) = inode.crash_in_place(&mut state.rng, torn_rate);
                state.stats.torn_files += u64::from(torn);
                // What reached the platter is now simply the file.
                inode.dirty.clear();
                inode.same_until = survivor.len();
                inode.durable.clone_from(&survivor);
                inode.live = survivor;
                continue;
            }
            let appended =
                inode.live.len() > inode.durable.len() && inode.live.starts_with(&inode.durable);
            let mut survivor = inode.durable.clone();
            if appended && state.rng.gen_bool(torn_rate) {
                let unsynced = &inode.live[inode.durable.len()..];
                // A torn write keeps whole sectors, counted from the start of
                // the file, of what was in flight.
                let start = inode.durable.len();
                let end = start + state.rng.gen_range(0..=unsynced.len());
                let end = (end / SECTOR_SIZE_BYTES * SECTOR_SIZE_BYTES).max(start);
                survivor.extend_from_slice(&inode.live[start..end]);
                state.stats.torn_files += u64::from(end > start);
            }
            // What reached the platter is now the file: a second crash with
            // nothing written since changes nothing.
            inode.same_until = survivor.len();
            inode.durable.clone_from(&survivor);
            inode.live = survivor;
        }
        // Names in a directory that did not survive go with it.
        state.live_dirs = state.durable_dirs.clone();
        let dirs = &state.live_dirs;
        state
            .durable_names
            .retain(|path, _| dirs.contains(split(path).0));
        state.live_names = state.durable_names.clone();
        let referenced: BTreeSet<u64> = state.durable_names.values().copied().collect();
        state.inodes.retain(|id, _| referenced.contains(id));
    }

    /// Flips one bit of a file's durable and live contents: damage at rest.
    pub fn corrupt(&self, path: &str, offset: usize, bit: u8) {
        let mut state = self.state();
        let id = state.live_names[path];
        let inode = state.inodes.get_mut(&id).expect("inode of a named file");
        inode.live[offset] ^= 1 << bit;
        if offset < inode.durable.len() {
            inode.durable[offset] ^= 1 << bit;
        } else {
            inode.same_until = inode.same_until.min(offset);
        }
    }

    /// Total size of live file contents.
    fn used_bytes(state: &DiskState) -> u64 {
        state.inodes.values().map(|i| i.live.len() as u64).sum()
    }

    /// Waits a random latency, then decides whether the operation fails.
    async fn begin(&self, eio_rate: fn(&DiskFaults) -> f64, what: &str) -> io::Result<()> {
        let latency = {
            let mut state = self.state();
            let max = if state.faults_on {
                state.faults.latency_ms_max
            } else {
                0
            };
            (max > 0).then(|| Duration::from_micros(state.rng.gen_range(0..=max * 1000)))
        };
        if let Some(latency) = latency {
            tokio::time::sleep(latency).await;
        }
        self.state().fail(eio_rate, what)
    }

    fn with_inode<T>(
        &self,
        path: &str,
        f: impl FnOnce(&mut DiskState, u64) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut state = self.state();
        let id = *state.live_names.get(path).ok_or_else(|| not_found(path))?;
        f(&mut state, id)
    }
}

impl Disk for SimDisk {
    fn create_dir(&self, dir: &str) -> DiskFuture<'_, ()> {
        let dir = dir.to_string();
        Box::pin(async move {
            let mut state = self.state();
            let mut prefix = String::new();
            for part in dir.split('/') {
                if !prefix.is_empty() {
                    prefix.push('/');
                }
                prefix.push_str(part);
                state.live_dirs.insert(prefix.clone());
            }
            Ok(())
        })
    }

    fn create(&self, path: &str) -> DiskFuture<'_, ()> {
        let path = path.to_string();
        Box::pin(async move {
            self.begin(|f| f.write_eio_rate, &path).await?;
            let mut state = self.state();
            if !state.live_dirs.contains(split(&path).0) {
                return Err(not_found(split(&path).0));
            }
            // Like O_CREAT | O_TRUNC: an existing file is emptied in place.
            if let Some(id) = state.live_names.get(&path).copied() {
                let inode = state.inodes.get_mut(&id).expect("inode");
                inode.live.clear();
                inode.same_until = 0;
                inode.dirty.clear();
                return Ok(());
            }
            let id = state.next_inode;
            state.next_inode += 1;
            state.inodes.insert(id, Inode::default());
            state.live_names.insert(path, id);
            Ok(())
        })
    }

    fn append<'a>(&'a self, path: &'a str, data: &'a [u8]) -> DiskFuture<'a, ()> {
        Box::pin(async move {
            self.begin(|f| f.write_eio_rate, path).await?;
            self.with_inode(path, |state, id| {
                state.reserve(data.len() as u64, path)?;
                state
                    .inodes
                    .get_mut(&id)
                    .expect("inode")
                    .live
                    .extend_from_slice(data);
                Ok(())
            })
        })
    }

    fn read(&self, path: &str) -> DiskFuture<'_, Vec<u8>> {
        let path = path.to_string();
        Box::pin(async move {
            self.begin(|f| f.read_eio_rate, &path).await?;
            self.with_inode(&path, |state, id| {
                let mut bytes = state.inodes[&id].live.clone();
                state.maybe_flip(&mut bytes);
                Ok(bytes)
            })
        })
    }

    fn truncate(&self, path: &str, len: u64) -> DiskFuture<'_, ()> {
        let path = path.to_string();
        Box::pin(async move {
            self.begin(|f| f.write_eio_rate, &path).await?;
            self.with_inode(&path, |state, id| {
                let inode = state.inodes.get_mut(&id).expect("inode");
                inode.live.truncate(len as usize);
                inode.same_until = inode.same_until.min(inode.live.len());
                Ok(())
            })
        })
    }

    fn sync(&self, path: &str) -> DiskFuture<'_, ()> {
        let path = path.to_string();
        Box::pin(async move {
            self.begin(|f| f.sync_eio_rate, &path).await?;
            self.with_inode(&path, |state, id| {
                state.inodes.get_mut(&id).expect("inode").sync();
                Ok(())
            })
        })
    }

    fn rename<'a>(&'a self, from: &'a str, to: &'a str) -> DiskFuture<'a, ()> {
        Box::pin(async move {
            self.begin(|f| f.write_eio_rate, from).await?;
            let mut state = self.state();
            let id = state
                .live_names
                .remove(from)
                .ok_or_else(|| not_found(from))?;
            state.live_names.insert(to.to_string(), id);
            Ok(())
        })
    }

    fn remove(&self, path: &str) -> DiskFuture<'_, ()> {
        let path = path.to_string();
        Box::pin(async move {
            self.begin(|f| f.write_eio_rate, &path).await?;
            self.state().live_names.remove(&path);
            Ok(())
        })
    }

    fn list(&self, dir: &str) -> DiskFuture<'_, Vec<String>> {
        let dir = dir.to_string();
        Box::pin(async move {
            let state = self.state();
            Ok(state
                .live_names
                .keys()
                .filter(|path| split(path).0 == dir)
                .map(|path| split(path).1.to_string())
                .collect())
        })
    }

    fn sync_dir(&self, dir: &str) -> DiskFuture<'_, ()> {
        let dir = dir.to_string();
        Box::pin(async move {
            self.begin(|f| f.sync_eio_rate, &dir).await?;
            let mut state = self.state();
            let state = &mut *state;
            state.durable_names.retain(|path, _| split(path).0 != dir);
            for (path, id) in &state.live_names {
                if split(path).0 == dir {
                    state.durable_names.insert(path.clone(), *id);
                }
            }
            let children = state
                .live_dirs
                .iter()
                .filter(|d| !d.is_empty() && split(d).0 == dir);
            state
                .durable_dirs
                .extend(children.cloned().collect::<Vec<_>>());
            Ok(())
        })
    }

    fn pause(&self) -> DiskFuture<'_, ()> {
        Box::pin(self.begin(|_| 0.0, "pause"))
    }

    fn open_random(&self, path: &str) -> DiskFuture<'_, Arc<dyn RandomFile>> {
        let path = path.to_string();
        Box::pin(async move {
            if self.state().live_names.get(&path).is_none() {
                self.create(&path).await?;
            }
            let (id, generation) =
                self.with_inode(&path, |state, id| Ok((id, state.generation)))?;
            let file = SimFile {
                disk: self.clone(),
                id,
                generation,
                path,
            };
            Ok(Arc::new(file) as Arc<dyn RandomFile>)
        })
    }
}
