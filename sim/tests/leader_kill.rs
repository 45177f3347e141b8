//! The spine's simulation test: a three-replica group loses its leader in the
//! middle of the traffic and must lose nothing. Run one seed per process:
//! `MADSIM_TEST_SEED=N cargo simtest -p shoal-sim --test leader_kill`
//! (add `MADSIM_TEST_CHECK_DETERMINISM=1` to run it twice and compare).
#![cfg(madsim)]

use std::path::Path;

use shoal_sim::history::Outcome;
use shoal_sim::scenario::Scenario;

#[madsim::test]
async fn leader_kill_loses_no_acknowledged_write() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/leader-kill.toml");
    let scenario = Scenario::load(&path).unwrap();
    let report = shoal_sim::run::run(&scenario).await;

    for violation in &report.violations {
        eprintln!("{violation}");
    }
    assert!(
        report.violations.is_empty(),
        "seed {} failed",
        madsim::runtime::Handle::current().seed()
    );
    let faults: Vec<&str> = report
        .history
        .faults
        .iter()
        .map(|f| f.what.as_str())
        .collect();
    assert!(faults[0].starts_with("kill replicas"), "{faults:?}");
    assert!(faults[1].starts_with("restart replicas"), "{faults:?}");
    let killed_at = report.history.faults[0].at;
    let acked_after_kill = report
        .history
        .writes
        .iter()
        .filter(|op| op.outcome == Outcome::Ok && op.start > killed_at)
        .count();
    assert!(acked_after_kill > 0);
    // 1,000 workload writes and the liveness phase's 20.
    assert_eq!(report.acked(), 1020);
}
