//! A group's keys and values as the state machine sees them: what storage
//! holds (a [`DataSource`], read as needed, never loaded whole) with the
//! changes of the entries being applied on top ([`Changes`]), until storage
//! takes them and commits them.
//!
//! Keys live in shards (a standalone group's all in shard 0), and every read
//! of a shard's keys is a read of its range only. Iteration is in key order
//! within a shard and in shard order across them: the same on every replica.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fmt::Debug;
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

use super::shard::shard_of;
use crate::ids::ShardId;

/// A read of stored data that failed: the disk failed, or a stored value is
/// damaged. The replica must stop serving rather than answer from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DataFault(pub String);

/// One shard's entries in key order, read as the iterator advances.
pub type Entries<'a> = Box<dyn Iterator<Item = Result<(Bytes, Bytes), DataFault>> + 'a>;

/// Stored data at one moment: later commits do not change what it reads.
pub trait DataSource: Debug + Send + Sync {
    /// The value of `key` in `shard`.
    fn get(&self, shard: ShardId, key: &[u8]) -> Result<Option<Bytes>, DataFault>;

    /// The entries of `shard` from `start` (`Excluded`: after it) up to
    /// `end` (excluded; `None`: the shard's end).
    fn range<'a>(
        &'a self,
        shard: ShardId,
        start: Bound<&[u8]>,
        end: Option<&[u8]>,
    ) -> Result<Entries<'a>, DataFault>;

    /// Every shard that holds a key, in order.
    fn shards(&self) -> Result<Vec<ShardId>, DataFault>;

    /// Keys held, and bytes of their keys and values.
    fn counts(&self) -> Result<(u64, u64), DataFault>;
}

/// A source that holds nothing: a new group's, and tests'.
#[derive(Debug, Default)]
pub struct Empty;

impl DataSource for Empty {
    fn get(&self, _: ShardId, _: &[u8]) -> Result<Option<Bytes>, DataFault> {
        Ok(None)
    }

    fn range<'a>(
        &'a self,
        _: ShardId,
        _: Bound<&[u8]>,
        _: Option<&[u8]>,
    ) -> Result<Entries<'a>, DataFault> {
        Ok(Box::new(std::iter::empty()))
    }

    fn shards(&self) -> Result<Vec<ShardId>, DataFault> {
        Ok(Vec::new())
    }

    fn counts(&self) -> Result<(u64, u64), DataFault> {
        Ok((0, 0))
    }
}

/// Changes not yet in the source: whole shards dropped, then keys written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Shards whose stored keys are gone (written keys after the drop stay).
    pub dropped: BTreeSet<ShardId>,
    /// `(shard, key)` → new value (`None`: deleted).
    pub writes: BTreeMap<(ShardId, Bytes), Option<Bytes>>,
}

impl Changes {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.dropped.is_empty() && self.writes.is_empty()
    }
}

/// The data: a source with changes on top.
#[derive(Debug, Clone)]
pub struct Data {
    base: Arc<dyn DataSource>,
    /// Shards keys are spread over (1: every key in shard 0).
    shard_count: u32,
    changes: Changes,
    /// The first failed read met while applying: the entries applied since
    /// may have read wrong, so they must not be committed.
    fault: Option<DataFault>,
    /// The entries' [`digest`], kept up to date if tracked (the simulator
    /// compares replicas by it); `None` if not tracked, or lost to a
    /// failed read.
    digest: Option<u64>,
}

/// One entry's part of a state's digest: two CRC32Cs of its shard, key
/// length, key and value, with different seeds.
pub fn entry_digest(shard: ShardId, key: &[u8], value: &[u8]) -> u64 {
    let part = |seed: u32| {
        let crc = crc32c::crc32c_append(seed, &shard.to_be_bytes());
        let crc = crc32c::crc32c_append(crc, &(key.len() as u32).to_le_bytes());
        crc32c::crc32c_append(crc32c::crc32c_append(crc, key), value)
    };
    (u64::from(part(0)) << 32) | u64::from(part(0x5ea1_5ea1))
}

