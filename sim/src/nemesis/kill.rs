//! Crashes and freezes: a replica killed (its unsynced writes at the simulated
//! disk's mercy) and restarted on what it left behind, or paused, as by a
//! stalled VM or a long GC, and resumed with its connections intact.

use std::time::Duration;

use rand::seq::SliceRandom;
use rand::Rng;
use shoal::ids::GroupKey;

use super::Nemesis;
use crate::cluster::ReplicaId;
use crate::scenario::KillTarget;

impl Nemesis<'_> {
    /// Chooses the victims of a kill in `group`.
    pub(super) async fn pick(&self, target: KillTarget, group: GroupKey) -> Vec<ReplicaId> {
        let mut ids = self.cluster.ids_of(group);
        match target {
            KillTarget::Random => vec![ids[self.rng().gen_range(0..ids.len())]],
            KillTarget::Majority => {
                ids.shuffle(&mut *self.rng());
                ids.truncate(ids.len() / 2 + 1);
                ids.sort_unstable();
                ids
            }
            KillTarget::Leader | KillTarget::Follower => {
                let leader = self.cluster.leader_of(group, Duration::from_secs(5)).await;
                let pool: Vec<ReplicaId> = match (target, leader) {
                    (KillTarget::Leader, Some(leader)) => vec![leader],
                    (_, leader) => ids.into_iter().filter(|id| Some(*id) != leader).collect(),
                };
                vec![pool[self.rng().gen_range(0..pool.len())]]
            }
        }
    }

    pub(super) async fn kill_for(&self, victims: &[ReplicaId], down_ms: u64) {
        for &id in victims {
            self.cluster.kill(id);
        }
        self.record(format!("kill replicas {victims:?}"));
        tokio::time::sleep(Duration::from_millis(down_ms)).await;
        for &id in victims {
            self.cluster.restart(id);
        }
        self.record(format!("restart replicas {victims:?}"));
    }

    /// Freezes replicas (their tasks stop, their connections stay) for a
    /// while.
    pub(super) async fn pause_for(&self, victims: &[ReplicaId], down_ms: u64) {
        for &id in victims {
            self.cluster.pause(id);
        }
        self.record(format!("pause replicas {victims:?}"));
        tokio::time::sleep(Duration::from_millis(down_ms)).await;
        for &id in victims {
            self.cluster.resume(id);
        }
        self.record(format!("resume replicas {victims:?}"));
    }
}
