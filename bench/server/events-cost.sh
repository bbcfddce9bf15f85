#!/usr/bin/env bash
# What the event rows cost on the hot path: one `qcloud serve` on a fresh database, the same
# qcloud-bench scenario run with the event triggers of migrations/0009_events.sql disabled and
# enabled, alternately (so both see the same machine, the same server and the same database).
#
# Usage: bench/server/events-cost.sh [rounds (3)] [extra qcloud-bench flags]
# Environment: PROFILE (release | debug; default release), BENCH_SCENARIO (e2e), BENCH_DEVICES (8),
#              PGHOST/PGPORT/PGUSER, BENCH_PORT (18090).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
PROFILE="${PROFILE:-release}"
ROUNDS="${1:-3}"; shift || true
PORT="${BENCH_PORT:-18090}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET/$PROFILE"
DB="events_bench_$$"
TOKEN="bench-admin-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
URL="http://127.0.0.1:$PORT"
SCENARIO="${BENCH_SCENARIO:-e2e}"
DEVICES="${BENCH_DEVICES:-8}"
if [ "$PROFILE" = release ]; then cargo build --release -q -p qcloud -p qcloud-bench; fi

SERVER_PID=""
cleanup() {
    [ -n "$SERVER_PID" ] && { kill -TERM "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }
    dropdb --if-exists --force "$DB" 2>/dev/null || true
}
trap cleanup EXIT
createdb "$DB"
RUST_LOG=warn "$BIN/qcloud" serve --listen "127.0.0.1:$PORT" --database-url "postgres://$PGUSER@$PGHOST:$PGPORT/$DB" \
    --admin-token "$TOKEN" --no-seed >"/tmp/$DB.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do curl -fsS "$URL/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
q() { psql -d "$DB" -Atqc "$1"; }
triggers() {
    q "ALTER TABLE jobs $1 TRIGGER jobs_event_insert; ALTER TABLE jobs $1 TRIGGER jobs_event_status;
       ALTER TABLE sessions $1 TRIGGER sessions_event_state;"
}
echo "events-cost: $(nproc) cores (shared with other work), profile $PROFILE, scenario $SCENARIO on $DEVICES devices, $ROUNDS rounds"
for r in $(seq 1 "$ROUNDS"); do
    for mode in off on; do
        if [ "$mode" = off ]; then triggers DISABLE; else triggers ENABLE; fi
        e0=$(q "SELECT count(*) FROM events")
        out=$("$BIN/qcloud-bench" --url "$URL" --token "$TOKEN" --scenario "$SCENARIO" --devices "$DEVICES" "$@" 2>/dev/null \
              | sed -n '/^scenario/,$p' | tail -n +3 | head -1)
        e1=$(q "SELECT count(*) FROM events")
        printf 'round %d  events %-3s  +%6d event rows  %s\n' "$r" "$mode" $((e1 - e0)) "$out"
    done
done
