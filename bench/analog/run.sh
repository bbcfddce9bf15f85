#!/usr/bin/env bash
# qcloud-analog vs pulser-simulation benchmark (issue 9): builds the release CLI (CARGO_TARGET_DIR honoured, default
# <repo>/target) and runs bench.py, which prints the table. Needs /usr/bin/time (Debian package `time`: installed
# here with apt-get if missing) and a Python with pulser-simulation ($QCLOUD_COMPAT_PYTHON, else tests/compat/.venv,
# set up like tests/compat/analog/run.sh does).
#   bench/analog/run.sh [bench.py ARGS...]     e.g. --reps 1 --atoms 4 6
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [ ! -x /usr/bin/time ]; then
    echo "bench/analog: installing /usr/bin/time (apt-get install -y time)" >&2
    apt-get install -y -q time >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q time >/dev/null; }
fi
PY="${QCLOUD_COMPAT_PYTHON:-}"
if [ -z "$PY" ]; then
    VENV="$ROOT/tests/compat/.venv"
    [ -x "$VENV/bin/python" ] || python3.11 -m venv "$VENV" 2>/dev/null || python3 -m venv "$VENV"
    PY="$VENV/bin/python"
fi
if ! "$PY" -c "import pulser_simulation" 2>/dev/null; then
    "$PY" -m pip install -q -r "$ROOT/tests/compat/requirements.txt" -r "$ROOT/tests/compat/analog/requirements.txt"
fi
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
(cd "$ROOT" && cargo build --release -q -p qcloud-analog)
exec "$PY" "$ROOT/bench/analog/bench.py" --cli "$TARGET/release/qcloud-analog" --python "$PY" "$@"
