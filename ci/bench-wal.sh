#!/usr/bin/env bash
# WAL append throughput with group commit and fsync on, at 1, 16 and 128
# concurrent writers. Set SHOAL_BENCH_DIR to measure a particular disk.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --bench wal
