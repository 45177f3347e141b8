//! Who the simulated cluster's parties are: nodes and the operator share a
//! cluster token (the identity a node admits peers and administrators by
//! without TLS, which the simulator's network does not have); workload
//! clients do not hold it.

use shoal::client::Credentials;

/// The cluster token simulated nodes share: it identifies them to each other
/// and identifies the operator (the observer) to them. Workload clients do
/// not have it.
pub(super) const CLUSTER_TOKEN: &str = "simulated-cluster-token";

/// What the operator presents: the cluster token.
pub fn operator() -> Credentials {
    Credentials {
        token: Some(CLUSTER_TOKEN.to_string()),
        tls: None,
    }
}
