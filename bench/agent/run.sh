#!/usr/bin/env bash
# The agent path beside the in-process noop driver (issue 12): starts a fresh `qcloud serve` on a fresh database of
# the local Postgres and runs `qcloud-bench --scenario agent` (submit -> agent start latency p50/p99 and throughput of
# zero-work jobs through the agent protocol, next to the same figures for a noop device, in one run). The agent is
# played by qcloud-bench itself over HTTP (claim, then complete at once).
#
# Usage: bench/agent/run.sh [extra qcloud-bench flags, e.g. --latency-jobs 500 --agent-jobs 2000 --clients 16]
# Environment: BENCH_PROFILE (release; debug for a quick look), PGHOST/PGPORT/PGUSER, BENCH_PORT (18090).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
PORT="${BENCH_PORT:-18090}"
PROFILE="${BENCH_PROFILE:-release}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET/$([ "$PROFILE" = release ] && echo release || echo debug)"
DB="qcloud_bench_agent_$$"
TOKEN="bench-admin-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
URL="http://127.0.0.1:$PORT"
if [ "$PROFILE" = release ]; then cargo build --release -q -p qcloud -p qcloud-bench; else cargo build -q -p qcloud -p qcloud-bench; fi
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    dropdb --if-exists --force "$DB" 2>/dev/null || true
}
trap cleanup EXIT
createdb "$DB"
RUST_LOG="${RUST_LOG:-warn}" "$BIN/qcloud" serve --listen "127.0.0.1:$PORT" \
    --database-url "postgres://$PGUSER@$PGHOST:$PGPORT/$DB" --admin-token "$TOKEN" --no-seed \
    --rate-limit-per-second 0 >"$TARGET/bench-agent-server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do
    curl -fsS "$URL/readyz" >/dev/null 2>&1 && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$TARGET/bench-agent-server.log"; exit 1; }
    sleep 0.1
done
echo "profile: $PROFILE; machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
"$BIN/qcloud-bench" --url "$URL" --token "$TOKEN" --scenario agent "$@"
