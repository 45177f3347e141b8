//! Record framing for append-only files, and the scan that tells a torn tail
//! (normal after a crash) from corruption (never normal).
//!
//! A frame is a 24-byte header and a payload:
//!
//! ```text
//! len: u32 LE | crc: u32 LE | lsn: u64 LE | batch: u64 LE | payload (len bytes)
//! ```
//!
//! `crc` is CRC32C over `len`, `lsn`, `batch` and the payload, so no header
//! field can be damaged unseen. `lsn` numbers records consecutively across a
//! whole log, so a stale or misplaced record is caught too. `batch` is the
//! number of the first record of the batch the record was written in: a
//! writer appends a batch, syncs it, and only then writes the next, so at
//! most one batch (the last) is ever unsynced.
//!
//! What follows the last good record decides the tail's fate:
//! - nothing: the file is clean;
//! - no valid record of a *later batch* than the damaged record's: a torn
//!   tail, the unsynced last batch cut short or written back out of order by
//!   a crash (zeroed pages included);
//! - a valid record of a later batch: corruption, because that batch was only
//!   written after the damaged one had been synced.

use std::ops::Range;

/// Size of a frame header.
pub const HEADER_SIZE_BYTES: usize = 24;

/// Largest payload a frame may carry (64 MiB), so that a damaged length can
/// never ask for an absurd read.
pub const PAYLOAD_SIZE_MAX: usize = 64 * 1024 * 1024;

/// Appends one framed record, number `lsn` of the batch that began with
/// record `batch`, to `out`.
pub fn encode(lsn: u64, batch: u64, payload: &[u8], out: &mut Vec<u8>) {
    assert!(
        payload.len() <= PAYLOAD_SIZE_MAX,
        "record of {} bytes",
        payload.len()
    );
    assert!(batch <= lsn, "batch {batch} begins after its record {lsn}");
    let len = (payload.len() as u32).to_le_bytes();
    let numbers: Vec<u8> = lsn
        .to_le_bytes()
        .into_iter()
        .chain(batch.to_le_bytes())
        .collect();
    let crc = crc32c::crc32c_append(
        crc32c::crc32c_append(crc32c::crc32c(&len), &numbers),
        payload,
    );
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&numbers);
    out.extend_from_slice(payload);
}

/// A valid record found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Its number.
    pub lsn: u64,
    /// The number of the first record of its batch.
    pub batch: u64,
    /// Where its payload lies.
    pub payload: Range<usize>,
}

/// The valid record starting at `at`, if one does.
pub fn record_at(bytes: &[u8], at: usize) -> Option<Found> {
    let header = bytes.get(at..at.checked_add(HEADER_SIZE_BYTES)?)?;
    let len = u32::from_le_bytes(header[0..4].try_into().unwrap()) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().unwrap());
    let lsn = u64::from_le_bytes(header[8..16].try_into().unwrap());
    let batch = u64::from_le_bytes(header[16..24].try_into().unwrap());
    if len > PAYLOAD_SIZE_MAX || batch > lsn {
        return None;
    }
    let payload = at + HEADER_SIZE_BYTES..at + HEADER_SIZE_BYTES + len;
    let body = bytes.get(payload.clone())?;
    let actual = crc32c::crc32c_append(
        crc32c::crc32c_append(crc32c::crc32c(&header[0..4]), &header[8..24]),
        body,
    );
    (actual == crc).then_some(Found {
        lsn,
        batch,
        payload,
    })
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
    /// The record at this offset is damaged, yet a later batch is intact.
    Corrupt {
        /// Where the damaged record starts.
        at: usize,
    },
}

/// The result of scanning a file of frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Good records, in order.
    pub records: Vec<Found>,
    /// Where the good records end.
    pub end: usize,
    /// What follows them.
    pub tail: Tail,
}

