#!/usr/bin/env bash
# qcloud-analog vs pulser-simulation accuracy suite (issue 9). Uses $QCLOUD_COMPAT_PYTHON if set (scripts/test sets
# it), else tests/compat/.venv (created, with tests/compat/requirements.txt + this suite's requirements.txt, if it
# lacks pulser-simulation). Builds the release CLI (CARGO_TARGET_DIR honoured, default <repo>/target) and runs
# pytest; pytest's summary line closes the output and its exit code is this script's.
#   tests/compat/analog/run.sh [PYTEST ARGS...]     e.g. -k fixture, -x
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
HERE="$ROOT/tests/compat/analog"
PY="${QCLOUD_COMPAT_PYTHON:-}"
if [ -z "$PY" ]; then
    VENV="$ROOT/tests/compat/.venv"
    if [ ! -x "$VENV/bin/python" ]; then
        python3.11 -m venv "$VENV" 2>/dev/null || python3 -m venv "$VENV"
    fi
    PY="$VENV/bin/python"
fi
if ! "$PY" -c "import pulser_simulation, scipy, pytest" 2>/dev/null; then
    "$PY" -m pip install -q -r "$ROOT/tests/compat/requirements.txt" -r "$HERE/requirements.txt"
fi
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
(cd "$ROOT" && cargo build --release -q -p qcloud-analog)
BIN="$TARGET/release/qcloud-analog"
[ -x "$BIN" ] || { echo "tests/compat/analog: $BIN was not built" >&2; exit 1; }
cd "$HERE"
exec "$PY" -m pytest -q -p no:cacheprovider -rfE "$HERE/test_pulser.py" --analog-cli "$BIN" "$@"
