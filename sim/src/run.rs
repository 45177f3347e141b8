//! Runs one scenario under one seed, inside the simulator, and checks it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rand::seq::SliceRandom;
use rand::Rng;
use shoal::raft::NodeId;
use shoal::shard::controller::ControllerOp;
use shoal::shard::GroupId;

use crate::check::linearizability::{KeyedOp, RegisterOp};
use crate::check::{self, Violation};
use crate::cluster::{Cluster, ReplicaId};
use crate::history::{FaultEvent, History, Outcome, WriteOp, LIVENESS_CLIENT};
use crate::scenario::{
    KillTarget, MembershipAction, NetworkFault, PartitionKind, Scenario, WorkloadKind,
};
use crate::workload::{list_append, register, write_once, Progress, Worker};

/// How long replicas get to agree after the workload ends.
const CONVERGENCE_WAIT: Duration = Duration::from_secs(20);

/// The result of one seed.
#[derive(Debug)]
pub struct Report {
    /// Everything that happened.
    pub history: History,
    /// Properties that did not hold (empty: the seed passed).
    pub violations: Vec<Violation>,
    /// Simulated time the run took.
    pub simulated: Duration,
}

impl Report {
    /// Operations acknowledged.
    pub fn acked(&self) -> usize {
        let writes = self
            .history
            .writes
            .iter()
            .filter(|op| op.outcome == Outcome::Ok)
            .count();
        writes
            + self
                .history
                .ops
                .iter()
                .filter(|op| op.ret.is_some())
                .count()
    }

    /// Operations recorded.
    pub fn operations(&self) -> usize {
        self.history.writes.len() + self.history.ops.len()
    }

    /// A digest of the history: equal for two runs of the same seed.
    pub fn digest(&self) -> u64 {
        self.history.digest()
    }
}

