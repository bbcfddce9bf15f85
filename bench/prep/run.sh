#!/usr/bin/env bash
# Batch faster than Session: starts a fresh `qcloud serve` on a fresh database of the local
# Postgres, runs bench.py (50 noop jobs as a batch and as a dedicated session on a device with
# prep 100 ms + run 50 ms), prints the figures, stops the server and drops the database.
#
# Usage: bench/prep/run.sh [bench.py flags, e.g. --jobs 50 --prep-ms 100 --run-ms 50]
# Environment: QCLOUD_BIN (default: target/release/qcloud if built, else target/debug/qcloud),
#              PGHOST (127.0.0.1), PGPORT (5432), PGUSER (postgres), BENCH_PORT (18081).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
PORT="${BENCH_PORT:-18081}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="${QCLOUD_BIN:-}"
if [ -z "$BIN" ]; then
    if [ -x "$TARGET/release/qcloud" ]; then BIN="$TARGET/release/qcloud"; else BIN="$TARGET/debug/qcloud"; fi
fi
[ -x "$BIN" ] || { echo "no qcloud binary at $BIN: cargo build -p qcloud" >&2; exit 1; }
DB="qcloud_bench_prep_$$"
TOKEN="bench-admin-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
URL="http://127.0.0.1:$PORT"
LOG="$(mktemp)"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    dropdb --if-exists --force "$DB" 2>/dev/null || true
    rm -f "$LOG"
}
trap cleanup EXIT
createdb "$DB"
RUST_LOG="${RUST_LOG:-warn}" "$BIN" serve --listen "127.0.0.1:$PORT" \
    --database-url "postgres://$PGUSER@$PGHOST:$PGPORT/$DB" --admin-token "$TOKEN" --no-seed >"$LOG" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do
    curl -fsS "$URL/readyz" >/dev/null 2>&1 && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$LOG"; echo "server exited" >&2; exit 1; }
    sleep 0.1
done
echo "server: $BIN"
python3 "$ROOT/bench/prep/bench.py" "$URL" "$TOKEN" "$@"
