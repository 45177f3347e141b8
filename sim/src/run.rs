//! Runs one scenario under one seed, inside the simulator, and checks it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;

use crate::check::{self, Violation};
use crate::cluster::Cluster;
use crate::history::{FaultEvent, History, Outcome};
use crate::scenario::Scenario;
use crate::workload::write_once;

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
    /// Writes acknowledged.
    pub fn acked(&self) -> usize {
        self.history
            .writes
            .iter()
            .filter(|op| op.outcome == Outcome::Ok)
            .count()
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
    let scenario = scenario.clone();
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
            "scenario {} seed {}: {} writes acknowledged, {} failed, {} faults, {:.2} simulated s",
            scenario.name,
            seed,
            self.acked(),
            self.history.writes.len() - self.acked(),
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
    let mut cluster = Cluster::start(scenario.cluster.replicas);
    let history = Arc::new(Mutex::new(History::default()));
    let acked = Arc::new(AtomicU32::new(0));

    let first_leader = cluster.leader(Duration::from_secs(10)).await;
    tracing::info!(?first_leader, "group formed");

    let mut clients = Vec::new();
    for index in 0..scenario.workload.clients {
        let node = cluster.client_node();
        let client = shoal::client::Client::new(cluster.client_config());
        let seed = shoal::runtime::rng().gen();
        clients.push(node.spawn(write_once::run_client(
            index,
            client,
            scenario.workload.clone(),
            seed,
            t0,
            history.clone(),
            acked.clone(),
        )));
    }

    let mut fault_at = None;
    if let Some(kill) = &scenario.faults.leader_kill {
        let all_done =
            || history.lock().expect("history lock").writes.len() as u32 >= scenario.workload.keys;
        while acked.load(Ordering::Relaxed) < kill.after_acks && !all_done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if let Some(leader) = cluster.leader(Duration::from_secs(5)).await {
            let at = t0.elapsed();
            cluster.kill(leader);
            record(&history, at, format!("kill replica {leader} (leader)"));
            fault_at = Some(at);
            tokio::time::sleep(Duration::from_millis(kill.down_ms)).await;
            cluster.restart(leader);
            record(&history, t0.elapsed(), format!("restart replica {leader}"));
        } else {
            record(
                &history,
                t0.elapsed(),
                "no leader found to kill".to_string(),
            );
        }
    }

    for client in clients {
        client.await.expect("client task panicked");
    }

    tracing::info!(at = ?t0.elapsed(), "workload done");
    let replicas = converged_state(&cluster).await;
    tracing::info!(at = ?t0.elapsed(), "replicas compared");
    let history = history.lock().expect("history lock").clone();
    let reads = read_back(&cluster, &history).await;
    tracing::info!(at = ?t0.elapsed(), "acknowledged writes read back");

    let violations = [
        check::durability::check(&history, &reads),
        check::convergence::check(&replicas),
        check::progress::check(&history, fault_at),
    ]
    .into_iter()
    .filter_map(Result::err)
    .collect();
    Report {
        history,
        violations,
        simulated: t0.elapsed(),
    }
}

fn record(history: &Mutex<History>, at: Duration, what: String) {
    tracing::info!(?at, %what, "fault");
    history
        .lock()
        .expect("history lock")
        .faults
        .push(FaultEvent { at, what });
}

/// Waits until every replica has applied the same log prefix (or the wait
/// runs out) and returns what each holds.
async fn converged_state(cluster: &Cluster) -> Vec<(u64, shoal::storage::state_machine::Applied)> {
    let deadline = tokio::time::Instant::now() + CONVERGENCE_WAIT;
    loop {
        let replicas: Vec<_> = cluster
            .ids()
            .into_iter()
            .map(|id| (id, cluster.applied(id)))
            .collect();
        let agreed = replicas
            .windows(2)
            .all(|w| w[0].1.last_applied == w[1].1.last_applied);
        if agreed || tokio::time::Instant::now() >= deadline {
            return replicas;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads back every acknowledged key through a client.
async fn read_back(cluster: &Cluster, history: &History) -> BTreeMap<Bytes, Option<Bytes>> {
    let keys: Vec<Bytes> = history
        .writes
        .iter()
        .filter(|op| op.outcome == Outcome::Ok)
        .map(|op| op.key.clone())
        .collect();
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
