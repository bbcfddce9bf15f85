#!/usr/bin/env bash
# IBM facade benchmark (issue 8): starts a `qcloud serve` (release build) on a fresh database beside DATABASE_URL's,
# makes a token, and runs driver.py through the real qiskit-ibm-runtime client (tests/compat/.venv, built by
# scripts/test or tests/compat/ibm/run.sh): job mode (20 sequential Bell jobs, 1024 shots), a Batch of 20 and a
# Session of 10 sequential jobs (QCLOUD_BIN picks another build). Prints wall times, per-job overhead and the client's expected poll wait.
#   bench/ibm/run.sh [DRIVER ARGS...]       e.g. --jobs 50
#   bench/ibm/run.sh --batch-vs-session [ARGS...]   Batch faster than Session: batch_vs_session.py instead
#                                                   (heavyhex_127's QPU-like timing, 50 circuits)
#   bench/ibm/run.sh --routes [--jobs N]            one Batch, every HTTP call timed by route (routes.py)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${QCLOUD_COMPAT_PYTHON:-$ROOT/tests/compat/.venv/bin/python}"
"$PY" -c "import qiskit_ibm_runtime" 2>/dev/null || {
    echo "bench/ibm: no qiskit-ibm-runtime at $PY; run tests/compat/ibm/run.sh once first" >&2
    exit 1
}
if [ -n "${QCLOUD_BIN:-}" ]; then
    BIN="$QCLOUD_BIN"
else
    (cd "$ROOT" && cargo build --release -q -p qcloud)
    BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/qcloud"
fi
BASE="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
ADMIN="${BASE%/*}/postgres"
psql "$ADMIN" -qc 'DROP DATABASE IF EXISTS qcloud_ibm_bench WITH (FORCE)' -c 'CREATE DATABASE qcloud_ibm_bench'
export DATABASE_URL="${BASE%/*}/qcloud_ibm_bench" QCLOUD_ADMIN_TOKEN=ibm-bench-admin-token-0123456789
export QCLOUD_DEVICES="$ROOT/tests/compat/ibm/devices.toml" RUST_LOG=warn
LOG="$(mktemp)"
"$BIN" serve --listen 127.0.0.1:0 >"$LOG" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -f "$LOG"' EXIT
for _ in $(seq 100); do grep -q "listening on" "$LOG" && break; sleep 0.1; done
URL="$(grep -o 'http://[0-9.:]*' "$LOG" | head -1)"
TOKEN="$("$BIN" tokens create --project bench --user bench | tail -1)"
SCRIPT=driver.py
if [ "${1:-}" = "--batch-vs-session" ]; then
    SCRIPT=batch_vs_session.py
    shift
elif [ "${1:-}" = "--routes" ]; then
    SCRIPT=routes.py
    shift
fi
"$PY" "$ROOT/bench/ibm/$SCRIPT" --url "$URL" --token "$TOKEN" "$@"
