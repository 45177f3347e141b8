//! While one shard moves between groups, operations on the shards that stay
//! put keep succeeding, at their usual latency. Prints the measurement.
#![cfg(madsim)]

use std::path::Path;
use std::time::Duration;

use shoal::machine::shard::shard_of;
use shoal_sim::history::KeyedOp;
use shoal_sim::scenario::Scenario;

const SCENARIO: &str = r#"
name = "shard-move"
[cluster]
replicas = 3
groups = 2
shard_count = 16
[workload]
kind = "register"
clients = 8
keys = 24
ops_per_client = 250
[[faults.membership]]
action = "move"
group = 2
after_acks = 600
"#;

fn latency(op: &KeyedOp) -> Duration {
    op.ret.map_or(Duration::MAX, |ret| ret - op.call)
}

#[madsim::test]
async fn shards_that_do_not_move_keep_serving_during_a_migration() {
    let scenario = Scenario::parse(Path::new("shard-move"), SCENARIO).unwrap();
    let report = shoal_sim::run::run(&scenario).await;
    assert!(report.violations.is_empty(), "{:?}", report.violations);

    let moved = report
        .history
        .faults
        .iter()
        .find(|f| f.what.contains("Move {"))
        .expect("the move happened");
    let shard: u32 = moved
        .what
        .split("shard: ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // The second after the controller's answer covers the move: groups
    // poll the controller every 100 ms, then the new owner pulls the shard.
    let (start, end) = (moved.at, moved.at + Duration::from_secs(1));
    let on_moving = |op: &&KeyedOp| shard_of(&op.key, 16) == shard;
    let window = |op: &&KeyedOp| op.call >= start && op.call < end;
    let during: Vec<&KeyedOp> = report.history.ops.iter().filter(window).collect();
    let (moving, others): (Vec<&KeyedOp>, Vec<&KeyedOp>) =
        during.iter().partition(|op| on_moving(op));
    let before: Vec<&KeyedOp> = report
        .history
        .ops
        .iter()
        .filter(|op| op.call < start)
        .collect();
    let max = |ops: &[&KeyedOp]| ops.iter().map(|op| latency(op)).max().unwrap_or_default();
    let mean = |ops: &[&KeyedOp]| {
        ops.iter().map(|op| latency(op)).sum::<Duration>() / ops.len().max(1) as u32
    };
    println!(
        "shard {shard} moved at {start:?}; in the next second: {} operations on other shards, {} acknowledged, \
         mean latency {:?} (before the move {:?}), max {:?}; {} operations on the moving shard, max latency {:?}",
        others.len(),
        others.iter().filter(|op| op.ret.is_some()).count(),
        mean(&others),
        mean(&before),
        max(&others),
        moving.len(),
        max(&moving),
    );
    assert!(
        !others.is_empty(),
        "no operations on other shards during the move"
    );
    assert!(
        others.iter().all(|op| op.ret.is_some()),
        "an operation on an unmoved shard failed"
    );
}
