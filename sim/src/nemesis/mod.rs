//! The nemesis: injects a scenario's faults, one module per fault family
//! ([`kill`]: crashes and freezes; [`partition`]; [`network`]: packet loss
//! and latency; [`membership`]: groups joining and leaving, shards moving,
//! replicas added and removed). Disk faults live in the simulated disk.
//!
//! Every fault is first *decided* (which replicas, which shard; drawn from
//! the nemesis's own generator, seeded from the run's seed) and then
//! *applied*. Applied faults are recorded as a [`ScheduledFault`] list: the
//! run's fault schedule. A scenario that carries a schedule
//! (`[[faults.schedule]]`) replays it instead of deciding anything, so a
//! schedule written by one run can be edited, shortened and rerun.

mod kill;
mod membership;
mod network;
mod partition;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shoal::ids::{GroupId, GroupKey};

use crate::cluster::Cluster;
use crate::history::{FaultEvent, History, NEMESIS_CLIENT};
use crate::scenario::{KillTarget, MembershipAction, NetworkFault, PartitionKind, Scenario};
use crate::schedule::{FaultAction, ScheduledFault};
use crate::workload::Progress;

/// A fault still to be decided.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Kill (or pause: `true`) replicas of a group (random if `None`), wait
    /// this many milliseconds, restart (resume).
    Kill(KillTarget, Option<GroupId>, bool, u64),
    /// Degrade the network for this many milliseconds.
    Network(u64),
    /// Partition, wait this many milliseconds, heal.
    Partition(PartitionKind, u64),
    /// Change the sharded cluster's membership.
    Membership(MembershipAction, Option<GroupId>),
}

/// Injects the scenario's faults and records them in the history.
pub struct Nemesis<'a> {
    cluster: &'a Cluster,
    network: Option<NetworkFault>,
    history: &'a Mutex<History>,
    t0: tokio::time::Instant,
    rng: Mutex<ChaCha8Rng>,
    schedule: Mutex<Vec<ScheduledFault>>,
    /// The number of the configuration the last controller change answered.
    config_num: AtomicU64,
}

