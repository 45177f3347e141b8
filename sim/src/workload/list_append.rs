//! The list-append workload: each key holds a comma-separated list; clients
//! append unique elements with a read followed by a compare-and-swap,
//! retrying on conflict. Every operation is recorded for the linearizability
//! checker, and every append (an [`Append`]) for the list checker
//! ([`crate::check::list_append`]), which reads the lists back after the run.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shoal::client::{CasOutcome, ClientError};
use shoal::error::KvError;

use super::Worker;
use crate::history::{list_elements, Append, KeyedOp, RegisterOp};

/// Compare-and-swap attempts per append before the client gives up on it.
const CAS_ATTEMPTS_MAX: u32 = 8;

/// The list key numbered `i`.
pub fn key(i: u32) -> Bytes {
    Bytes::from(format!("list-{i:03}"))
}

/// Runs one client for `spec.ops_per_client` appends (or `duration_ms`).
pub async fn run_client(mut worker: Worker, appends: Arc<Mutex<Vec<Append>>>) {
    let mut rng = ChaCha8Rng::seed_from_u64(worker.seed);
    let mut n = 0;
    while worker.keep_going(n) {
        let key = key(rng.gen_range(0..worker.spec.keys));
        let element = format!("{}.{n}", worker.index);
        n += 1;
        let start = worker.now();
        let mut end = None;
        for _ in 0..CAS_ATTEMPTS_MAX {
            let call = worker.now();
            let Ok(current) = worker.client.get(key.clone()).await else {
                continue;
            };
            worker.record(KeyedOp {
                client: worker.index,
                key: key.clone(),
                op: RegisterOp::Read(Some(current.clone())),
                call,
                ret: Some(worker.now()),
            });
            let mut list = list_elements(&current);
            list.push(element.clone());
            let new = Bytes::from(list.join(","));
            let call = worker.now();
            let result = worker
                .client
                .compare_and_swap(key.clone(), current.clone(), Some(new.clone()))
                .await;
            let (swapped, held, ret) = match result {
                Ok(CasOutcome { swapped, current }) => {
                    (Some(swapped), Some(current), Some(worker.now()))
                }
                // Refused as expired with no attempt in doubt: nothing
                // applied, so the append goes on (a refusal after an
                // unanswered attempt is `ClientError::SessionExpired`, in
                // doubt like any other failure).
                Err(ClientError::Rejected(KvError::SessionExpired { .. })) => continue,
                Err(_) => (None, None, None),
            };
            worker.record(KeyedOp {
                client: worker.index,
                key: key.clone(),
                op: RegisterOp::Cas {
                    expected: current,
                    new: Some(new),
                    swapped,
                    current: held,
                },
                call,
                ret,
            });
            if swapped == Some(true) {
                end = ret;
                break;
            }
            if swapped.is_none() {
                // Unknown whether it applied: appending again could add the
                // element twice, so this append ends undecided.
                break;
            }
        }
        worker.progress.finish(end.is_some());
        appends.lock().expect("appends lock").push(Append {
            key: key.clone(),
            element,
            start,
            end,
        });
        if worker
            .spec
            .appends_per_session
            .is_some_and(|every| n % every == 0)
        {
            end_session(&mut worker, &mut rng).await;
        }
    }
}

/// Ends the worker's session, as a short-lived client does: half close it,
/// the others just vanish (their sessions stay until evicted). Either way
/// the next append comes from a new session (a new client id).
async fn end_session(worker: &mut Worker, rng: &mut ChaCha8Rng) {
    if rng.gen_bool(0.5) {
        if let Err(e) = worker.client.close_session().await {
            tracing::debug!(error = %e, "session not closed");
        }
    } else {
        worker.client.abandon_session();
    }
}
