//! Sweeps: a scenario run over a range of seeds, one process per seed (the
//! process shell is `shoal-sim run`). This module holds the parts with no
//! processes in them: the seed range and its [`Partition`] into disjoint
//! slices, so that a sweep can fan out over many machines, each running
//! `--partition K/N`; the [`Summary`] a sweep writes as JSON and JUnit XML
//! ([`report`]), and merging the slices' summaries back into one.

pub mod progress;
pub mod report;

use std::ops::RangeInclusive;
use std::str::FromStr;

use anyhow::{bail, Context};

pub use report::{SeedSummary, Summary, Verdict};

/// Parses a seed range: `N`, `A..B` (B excluded) or `A..=B`.
pub fn parse_seeds(text: &str) -> anyhow::Result<RangeInclusive<u64>> {
    let number = |s: &str| {
        s.trim()
            .parse::<u64>()
            .with_context(|| format!("bad seed {s:?}"))
    };
    let range = if let Some((a, b)) = text.split_once("..=") {
        number(a)?..=number(b)?
    } else if let Some((a, b)) = text.split_once("..") {
        let end = number(b)?;
        if end == 0 {
            bail!("empty seed range {text:?}");
        }
        number(a)?..=end - 1
    } else {
        let n = number(text)?;
        n..=n
    };
    if range.is_empty() {
        bail!("empty seed range {text:?}");
    }
    Ok(range)
}

/// Writes a seed range as [`parse_seeds`] reads it.
pub fn seeds_text(range: &RangeInclusive<u64>) -> String {
    if range.start() == range.end() {
        range.start().to_string()
    } else {
        format!("{}..={}", range.start(), range.end())
    }
}

/// The `index`-th (1-based) of `count` slices of a seed range: contiguous,
/// disjoint, covering the range exactly once, their sizes differing by at
/// most one. Written `K/N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Partition {
    /// Which slice, 1..=count.
    pub index: u64,
    /// How many slices.
    pub count: u64,
}

/// Most slices a sweep can be cut into.
pub const PARTITIONS_MAX: u64 = 100_000;

impl FromStr for Partition {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Partition> {
        let (k, n) = text
            .split_once('/')
            .with_context(|| format!("partition {text:?} is not K/N"))?;
        let parse = |s: &str| {
            s.trim()
                .parse::<u64>()
                .with_context(|| format!("partition {text:?}: bad number {s:?}"))
        };
        let (index, count) = (parse(k)?, parse(n)?);
        if count == 0 || count > PARTITIONS_MAX || index == 0 || index > count {
            bail!("partition {text:?}: need 1 <= K <= N <= {PARTITIONS_MAX}");
        }
        Ok(Partition { index, count })
    }
}

impl std::fmt::Display for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Partition {
    /// This slice of `seeds`; `None` when it is empty (more slices than
    /// seeds).
    pub fn slice(&self, seeds: &RangeInclusive<u64>) -> Option<RangeInclusive<u64>> {
        assert!(1 <= self.index && self.index <= self.count);
        let (first, last) = (u128::from(*seeds.start()), u128::from(*seeds.end()));
        assert!(first <= last, "an empty seed range");
        let total = last - first + 1;
        let (k, n) = (u128::from(self.index), u128::from(self.count));
        let from = first + (k - 1) * total / n;
        let to = first + k * total / n; // excluded
        let seed = |s: u128| u64::try_from(s).expect("a slice stays inside the range");
        (from < to).then(|| seed(from)..=seed(to - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_ranges_parse() {
        assert_eq!(parse_seeds("7").unwrap(), 7..=7);
        assert_eq!(parse_seeds("1..=50").unwrap(), 1..=50);
        assert_eq!(parse_seeds("1..50").unwrap(), 1..=49);
        for bad in ["", "x", "5..5", "5..=4", "0..0", "1..=x"] {
            assert!(parse_seeds(bad).is_err(), "{bad:?}");
        }
        assert_eq!(seeds_text(&(3..=9)), "3..=9");
        assert_eq!(parse_seeds(&seeds_text(&(4..=4))).unwrap(), 4..=4);
    }

    #[test]
    fn partitions_parse() {
        let p: Partition = "2/3".parse().unwrap();
        assert_eq!((p.index, p.count), (2, 3));
        assert_eq!(p.to_string(), "2/3");
        for bad in ["0/3", "4/3", "1/0", "3", "a/b", "1/100001"] {
            assert!(bad.parse::<Partition>().is_err(), "{bad:?}");
        }
    }

    /// Every seed of the range is in exactly one slice, slices are
    /// contiguous and in order, and their sizes differ by at most one.
    fn check(seeds: RangeInclusive<u64>, count: u64) {
        let mut next = *seeds.start();
        let mut sizes = Vec::new();
        for index in 1..=count {
            match (Partition { index, count }).slice(&seeds) {
                Some(slice) => {
                    assert_eq!(*slice.start(), next, "{seeds:?} {index}/{count}");
                    sizes.push(slice.end() - slice.start() + 1);
                    next = slice.end().wrapping_add(1);
                }
                None => sizes.push(0),
            }
        }
        assert_eq!(next, seeds.end().wrapping_add(1), "{seeds:?} /{count}");
        let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
        assert!(max - min <= 1, "{seeds:?} /{count}: {sizes:?}");
    }

    #[test]
    fn slices_cover_the_range_exactly_once() {
        assert_eq!(
            (1..=3)
                .map(|index| Partition { index, count: 3 }.slice(&(1..=10)))
                .collect::<Vec<_>>(),
            [Some(1..=3), Some(4..=6), Some(7..=10)]
        );
        for seeds in [1..=1, 1..=10, 5..=104, 0..=999, 1..=2] {
            for count in 1..=12 {
                check(seeds.clone(), count);
            }
        }
        check(0..=u64::MAX, 7);
        check(u64::MAX - 3..=u64::MAX, 5);
        // More slices than seeds: some are empty, none overlap.
        assert_eq!(Partition { index: 1, count: 3 }.slice(&(4..=4)), None);
        assert_eq!(
            Partition { index: 3, count: 3 }.slice(&(4..=4)),
            Some(4..=4)
        );
    }
}