/// Runs `scenario` under `seed` in a fresh simulator. Call it once per
/// process (see the crate docs on why seeds do not share processes).
///
/// The simulation runs on a new thread that creates the simulator before
/// anything else: madsim can seed std's hash keys only on a thread that has
/// not hashed yet, and loading files or setting up logging already has.
pub fn run_seed(scenario: &Scenario, seed: u64) -> Report {
    let (scenario, knobs) = scenario.for_seed(seed);
    if let Some(knobs) = knobs {
        println!("{knobs}");
    }
    std::thread::spawn(move || {
        let mut runtime =
            madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
        runtime.set_time_limit(Duration::from_secs(scenario.time_limit_s));
        runtime.block_on(async move { run(&scenario).await })
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

impl Report {
    /// Prints the report for a person, ending with one machine-readable
    /// `RESULT` line that the seed runner parses.
    pub fn print(&self, scenario: &Scenario, seed: u64) {
        println!(
            "scenario {} seed {}: {} operations acknowledged, {} not, {} faults, {:.2} simulated s",
            scenario.name,
            seed,
            self.acked(),
            self.operations() - self.acked(),
            self.history.faults.len(),
            self.simulated.as_secs_f64()
        );
        for fault in &self.history.faults {
            println!("  fault at {:?}: {}", fault.at, fault.what);
        }
        for violation in &self.violations {
            println!("VIOLATION {violation}");
        }
        println!(
            "RESULT verdict={} digest={:016x} simulated_s={:.3} acked={}",
            if self.passed() { "pass" } else { "fail" },
            self.digest(),
            self.simulated.as_secs_f64(),
            self.acked()
        );
    }

    /// Whether every check held.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Runs `scenario` in the current simulation (the seed is the runtime's).
pub async fn run(scenario: &Scenario) -> Report {
    let t0 = tokio::time::Instant::now();
    let disk_faults = scenario.faults.disk.clone().unwrap_or_default();
    let mut cluster = Cluster::start(&scenario.cluster, &disk_faults);
    let history = Arc::new(Mutex::new(History::default()));
    let progress = Arc::new(Progress::default());
    let appends: Arc<Mutex<Vec<list_append::Append>>> = Arc::default();

    for group in cluster.groups() {
        let leader = cluster.leader_of(group, Duration::from_secs(10)).await;
        tracing::info!(?group, ?leader, "group formed");
    }
    if cluster.sharded() {
        let joining = (1..=u64::from(scenario.cluster.groups))
            .map(|g| (g, cluster.members(g)))
            .collect();
        let joined = cluster
            .observe(move |mut client| async move {
                client.reconfigure(&ControllerOp::Join(joining)).await
            })
            .await;
        match joined {
            Ok(config) => tracing::info!(num = config.num, "data groups joined"),
            Err(e) => tracing::warn!(error = %e, "data groups did not join"),
        }
    }
    let shard_safety = check::shard_safety::Observer::start(&cluster);

    let mut clients = Vec::new();
    for index in 0..scenario.workload.clients {
        let node = cluster.client_node();
        let client = shoal::client::Client::new(cluster.client_config());
        let seed = shoal::runtime::rng().gen();
        let worker = Worker {
            index,
            client,
            spec: scenario.workload.clone(),
            seed,
            t0,
            history: history.clone(),
            progress: progress.clone(),
        };
        clients.push(match scenario.workload.kind {
            WorkloadKind::WriteOnce => node.spawn(write_once::run_client(worker)),
            WorkloadKind::Register => node.spawn(register::run_client(worker)),
            WorkloadKind::ListAppend => {
                node.spawn(list_append::run_client(worker, appends.clone()))
            }
        });
    }

    let nemesis = Nemesis {
        cluster: &cluster,
        network: scenario.faults.network.clone(),
        history: &history,
        t0,
    };
    let first_fault = nemesis.run(scenario, &progress).await;
    cluster.heal_disks();
    if scenario.faults != Default::default() {
        nemesis.record(format!(
            "all faults healed ({:?} torn files, bit flips, I/O errors injected)",
            cluster.disk_fault_counts()
        ));
    }

    for client in clients {
        client.await.expect("client task panicked");
    }
    tracing::info!(at = ?t0.elapsed(), "workload done");

    let liveness = liveness_phase(&cluster, scenario.checks.liveness_writes, t0).await;
    history
        .lock()
        .expect("history lock")
        .writes
        .extend(liveness);
    tracing::info!(at = ?t0.elapsed(), "liveness phase done");

    let replicas = converged_state(&cluster).await;
    let final_reads = read_hot_keys(&cluster, scenario, t0).await;
    history
        .lock()
        .expect("history lock")
        .ops
        .extend(final_reads);
    let history = history.lock().expect("history lock").clone();
    let reads = read_back(&cluster, &history).await;
    tracing::info!(at = ?t0.elapsed(), "written keys read back");

    let lists = if scenario.workload.kind == WorkloadKind::ListAppend {
        let keys: BTreeSet<Bytes> = (0..scenario.workload.keys).map(list_append::key).collect();
        let appends = appends.lock().expect("appends lock").clone();
        let finals = read_keys(&cluster, keys).await;
        list_append::check(&appends, &finals)
    } else {
        Ok(())
    };
    let mut checks = vec![
        lists,
        shard_safety.check(&cluster),
        check::linearizability::check(&history.ops),
        check::durability::check(&history, &reads),
        replicas
            .iter()
            .map(|group| check::convergence::check(group))
            .find(Result::is_err)
            .unwrap_or(Ok(())),
        check::progress::check(&history, scenario.checks.all_writes_succeed, first_fault),
    ];
    if scenario.checks.snapshot_installed {
        checks.push(check::progress::snapshot_installed(
            cluster.snapshots_installed(),
        ));
    }
    if let Some(report) = cluster.corruption_reports().first() {
        checks.push(Err(Violation {
            checker: "recovery",
            detail: format!("a replica found corruption the simulated disk never causes: {report}"),
        }));
    }
    Report {
        history,
        violations: checks.into_iter().filter_map(Result::err).collect(),
        simulated: t0.elapsed(),
    }
}

/// One fault the nemesis can inject.
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
struct Nemesis<'a> {
    cluster: &'a Cluster,
    network: Option<NetworkFault>,
    history: &'a Mutex<History>,
    t0: tokio::time::Instant,
}

impl Nemesis<'_> {
    fn record(&self, what: String) {
        let at = self.t0.elapsed();
        tracing::info!(?at, %what, "nemesis");
        self.history
            .lock()
            .expect("history lock")
            .faults
            .push(FaultEvent { at, what });
    }

    /// Runs the kill events, then chaos. Returns when the first fault struck.
    async fn run(&self, scenario: &Scenario, progress: &Progress) -> Option<Duration> {
        let mut first = None;
        let workload_done =
            || progress.finished.load(Ordering::Relaxed) >= scenario.workload.total_ops();
        // Kills and partitions, in the order their triggers come up.
        let mut events: Vec<(u32, Fault)> = scenario
            .faults
            .kill
            .iter()
            .map(|k| {
                (
                    k.after_acks,
                    Fault::Kill(k.target, k.group, k.pause, k.down_ms),
                )
            })
            .chain(
                scenario
                    .faults
                    .partition
                    .iter()
                    .map(|p| (p.after_acks, Fault::Partition(p.kind, p.duration_ms))),
            )
            .chain(
                scenario
                    .faults
                    .membership
                    .iter()
                    .map(|m| (m.after_acks, Fault::Membership(m.action, m.group))),
            )
            .collect();
        events.sort_by_key(|(after_acks, _)| *after_acks);
        for (after_acks, fault) in events {
            while progress.acked.load(Ordering::Relaxed) < after_acks && !workload_done() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            first = first.or(Some(self.t0.elapsed()));
            self.inject(fault).await;
        }
        if let Some(chaos) = &scenario.faults.chaos {
            let until = self.t0 + Duration::from_millis(chaos.until_ms);
            loop {
                let wait =
                    shoal::runtime::rng().gen_range(chaos.every_ms / 2..=chaos.every_ms * 3 / 2);
                tokio::time::sleep(Duration::from_millis(wait)).await;
                if tokio::time::Instant::now() >= until {
                    break;
                }
                let mut rng = shoal::runtime::rng();
                let fault = if self.cluster.sharded() && rng.gen_bool(chaos.membership_rate) {
                    let actions = [
                        MembershipAction::Join,
                        MembershipAction::Leave,
                        MembershipAction::Move,
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
                };
                first = first.or(Some(self.t0.elapsed()));
                self.inject(fault).await;
            }
        }
        first
    }

    async fn inject(&self, fault: Fault) {
        match fault {
            Fault::Kill(target, group, pause, down_ms) => {
                let group = match group {
                    Some(g) if self.cluster.sharded() => Some(g),
                    _ => self.random_group(),
                };
                let victims = self.pick(target, group).await;
                if pause {
                    self.pause_for(&victims, down_ms).await;
                } else {
                    self.kill_for(&victims, down_ms).await;
                }
            }
            Fault::Network(duration_ms) => self.degrade_network_for(duration_ms).await,
            Fault::Partition(kind, duration_ms) => self.partition_for(kind, duration_ms).await,
            Fault::Membership(action, group) => self.change_membership(action, group).await,
        }
    }

    /// Adds a spare replica to a random group, or removes a random member.
    async fn change_replicas(&self, action: MembershipAction) {
        let group = self.random_group();
        let endpoints = self.cluster.addresses(group);
        let (request, what) = match action {
            MembershipAction::AddReplica => match self.cluster.take_spare(group) {
                Some((_, node_id, addr)) => (
                    Ok((node_id, addr)),
                    format!("add replica {node_id} to group {group:?}"),
                ),
                None => {
                    self.record(format!("add replica skipped: group {group:?} has no spare"));
                    return;
                }
            },
            _ => {
                let members = self.voters(group);
                if members.len() <= 1 {
                    self.record(format!(
                        "remove replica skipped: group {group:?} has one member"
                    ));
                    return;
                }
                let node_id = members[shoal::runtime::rng().gen_range(0..members.len())];
                (
                    Err(node_id),
                    format!("remove replica {node_id} from group {group:?}"),
                )
            }
        };
        let result = self
            .cluster
            .observe(move |_| async move {
                let mut client =
                    shoal::client::Client::new(shoal::client::ClientConfig::new(endpoints));
                match request {
                    Ok((node_id, addr)) => client.add_replica(node_id, addr).await,
                    Err(node_id) => client.remove_replica(node_id).await,
                }
            })
            .await;
        match result {
            Ok(members) => self.record(format!(
                "{what} -> members {:?}",
                members.keys().collect::<Vec<_>>()
            )),
            Err(e) => self.record(format!("{what} failed: {e}")),
        }
    }

    /// The node ids of the voters of `group`.
    fn voters(&self, group: Option<GroupId>) -> Vec<NodeId> {
        self.cluster
            .voters_of(group)
            .into_iter()
            .map(|id| self.cluster.node_id(id))
            .collect()
    }

    /// Joins, removes or moves through the shard controller, as a client
    /// (an operator) would.
    async fn change_membership(&self, action: MembershipAction, group: Option<GroupId>) {
        if matches!(
            action,
            MembershipAction::AddReplica | MembershipAction::RemoveReplica
        ) {
            return self.change_replicas(action).await;
        }
        let latest = self
            .cluster
            .observe(|mut client| async move { client.query(None).await })
            .await;
        let Ok(latest) = latest else {
            self.record("membership change skipped: controller unreachable".to_string());
            return;
        };
        let joined: Vec<GroupId> = latest.groups.keys().copied().collect();
        let standby: Vec<GroupId> = self
            .cluster
            .groups()
            .into_iter()
            .flatten()
            .filter(|g| *g != 0 && !joined.contains(g))
            .collect();
        let mut rng = shoal::runtime::rng();
        let mut pick =
            |pool: &[GroupId]| (!pool.is_empty()).then(|| pool[rng.gen_range(0..pool.len())]);
        let op = match action {
            MembershipAction::Join => group
                .or_else(|| pick(&standby))
                .map(|g| ControllerOp::Join([(g, self.cluster.members(g))].into())),
            MembershipAction::Leave if joined.len() > 1 => group
                .or_else(|| pick(&joined))
                .map(|g| ControllerOp::Leave([g].into())),
            MembershipAction::Leave
            | MembershipAction::AddReplica
            | MembershipAction::RemoveReplica => None,
            MembershipAction::Move => group.or_else(|| pick(&joined)).and_then(|g| {
                // A shard the group does not own yet, so that it really moves.
                let elsewhere: Vec<u32> = (0..latest.shard_count())
                    .filter(|s| latest.owner(*s) != Some(g))
                    .collect();
                (!elsewhere.is_empty()).then(|| ControllerOp::Move {
                    shard: elsewhere[shoal::runtime::rng().gen_range(0..elsewhere.len())],
                    group: g,
                })
            }),
        };
        let Some(op) = op else {
            self.record(format!("membership {action:?} skipped: no eligible group"));
            return;
        };
        let what = format!("{op:?}");
        let result = self
            .cluster
            .observe(move |mut client| async move { client.reconfigure(&op).await })
            .await;
        match result {
            Ok(config) => self.record(format!("controller {what} -> configuration {}", config.num)),
            Err(e) => self.record(format!("controller {what} failed: {e}")),
        }
    }

    /// A random group (the only one of a standalone cluster).
    fn random_group(&self) -> Option<GroupId> {
        let groups = self.cluster.groups();
        groups[shoal::runtime::rng().gen_range(0..groups.len())]
    }

    /// Splits the replicas of a random group as `kind` says, waits, heals.
    async fn partition_for(&self, kind: PartitionKind, duration_ms: u64) {
        let group = self.random_group();
        let mut ids = self.cluster.ids_of(group);
        let mut rng = shoal::runtime::rng();
        ids.shuffle(&mut rng);
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
        let (a, b): (Vec<ReplicaId>, Vec<ReplicaId>) = match kind {
            PartitionKind::IsolateLeader | PartitionKind::OneWay => {
                (ids[..1].to_vec(), ids[1..].to_vec())
            }
            PartitionKind::Halves => {
                let split = ids.len() / 2 + usize::from(rng.gen_bool(0.5)) * (ids.len() % 2);
                (ids[..split].to_vec(), ids[split..].to_vec())
            }
            PartitionKind::MinorityLeader => {
                let minority = ids.len().saturating_sub(1) / 2;
                (
                    ids[..minority.max(1)].to_vec(),
                    ids[minority.max(1)..].to_vec(),
                )
            }
            PartitionKind::Bridge => {
                // ids[0] is the bridge; the rest split in two.
                let rest = &ids[1..];
                let (left, right) = rest.split_at(rest.len() / 2);
                self.cluster.cut(left, right);
                self.cluster.cut(right, left);
                self.record(format!(
                    "partition bridge: {left:?} | {:?} | {right:?}",
                    ids[0]
                ));
                tokio::time::sleep(Duration::from_millis(duration_ms)).await;
                self.cluster.heal_network();
                self.record("heal network".to_string());
                return;
            }
        };
        self.cluster.cut(&b, &a);
        if kind != PartitionKind::OneWay {
            self.cluster.cut(&a, &b);
        }
        let arrow = if kind == PartitionKind::OneWay {
            "->"
        } else {
            "|"
        };
        self.record(format!("partition {kind:?}: {a:?} {arrow} {b:?}"));
        tokio::time::sleep(Duration::from_millis(duration_ms)).await;
        self.cluster.heal_network();
        self.record("heal network".to_string());
    }

    async fn pick(&self, target: KillTarget, group: Option<GroupId>) -> Vec<ReplicaId> {
        let mut ids = self.cluster.ids_of(group);
        let mut rng = shoal::runtime::rng();
        match target {
            KillTarget::Random => vec![ids[rng.gen_range(0..ids.len())]],
            KillTarget::Majority => {
                ids.shuffle(&mut rng);
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
                vec![pool[shoal::runtime::rng().gen_range(0..pool.len())]]
            }
        }
    }

    /// Freezes replicas (their tasks stop, their connections stay) for a
    /// while: a GC pause or a stalled VM.
    async fn pause_for(&self, victims: &[ReplicaId], down_ms: u64) {
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

    /// Loses packets and slows every link for a while.
    async fn degrade_network_for(&self, duration_ms: u64) {
        let fault = self.network.clone().unwrap_or(NetworkFault {
            packet_loss_rate: 0.05,
            latency_ms_min: 20,
            latency_ms_max: 100,
        });
        let net = madsim::net::NetSim::current();
        let mut before = None;
        net.update_config(|config| {
            before = Some(config.clone());
            config.packet_loss_rate = fault.packet_loss_rate;
            config.send_latency = Duration::from_millis(fault.latency_ms_min)
                ..Duration::from_millis(fault.latency_ms_max.max(fault.latency_ms_min + 1));
        });
        self.record(format!(
            "network: {:.0}% loss, {}-{} ms latency",
            fault.packet_loss_rate * 100.0,
            fault.latency_ms_min,
            fault.latency_ms_max
        ));
        tokio::time::sleep(Duration::from_millis(duration_ms)).await;
        let before = before.expect("network config read");
        net.update_config(|config| *config = before);
        self.record("network restored".to_string());
    }

    async fn kill_for(&self, victims: &[ReplicaId], down_ms: u64) {
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
}

/// After every fault is over, a fresh client writes `writes` keys; the
/// progress checker requires all of them to succeed.
async fn liveness_phase(cluster: &Cluster, writes: u32, t0: tokio::time::Instant) -> Vec<WriteOp> {
    cluster
        .observe(move |mut client| async move {
            let mut ops = Vec::new();
            for i in 0..writes {
                let key = Bytes::from(format!("live-{i:04}"));
                let value = Bytes::from(format!("after-heal-{i}"));
                let start = t0.elapsed();
                let outcome = match client.put(key.clone(), value.clone()).await {
                    Ok(()) => Outcome::Ok,
                    Err(e) => Outcome::Failed(e.to_string()),
                };
                ops.push(WriteOp {
                    client: LIVENESS_CLIENT,
                    key,
                    value,
                    start,
                    end: t0.elapsed(),
                    outcome,
                });
            }
            ops
        })
        .await
}

/// After everything, reads each hot key of a register workload once more, so
/// that the final state is checked for linearizability too.
async fn read_hot_keys(
    cluster: &Cluster,
    scenario: &Scenario,
    t0: tokio::time::Instant,
) -> Vec<KeyedOp> {
    if scenario.workload.kind != WorkloadKind::Register {
        return Vec::new();
    }
    let keys = scenario.workload.keys;
    cluster
        .observe(move |mut client| async move {
            let mut ops = Vec::new();
            for k in 0..keys {
                let key = register::key(k);
                let call = t0.elapsed();
                if let Ok(value) = client.get(key.clone()).await {
                    ops.push(KeyedOp {
                        client: LIVENESS_CLIENT,
                        key,
                        op: RegisterOp::Read(Some(value)),
                        call,
                        ret: Some(t0.elapsed()),
                    });
                }
            }
            ops
        })
        .await
}

/// Waits until the replicas of each group have applied the same log prefix
/// (or the wait runs out) and returns what each holds, group by group.
async fn converged_state(
    cluster: &Cluster,
) -> Vec<Vec<(u64, shoal::storage::state_machine::Applied)>> {
    let deadline = tokio::time::Instant::now() + CONVERGENCE_WAIT;
    loop {
        // Each group's current voters only: a removed or never-added replica
        // is rightly behind.
        let groups: Vec<Vec<_>> = cluster
            .groups()
            .into_iter()
            .map(|g| {
                cluster
                    .voters_of(g)
                    .into_iter()
                    .map(|id| (id, cluster.applied(id)))
                    .collect()
            })
            .collect();
        let agreed = groups.iter().all(|replicas: &Vec<(u64, _)>| {
            replicas
                .windows(2)
                .all(|w| w[0].1.last_applied == w[1].1.last_applied)
        });
        if agreed || tokio::time::Instant::now() >= deadline {
            return groups;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads back every key the history wrote through a client (a read that
/// fails counts as absent).
async fn read_back(cluster: &Cluster, history: &History) -> BTreeMap<Bytes, Option<Bytes>> {
    read_keys(
        cluster,
        history.writes.iter().map(|op| op.key.clone()).collect(),
    )
    .await
}

/// Reads `keys` through a client (a read that fails counts as absent).
async fn read_keys(cluster: &Cluster, keys: BTreeSet<Bytes>) -> BTreeMap<Bytes, Option<Bytes>> {
    cluster
        .observe(move |mut client| async move {
            let mut reads = BTreeMap::new();
            for key in keys {
                let value = client.get(key.clone()).await.ok().flatten();
                reads.insert(key, value);
            }
            reads
        })
        .await
}