/// Scans `bytes`, whose first record must be number `first_lsn`.
pub fn scan(bytes: &[u8], first_lsn: u64) -> Scan {
    let mut records: Vec<Found> = Vec::new();
    let mut at = 0;
    let mut next_lsn = first_lsn;
    while let Some(found) = record_at(bytes, at) {
        if found.lsn != next_lsn {
            break;
        }
        at = found.payload.end;
        next_lsn += 1;
        records.push(found);
    }
    let end = at;
    let tail = if end == bytes.len() {
        Tail::Clean
    } else {
        // The damaged record is number `next_lsn`. An intact record in its
        // place with another number is misplaced, never torn; and any record
        // of a batch that began after it proves the damaged one was synced.
        let misplaced = record_at(bytes, end).is_some();
        let later_batch = (end..bytes.len())
            .filter_map(|i| record_at(bytes, i))
            .any(|found| found.batch > next_lsn);
        if misplaced || later_batch {
            Tail::Corrupt { at: end }
        } else {
            Tail::Torn { at: end }
        }
    };
    Scan { records, end, tail }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames `batches` (each a list of payloads) from record `first_lsn` on;
    /// returns the bytes and where each record starts.
    fn log(batches: &[&[&[u8]]], first_lsn: u64) -> (Vec<u8>, Vec<usize>) {
        let mut bytes = Vec::new();
        let mut starts = Vec::new();
        let mut lsn = first_lsn;
        for batch in batches {
            let batch_start = lsn;
            for payload in *batch {
                starts.push(bytes.len());
                encode(lsn, batch_start, payload, &mut bytes);
                lsn += 1;
            }
        }
        (bytes, starts)
    }

    fn payloads<'a>(bytes: &'a [u8], scan: &Scan) -> Vec<&'a [u8]> {
        scan.records
            .iter()
            .map(|r| &bytes[r.payload.clone()])
            .collect()
    }

    #[test]
    fn clean_file_round_trips() {
        let (bytes, _) = log(&[&[b"one", b""], &[b"three"]], 7);
        let scan = scan(&bytes, 7);
        assert_eq!(scan.tail, Tail::Clean);
        assert_eq!(payloads(&bytes, &scan), vec![&b"one"[..], b"", b"three"]);
        let numbers: Vec<(u64, u64)> = scan.records.iter().map(|r| (r.lsn, r.batch)).collect();
        assert_eq!(numbers, vec![(7, 7), (8, 7), (9, 9)]);
    }

    #[test]
    fn every_cut_of_the_last_batch_is_a_torn_tail() {
        let (bytes, starts) = log(&[&[b"alpha"], &[b"beta", b"gamma-gamma"]], 1);
        for cut in (starts[1] + 1..bytes.len()).filter(|&cut| cut != starts[2]) {
            let scan = scan(&bytes[..cut], 1);
            let good = if cut >= starts[2] { 2 } else { 1 };
            assert_eq!(scan.records.len(), good, "cut at {cut}");
            assert_eq!(scan.tail, Tail::Torn { at: starts[good] }, "cut at {cut}");
        }
        // Zeroed sectors written back past the end are torn too.
        let mut zeros = bytes.clone();
        zeros.extend_from_slice(&[0; 512]);
        assert_eq!(scan(&zeros, 1).tail, Tail::Torn { at: bytes.len() });
    }

    #[test]
    fn the_last_batch_written_back_out_of_order_is_torn() {
        // The last batch's first record was zeroed but its second persisted:
        // a real filesystem may write pages back in any order before a sync.
        let (mut bytes, starts) = log(&[&[b"synced"], &[b"unsynced-1", b"unsynced-2"]], 1);
        bytes[starts[1]..starts[2]].fill(0);
        assert_eq!(scan(&bytes, 1).tail, Tail::Torn { at: starts[1] });
    }

    #[test]
    fn damage_followed_by_a_later_batch_is_corruption() {
        let (bytes, starts) = log(&[&[b"alpha", b"beta"], &[b"gamma"], &[b"delta"]], 1);
        // Any flipped bit in the first two batches is followed by a later batch.
        for byte in 0..starts[3] {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[byte] ^= 1 << bit;
                let record = starts.iter().rposition(|&s| s <= byte).unwrap();
                let scan = scan(&damaged, 1);
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
        let (bytes, _) = log(&[&[b"alpha"], &[b"beta"]], 1);
        assert_eq!(scan(&bytes, 2).tail, Tail::Corrupt { at: 0 });
        let mut skipped = Vec::new();
        encode(1, 1, b"a", &mut skipped);
        let second = skipped.len();
        encode(3, 3, b"c", &mut skipped);
        assert_eq!(scan(&skipped, 1).tail, Tail::Corrupt { at: second });
    }
}
