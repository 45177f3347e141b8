//! Record framing for append-only files, and the scan that tells a torn tail
//! (normal after a crash) from corruption (never normal).
//!
//! A frame is a 16-byte header and a payload:
//!
//! ```text
//! len: u32 LE | crc: u32 LE | lsn: u64 LE | payload (len bytes)
//! ```
//!
//! `crc` is CRC32C over `len`, `lsn` and the payload, so no header field can be
//! damaged unseen. `lsn` numbers records consecutively across a whole log, so
//! a stale or misplaced record is caught too.
//!
//! How a scan classifies what follows the last good record:
//! - nothing: the file is clean;
//! - bytes in which no valid record with a later number starts anywhere: a
//!   torn tail, the unsynced end of the file cut short by a crash;
//! - bytes in which such a record *does* start: corruption, since a crash only
//!   damages the end of a file, never the middle.

use std::ops::Range;

/// Size of a frame header.
pub const HEADER_SIZE_BYTES: usize = 16;

/// Largest payload a frame may carry (64 MiB), so that a damaged length can
/// never ask for an absurd read.
pub const PAYLOAD_SIZE_MAX: usize = 64 * 1024 * 1024;

/// Appends one framed record to `out`.
pub fn encode(lsn: u64, payload: &[u8], out: &mut Vec<u8>) {
    assert!(
        payload.len() <= PAYLOAD_SIZE_MAX,
        "record of {} bytes",
        payload.len()
    );
    let len = (payload.len() as u32).to_le_bytes();
    let lsn_bytes = lsn.to_le_bytes();
    let crc = crc32c::crc32c_append(
        crc32c::crc32c_append(crc32c::crc32c(&len), &lsn_bytes),
        payload,
    );
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&lsn_bytes);
    out.extend_from_slice(payload);
}

/// The valid record starting at `at`, if one does: its number and payload range.
fn record_at(bytes: &[u8], at: usize) -> Option<(u64, Range<usize>)> {
    let header = bytes.get(at..at.checked_add(HEADER_SIZE_BYTES)?)?;
    let len = u32::from_le_bytes(header[0..4].try_into().unwrap()) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().unwrap());
    let lsn = u64::from_le_bytes(header[8..16].try_into().unwrap());
    if len > PAYLOAD_SIZE_MAX {
        return None;
    }
    let payload = at + HEADER_SIZE_BYTES..at + HEADER_SIZE_BYTES + len;
    let body = bytes.get(payload.clone())?;
    let actual = crc32c::crc32c_append(
        crc32c::crc32c_append(crc32c::crc32c(&header[0..4]), &header[8..16]),
        body,
    );
    (actual == crc).then_some((lsn, payload))
}

/// What follows the last good record of a scanned file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// The file ends right after its last good record.
    Clean,
    /// A crash cut the file short at this offset; what follows is garbage.
    Torn {
        /// Where the garbage starts (the length to truncate to).
        at: usize,
    },
    /// The record at this offset is damaged yet later records are intact.
    Corrupt {
        /// Where the damaged record starts.
        at: usize,
    },
}

/// The result of scanning a file of frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Good records, in order: number and payload range.
    pub records: Vec<(u64, Range<usize>)>,
    /// Where the good records end.
    pub end: usize,
    /// What follows them.
    pub tail: Tail,
}

/// Scans `bytes`, whose first record must be number `first_lsn`.
pub fn scan(bytes: &[u8], first_lsn: u64) -> Scan {
    let mut records = Vec::new();
    let mut at = 0;
    let mut next_lsn = first_lsn;
    while let Some((lsn, payload)) = record_at(bytes, at) {
        if lsn != next_lsn {
            break;
        }
        at = payload.end;
        records.push((lsn, payload));
        next_lsn += 1;
    }
    let end = at;
    let tail = if end == bytes.len() {
        Tail::Clean
    } else if (end + 1..bytes.len())
        .any(|i| record_at(bytes, i).is_some_and(|(lsn, _)| lsn >= next_lsn))
        || record_at(bytes, end).is_some()
    {
        // A valid record with a wrong number where the next one belongs is
        // corruption too (a stale or misplaced record).
        Tail::Corrupt { at: end }
    } else {
        Tail::Torn { at: end }
    };
    Scan { records, end, tail }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(payloads: &[&[u8]], first_lsn: u64) -> (Vec<u8>, Vec<usize>) {
        let mut bytes = Vec::new();
        let mut starts = Vec::new();
        for (i, payload) in payloads.iter().enumerate() {
            starts.push(bytes.len());
            encode(first_lsn + i as u64, payload, &mut bytes);
        }
        (bytes, starts)
    }

    fn payloads<'a>(bytes: &'a [u8], scan: &Scan) -> Vec<&'a [u8]> {
        scan.records
            .iter()
            .map(|(_, r)| &bytes[r.clone()])
            .collect()
    }

    #[test]
    fn clean_file_round_trips() {
        let (bytes, _) = log(&[b"one", b"", b"three"], 7);
        let scan = scan(&bytes, 7);
        assert_eq!(scan.tail, Tail::Clean);
        assert_eq!(payloads(&bytes, &scan), vec![&b"one"[..], b"", b"three"]);
        assert_eq!(
            scan.records.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
            vec![7, 8, 9]
        );
    }

    #[test]
    fn every_cut_of_the_last_record_is_a_torn_tail() {
        let (bytes, starts) = log(&[b"alpha", b"beta", b"gamma-gamma"], 1);
        let last = starts[2];
        for cut in last + 1..bytes.len() {
            let scan = scan(&bytes[..cut], 1);
            assert_eq!(scan.tail, Tail::Torn { at: last }, "cut at {cut}");
            assert_eq!(scan.records.len(), 2);
        }
        // Garbage written past the end (a torn sector of zeros) is torn too.
        let mut zeros = bytes.clone();
        zeros.extend_from_slice(&[0; 512]);
        assert_eq!(scan(&zeros, 1).tail, Tail::Torn { at: bytes.len() });
    }

    #[test]
    fn a_flipped_bit_anywhere_but_the_last_record_is_corruption() {
        let (bytes, starts) = log(&[b"alpha", b"beta", b"gamma"], 1);
        for byte in 0..starts[2] {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[byte] ^= 1 << bit;
                let scan = scan(&damaged, 1);
                let record = if byte < starts[1] { 0 } else { 1 };
                assert_eq!(
                    scan.tail,
                    Tail::Corrupt { at: starts[record] },
                    "byte {byte} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn a_record_with_the_wrong_number_is_corruption() {
        let (bytes, _) = log(&[b"alpha", b"beta"], 1);
        assert_eq!(scan(&bytes, 2).tail, Tail::Corrupt { at: 0 });
        let mut skipped = Vec::new();
        encode(1, b"a", &mut skipped);
        encode(3, b"c", &mut skipped);
        assert_eq!(
            scan(&skipped, 1).tail,
            Tail::Corrupt {
                at: HEADER_SIZE_BYTES + 1
            }
        );
    }
}