impl<'a> Nemesis<'a> {
    /// A nemesis for `cluster`, recording into `history`. Its generator is
    /// its own, so that replaying a schedule (which draws nothing) leaves the
    /// rest of the run's randomness where it was.
    pub fn new(
        cluster: &'a Cluster,
        scenario: &Scenario,
        history: &'a Mutex<History>,
        t0: tokio::time::Instant,
    ) -> Self {
        Nemesis {
            cluster,
            network: scenario.faults.network.clone(),
            history,
            t0,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(shoal::runtime::rng().gen())),
            schedule: Mutex::default(),
            config_num: AtomicU64::new(0),
        }
    }

    /// Records a line in the history's fault list (and the trace).
    pub fn record(&self, what: String) {
        let at = self.t0.elapsed();
        tracing::info!(?at, %what, "nemesis");
        self.history
            .lock()
            .expect("history lock")
            .faults
            .push(FaultEvent { at, what });
    }

    /// Records an answer that broke the API's contract, to a call the
    /// nemesis made at `call`.
    pub fn breach(&self, call: Duration, what: String) {
        let mut history = self.history.lock().expect("history lock");
        history.breach(NEMESIS_CLIENT, call, what);
    }

    /// The faults applied so far.
    pub fn schedule(&self) -> Vec<ScheduledFault> {
        self.schedule.lock().expect("schedule lock").clone()
    }

    fn rng(&self) -> MutexGuard<'_, ChaCha8Rng> {
        self.rng.lock().expect("nemesis rng")
    }

    /// Injects the scenario's faults: its recorded schedule if it has one;
    /// else the kill, partition and membership events as their triggers come
    /// up, then chaos. Returns when the first fault struck.
    pub async fn run(&self, scenario: &Scenario, progress: &Progress) -> Option<Duration> {
        if let Some(schedule) = &scenario.faults.schedule {
            for event in schedule {
                tokio::time::sleep_until(self.t0 + Duration::from_millis(event.at_ms)).await;
                self.apply(event.fault.clone()).await;
            }
        } else {
            self.triggered(scenario, progress).await;
            self.chaos(scenario).await;
        }
        self.schedule()
            .first()
            .map(|f| Duration::from_millis(f.at_ms))
    }

    async fn triggered(&self, scenario: &Scenario, progress: &Progress) {
        let workload_done =
            || progress.clients_done.load(Ordering::Relaxed) >= scenario.workload.clients;
        let faults = &scenario.faults;
        let kills = faults.kill.iter().map(|k| {
            (
                k.after_acks,
                Fault::Kill(k.target, k.group, k.pause, k.down_ms),
            )
        });
        let partitions = faults
            .partition
            .iter()
            .map(|p| (p.after_acks, Fault::Partition(p.kind, p.duration_ms)));
        let changes = faults
            .membership
            .iter()
            .map(|m| (m.after_acks, Fault::Membership(m.action, m.group)));
        let mut events: Vec<(u32, Fault)> = kills.chain(partitions).chain(changes).collect();
        events.sort_by_key(|(after_acks, _)| *after_acks);
        for (after_acks, fault) in events {
            while progress.acked.load(Ordering::Relaxed) < after_acks && !workload_done() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            self.strike(fault).await;
        }
    }

    async fn chaos(&self, scenario: &Scenario) {
        let Some(chaos) = &scenario.faults.chaos else {
            return;
        };
        let until = self.t0 + Duration::from_millis(chaos.until_ms);
        loop {
            let wait = self
                .rng()
                .gen_range(chaos.every_ms / 2..=chaos.every_ms * 3 / 2);
            tokio::time::sleep(Duration::from_millis(wait)).await;
            if tokio::time::Instant::now() >= until {
                break;
            }
            let fault = {
                let mut rng = self.rng();
                if self.cluster.sharded() && rng.gen_bool(chaos.membership_rate) {
                    let actions = [
                        MembershipAction::Join,
                        MembershipAction::Leave,
                        MembershipAction::Move,
                        MembershipAction::AddReplica,
                        MembershipAction::RemoveReplica,
                    ];
                    Fault::Membership(actions[rng.gen_range(0..actions.len())], None)
                } else if rng.gen_bool(chaos.partition_rate) {
                    let kind = PartitionKind::ALL[rng.gen_range(0..PartitionKind::ALL.len())];
                    Fault::Partition(kind, chaos.down_ms)
                } else if rng.gen_bool(chaos.network_rate) {
                    Fault::Network(chaos.down_ms)
                } else {
                    let target = if rng.gen_bool(chaos.majority_rate) {
                        KillTarget::Majority
                    } else {
                        KillTarget::Random
                    };
                    Fault::Kill(target, None, rng.gen_bool(chaos.pause_rate), chaos.down_ms)
                }
            };
            self.strike(fault).await;
        }
    }

    /// Decides a fault and applies it.
    async fn strike(&self, fault: Fault) {
        let action = match fault {
            Fault::Kill(target, group, pause, down_ms) => {
                let group = match group {
                    Some(g) if self.cluster.sharded() => GroupKey::from_number(g),
                    _ => self.random_group(),
                };
                let replicas = self.pick(target, group).await;
                Some(if pause {
                    FaultAction::Pause { replicas, down_ms }
                } else {
                    FaultAction::Kill { replicas, down_ms }
                })
            }
            Fault::Network(duration_ms) => Some(self.degradation(duration_ms)),
            Fault::Partition(shape, duration_ms) => Some(FaultAction::Partition {
                shape,
                cuts: self.split(shape).await,
                duration_ms,
            }),
            Fault::Membership(action, group) => self.change(action, group).await,
        };
        if let Some(action) = action {
            self.apply(action).await;
        }
    }

    /// Applies a decided fault and records it in the schedule.
    async fn apply(&self, fault: FaultAction) {
        let at_ms = self.t0.elapsed().as_millis() as u64;
        self.schedule
            .lock()
            .expect("schedule lock")
            .push(ScheduledFault {
                at_ms,
                fault: fault.clone(),
            });
        match fault {
            FaultAction::Kill { replicas, down_ms } => self.kill_for(&replicas, down_ms).await,
            FaultAction::Pause { replicas, down_ms } => self.pause_for(&replicas, down_ms).await,
            FaultAction::Partition {
                shape,
                cuts,
                duration_ms,
            } => self.partition_for(shape, &cuts, duration_ms).await,
            FaultAction::Network {
                packet_loss_rate,
                latency_ms_min,
                latency_ms_max,
                duration_ms,
            } => {
                let fault = NetworkFault {
                    packet_loss_rate,
                    latency_ms_min,
                    latency_ms_max,
                };
                self.degrade_network_for(&fault, duration_ms).await;
            }
            change => self.apply_change(change).await,
        }
    }

    /// A random group (the only one of a standalone cluster).
    fn random_group(&self) -> GroupKey {
        let groups = self.cluster.groups();
        groups[self.rng().gen_range(0..groups.len())]
    }
}
