//! What happened in a run, in the order it happened: client operations with
//! their simulated start and end times, and fault events. The history is the
//! checkers' input and, hashed, the run's digest.

use std::time::Duration;

use bytes::Bytes;

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The group acknowledged it.
    Ok,
    /// The client gave up; the write may or may not have been applied.
    Failed(String),
}

/// The client number of writes made in the liveness phase, after every fault
/// is over.
pub const LIVENESS_CLIENT: u32 = u32::MAX;

/// The client number of the nemesis's calls to the shard controller.
pub const NEMESIS_CLIENT: u32 = u32::MAX - 1;

/// How reports name a client: its number, "live" for the liveness phase's,
/// "nemesis" for the nemesis.
pub fn client_name(client: u32) -> String {
    match client {
        LIVENESS_CLIENT => "live".to_string(),
        NEMESIS_CLIENT => "nemesis".to_string(),
        client => client.to_string(),
    }
}

/// One client write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOp {
    /// Which client (0-based; [`LIVENESS_CLIENT`] for the liveness phase).
    pub client: u32,
    /// The key written.
    pub key: Bytes,
    /// The value written.
    pub value: Bytes,
    /// Simulated time the call started, since the run began.
    pub start: Duration,
    /// Simulated time the call returned.
    pub end: Duration,
    /// How it ended.
    pub outcome: Outcome,
}

/// A register operation and, if the client heard back, its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOp {
    /// A read that returned `Some(value)` (or saw no value: `None`).
    Read(Option<Option<Bytes>>),
    /// A write of a value (`None`: a delete whose answer is not known).
    /// The answer carries nothing.
    Write(Option<Bytes>),
    /// A delete. The answer: whether the key existed, if the client heard
    /// back.
    Delete {
        /// Whether the key existed.
        existed: Option<bool>,
    },
    /// Compare-and-swap: if the register holds `expected`, set it to `new`.
    /// The answer: whether it swapped, and the value the register held.
    Cas {
        /// The value the register must hold (`None`: absent).
        expected: Option<Bytes>,
        /// The value to set (`None`: delete).
        new: Option<Bytes>,
        /// Whether it swapped, if the client heard back.
        swapped: Option<bool>,
        /// The value the register held, if the client heard back (and the
        /// history records it: `None` leaves it unchecked).
        current: Option<Option<Bytes>>,
    },
}

/// One operation on one key, as a client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedOp {
    /// The client that issued it.
    pub client: u32,
    /// The key.
    pub key: Bytes,
    /// The operation and its answer.
    pub op: RegisterOp,
    /// When the client called it.
    pub call: Duration,
    /// When the answer arrived; `None` if the client gave up (indeterminate).
    pub ret: Option<Duration>,
}

/// One list-append append as its client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Append {
    /// The list.
    pub key: Bytes,
    /// The element, unique in the run.
    pub element: String,
    /// When the append began.
    pub start: Duration,
    /// When it was acknowledged; `None` if the client gave up.
    pub end: Option<Duration>,
}

/// The elements of a list-append list (absent: empty).
pub fn list_elements(list: &Option<Bytes>) -> Vec<String> {
    match list {
        None => Vec::new(),
        Some(bytes) => String::from_utf8_lossy(bytes)
            .split(',')
            .filter(|e| !e.is_empty())
            .map(str::to_string)
            .collect(),
    }
}

/// Something the nemesis did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultEvent {
    /// Simulated time, since the run began.
    pub at: Duration,
    /// What happened, e.g. "kill replica 2".
    pub what: String,
}

/// Everything recorded in one run.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Write-once writes in completion order.
    pub writes: Vec<WriteOp>,
    /// Register operations in completion order.
    pub ops: Vec<KeyedOp>,
    /// Faults in the order they were injected.
    pub faults: Vec<FaultEvent>,
    /// Answers that broke the API's contract whatever the order of events
    /// (a scan returning a key outside its range, say), in completion order.
    pub breaches: Vec<Breach>,
}

/// An answer that broke the API's contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breach {
    /// The client that got it.
    pub client: u32,
    /// Simulated time of the call.
    pub call: Duration,
    /// What was wrong.
    pub what: String,
}

/// 64-bit FNV-1a over length-prefixed fields: a small, stable hash for
/// digests (not for security).
#[derive(Debug, Clone, Copy)]
pub struct Digest(u64);

impl Default for Digest {
    fn default() -> Self {
        Digest(0xcbf2_9ce4_8422_2325)
    }
}

