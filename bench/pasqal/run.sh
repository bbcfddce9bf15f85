#!/usr/bin/env bash
# Pasqal facade benchmark (issue 10): starts a `qcloud serve` (release build unless QCLOUD_BIN says otherwise) on a
# fresh database beside DATABASE_URL's with the default devices (EMU_FREE among them), makes a token, and runs
# bench.py through the real pasqal-cloud SDK (tests/compat/.venv, built by scripts/test or
# tests/compat/pasqal/run.sh): a closed batch of 20 jobs of 100 runs of the shared param_blackman_ramp sequence, and
# an open batch fed the same 20 jobs one at a time. Prints wall time, time in HTTP calls to qcloud, time in the
# SDK's polling back-off, and emulator time.
#   bench/pasqal/run.sh [BENCH ARGS...]        e.g. --jobs 10 --runs 500
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${QCLOUD_COMPAT_PYTHON:-$ROOT/tests/compat/.venv/bin/python}"
"$PY" -c "import pasqal_cloud" 2>/dev/null || {
    echo "bench/pasqal: no pasqal-cloud at $PY; run tests/compat/pasqal/run.sh once first" >&2
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
DB=qcloud_pasqal_bench
psql "$ADMIN" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
export DATABASE_URL="${BASE%/*}/$DB" QCLOUD_ADMIN_TOKEN=pasqal-bench-admin-token-0123456789 RUST_LOG=warn
unset QCLOUD_DEVICES
LOG="$(mktemp)"
"$BIN" serve --listen 127.0.0.1:0 >"$LOG" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -f "$LOG"; psql "$ADMIN" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
for _ in $(seq 100); do grep -q "listening on" "$LOG" && break; sleep 0.1; done
URL="$(grep -o 'http://[0-9.:]*' "$LOG" | head -1)"
TOKEN="$("$BIN" tokens create --project bench --user bench | tail -1)"
echo "server: $BIN"
"$PY" "$ROOT/bench/pasqal/bench.py" --url "$URL" --token "$TOKEN" \
    --sequence "$ROOT/tests/compat/pasqal/param_blackman_ramp.json" "$@"
