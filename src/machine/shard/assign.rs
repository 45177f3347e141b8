//! Shard assignment: weighted rendezvous hashing (CARP) corrected for
//! balance, with every group weighted equally.
//!
//! Every (group, shard) pair has a stable pseudo-random [`score`]; a shard
//! prefers the groups that score highest for it. [`rebalance`] keeps every
//! shard where it is unless balance requires otherwise, so that after any
//! change of groups:
//! - the number of shards per group differs by at most one between groups;
//! - the number of shards that change owner is the least possible: shards of
//!   departed groups, plus, from each group over its share, the excess only.
//!
//! Which groups get the larger share (when shards do not divide evenly): the
//! groups already holding the most, so that fewer shards move. Which shards a
//! group over its share gives up: those that score lowest for it. Where a
//! freed shard goes: to the group with room that scores highest for it.

use std::collections::{BTreeMap, BTreeSet};

use super::config::NO_GROUP;
use crate::ids::{GroupId, ShardId};

/// The rendezvous score of `group` for `shard` (SplitMix64 of the pair; fixed
/// forever, like the shard function).
pub fn score(group: GroupId, shard: ShardId) -> u64 {
    let mut z = group
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(u64::from(shard))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Each group's share of `shard_count` shards: the base share, and one more
/// for as many groups as the remainder, chosen among those holding most.
fn targets(shard_count: usize, counts: &BTreeMap<GroupId, usize>) -> BTreeMap<GroupId, usize> {
    let groups = counts.len();
    let (base, extra) = (shard_count / groups, shard_count % groups);
    let mut by_holding: Vec<(&GroupId, &usize)> = counts.iter().collect();
    by_holding.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    by_holding
        .into_iter()
        .enumerate()
        .map(|(rank, (group, _))| (*group, base + usize::from(rank < extra)))
        .collect()
}

/// The new owner of every shard when the groups become `groups`, starting
/// from `current` (the owner per shard; [`NO_GROUP`] for none).
pub fn rebalance(current: &[GroupId], groups: &BTreeSet<GroupId>) -> Vec<GroupId> {
    assert!(!groups.contains(&NO_GROUP), "group {NO_GROUP} is reserved");
    if groups.is_empty() {
        return vec![NO_GROUP; current.len()];
    }
    let mut owners: Vec<GroupId> = current
        .iter()
        .map(|g| if groups.contains(g) { *g } else { NO_GROUP })
        .collect();
    let mut counts: BTreeMap<GroupId, usize> = groups.iter().map(|g| (*g, 0)).collect();
    for owner in owners.iter().filter(|g| **g != NO_GROUP) {
        *counts.get_mut(owner).expect("owner is a group") += 1;
    }
    let targets = targets(owners.len(), &counts);

    // Groups over their share give up the shards they like least.
    for (group, target) in &targets {
        let held = counts[group];
        if held <= *target {
            continue;
        }
        let mut mine: Vec<ShardId> = (0..owners.len() as ShardId)
            .filter(|s| owners[*s as usize] == *group)
            .collect();
        mine.sort_by_key(|s| (score(*group, *s), *s));
        for shard in mine.into_iter().take(held - target) {
            owners[shard as usize] = NO_GROUP;
        }
        counts.insert(*group, *target);
    }
    // Free shards go, in shard order, to the group with room they like best.
    for shard in 0..owners.len() as ShardId {
        if owners[shard as usize] != NO_GROUP {
            continue;
        }
        let best = targets
            .iter()
            .filter(|(group, target)| counts[*group] < **target)
            .max_by_key(|(group, _)| (score(**group, shard), std::cmp::Reverse(**group)))
            .map(|(group, _)| *group)
            .expect("the shares add up to the shard count");
        owners[shard as usize] = best;
        *counts.get_mut(&best).expect("group") += 1;
    }
    owners
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn counts(owners: &[GroupId], groups: &BTreeSet<GroupId>) -> Vec<usize> {
        groups
            .iter()
            .map(|g| owners.iter().filter(|o| *o == g).count())
            .collect()
    }

    /// The least number of shards any balanced assignment must move.
    fn least_moves(before: &[GroupId], groups: &BTreeSet<GroupId>) -> usize {
        let orphaned = before.iter().filter(|g| !groups.contains(g)).count();
        let held: BTreeMap<GroupId, usize> = groups
            .iter()
            .map(|g| (*g, before.iter().filter(|o| *o == g).count()))
            .collect();
        // Give the larger shares to the groups holding most: each group must
        // shed whatever it holds beyond its share.
        let mut sorted: Vec<usize> = held.values().copied().collect();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        let (base, extra) = (before.len() / groups.len(), before.len() % groups.len());
        let shed: usize = sorted
            .iter()
            .enumerate()
            .map(|(rank, h)| h.saturating_sub(base + usize::from(rank < extra)))
            .sum();
        orphaned + shed
    }

    #[test]
    fn random_joins_and_leaves_stay_balanced_and_move_the_least() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..200 {
            let shard_count = rng.gen_range(1..=130);
            let mut owners = vec![NO_GROUP; shard_count];
            let mut groups = BTreeSet::new();
            for _ in 0..20 {
                if groups.is_empty() || rng.gen_bool(0.6) {
                    groups.insert(rng.gen_range(1..40));
                } else {
                    let leaving = *groups.iter().nth(rng.gen_range(0..groups.len())).unwrap();
                    groups.remove(&leaving);
                }
                let next = rebalance(&owners, &groups);
                if groups.is_empty() {
                    assert!(next.iter().all(|g| *g == NO_GROUP));
                } else {
                    let c = counts(&next, &groups);
                    assert!(
                        c.iter().max().unwrap() - c.iter().min().unwrap() <= 1,
                        "{c:?}"
                    );
                    assert!(
                        next.iter().all(|g| groups.contains(g)),
                        "every shard served"
                    );
                    let moved = owners.iter().zip(&next).filter(|(a, b)| a != b).count();
                    assert_eq!(moved, least_moves(&owners, &groups));
                }
                owners = next;
            }
        }
    }

    #[test]
    fn rebalancing_is_deterministic_and_a_fixed_point() {
        let groups: BTreeSet<GroupId> = [3, 1, 2].into();
        let first = rebalance(&vec![NO_GROUP; 64], &groups);
        assert_eq!(first, rebalance(&vec![NO_GROUP; 64], &groups));
        assert_eq!(
            rebalance(&first, &groups),
            first,
            "a balanced assignment stays put"
        );
    }
}
