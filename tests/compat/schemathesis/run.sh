#!/usr/bin/env bash
# schemathesis over the native API (issue 7): starts `qcloud serve` on a fresh database (its own, created here and
# dropped at the end) with a known admin token, then runs `schemathesis run` on the document the server serves
# (/v1/openapi.json, equal to openapi.yaml) with every check, every phase (examples, coverage, fuzzing, and the
# stateful phase following the document's links, so it creates real devices, sessions and jobs) and a bounded number
# of examples. Exits non-zero on any failure of any check, not only on 5xx.
#
#   tests/compat/schemathesis/run.sh [SCHEMATHESIS RUN ARGS...]     e.g. --max-examples 200, --seed 7
#
# Environment: QCLOUD_COMPAT_PYTHON (scripts/test sets it; else tests/compat/.venv, made if missing), QCLOUD_BIN (the
# server binary; else built with cargo), DATABASE_URL (a Postgres server to create the database on; else found the
# way scripts/test finds one), SCHEMATHESIS_MAX_EXAMPLES (default 40), SCHEMATHESIS_SEED (default: random, printed).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
HERE="$ROOT/tests/compat/schemathesis"
say() { printf 'schemathesis: %s\n' "$*" >&2; }

# --- Python and schemathesis ------------------------------------------------------------------------------------------
PY="${QCLOUD_COMPAT_PYTHON:-}"
if [ -z "$PY" ]; then
    VENV="$ROOT/tests/compat/.venv"
    if [ ! -x "$VENV/bin/python" ]; then
        python3.11 -m venv "$VENV" 2>/dev/null || python3 -m venv "$VENV"
    fi
    PY="$VENV/bin/python"
fi
want="$(sed -n 's/^schemathesis==//p' "$HERE/requirements.txt")"
have="$("$PY" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null || true)"
if [ "$have" != "$want" ]; then
    say "installing schemathesis $want"
    "$PY" -m pip install -q -r "$HERE/requirements.txt"
fi

# --- The server binary and a database ---------------------------------------------------------------------------------
BIN="${QCLOUD_BIN:-}"
if [ -z "$BIN" ]; then
    (cd "$ROOT" && cargo build -q -p qcloud)
    BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/qcloud"
fi
[ -x "$BIN" ] || { say "no server binary at $BIN"; exit 1; }
if [ -z "${DATABASE_URL:-}" ]; then
    # shellcheck source=scripts/pg-env
    source "$ROOT/scripts/pg-env"
    qcloud_pg_env || { say "no Postgres to run against; set DATABASE_URL"; exit 1; }
    if [ "${QCLOUD_TEST_PG_STARTED:-0}" = "1" ]; then
        PG_STARTED=1
    fi
fi
command -v psql >/dev/null 2>&1 || { say "psql not found (it creates the suite's database)"; exit 1; }
DB="qcloud_schemathesis_$$_$(date +%s)"
SERVER_URL="$("$PY" -c '
import sys, urllib.parse as u
p = u.urlsplit(sys.argv[1])
print(u.urlunsplit((p.scheme, p.netloc, "/" + sys.argv[2], p.query, p.fragment)))' "$DATABASE_URL" "$DB")"
psql "$DATABASE_URL" -qAtX -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$DB\"" >/dev/null

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    psql "$DATABASE_URL" -qAtX -c "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null 2>&1 || true
    if [ "${PG_STARTED:-0}" = "1" ] && [ "${QCLOUD_TEST_PG_KEEP:-0}" != "1" ]; then
        qcloud_pg_stop || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# --- The server -------------------------------------------------------------------------------------------------------
TOKEN="st-$("$PY" -c 'import secrets; print(secrets.token_hex(24))')"
say "starting $BIN serve on database $DB"
QCLOUD_ADMIN_TOKEN="$TOKEN" DATABASE_URL="$SERVER_URL" RUST_LOG="${RUST_LOG:-warn}" \
    "$BIN" serve --listen 127.0.0.1:0 >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
BASE=""
for _ in $(seq 1 300); do
    BASE="$(sed -n 's/^qcloud listening on \(http[^ ]*\).*/\1/p' "$WORK/server.log" | head -n 1)"
    [ -n "$BASE" ] && break
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        say "the server exited:"; cat "$WORK/server.log" >&2; exit 1
    fi
    sleep 0.2
done
[ -n "$BASE" ] || { say "the server printed no address in 60 s:"; cat "$WORK/server.log" >&2; exit 1; }
BASE="${BASE%/}"
say "server at $BASE"

# --- schemathesis -----------------------------------------------------------------------------------------------------
SEED="${SCHEMATHESIS_SEED:-$("$PY" -c 'import random; print(random.randrange(2**31))')}"
say "seed $SEED (SCHEMATHESIS_SEED=$SEED reproduces the generated data)"
status=0
# schemathesis keeps a cache (.schemathesis/) in its working folder: the temporary one, not the repository.
cd "$WORK"
"$PY" -m schemathesis.cli --config-file "$HERE/schemathesis.toml" --no-color run "$BASE/v1/openapi.json" \
    --url "$BASE" \
    --header "Authorization: Bearer $TOKEN" \
    --checks all \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-40}" \
    --seed "$SEED" \
    --workers 2 \
    --generation-database none \
    --request-timeout 30 \
    --report junit --report-dir "$WORK/report" \
    "$@" || status=$?
# What the run made (the stateful phase follows the links: devices, then sessions and jobs on them).
made="$(psql "$SERVER_URL" -qAtX -c "SELECT (SELECT count(*) FROM devices), (SELECT count(*) FROM sessions),
    (SELECT count(*) FROM jobs), (SELECT count(*) FROM jobs WHERE status IN ('completed', 'failed', 'canceled'))" 2>/dev/null || true)"
IFS='|' read -r n_devices n_sessions n_jobs n_ended <<<"${made:-?|?|?|?}"
say "the run left $n_devices devices, $n_sessions sessions, $n_jobs jobs ($n_ended of them ended) in its database"
if grep -q 'panicked' "$WORK/server.log"; then
    say "the server panicked:"; grep -n -A5 'panicked' "$WORK/server.log" >&2
    status=1
fi
if [ "$status" -ne 0 ]; then
    say "FAILED (exit $status); the server's log:"; tail -n 40 "$WORK/server.log" >&2
fi
exit "$status"
