#!/usr/bin/env bash
# qsim vs Qiskit Aer compatibility check: builds the venv (tests/compat/.venv) if missing, builds
# the qsim binary, runs check_aer.py. Ends with a line "N passed, M failed".
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
VENV="$ROOT/tests/compat/.venv"
if [ ! -x "$VENV/bin/python" ]; then
    python3.11 -m venv "$VENV" 2>/dev/null || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q -r "$ROOT/tests/compat/requirements.txt"
fi
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
(cd "$ROOT" && cargo build --release -q -p qcloud-qsim --bin qsim)
exec "$VENV/bin/python" "$ROOT/tests/compat/qsim/check_aer.py" --qsim "$TARGET/release/qsim" "$@"
