//! A simulated file written in place: what the state machine's engine
//! drives. Its calls are synchronous and take no simulated time; faults
//! (EIO, flipped bits on reads, a full disk) and crash semantics (sectors
//! written since the last sync may or may not survive) apply as to any file.

use std::io;

use shoal::storage::disk::{RandomFile, SECTOR_SIZE_BYTES};

use super::{not_found, DiskState, SimDisk};

/// A simulated file written in place. Its calls take no simulated time
/// (they are synchronous); faults and crash semantics apply as to any file.
#[derive(Debug)]
pub(super) struct SimFile {
    pub(super) disk: SimDisk,
    pub(super) id: u64,
    /// The disk's generation when opened.
    pub(super) generation: u64,
    pub(super) path: String,
}

impl SimFile {
    fn with<T>(&self, f: impl FnOnce(&mut DiskState, u64) -> io::Result<T>) -> io::Result<T> {
        let mut state = self.disk.state();
        if state.generation != self.generation {
            return Err(io::Error::other(format!(
                "{}: opened before a crash (simulated)",
                self.path
            )));
        }
        if !state.inodes.contains_key(&self.id) {
            return Err(not_found(&self.path));
        }
        f(&mut state, self.id)
    }
}

impl RandomFile for SimFile {
    fn len(&self) -> io::Result<u64> {
        self.with(|state, id| Ok(state.inodes[&id].live.len() as u64))
    }

    fn read_at(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.with(|state, id| {
            state.fail(|f| f.read_eio_rate, &self.path)?;
            let live = &state.inodes[&id].live;
            let start = offset as usize;
            let Some(bytes) = live.get(start..start + out.len()) else {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{}: read past the end", self.path),
                ));
            };
            out.copy_from_slice(bytes);
            state.maybe_flip(out);
            Ok(())
        })
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.with(|state, id| {
            state.fail(|f| f.write_eio_rate, &self.path)?;
            let start = offset as usize;
            let end = start + data.len();
            let grows = end.saturating_sub(state.inodes[&id].live.len());
            state.reserve(grows as u64, &self.path)?;
            let inode = state.inodes.get_mut(&id).expect("inode");
            if inode.live.len() < end {
                inode.live.resize(end, 0);
            }
            inode.live[start..end].copy_from_slice(data);
            let sectors = start / SECTOR_SIZE_BYTES..end.div_ceil(SECTOR_SIZE_BYTES);
            inode.dirty.extend(sectors);
            Ok(())
        })
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with(|state, id| {
            state.fail(|f| f.write_eio_rate, &self.path)?;
            let grows = (len as usize).saturating_sub(state.inodes[&id].live.len());
            state.reserve(grows as u64, &self.path)?;
            let inode = state.inodes.get_mut(&id).expect("inode");
            inode.live.resize(len as usize, 0);
            inode.same_until = inode.same_until.min(inode.live.len());
            // A length change is durable only with a sync, like a write.
            inode.dirty.insert(inode.live.len() / SECTOR_SIZE_BYTES);
            Ok(())
        })
    }

    fn sync(&self) -> io::Result<()> {
        self.with(|state, id| {
            state.fail(|f| f.sync_eio_rate, &self.path)?;
            state.inodes.get_mut(&id).expect("inode").sync();
            Ok(())
        })
    }
}
