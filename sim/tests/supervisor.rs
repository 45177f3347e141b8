//! The harness's supervisor restarts a replica whose process exited on its
//! own, once, and never one the nemesis holds down; a restart it scheduled
//! never kills an incarnation something else started meanwhile. (It did
//! both once: a replica the nemesis had killed came back early, and a
//! healthy one was killed after the run's final state was captured.)
#![cfg(madsim)]

use std::path::Path;
use std::time::Duration;

use shoal_sim::cluster::Cluster;
use shoal_sim::scenario::Scenario;

const SCENARIO: &str = r#"
name = "supervisor"
[cluster]
replicas = 3
[workload]
clients = 1
keys = 1
value_size_bytes = 8
"#;

/// Longer than the supervisor's pause before a restart, and its polling.
const SETTLE: Duration = Duration::from_secs(3);

#[madsim::test]
async fn the_supervisor_restarts_only_what_exited_on_its_own() {
    let scenario = Scenario::parse(Path::new("supervisor"), SCENARIO).unwrap();
    let cluster = Cluster::start(&scenario.cluster, &Default::default());
    tokio::time::sleep(SETTLE).await;
    let id = cluster.ids()[0];
    let started = cluster.incarnations(id);

    // A process that exits is started again, once.
    cluster.exit(id);
    tokio::time::sleep(SETTLE).await;
    assert_eq!(cluster.incarnations(id), started + 1, "restarted once");

    // The nemesis kills it while a restart is pending: it stays down.
    cluster.exit(id);
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.kill(id);
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        cluster.incarnations(id),
        started + 1,
        "the supervisor revived a replica the nemesis holds down"
    );

    // The nemesis's restart starts it, once.
    cluster.restart(id);
    tokio::time::sleep(SETTLE).await;
    assert_eq!(cluster.incarnations(id), started + 2, "restarted once");

    // It exits and the nemesis kills and restarts it before the pending
    // restart fires: that restart must not kill the new incarnation.
    cluster.exit(id);
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.kill(id);
    cluster.restart(id);
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        cluster.incarnations(id),
        started + 3,
        "a stale supervisor restart killed a healthy incarnation"
    );
}
