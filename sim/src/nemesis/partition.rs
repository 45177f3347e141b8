//! Partitions: the leader isolated, random halves, the leader with a
//! minority, one-way links, and two halves joined by one bridge replica.
//! Clients always reach every replica; only links between replicas are cut.

use std::time::Duration;

use rand::seq::SliceRandom;
use rand::Rng;

use super::Nemesis;
use crate::cluster::ReplicaId;
use crate::scenario::PartitionKind;
use crate::schedule::Cut;

impl Nemesis<'_> {
    /// Splits the replicas of a random group as `kind` says: the links to
    /// cut, each one way.
    pub(super) async fn split(&self, kind: PartitionKind) -> Vec<Cut> {
        let group = self.random_group();
        let mut ids = self.cluster.ids_of(group);
        ids.shuffle(&mut *self.rng());
        let leader = match kind {
            PartitionKind::IsolateLeader | PartitionKind::MinorityLeader => {
                self.cluster.leader_of(group, Duration::from_secs(5)).await
            }
            _ => None,
        };
        if let Some(leader) = leader {
            // The leader first, then the rest in random order.
            ids.retain(|id| *id != leader);
            ids.insert(0, leader);
        }
        let both = |a: &[ReplicaId], b: &[ReplicaId]| {
            vec![
                Cut {
                    from: a.to_vec(),
                    to: b.to_vec(),
                },
                Cut {
                    from: b.to_vec(),
                    to: a.to_vec(),
                },
            ]
        };
        match kind {
            PartitionKind::IsolateLeader => both(&ids[..1], &ids[1..]),
            PartitionKind::OneWay => vec![Cut {
                from: ids[1..].to_vec(),
                to: ids[..1].to_vec(),
            }],
            PartitionKind::Halves => {
                let odd = usize::from(self.rng().gen_bool(0.5)) * (ids.len() % 2);
                let split = ids.len() / 2 + odd;
                both(&ids[..split], &ids[split..])
            }
            PartitionKind::MinorityLeader => {
                let minority = (ids.len().saturating_sub(1) / 2).max(1);
                both(&ids[..minority], &ids[minority..])
            }
            PartitionKind::Bridge => {
                // ids[0] is the bridge; the rest split in two.
                let rest = &ids[1..];
                let (left, right) = rest.split_at(rest.len() / 2);
                both(left, right)
            }
        }
    }

    /// Cuts the links, waits, heals every link.
    pub(super) async fn partition_for(&self, shape: PartitionKind, cuts: &[Cut], duration_ms: u64) {
        for cut in cuts {
            self.cluster.cut(&cut.from, &cut.to);
        }
        let links: Vec<String> = cuts
            .iter()
            .map(|c| format!("{:?} -> {:?}", c.from, c.to))
            .collect();
        self.record(format!("partition {shape:?}: cut {}", links.join(", ")));
        tokio::time::sleep(Duration::from_millis(duration_ms)).await;
        self.cluster.heal_network();
        self.record("heal network".to_string());
    }
}
