#!/usr/bin/env bash
# The Pasqal facade suite (issue 10): the real pasqal-cloud 0.24.0 SDK against a `qcloud serve` it starts on a fresh
# database. Uses $QCLOUD_COMPAT_PYTHON (scripts/test sets it) else tests/compat/.venv; $QCLOUD_BIN else builds
# the debug binary.   tests/compat/pasqal/run.sh [PYTEST ARGS...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
HERE="$ROOT/tests/compat/pasqal"
PY="${QCLOUD_COMPAT_PYTHON:-}"
if [ -z "$PY" ]; then
    VENV="$ROOT/tests/compat/.venv"
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    PY="$VENV/bin/python"
fi
if ! "$PY" -c "import pasqal_cloud, pulser, pytest" 2>/dev/null; then
    "$PY" -m pip install -q -r "$HERE/requirements.txt" pytest==8.3.4
fi
if [ -z "${QCLOUD_BIN:-}" ]; then
    (cd "$ROOT" && cargo build -q -p qcloud)
    QCLOUD_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/qcloud"
fi
export QCLOUD_BIN
cd "$HERE"
exec "$PY" -m pytest -q -p no:cacheprovider -rfE "$HERE/test_sdk.py" "$@"
