//! The throughput workload: many clients over a large key space, with a
//! skew that makes some keys hot, values of the scenario's size, and short
//! scans. It loads the cluster the way an application would; every operation
//! is still recorded and checked for linearizability (with few operations per
//! key, that check is cheap).

use bytes::Bytes;
use rand::Rng;

use super::register::{run_ops, KeySpace};
use super::Worker;

/// Keys a scan covers.
const SCAN_KEYS: u32 = 10;

/// The key numbered `i` (names sort as numbers up to 10,000,000).
pub fn key(i: u32) -> Bytes {
    Bytes::from(format!("tp-{i:07}"))
}

/// Draws key numbers in `0..count`: uniform at `skew` 0; as `skew` nears 1,
/// concentrated on the low numbers (`count · u^(1 / (1 − skew))` for a
/// uniform `u`; at 0.5, half the operations go to the lowest quarter).
pub fn draw(rng: &mut impl Rng, count: u32, skew: f64) -> u32 {
    let u: f64 = rng.gen_range(0.0..1.0);
    let k = (f64::from(count) * u.powf(1.0 / (1.0 - skew))) as u32;
    k.min(count - 1)
}

/// Runs one client of the throughput workload.
pub async fn run_client(worker: Worker) {
    let (count, skew) = (worker.spec.keys, worker.spec.skew);
    let space = KeySpace {
        name: key,
        draw: Box::new(move |rng| draw(rng, count, skew)),
        scan: Box::new(move |rng| {
            let from = draw(rng, count, skew);
            (from, SCAN_KEYS.min(count - from))
        }),
        value_size: worker.spec.value_size_bytes,
    };
    run_ops(worker, space).await;
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn skew_concentrates_draws_on_low_keys() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let share_in_lowest_quarter = |rng: &mut rand_chacha::ChaCha8Rng, skew| {
            let draws = 20_000;
            let low = (0..draws).filter(|_| draw(rng, 1_000, skew) < 250).count();
            low as f64 / draws as f64
        };
        let uniform = share_in_lowest_quarter(&mut rng, 0.0);
        let skewed = share_in_lowest_quarter(&mut rng, 0.5);
        assert!((0.23..0.27).contains(&uniform), "{uniform}");
        assert!((0.48..0.52).contains(&skewed), "{skewed}");
        assert!((0..1_000).all(|_| draw(&mut rng, 3, 0.99) < 3));
        assert!(key(9) < key(10) && key(999_999) < key(1_000_000));
    }
}
