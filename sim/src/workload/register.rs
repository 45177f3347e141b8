//! The register workload: clients read, write, compare-and-swap and delete a
//! small set of hot keys, so that operations overlap and race. Every
//! operation is recorded with its call and return times for the
//! linearizability checker.

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shoal::client::CasOutcome;

use super::Worker;
use crate::check::linearizability::{KeyedOp, RegisterOp};
use crate::scenario::Mix;

/// The hot key numbered `i`.
pub fn key(i: u32) -> Bytes {
    Bytes::from(format!("reg-{i:03}"))
}

/// Runs client `client` for `spec.ops_per_client` operations.
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
    let mix = spec.mix.clone().unwrap_or_default();
    // The last value this client saw per key: a CAS from it often succeeds.
    let mut last_seen: Vec<Option<Bytes>> = vec![None; spec.keys as usize];
    for n in 0..spec.ops_per_client.unwrap_or(0) {
        let k = rng.gen_range(0..spec.keys);
        let key = key(k);
        let fresh = Bytes::from(format!("c{client_index}-{n}"));
        let call = t0.elapsed();
        let (op, ok) = match mix.pick(&mut rng) {
            Choice::Get => match client.get(key.clone()).await {
                Ok(value) => {
                    last_seen[k as usize] = value.clone();
                    (RegisterOp::Read(Some(value)), true)
                }
                // A read that got no answer tells nothing: leave it out.
                Err(_) => {
                    progress.finish(false);
                    continue;
                }
            },
            Choice::Put => {
                let ok = client.put(key.clone(), fresh.clone()).await.is_ok();
                (RegisterOp::Write(Some(fresh)), ok)
            }
            Choice::Delete => {
                let ok = client.delete(key.clone()).await.is_ok();
                (RegisterOp::Write(None), ok)
            }
            Choice::Cas => {
                let expected = last_seen[k as usize].clone();
                match client
                    .compare_and_swap(key.clone(), expected.clone(), Some(fresh.clone()))
                    .await
                {
                    Ok(CasOutcome { swapped, current }) => {
                        last_seen[k as usize] = if swapped {
                            Some(fresh.clone())
                        } else {
                            current
                        };
                        (
                            RegisterOp::Cas {
                                expected,
                                new: Some(fresh),
                                swapped: Some(swapped),
                            },
                            true,
                        )
                    }
                    Err(_) => (
                        RegisterOp::Cas {
                            expected,
                            new: Some(fresh),
                            swapped: None,
                        },
                        false,
                    ),
                }
            }
        };
        let ret = ok.then(|| t0.elapsed());
        progress.finish(ok);
        history.lock().expect("history lock").ops.push(KeyedOp {
            client: client_index,
            key,
            op,
            call,
            ret,
        });
    }
}

/// An operation kind drawn from a [`Mix`].
enum Choice {
    Get,
    Put,
    Cas,
    Delete,
}

impl Mix {
    fn pick(&self, rng: &mut ChaCha8Rng) -> Choice {
        let total = self.get + self.put + self.cas + self.delete;
        let mut draw = rng.gen_range(0..total.max(1));
        for (weight, choice) in [
            (self.get, Choice::Get),
            (self.put, Choice::Put),
            (self.cas, Choice::Cas),
            (self.delete, Choice::Delete),
        ] {
            if draw < weight {
                return choice;
            }
            draw -= weight;
        }
        Choice::Get
    }
}