impl Digest {
    /// Mixes `bytes` in, length-prefixed so that field boundaries count.
    pub fn add(&mut self, bytes: &[u8]) {
        for byte in (bytes.len() as u64).to_le_bytes().iter().chain(bytes) {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// The digest so far.
    pub fn value(&self) -> u64 {
        self.0
    }
}

impl History {
    /// Records an answer that broke the API's contract, to `client`'s call
    /// at `call`.
    pub fn breach(&mut self, client: u32, call: Duration, what: String) {
        self.breaches.push(Breach { client, call, what });
    }

    /// A digest of the whole history: equal digests mean the same operations
    /// with the same outcomes at the same simulated times.
    pub fn digest(&self) -> u64 {
        let mut digest = Digest::default();
        for op in &self.writes {
            digest.add(&op.client.to_le_bytes());
            digest.add(&op.key);
            digest.add(&op.value);
            digest.add(&op.start.as_nanos().to_le_bytes());
            digest.add(&op.end.as_nanos().to_le_bytes());
            match &op.outcome {
                Outcome::Ok => digest.add(b"ok"),
                Outcome::Failed(why) => digest.add(why.as_bytes()),
            }
        }
        for op in &self.ops {
            digest.add(describe(op).as_bytes());
        }
        for fault in &self.faults {
            digest.add(&fault.at.as_nanos().to_le_bytes());
            digest.add(fault.what.as_bytes());
        }
        digest.value()
    }
}

fn value(v: &Option<Bytes>) -> String {
    match v {
        None => "∅".to_string(),
        Some(v) if v.len() <= 16 => format!("{:?}", String::from_utf8_lossy(v)),
        Some(v) => format!("<{} bytes>", v.len()),
    }
}

/// One line per operation: client, interval, operation, answer.
pub fn describe(op: &KeyedOp) -> String {
    let interval = match op.ret {
        Some(ret) => format!("[{:?} .. {:?}]", op.call, ret),
        None => format!("[{:?} .. gave up]", op.call),
    };
    let what = match &op.op {
        RegisterOp::Read(Some(seen)) => format!("read -> {}", value(seen)),
        RegisterOp::Read(None) => "read -> ?".to_string(),
        RegisterOp::Write(v) => format!("write {}", value(v)),
        RegisterOp::Delete { existed } => format!(
            "delete : {}",
            existed.map_or("?", |e| if e { "existed" } else { "absent" })
        ),
        RegisterOp::Cas {
            expected,
            new,
            swapped,
            current,
        } => format!(
            "cas {} -> {} : {}{}",
            value(expected),
            value(new),
            swapped.map_or("?".to_string(), |s| s.to_string()),
            current
                .as_ref()
                .map_or(String::new(), |c| format!(", held {}", value(c)))
        ),
    };
    format!("client {:>4} {interval:<32} {what}", client_name(op.client))
}

/// Builders of small register histories, for the checkers' and exporters'
/// unit tests.
#[cfg(test)]
pub(crate) mod build {
    use std::time::Duration;

    use bytes::Bytes;

    use super::{KeyedOp, RegisterOp};

    /// `op` by `client` on key `k`, called and returned (if it did) at these
    /// milliseconds.
    pub fn op(client: u32, call_ms: u64, ret_ms: Option<u64>, op: RegisterOp) -> KeyedOp {
        KeyedOp {
            client,
            key: Bytes::from("k"),
            op,
            call: Duration::from_millis(call_ms),
            ret: ret_ms.map(Duration::from_millis),
        }
    }

    /// A write of `v`.
    pub fn w(v: &'static str) -> RegisterOp {
        RegisterOp::Write(Some(Bytes::from(v)))
    }

    /// A read that saw `v` (`None`: absent).
    pub fn r(v: Option<&'static str>) -> RegisterOp {
        RegisterOp::Read(Some(v.map(Bytes::from)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FNV-1a of the 8-byte little-endian length 5 followed by "shoal",
    /// computed independently of this code.
    const PINNED_SHOAL: u64 = 0x6964_e490_0c28_3959;

    #[test]
    fn digest_is_stable_and_sees_field_boundaries() {
        let mut a = Digest::default();
        a.add(b"ab");
        a.add(b"c");
        let mut b = Digest::default();
        b.add(b"a");
        b.add(b"bc");
        assert_ne!(a.value(), b.value());
        assert_eq!(Digest::default().value(), 0xcbf2_9ce4_8422_2325);
        // Pinned: a change here changes every recorded digest.
        let mut pinned = Digest::default();
        pinned.add(b"shoal");
        assert_eq!(pinned.value(), PINNED_SHOAL);
    }
}
