//! Write-ahead log append throughput with group commit and fsync on, at 1, 16
//! and 128 concurrent writers, on the real disk (a scratch directory under
//! the system temp dir, or `SHOAL_BENCH_DIR`). Run: `bash ci/bench-wal.sh`.
//!
//! Each writer appends one 256-byte command at a time and waits until it is
//! durable, as a Raft leader's appends do. Prints appends per second, records
//! per fsync (the group-commit batch) and latency percentiles.

#[cfg(madsim)]
fn main() {}

#[cfg(not(madsim))]
fn main() {
    bench::main();
}

#[cfg(not(madsim))]
mod bench {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
    use shoal::machine::command::{Command, DataOp, WriteId};
    use shoal::storage::disk::OsDisk;
    use shoal::storage::{Storage, StorageMetrics, StorageOptions};

    const RUN_TIME: Duration = Duration::from_secs(3);
    const VALUE_SIZE_BYTES: usize = 256;

    pub fn main() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let root = std::env::var_os("SHOAL_BENCH_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(std::env::temp_dir)
            .join(format!("shoal-bench-wal-{}", std::process::id()));
        println!("WAL append, group commit, fsync on; {VALUE_SIZE_BYTES}-byte values; {RUN_TIME:?} per row; dir {}", root.display());
        println!(
            "{:>8} {:>12} {:>14} {:>10} {:>10} {:>10}",
            "writers", "appends/s", "records/fsync", "p50 ms", "p99 ms", "max ms"
        );
        for writers in [1usize, 16, 128] {
            let dir = root.join(writers.to_string());
            runtime.block_on(run(&dir, writers));
            let _ = std::fs::remove_dir_all(&dir);
        }
        let _ = std::fs::remove_dir_all(&root);
    }

    async fn run(dir: &std::path::Path, writers: usize) {
        let disk = Arc::new(OsDisk::open(dir).unwrap());
        let metrics = Arc::new(StorageMetrics::default());
        let storage = Storage::open(disk, &StorageOptions::default(), metrics.clone())
            .await
            .unwrap();
        // One appender at a time picks the next index, as Raft's core does;
        // waiting for durability happens outside the lock, concurrently.
        let next_index = Arc::new(tokio::sync::Mutex::new(1u64));
        let deadline = Instant::now() + RUN_TIME;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for writer in 0..writers {
            let (log, next_index) = (storage.log.clone(), next_index.clone());
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut seq = 0;
                while Instant::now() < deadline {
                    seq += 1;
                    let begun = Instant::now();
                    let durable = {
                        let mut index = next_index.lock().await;
                        let entry = entry(*index, writer as u64, seq);
                        *index += 1;
                        log.append_entries(vec![entry]).await.unwrap()
                    };
                    durable.await.unwrap().unwrap();
                    latencies.push(begun.elapsed());
                }
                latencies
            }));
        }
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await.unwrap());
        }
        let elapsed = started.elapsed().as_secs_f64();
        latencies.sort_unstable();
        let at =
            |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0;
        let syncs = metrics.wal_syncs.get().max(1);
        let records = metrics.wal_records.get();
        println!(
            "{:>8} {:>12.0} {:>14.1} {:>10.2} {:>10.2} {:>10.2}",
            writers,
            latencies.len() as f64 / elapsed,
            records as f64 / syncs as f64,
            at(0.5),
            at(0.99),
            at(1.0)
        );
    }

    fn entry(index: u64, client_id: u64, seq: u64) -> Entry<shoal::raft::TypeConfig> {
        let command = Command::Data {
            id: Some(WriteId {
                client_id,
                seq,
                opened_at: 1,
            }),
            op: DataOp::Put {
                key: format!("key-{client_id}-{seq}").into(),
                value: vec![7u8; VALUE_SIZE_BYTES].into(),
            },
            stamp: index,
        };
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(command),
        }
    }
}
