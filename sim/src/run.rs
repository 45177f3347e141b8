//! Runs one scenario under one seed, inside the simulator, and checks it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::check::convergence::Captured;
use bytes::Bytes;
use rand::Rng;
use shoal::machine::shard::controller::ControllerOp;

use crate::check::{self, Checker, Violation};
use crate::cluster::Cluster;
use crate::history::{History, Outcome, WriteOp, LIVENESS_CLIENT};
use crate::nemesis::Nemesis;
use crate::scenario::{ClientRouting, Scenario};
use crate::schedule::ScheduledFault;
use crate::workload::{read_keys, Progress, Worker, Workload};

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
    /// The faults applied, as a schedule that can be replayed.
    pub schedule: Vec<ScheduledFault>,
    /// How often each rare situation was reached and each fault site
    /// fired, by name.
    pub reached: BTreeMap<String, u64>,
}

impl Report {
    /// Operations acknowledged (a scan, recorded as one read per key, counts
    /// once).
    pub fn acked(&self) -> usize {
        let writes = self
            .history
            .writes
            .iter()
            .filter(|op| op.outcome == Outcome::Ok);
        let ops = self.history.ops.iter().filter(|op| op.ret.is_some());
        writes.count()
            + ops
                .map(|op| (op.client, op.call))
                .collect::<BTreeSet<_>>()
                .len()
    }