/// A digest of a set of entries that does not depend on their order: the
/// wrapping sum of their [`entry_digest`]s, so one write moves it by the
/// old and new entry's parts alone.
pub fn digest<'a>(entries: impl IntoIterator<Item = (ShardId, &'a [u8], &'a [u8])>) -> u64 {
    entries
        .into_iter()
        .fold(0u64, |d, (s, k, v)| d.wrapping_add(entry_digest(s, k, v)))
}

impl Default for Data {
    fn default() -> Self {
        Data::new(Arc::new(Empty), 1)
    }
}

impl Data {
    /// `base` with no changes, its keys spread over `shard_count` shards.
    pub fn new(base: Arc<dyn DataSource>, shard_count: u32) -> Data {
        Data {
            base,
            shard_count: shard_count.max(1),
            changes: Changes::default(),
            fault: None,
            digest: None,
        }
    }

    /// The shard of `key`.
    pub fn shard(&self, key: &[u8]) -> ShardId {
        shard_of(key, self.shard_count)
    }

    /// Reads `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Bytes>, DataFault> {
        let shard = self.shard(key);
        if let Some(change) = self
            .changes
            .writes
            .get(&(shard, Bytes::copy_from_slice(key)))
        {
            return Ok(change.clone());
        }
        if self.changes.dropped.contains(&shard) {
            return Ok(None);
        }
        self.base.get(shard, key)
    }

    /// Reads `key` while applying: a failed read counts as absent and is
    /// kept, to be reported before anything is committed.
    pub fn read_for_apply(&mut self, key: &[u8]) -> Option<Bytes> {
        match self.get(key) {
            Ok(value) => value,
            Err(fault) => {
                self.fault.get_or_insert(fault);
                None
            }
        }
    }

    /// Sets `key` to `value`.
    pub fn insert(&mut self, key: Bytes, value: Bytes) {
        let shard = self.shard(&key);
        if self.digest.is_some() {
            let old = self.get(&key);
            self.track(shard, &key, old, Some(&value));
        }
        self.changes.writes.insert((shard, key), Some(value));
    }

    /// Deletes `key`; whether it existed.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        let old = self.read_for_apply(key);
        let shard = self.shard(key);
        if self.digest.is_some() {
            self.track(shard, key, Ok(old.clone()), None);
        }
        self.changes
            .writes
            .insert((shard, Bytes::copy_from_slice(key)), None);
        old.is_some()
    }

    /// Deletes every key of `shard`.
    pub fn drop_shard(&mut self, shard: ShardId) {
        if self.digest.is_some() {
            let gone: Result<u64, DataFault> =
                self.range(shard, Bound::Unbounded, None)
                    .and_then(|mut entries| {
                        entries.try_fold(0u64, |d, e| {
                            e.map(|(k, v)| d.wrapping_add(entry_digest(shard, &k, &v)))
                        })
                    });
            self.digest = match gone {
                Ok(gone) => self.digest.map(|d| d.wrapping_sub(gone)),
                Err(_) => None,
            };
        }
        self.changes.writes.retain(|(s, _), _| *s != shard);
        self.changes.dropped.insert(shard);
    }

    /// Moves the digest from `key`'s `old` value to its `new` one (a failed
    /// read of the old value loses the digest, never the write).
    fn track(
        &mut self,
        shard: ShardId,
        key: &[u8],
        old: Result<Option<Bytes>, DataFault>,
        new: Option<&Bytes>,
    ) {
        let Some(digest) = self.digest else {
            return;
        };
        self.digest = old.ok().map(|old| {
            let part = |v: &Bytes| entry_digest(shard, key, v);
            digest
                .wrapping_sub(old.as_ref().map_or(0, part))
                .wrapping_add(new.map_or(0, part))
        });
    }

    /// Starts keeping the entries' digest, from a read of them all.
    pub fn track_digest(&mut self) -> Result<(), DataFault> {
        let entries = self.entries()?;
        self.digest = Some(digest(
            entries.iter().map(|(s, k, v)| (*s, k.as_ref(), v.as_ref())),
        ));
        Ok(())
    }

    /// The entries' digest, if tracked.
    pub fn digest(&self) -> Option<u64> {
        self.digest
    }

    /// The entries of `shard` from `start` up to `end` (excluded; `None`:
    /// the shard's end), in key order, with the changes applied.
    pub fn range<'a>(
        &'a self,
        shard: ShardId,
        start: Bound<&[u8]>,
        end: Option<&'a [u8]>,
    ) -> Result<Entries<'a>, DataFault> {
        let stored: Entries<'a> = if self.changes.dropped.contains(&shard) {
            Box::new(std::iter::empty())
        } else {
            self.base.range(shard, start, end)?
        };
        let lower = match start {
            Bound::Included(k) => Bound::Included((shard, Bytes::copy_from_slice(k))),
            Bound::Excluded(k) => Bound::Excluded((shard, Bytes::copy_from_slice(k))),
            Bound::Unbounded => Bound::Included((shard, Bytes::new())),
        };
        let changed: Vec<(Bytes, Option<Bytes>)> = self
            .changes
            .writes
            .range((lower, Bound::Unbounded))
            .take_while(|((s, k), _)| *s == shard && end.is_none_or(|e| k.as_ref() < e))
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect();
        if changed.is_empty() {
            return Ok(stored);
        }
        Ok(Box::new(Overlay {
            stored: stored.peekable(),
            changed: changed.into_iter().peekable(),
        }))
    }

    /// Every shard holding a key, with the changes applied (a shard whose
    /// keys were all deleted may still be listed).
    pub fn shards(&self) -> Result<Vec<ShardId>, DataFault> {
        let mut shards: BTreeSet<ShardId> = self
            .base
            .shards()?
            .into_iter()
            .filter(|s| !self.changes.dropped.contains(s))
            .collect();
        shards.extend(self.changes.writes.keys().map(|(s, _)| *s));
        Ok(shards.into_iter().collect())
    }

    /// All entries of `shards` in `[start, end)` in key order (merged across
    /// shards), at most `limit`: reads about `limit` entries per shard at
    /// most, never the whole range.
    pub fn scan(
        &self,
        shards: &[ShardId],
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, DataFault> {
        let mut iters = Vec::with_capacity(shards.len());
        let mut heads = BinaryHeap::new();
        for (i, shard) in shards.iter().enumerate() {
            let mut entries = self.range(*shard, Bound::Included(start), end)?;
            if let Some(first) = entries.next() {
                let (k, v) = first?;
                heads.push(Reverse((k, i, v)));
            }
            iters.push(entries);
        }
        let mut found = Vec::new();
        while found.len() < limit {
            let Some(Reverse((k, i, v))) = heads.pop() else {
                break;
            };
            found.push((k, v));
            if let Some(next) = iters[i].next() {
                let (k, v) = next?;
                heads.push(Reverse((k, i, v)));
            }
        }
        Ok(found)
    }

    /// Keys held and bytes of keys and values, as stored (the changes not
    /// yet committed are not counted).
    pub fn counts(&self) -> Result<(u64, u64), DataFault> {
        self.base.counts()
    }

    /// The counts, if no change is waiting to be committed (then they are
    /// exact).
    pub fn committed_counts(&self) -> Option<Result<(u64, u64), DataFault>> {
        self.changes.is_empty().then(|| self.base.counts())
    }

    /// Takes the changes for storage to commit, and the fault met applying
    /// them, if any (then they must not be committed).
    pub fn take_changes(&mut self) -> Result<Changes, DataFault> {
        let changes = std::mem::take(&mut self.changes);
        match self.fault.take() {
            Some(fault) => Err(fault),
            None => Ok(changes),
        }
    }

    /// Reads from `base` from now on; the changes must have been committed
    /// into it.
    pub fn set_base(&mut self, base: Arc<dyn DataSource>) {
        debug_assert!(self.changes.is_empty(), "changes not yet committed");
        self.base = base;
    }

    /// Every entry, shard by shard in key order (for checks and tests).
    pub fn entries(&self) -> Result<Vec<(ShardId, Bytes, Bytes)>, DataFault> {
        let mut all = Vec::new();
        for shard in self.shards()? {
            for entry in self.range(shard, Bound::Unbounded, None)? {
                let (k, v) = entry?;
                all.push((shard, k, v));
            }
        }
        Ok(all)
    }
}

