//! Clients a node keeps to route requests it cannot serve itself: those of
//! the HTTP gateway, and gRPC requests from clients that do not route (see
//! [`super::kv`]).

use std::sync::Mutex;

use crate::client::{Client, ClientConfig, ClientError};

/// Idle clients kept for reuse; each has its own de-duplication session, so
/// this also bounds the sessions a node's routing creates.
const IDLE_CLIENTS_MAX: usize = 64;

/// Clients made on demand, each used by one request at a time.
pub struct ClientPool {
    config: ClientConfig,
    idle: Mutex<Vec<Client>>,
}

impl ClientPool {
    /// A pool of clients made with `config` (none made yet).
    pub fn new(config: ClientConfig) -> ClientPool {
        ClientPool {
            config,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `call` with a client of the pool.
    pub async fn with<T>(
        &self,
        call: impl AsyncFnOnce(&mut Client) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let idle = self.idle.lock().expect("client pool lock").pop();
        let mut client = idle.unwrap_or_else(|| Client::new(self.config.clone()));
        let result = call(&mut client).await;
        let mut idle = self.idle.lock().expect("client pool lock");
        if idle.len() < IDLE_CLIENTS_MAX {
            idle.push(client);
        }
        result
    }
}
