#!/usr/bin/env bash
# IBM facade compatibility suite (issue 8): the unmodified qiskit-ibm-runtime client (pinned in requirements.txt,
# with tests/compat/requirements.txt) against a `qcloud serve` this suite starts on a fresh database
# (qcloud_ibm_compat, beside DATABASE_URL's). Uses $QCLOUD_COMPAT_PYTHON if set (scripts/test sets it), else
# tests/compat/.venv; $QCLOUD_BIN if set, else builds the debug binary. pytest's exit code is this script's.
#   tests/compat/ibm/run.sh [PYTEST ARGS...]     e.g. -k session, -x
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
HERE="$ROOT/tests/compat/ibm"
PY="${QCLOUD_COMPAT_PYTHON:-}"
if [ -z "$PY" ]; then
    VENV="$ROOT/tests/compat/.venv"
    if [ ! -x "$VENV/bin/python" ]; then
        python3.11 -m venv "$VENV" 2>/dev/null || python3 -m venv "$VENV"
    fi
    PY="$VENV/bin/python"
fi
if ! "$PY" -c "import qiskit_ibm_runtime, qiskit, pytest" 2>/dev/null; then
    "$PY" -m pip install -q -r "$ROOT/tests/compat/requirements.txt" -r "$HERE/requirements.txt"
fi
if [ -z "${QCLOUD_BIN:-}" ]; then
    (cd "$ROOT" && cargo build -q -p qcloud)
    QCLOUD_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/qcloud"
fi
export QCLOUD_BIN
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
command -v psql >/dev/null || { echo "tests/compat/ibm: psql is needed to make a fresh database" >&2; exit 1; }
cd "$HERE"
exec "$PY" -m pytest -q -p no:cacheprovider -rfE "$HERE/test_ibm.py" "$HERE/test_qrmi.py" "$@"
