//! Validation of a parsed scenario: every value within its range (bounds
//! from [`limits`](super::limits)) and every combination usable. The first
//! problem found is reported, with its key in the scenario file.

use super::limits::{
    CLIENTS_MAX, GROUPS_MAX, HOT_KEYS_MAX, KEY_SPACE_MAX, REPLICAS_PER_GROUP_MAX,
    SPARE_REPLICAS_PER_GROUP_MAX,
};
use super::{Chaos, ClusterSpec, FaultSpec, Scenario, WorkloadKind, WorkloadSpec};
use crate::disk::DiskFaults;
use crate::schedule::ScheduledFault;

/// What is wrong: the offending key and the reason.
pub(super) type Invalid = (&'static str, String);

/// Checks a parsed scenario.
pub(super) fn validate(scenario: &Scenario) -> Result<(), Invalid> {
    cluster(&scenario.cluster)?;
    workload(&scenario.workload)?;
    triggers(scenario)?;
    if !scenario.swarm && !scenario.workload.swarm_kinds.is_empty() {
        return Err(("workload.swarm_kinds", "needs swarm = true".into()));
    }
    if let Some(events) = &scenario.faults.schedule {
        schedule(scenario, events)?;
    }
    faults(&scenario.faults)?;
    if let Some(spec) = &scenario.buggify {
        super::buggify::validate(spec)?;
    }
    super::buggify::validate_must_reach(&scenario.checks.must_reach)?;
    if scenario.time_limit_s == 0 {
        return Err(("time_limit_s", "must be positive".into()));
    }
    Ok(())
}

fn cluster(cluster: &ClusterSpec) -> Result<(), Invalid> {
    if !(1..=REPLICAS_PER_GROUP_MAX).contains(&cluster.replicas) {
        return Err((
            "cluster.replicas",
            format!("must be between 1 and {REPLICAS_PER_GROUP_MAX}"),
        ));
    }
    if cluster.spare_replicas > SPARE_REPLICAS_PER_GROUP_MAX {
        return Err((
            "cluster.spare_replicas",
            format!("must be at most {SPARE_REPLICAS_PER_GROUP_MAX}"),
        ));
    }
    if cluster.groups + cluster.standby_groups > GROUPS_MAX {
        return Err((
            "cluster.groups",
            format!("and cluster.standby_groups must add up to at most {GROUPS_MAX}"),
        ));
    }
    if cluster.max_sessions == Some(0) || cluster.session_idle_timeout_ms == Some(0) {
        return Err((
            "cluster.max_sessions",
            "and cluster.session_idle_timeout_ms must be at least 1".into(),
        ));
    }
    Ok(())
}

fn workload(workload: &WorkloadSpec) -> Result<(), Invalid> {
    if !(1..=CLIENTS_MAX).contains(&workload.clients) {
        return Err((
            "workload.clients",
            format!("must be between 1 and {CLIENTS_MAX}"),
        ));
    }
    keys(workload)?;
    let hot_keys = [WorkloadKind::Register, WorkloadKind::ListAppend];
    if workload
        .swarm_kinds
        .iter()
        .chain(workload.swarm_kinds.first().map(|_| &workload.kind))
        .any(|kind| !hot_keys.contains(kind))
    {
        return Err((
            "workload.swarm_kinds",
            "draws only among register and list-append, and `kind` must be one of them".into(),
        ));
    }
    if workload.appends_per_session == Some(0) {
        return Err(("workload.appends_per_session", "must be at least 1".into()));
    }
    if workload.ops_per_client == Some(0) {
        return Err(("workload.ops_per_client", "must be positive".into()));
    }
    if workload.duration_ms == Some(0) {
        return Err(("workload.duration_ms", "must be positive".into()));
    }
    if !(0.0..1.0).contains(&workload.skew) {
        return Err(("workload.skew", "must be at least 0 and below 1".into()));
    }
    if let Some(mix) = &workload.mix {
        if mix.get + mix.put + mix.cas + mix.delete + mix.scan == 0 {
            return Err(("workload.mix", "needs a positive weight".into()));
        }
    }
    if workload.value_size_bytes > shoal::limits::VALUE_SIZE_MAX {
        return Err((
            "workload.value_size_bytes",
            format!("must be at most {}", shoal::limits::VALUE_SIZE_MAX),
        ));
    }
    Ok(())
}

/// The keys the workload kind needs, and how long it runs.
fn keys(workload: &WorkloadSpec) -> Result<(), Invalid> {
    let in_range = |max: u32| {
        if (1..=max).contains(&workload.keys) {
            Ok(())
        } else {
            Err((
                "workload.keys",
                format!("must be between 1 and {max} for this workload"),
            ))
        }
    };
    match workload.kind {
        WorkloadKind::WriteOnce if workload.keys < workload.clients => Err((
            "workload.keys",
            format!("must be at least workload.clients ({})", workload.clients),
        )),
        WorkloadKind::WriteOnce => Ok(()),
        _ if workload.ops_per_client.is_none() && workload.duration_ms.is_none() => Err((
            "workload.ops_per_client",
            "or workload.duration_ms must be set for this workload".into(),
        )),
        WorkloadKind::Register | WorkloadKind::ListAppend => in_range(HOT_KEYS_MAX),
        WorkloadKind::Throughput => in_range(KEY_SPACE_MAX),
    }
}

/// Progress-triggered faults must be able to trigger.
fn triggers(scenario: &Scenario) -> Result<(), Invalid> {
    let faults = &scenario.faults;
    let triggers = faults.kill.iter().map(|k| k.after_acks);
    let triggers = triggers.chain(faults.partition.iter().map(|p| p.after_acks));
    let triggers = triggers.chain(faults.membership.iter().map(|m| m.after_acks));
    if let Some(total) = scenario.workload.total_ops() {
        for after_acks in triggers {
            if after_acks >= total {
                return Err((
                    "faults.*.after_acks",
                    format!("must be below the workload's operations ({total})"),
                ));
            }
        }
    }
    Ok(())
}

/// A recorded schedule stands alone, names only replicas the cluster has,
/// and is in time order.
fn schedule(scenario: &Scenario, schedule: &[ScheduledFault]) -> Result<(), Invalid> {
    let faults = &scenario.faults;
    if !faults.kill.is_empty()
        || !faults.partition.is_empty()
        || !faults.membership.is_empty()
        || faults.chaos.is_some()
    {
        return Err((
            "faults.schedule",
            "replaces kill, partition, membership and chaos: remove those".into(),
        ));
    }
    let known = scenario.cluster.replica_ids();
    for event in schedule {
        if let Some(id) = event
            .fault
            .replicas()
            .into_iter()
            .find(|id| !known.contains(id))
        {
            return Err((
                "faults.schedule",
                format!(
                    "names replica {id} at {} ms, which this cluster does not have (it has {known:?})",
                    event.at_ms
                ),
            ));
        }
    }
    if schedule.windows(2).any(|w| w[0].at_ms > w[1].at_ms) {
        return Err(("faults.schedule", "must be in time order (at_ms)".into()));
    }
    Ok(())
}

/// Chaos, every probability, and the network fault.
fn faults(faults: &FaultSpec) -> Result<(), Invalid> {
    if let Some(chaos) = &faults.chaos {
        if chaos.every_ms == 0 {
            return Err(("faults.chaos.every_ms", "must be positive".into()));
        }
    }
    let (mut chaos, mut disk) = (faults.chaos.clone(), faults.disk.clone());
    let chaos_rates = chaos.as_mut().map(Chaos::rates_mut);
    let disk_rates = disk.as_mut().map(DiskFaults::rates_mut);
    for (key, rate) in chaos_rates.into_iter().chain(disk_rates).flatten() {
        if !(0.0..=1.0).contains(rate) {
            return Err((key, "must be between 0 and 1".into()));
        }
    }
    if let Some(network) = &faults.network {
        if !(0.0..1.0).contains(&network.packet_loss_rate) {
            return Err((
                "faults.network.packet_loss_rate",
                "must be at least 0 and below 1".into(),
            ));
        }
        if network.latency_ms_min > network.latency_ms_max {
            return Err((
                "faults.network.latency_ms_min",
                "must not exceed latency_ms_max".into(),
            ));
        }
    }
    Ok(())
}
