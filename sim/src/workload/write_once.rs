//! The write-once workload: clients write distinct keys, each exactly once,
//! so the value every acknowledged key must hold is known without a model.

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::Worker;
use crate::history::{Outcome, WriteOp};

/// The key written as number `i`.
pub fn key(i: u32) -> Bytes {
    Bytes::from(format!("key-{i:06}"))
}

/// Runs client number `client` of `spec.clients`: it writes keys
/// `client, client + clients, ...` in order, recording each write in
/// `history` and counting it in `progress`.
pub async fn run_client(worker: Worker) {
    let Worker {
        index: client_index,
        mut client,
        spec,
        seed,
        t0,
        history,
        progress,
    } = worker;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for i in (client_index..spec.keys).step_by(spec.clients as usize) {
        let mut value = vec![0u8; spec.value_size_bytes];
        rng.fill(&mut value[..]);
        let (key, value) = (key(i), Bytes::from(value));
        let start = t0.elapsed();
        let result = client.put(key.clone(), value.clone()).await;
        let end = t0.elapsed();
        progress.finish(result.is_ok());
        let outcome = match result {
            Ok(()) => Outcome::Ok,
            Err(e) => Outcome::Failed(e.to_string()),
        };
        history.lock().expect("history lock").writes.push(WriteOp {
            client: client_index,
            key,
            value,
            start,
            end,
            outcome,
        });
    }
}
