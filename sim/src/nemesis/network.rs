//! Network degradation: packets lost and every link slowed for a while.

use std::time::Duration;

use super::Nemesis;
use crate::scenario::NetworkFault;
use crate::schedule::FaultAction;

impl Nemesis<'_> {
    /// The degradation the scenario's `[faults.network]` describes.
    pub(super) fn degradation(&self, duration_ms: u64) -> FaultAction {
        let fault = self.network.clone().unwrap_or(NetworkFault {
            packet_loss_rate: 0.05,
            latency_ms_min: 20,
            latency_ms_max: 100,
        });
        FaultAction::Network {
            packet_loss_rate: fault.packet_loss_rate,
            latency_ms_min: fault.latency_ms_min,
            latency_ms_max: fault.latency_ms_max,
            duration_ms,
        }
    }

    /// Loses packets and slows every link for a while.
    pub(super) async fn degrade_network_for(&self, fault: &NetworkFault, duration_ms: u64) {
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
}
