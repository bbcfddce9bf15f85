#!/usr/bin/env bash
# qsim vs Qiskit Aer benchmark (QFT and random layered circuits, 16/20/24/26 qubits, 1 and 2
# threads). Uses the venv of tests/compat (built if missing). Extra arguments go to compare_aer.py.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/tests/compat/.venv"
if [ ! -x "$VENV/bin/python" ]; then
    python3.11 -m venv "$VENV" 2>/dev/null || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q -r "$ROOT/tests/compat/requirements.txt"
fi
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
(cd "$ROOT" && cargo build --release -q -p qcloud-qsim --bin qsim)
exec "$VENV/bin/python" "$ROOT/bench/qsim/compare_aer.py" --qsim "$TARGET/release/qsim" "$@"
