//! Reads of the engine: a [`Reader`] is a consistent view at one commit,
//! and a [`Scan`] one shard's range read as it goes.

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use redb::{ReadOnlyTable, ReadableTable};

use super::{
    bound_ref, decode_counts, describe_key, shard_bounds, stored_key, unseal, Counts, EngineError,
    META_COUNTS, META_STATE,
};
use crate::ids::ShardId;
use crate::machine::data::{DataFault, DataSource, Entries};

/// A consistent view of the engine at one commit.
pub struct Reader {
    pub(super) data: Option<ReadOnlyTable<&'static [u8], &'static [u8]>>,
    pub(super) sessions: Option<ReadOnlyTable<u64, &'static [u8]>>,
    pub(super) meta: Option<ReadOnlyTable<&'static str, &'static [u8]>>,
    pub(super) file: Arc<str>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").field("file", &self.file).finish()
    }
}

impl Reader {
    fn failed(&self, e: impl Into<redb::Error>) -> EngineError {
        EngineError::Engine {
            file: self.file.to_string(),
            source: Box::new(e.into()),
        }
    }

    fn damaged(&self, what: String) -> EngineError {
        EngineError::Damaged {
            file: self.file.to_string(),
            what,
        }
    }

    /// The value of `key` in `shard`.
    pub fn get(&self, shard: ShardId, key: &[u8]) -> Result<Option<Bytes>, EngineError> {
        let Some(data) = &self.data else {
            return Ok(None);
        };
        let stored_key = stored_key(shard, key);
        let Some(stored) = data
            .get(stored_key.as_slice())
            .map_err(|e| self.failed(e))?
        else {
            return Ok(None);
        };
        match unseal(&stored_key, stored.value()) {
            Some(value) => Ok(Some(Bytes::copy_from_slice(value))),
            None => Err(self.damaged(describe_key(shard, key))),
        }
    }

    /// The keys of `shard` from `start` up to `end` (excluded; `None`: to
    /// the shard's end), in order, read as the iterator advances.
    pub fn scan(
        &self,
        shard: ShardId,
        start: Bound<&[u8]>,
        end: Option<&[u8]>,
    ) -> Result<Scan, EngineError> {
        let Some(data) = &self.data else {
            return Ok(Scan {
                range: None,
                file: self.file.clone(),
            });
        };
        let lower = match start {
            Bound::Included(key) => Bound::Included(stored_key(shard, key)),
            Bound::Excluded(key) => Bound::Excluded(stored_key(shard, key)),
            Bound::Unbounded => shard_bounds(shard).0,
        };
        let upper = match end {
            Some(end) => Bound::Excluded(stored_key(shard, end)),
            None => shard_bounds(shard).1,
        };
        let range = data
            .range::<&[u8]>((bound_ref(&lower), bound_ref(&upper)))
            .map_err(|e| self.failed(e))?;
        Ok(Scan {
            range: Some(range),
            file: self.file.clone(),
        })
    }

    /// Every shard holding a key, in order: one short read per shard.
    pub fn shards(&self) -> Result<Vec<ShardId>, EngineError> {
        let Some(data) = &self.data else {
            return Ok(Vec::new());
        };
        let mut shards = Vec::new();
        let mut from: Vec<u8> = Vec::new();
        loop {
            let first = data
                .range::<&[u8]>(from.as_slice()..)
                .map_err(|e| self.failed(e))?
                .next();
            let Some(entry) = first else {
                return Ok(shards);
            };
            let (key, _) = entry.map_err(|e| self.failed(e))?;
            let shard = u32::from_be_bytes(key.value()[..4].try_into().expect("a shard"));
            shards.push(shard);
            match shard.checked_add(1) {
                Some(next) => from = next.to_be_bytes().to_vec(),
                None => return Ok(shards),
            }
        }
    }

    /// The caller's state record, if one was ever committed.
    pub fn state(&self) -> Result<Option<Vec<u8>>, EngineError> {
        self.meta_record(META_STATE)
    }

    /// Keys and bytes held.
    pub fn counts(&self) -> Result<Counts, EngineError> {
        Ok(self
            .meta_record(META_COUNTS)?
            .map_or(Counts::default(), |b| decode_counts(&b)))
    }

    /// Every stored session, by client id.
    pub fn sessions(&self) -> Result<Vec<(u64, Vec<u8>)>, EngineError> {
        let Some(sessions) = &self.sessions else {
            return Ok(Vec::new());
        };
        let mut all = Vec::new();
        for entry in sessions.iter().map_err(|e| self.failed(e))? {
            let (client, stored) = entry.map_err(|e| self.failed(e))?;
            let client = client.value();
            let encoded = unseal(&client.to_be_bytes(), stored.value())
                .ok_or_else(|| self.damaged(format!("the session of client {client}")))?;
            all.push((client, encoded.to_vec()));
        }
        Ok(all)
    }

    pub(super) fn meta_record(&self, name: &str) -> Result<Option<Vec<u8>>, EngineError> {
        let Some(meta) = &self.meta else {
            return Ok(None);
        };
        let Some(stored) = meta.get(name).map_err(|e| self.failed(e))? else {
            return Ok(None);
        };
        unseal(name.as_bytes(), stored.value())
            .map(|b| Some(b.to_vec()))
            .ok_or_else(|| self.damaged(format!("the {name} record")))
    }
}

impl DataSource for Reader {
    fn get(&self, shard: ShardId, key: &[u8]) -> Result<Option<Bytes>, DataFault> {
        Reader::get(self, shard, key).map_err(fault)
    }

    fn range<'a>(
        &'a self,
        shard: ShardId,
        start: Bound<&[u8]>,
        end: Option<&[u8]>,
    ) -> Result<Entries<'a>, DataFault> {
        let scan = self.scan(shard, start, end).map_err(fault)?;
        Ok(Box::new(scan.map(|e| e.map_err(fault))))
    }

    fn shards(&self) -> Result<Vec<ShardId>, DataFault> {
        Reader::shards(self).map_err(fault)
    }

    fn counts(&self) -> Result<(u64, u64), DataFault> {
        let counts = Reader::counts(self).map_err(fault)?;
        Ok((counts.keys, counts.bytes))
    }
}

fn fault(e: EngineError) -> DataFault {
    DataFault(e.to_string())
}

/// Keys and values of one shard's range, read from the engine as it goes.
pub struct Scan {
    range: Option<redb::Range<'static, &'static [u8], &'static [u8]>>,
    file: Arc<str>,
}

impl Iterator for Scan {
    type Item = Result<(Bytes, Bytes), EngineError>;

    fn next(&mut self) -> Option<Self::Item> {
        let entry = self.range.as_mut()?.next()?;
        let file = self.file.to_string();
        Some(match entry {
            Err(e) => Err(EngineError::Engine {
                file,
                source: Box::new(e.into()),
            }),
            Ok((key, stored)) => {
                let key = key.value();
                match unseal(key, stored.value()) {
                    Some(value) => Ok((
                        Bytes::copy_from_slice(&key[4..]),
                        Bytes::copy_from_slice(value),
                    )),
                    None => {
                        let shard = u32::from_be_bytes(key[..4].try_into().expect("a shard"));
                        Err(EngineError::Damaged {
                            file,
                            what: describe_key(shard, &key[4..]),
                        })
                    }
                }
            }
        })
    }
}
