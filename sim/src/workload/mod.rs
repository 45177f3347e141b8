//! Client workloads, each client driven by a generator seeded from the
//! simulation seed.

pub mod list_append;
pub mod register;
pub mod write_once;

use std::sync::atomic::{AtomicU32, Ordering};

/// How far the clients have got, for the nemesis to time its faults by.
#[derive(Debug, Default)]
pub struct Progress {
    /// Operations acknowledged.
    pub acked: AtomicU32,
    /// Operations finished, acknowledged or not.
    pub finished: AtomicU32,
}

impl Progress {
    /// Counts one finished operation.
    pub fn finish(&self, acked: bool) {
        if acked {
            self.acked.fetch_add(1, Ordering::Relaxed);
        }
        self.finished.fetch_add(1, Ordering::Relaxed);
    }
}