    /// Operations recorded (a scan counts once).
    pub fn operations(&self) -> usize {
        let ops = self.history.ops.iter().map(|op| (op.client, op.call));
        self.history.writes.len() + ops.collect::<BTreeSet<_>>().len()
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
    /// Prints the report for a person (the plain-text history view), ending
    /// with one machine-readable `RESULT` line (see [`ResultLine`]); `trace`
    /// is the run's trace digest and length.
    pub fn print(&self, scenario: &Scenario, seed: u64, trace: (u64, usize)) {
        print!("{}", crate::view::text(self, &scenario.name, seed));
        let checkers: Vec<&str> = self.violations.iter().map(|v| v.checker.name()).collect();
        let reached: Vec<String> = self
            .reached
            .iter()
            .map(|(n, c)| format!("{n}:{c}"))
            .collect();
        println!(
            "RESULT verdict={} digest={:016x} trace={:016x} events={} simulated_s={:.3} acked={} operations={} faults={} checkers={} reached={}",
            if self.passed() { "pass" } else { "fail" },
            self.digest(),
            trace.0,
            trace.1,
            self.simulated.as_secs_f64(),
            self.acked(),
            self.operations(),
            self.schedule.len(),
            if checkers.is_empty() { "-".to_string() } else { checkers.join(",") },
            if reached.is_empty() { "-".to_string() } else { reached.join(",") }
        );
    }

    /// Whether every check held.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// The command that replays `scenario` at `seed`, with the planted bugs this
/// process runs with.
pub fn replay_command(scenario: &std::path::Path, seed: u64) -> String {
    let planted = std::env::var("SHOAL_PLANTED_BUGS").unwrap_or_default();
    format!(
        "{}cargo replay {} --seed {seed}",
        if planted.is_empty() {
            String::new()
        } else {
            format!("SHOAL_PLANTED_BUGS={planted} ")
        },
        scenario.display()
    )
}

/// The `RESULT` line a run prints last, read back by the tools that start
/// runs in child processes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResultLine {
    /// Every check held.
    pub passed: bool,
    /// The history's digest.
    pub digest: String,
    /// The trace's digest.
    pub trace: String,
    /// Simulated seconds the run took.
    pub simulated_s: f64,
    /// Operations acknowledged.
    pub acked: u64,
    /// Operations recorded.
    pub operations: u64,
    /// Faults applied.
    pub faults: u64,
    /// The checkers that tripped.
    pub checkers: Vec<String>,
    /// Situations reached and fault sites fired, with their counts.
    pub reached: BTreeMap<String, u64>,
}

impl ResultLine {
    /// Finds and parses the last `RESULT` line of a run's output.
    pub fn parse(stdout: &str) -> Option<ResultLine> {
        let line = stdout.lines().rev().find(|l| l.starts_with("RESULT "))?;
        let fields: BTreeMap<&str, &str> = line
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .collect();
        let number = |name| fields.get(name).and_then(|v| v.parse::<f64>().ok());
        Some(ResultLine {
            passed: fields.get("verdict") == Some(&"pass"),
            digest: fields.get("digest")?.to_string(),
            trace: fields.get("trace")?.to_string(),
            simulated_s: number("simulated_s")?,
            acked: number("acked")? as u64,
            operations: number("operations")? as u64,
            faults: number("faults")? as u64,
            checkers: fields
                .get("checkers")?
                .split(',')
                .filter(|c| *c != "-")
                .map(str::to_string)
                .collect(),
            reached: fields
                .get("reached")
                .into_iter()
                .flat_map(|list| list.split(','))
                .filter_map(|pair| pair.split_once(':'))
                .filter_map(|(name, count)| Some((name.to_string(), count.parse().ok()?)))
                .collect(),
        })
    }
}

/// Runs `scenario` in the current simulation (the seed is the runtime's):
/// forms the groups, runs the workload's clients while the nemesis injects
/// faults, heals everything, observes the end state and checks it.
pub async fn run(scenario: &Scenario) -> Report {
    let t0 = tokio::time::Instant::now();
    let buggify = scenario.buggify.as_ref();
    shoal::runtime::enable_buggify(
        &buggify.map(|b| b.enabled()).unwrap_or_default(),
        buggify.map_or(0.0, |b| b.fire_rate),
    );
    let disk_faults = scenario.faults.disk.clone().unwrap_or_default();
    let mut cluster = Cluster::start(&scenario.cluster, &disk_faults);
    let history = Arc::new(Mutex::new(History::default()));
    let progress = Arc::new(Progress::default());
    let workload = Workload::new(scenario.workload.kind);

    form_groups(&cluster, scenario).await;
    let shard_safety = check::shard_safety::Observer::start(&cluster);
    let sessions = check::sessions::Observer::start(&cluster, t0);
    let clients = start_clients(&mut cluster, scenario, &workload, &history, &progress, t0);

    let nemesis = Nemesis::new(&cluster, scenario, &history, t0);
    let first_fault = nemesis.run(scenario, &progress).await;
    let healed_at = t0.elapsed();
    cluster.heal_disks();
    shoal::runtime::quiesce_buggify();
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

    let end = observe_end(&cluster, scenario, &workload, &history, t0).await;
    let checks = vec![
        end.workload,
        shard_safety.check(&cluster),
        sessions.check(
            (scenario.cluster.max_sessions)
                .unwrap_or(shoal::machine::session::MAX_SESSIONS_DEFAULT),
        ),
        check::linearizability::check(&end.history.ops),
        check::contract::check(&end.history),
        check::durability::check(&end.history, &end.reads),
        check::convergence::while_applying(),
        end.replicas
            .iter()
            .map(|group| check::convergence::check(group))
            .find(Result::is_err)
            .unwrap_or(Ok(())),
        check::progress::check(
            &end.history,
            scenario.checks.all_writes_succeed,
            first_fault,
        ),
        check::progress::every_kind_answered(&end.history),
        check::progress::every_client_recovers(
            &end.history,
            healed_at,
            Duration::from_millis(scenario.checks.recover_within_ms),
        ),
    ];
    Report {
        violations: violations(scenario, &cluster, checks),
        history: end.history,
        simulated: t0.elapsed(),
        schedule: nemesis.schedule(),
        reached: shoal::runtime::reached_counts()
            .into_iter()
            .map(|(name, count)| (name.to_string(), count))
            .collect(),
    }
}

/// Waits for every group to elect a leader; in a sharded cluster, then
/// joins the data groups (a failed join is logged: the checks will tell).
async fn form_groups(cluster: &Cluster, scenario: &Scenario) {
    for group in cluster.groups() {
        let leader = cluster.leader_of(group, Duration::from_secs(10)).await;
        tracing::info!(%group, ?leader, "group formed");
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
}

/// Starts the workload's clients, each on a machine of its own with a
/// generator seeded from the run's; each counts itself done at its end.
fn start_clients(
    cluster: &mut Cluster,
    scenario: &Scenario,
    workload: &Workload,
    history: &Arc<Mutex<History>>,
    progress: &Arc<Progress>,
    t0: tokio::time::Instant,
) -> Vec<madsim::task::JoinHandle<()>> {
    let mut clients = Vec::new();
    for index in 0..scenario.workload.clients {
        let node = cluster.client_node();
        let config = match scenario.workload.routing {
            ClientRouting::Client => cluster.client_config(),
            ClientRouting::Nodes => cluster.client_config_via_nodes(),
        };
        let client = shoal::client::Client::new(config);
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
        let progress = progress.clone();
        let workload = workload.clone();
        clients.push(node.spawn(async move {
            workload.run_client(worker).await;
            progress.clients_done.fetch_add(1, Ordering::Relaxed);
        }));
    }
    clients
}

/// What the run shows once every fault is over and the clients are done.
struct End {
    /// The whole history, the liveness phase's writes and the workload's
    /// final reads included.
    history: History,
    /// Every key written through a client, read back.
    reads: BTreeMap<Bytes, Option<Bytes>>,
    /// What each replica holds, group by group.
    replicas: Vec<Vec<(u64, Captured)>>,
    /// The workload's own check of the final state.
    workload: Result<(), Violation>,
}

/// Runs the liveness phase, waits for the replicas to agree, and reads the
/// final state back: the workload's final reads, every written key, and
/// whatever the workload checks itself.
async fn observe_end(
    cluster: &Cluster,
    scenario: &Scenario,
    workload: &Workload,
    history: &Mutex<History>,
    t0: tokio::time::Instant,
) -> End {
    let liveness = liveness_phase(cluster, scenario.checks.liveness_writes, t0).await;
    history
        .lock()
        .expect("history lock")
        .writes
        .extend(liveness);
    tracing::info!(at = ?t0.elapsed(), "liveness phase done");

    let replicas = converged_state(cluster).await;
    let final_reads = workload.final_reads(cluster, &scenario.workload, t0).await;
    history
        .lock()
        .expect("history lock")
        .ops
        .extend(final_reads);
    let history = history.lock().expect("history lock").clone();
    let reads = read_back(cluster, &history).await;
    tracing::info!(at = ?t0.elapsed(), "written keys read back");
    let workload = workload.final_check(cluster, &scenario.workload).await;
    End {
        history,
        reads,
        replicas,
        workload,
    }
}

/// The violations among `checks` and the cluster's own findings that the
/// scenario's choice of checkers counts.
fn violations(
    scenario: &Scenario,
    cluster: &Cluster,
    checks: Vec<Result<(), Violation>>,
) -> Vec<Violation> {
    let mut checks = checks;
    if scenario.checks.snapshot_installed {
        checks.push(check::progress::snapshot_installed(
            cluster.snapshots_installed(),
        ));
    }
    // The engine, and while a snapshot arrives the received bytes and the
    // engine made from them: more files at the top are a leak.
    let files = cluster.file_counts("");
    if let Some((id, files)) = files.iter().find(|(_, files)| **files > 3) {
        checks.push(Err(Violation {
            blamed: Vec::new(),
            checker: Checker::DiskUse,
            detail: format!("replica {id} keeps {files} files beside its log; old ones must go"),
        }));
    }
    if let Some(report) = cluster.corruption_reports().first() {
        checks.push(Err(Violation {
            blamed: Vec::new(),
            checker: Checker::Recovery,
            detail: format!("a replica found corruption the simulated disk never causes: {report}"),
        }));
    }
    checks
        .into_iter()
        .filter_map(Result::err)
        .filter(|v| scenario.checks.counts(v.checker))
        .collect()
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

/// Waits until the replicas of each group have applied the same log prefix
/// (or the wait runs out) and returns what each holds, group by group.
async fn converged_state(cluster: &Cluster) -> Vec<Vec<(u64, Captured)>> {
    let deadline = tokio::time::Instant::now() + CONVERGENCE_WAIT;
    loop {
        // Each group's current voters only: a removed or never-added replica
        // is rightly behind.
        let agreed = cluster.groups().into_iter().all(|g| {
            let applied: BTreeSet<_> = cluster
                .voters_of(g)
                .into_iter()
                .map(|id| cluster.probe(id).with(|a| a.last_applied))
                .collect();
            applied.len() <= 1
        });
        if agreed || tokio::time::Instant::now() >= deadline {
            return cluster
                .groups()
                .into_iter()
                .map(|g| {
                    cluster
                        .voters_of(g)
                        .into_iter()
                        .map(|id| (id, Captured::of(&cluster.applied(id))))
                        .collect()
                })
                .collect();
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