impl PartialEq for Data {
    /// Same entries (a failed read compares unequal).
    fn eq(&self, other: &Data) -> bool {
        matches!((self.entries(), other.entries()), (Ok(a), Ok(b)) if a == b)
    }
}

impl Eq for Data {}

/// Stored entries with changes on top, both in key order.
struct Overlay<'a> {
    stored: std::iter::Peekable<Entries<'a>>,
    changed: std::iter::Peekable<std::vec::IntoIter<(Bytes, Option<Bytes>)>>,
}

impl Iterator for Overlay<'_> {
    type Item = Result<(Bytes, Bytes), DataFault>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let stored_key = match self.stored.peek() {
                Some(Err(_)) => return self.stored.next(),
                Some(Ok((k, _))) => Some(k.clone()),
                None => None,
            };
            let changed_key = self.changed.peek().map(|(k, _)| k.clone());
            let take_changed = match (&stored_key, &changed_key) {
                (None, None) => return None,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some(s), Some(c)) => {
                    if s == c {
                        self.stored.next();
                    }
                    c <= s
                }
            };
            if !take_changed {
                return self.stored.next();
            }
            let (k, v) = self.changed.next().expect("peeked");
            if let Some(v) = v {
                return Some(Ok((k, v)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source holding fixed entries.
    #[derive(Debug)]
    struct Fixed(BTreeMap<(ShardId, Bytes), Bytes>);

    impl DataSource for Fixed {
        fn get(&self, shard: ShardId, key: &[u8]) -> Result<Option<Bytes>, DataFault> {
            Ok(self.0.get(&(shard, Bytes::copy_from_slice(key))).cloned())
        }
        fn range<'a>(
            &'a self,
            shard: ShardId,
            start: Bound<&[u8]>,
            end: Option<&[u8]>,
        ) -> Result<Entries<'a>, DataFault> {
            let end = end.map(Bytes::copy_from_slice);
            let start = start.map(Bytes::copy_from_slice);
            Ok(Box::new(
                self.0
                    .iter()
                    .filter(move |((s, k), _)| {
                        let after = match &start {
                            Bound::Included(b) => k >= b,
                            Bound::Excluded(b) => k > b,
                            Bound::Unbounded => true,
                        };
                        *s == shard && after && end.as_ref().is_none_or(|e| k < e)
                    })
                    .map(|((_, k), v)| Ok((k.clone(), v.clone()))),
            ))
        }
        fn shards(&self) -> Result<Vec<ShardId>, DataFault> {
            let shards: BTreeSet<ShardId> = self.0.keys().map(|(s, _)| *s).collect();
            Ok(shards.into_iter().collect())
        }
        fn counts(&self) -> Result<(u64, u64), DataFault> {
            Ok((self.0.len() as u64, 0))
        }
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    /// The digest kept as keys change is the digest of what the data then
    /// holds, whatever the order of the changes; a different value, a key
    /// more or a key less moves it.
    #[test]
    fn the_kept_digest_is_the_digest_of_the_entries() {
        let full = |data: &Data| {
            let entries = data.entries().unwrap();
            digest(entries.iter().map(|(s, k, v)| (*s, k.as_ref(), v.as_ref())))
        };
        let stored = ["a", "c", "e", "g", "i"]
            .map(|k| ((shard_of(k.as_bytes(), 2), b(k)), b("old")))
            .into();
        let mut data = Data::new(Arc::new(Fixed(stored)), 2);
        assert_eq!(data.digest(), None, "not kept until asked");
        data.track_digest().unwrap();
        let start = data.digest().unwrap();
        assert_eq!(start, full(&data));
        data.insert(b("b"), b("new"));
        data.insert(b("c"), b("new"));
        assert!(data.remove(b"a"));
        assert!(!data.remove(b"z"));
        assert_eq!(data.digest(), Some(full(&data)));
        assert_ne!(data.digest(), Some(start));
        let before_drop = data.digest();
        data.drop_shard(shard_of(b"e", 2));
        assert_eq!(data.digest(), Some(full(&data)));
        assert_ne!(data.digest(), before_drop);
        // The same entries reached another way have the same digest.
        let mut other = Data::new(Arc::new(Empty), 2);
        other.track_digest().unwrap();
        for (_, k, v) in data.entries().unwrap().into_iter().rev() {
            other.insert(k, v);
        }
        assert_eq!(other.digest(), data.digest());
        other.insert(b("b"), b("newer"));
        assert_ne!(other.digest(), data.digest());
    }

    #[test]
    fn changes_overlay_the_source_in_key_order() {
        let stored = ["a", "c", "e", "g"].map(|k| ((0, b(k)), b("old"))).into();
        let mut data = Data::new(Arc::new(Fixed(stored)), 1);
        data.insert(b("b"), b("new"));
        data.insert(b("c"), b("new"));
        assert!(data.remove(b"e"));
        assert!(!data.remove(b"z"));
        let seen: Vec<(Bytes, Bytes)> = data
            .range(0, Bound::Unbounded, None)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            seen,
            [("a", "old"), ("b", "new"), ("c", "new"), ("g", "old")].map(|(k, v)| (b(k), b(v)))
        );
        let from_c: Vec<Bytes> = data
            .range(0, Bound::Excluded(b"b"), Some(b"g"))
            .unwrap()
            .map(|e| e.unwrap().0)
            .collect();
        assert_eq!(from_c, [b("c")]);
        assert_eq!(data.get(b"e").unwrap(), None);
        assert_eq!(data.get(b"g").unwrap(), Some(b("old")));
    }

    #[test]
    fn a_dropped_shard_reads_empty_but_keeps_later_writes() {
        let stored: BTreeMap<_, _> = (0..20)
            .map(|i| format!("k{i}"))
            .map(|k| ((shard_of(k.as_bytes(), 4), b(&k)), b("v")))
            .collect();
        let mut data = Data::new(Arc::new(Fixed(stored)), 4);
        let doomed = data.shard(b"k1");
        data.drop_shard(doomed);
        assert_eq!(data.get(b"k1").unwrap(), None);
        data.insert(b("k1"), b("back"));
        let left: Vec<(Bytes, Bytes)> = data
            .range(doomed, Bound::Unbounded, None)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(left, [(b("k1"), b("back"))]);
        let changes = data.take_changes().unwrap();
        assert_eq!(changes.dropped, [doomed].into());
        assert_eq!(changes.writes.len(), 1);
    }

    #[test]
    fn a_scan_merges_shards_in_key_order_up_to_the_limit() {
        let stored: BTreeMap<_, _> = (0..30)
            .map(|i| format!("k{i:02}"))
            .map(|k| ((shard_of(k.as_bytes(), 3), b(&k)), b("v")))
            .collect();
        let data = Data::new(Arc::new(Fixed(stored)), 3);
        let found = data.scan(&[0, 1, 2], b"k05", Some(b"k20"), 10).unwrap();
        let keys: Vec<String> = found
            .iter()
            .map(|(k, _)| String::from_utf8(k.to_vec()).unwrap())
            .collect();
        let expected: Vec<String> = (5..15).map(|i| format!("k{i:02}")).collect();
        assert_eq!(keys, expected);
        let one = data.scan(&[1], b"", None, 100).unwrap();
        assert!(one.iter().all(|(k, _)| shard_of(k, 3) == 1));
    }
}
