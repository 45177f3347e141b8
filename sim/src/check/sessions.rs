//! The de-duplication table stays within its bound: sampled through the
//! run, no replica's live-sessions gauge (`shoal_sessions`, the handle its
//! node's metrics registry exports, set as the state machine applies)
//! exceeds the group's `max_sessions`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Checker, Violation};
use crate::cluster::{Cluster, ReplicaId};

/// How often the gauges are read.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(50);

/// The largest count seen, with the replica and the time it was seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Peak {
    /// Live sessions.
    pub sessions: i64,
    /// The replica that held them.
    pub replica: ReplicaId,
    /// When, since the run began.
    pub at: Duration,
}

/// Samples every replica's sessions gauge during a run.
pub struct Observer {
    peak: Arc<Mutex<Peak>>,
    task: tokio::task::JoinHandle<()>,
}

impl Observer {
    /// Starts sampling `cluster`'s replicas.
    pub fn start(cluster: &Cluster, t0: tokio::time::Instant) -> Observer {
        let peak: Arc<Mutex<Peak>> = Arc::default();
        let metrics = cluster.storage_metrics();
        let sink = peak.clone();
        let task = tokio::spawn(async move {
            loop {
                for (replica, metrics) in &metrics {
                    let sessions = metrics.sessions.get();
                    let mut peak = sink.lock().expect("peak lock");
                    if sessions > peak.sessions {
                        *peak = Peak {
                            sessions,
                            replica: *replica,
                            at: t0.elapsed(),
                        };
                    }
                }
                tokio::time::sleep(SAMPLE_INTERVAL).await;
            }
        });
        Observer { peak, task }
    }

    /// Stops sampling and checks the peak against `max_sessions`.
    pub fn check(self, max_sessions: usize) -> Result<(), Violation> {
        self.task.abort();
        let peak = *self.peak.lock().expect("peak lock");
        tracing::info!(?peak, max_sessions, "live sessions peak");
        check(peak, max_sessions)
    }
}

/// Whether `peak` stays within `max_sessions`.
pub fn check(peak: Peak, max_sessions: usize) -> Result<(), Violation> {
    if peak.sessions <= max_sessions as i64 {
        return Ok(());
    }
    Err(Violation {
        checker: Checker::SessionBound,
        detail: format!(
            "replica {} held {} live sessions at {:?}; the bound is {max_sessions}",
            peak.replica, peak.sessions, peak.at
        ),
        blamed: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peak_over_the_bound_is_a_violation() {
        let peak = |sessions| Peak {
            sessions,
            replica: 3,
            at: Duration::from_secs(2),
        };
        assert_eq!(check(peak(64), 64), Ok(()));
        let violation = check(peak(65), 64).unwrap_err();
        assert_eq!(violation.checker, Checker::SessionBound);
        assert!(violation.detail.contains("65 live sessions"));
    }
}
