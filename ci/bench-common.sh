# What the benchmark scripts share (sourced, not run): the release binaries,
# killing every process started into `pids` on exit (and removing `$root`
# unless SHOAL_BENCH_DIR chose it), and `base`, a free port with 40 free
# ports after it. Expects `root` to be set.
cargo build --release -q -p shoal -p shoal-bench
node=target/release/shoal-node
cli=target/release/shoal
bench=target/release/shoal-bench

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${SHOAL_BENCH_DIR:-}" ] || rm -rf "$root"
}
trap cleanup EXIT

base=$(python3 - <<'PY'
import socket
for base in range(23000, 60000, 101):
    socks = []
    try:
        for i in range(40):
            s = socket.socket(); s.bind(("127.0.0.1", base + i)); socks.append(s)
        print(base); break
    except OSError:
        pass
    finally:
        for s in socks: s.close()
PY
)
