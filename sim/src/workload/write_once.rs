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

/// Runs client number `index` of `spec.clients`: it writes keys
/// `index, index + clients, ...` in order (until `duration_ms`, if set),
/// recording each write in the history and counting it in the progress.
pub async fn run_client(mut worker: Worker) {
    let mut rng = ChaCha8Rng::seed_from_u64(worker.seed);
    let spec = worker.spec.clone();
    for (n, i) in (worker.index..spec.keys)
        .step_by(spec.clients as usize)
        .enumerate()
    {
        if !worker.keep_going(n as u32) {
            break;
        }
        let mut value = vec![0u8; spec.value_size_bytes];
        rng.fill(&mut value[..]);
        let (key, value) = (key(i), Bytes::from(value));
        let start = worker.now();
        let result = worker.client.put(key.clone(), value.clone()).await;
        let end = worker.now();
        worker.progress.finish(result.is_ok());
        let outcome = match result {
            Ok(()) => Outcome::Ok,
            Err(e) => Outcome::Failed(e.to_string()),
        };
        worker
            .history
            .lock()
            .expect("history lock")
            .writes
            .push(WriteOp {
                client: worker.index,
                key,
                value,
                start,
                end,
                outcome,
            });
    }
}
