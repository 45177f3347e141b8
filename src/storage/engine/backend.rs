//! The engine's file, reached through the disk seam: redb asks for bytes at
//! offsets, the seam's [`RandomFile`] answers, so the simulator's faults and
//! crash semantics reach every page the engine reads and writes.

use std::io;
use std::sync::Arc;

use redb::StorageBackend;

use super::EngineIo;
use crate::storage::disk::{read_at_agreed, RandomFile};

/// A [`RandomFile`] as redb's storage.
#[derive(Debug)]
pub(super) struct DiskBackend {
    file: Arc<dyn RandomFile>,
    io: EngineIo,
}

impl DiskBackend {
    pub(super) fn new(file: Arc<dyn RandomFile>, io: EngineIo) -> DiskBackend {
        DiskBackend { file, io }
    }
}

impl StorageBackend for DiskBackend {
    fn len(&self) -> Result<u64, io::Error> {
        self.file.len()
    }

    /// Reads a range until two reads agree ([`read_at_agreed`]): the
    /// engine trusts a page it reads. Damage at rest reads the same every
    /// time and is caught by the per-value checksums above.
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.io.read_bytes.inc_by(out.len() as u64);
        read_at_agreed(self.file.as_ref(), offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.file.set_len(len)
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        self.file.sync()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.io.written_bytes.inc_by(data.len() as u64);
        self.file.write_at(offset, data)
    }
}
