#!/usr/bin/env bash
# The agent suite (issue 12): examples/agent.py (requests only) and `qcloud-agent --qdmi` driving MQT Core's DDSIM
# QDMI device (the mqt-core 4.1.1 wheel of requirements.txt), each against a `qcloud serve` started on a fresh
# database, with Qiskit submitting a QPY circuit and, through the IBM facade, transpiling for the device. Uses
# $QCLOUD_COMPAT_PYTHON (scripts/test sets it) else
# tests/compat/.venv; $QCLOUD_BIN else builds the debug binary; builds qcloud-agent.
#   tests/compat/agent/run.sh [PYTEST ARGS...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
HERE="$ROOT/tests/compat/agent"
PY="${QCLOUD_COMPAT_PYTHON:-}"
if [ -z "$PY" ]; then
    VENV="$ROOT/tests/compat/.venv"
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    PY="$VENV/bin/python"
fi
if ! "$PY" -c "import qiskit, qiskit_ibm_runtime, requests, pytest" 2>/dev/null; then
    "$PY" -m pip install -q -r "$ROOT/tests/compat/requirements.txt" -r "$HERE/requirements.txt" pytest==8.4.2
fi
# The DDSIM device library: $QCLOUD_QDMI_LIB, else from the mqt-core wheel (found without importing it, so a
# separate venv holding only mqt-core works too: QCLOUD_QDMI_SITE=<its site-packages>).
if [ -z "${QCLOUD_QDMI_LIB:-}" ]; then
    QCLOUD_QDMI_LIB="$(PYTHONPATH="${QCLOUD_QDMI_SITE:-}" "$PY" -c 'import importlib.util, os
s = importlib.util.find_spec("mqt.core")
print(os.path.join(os.path.dirname(s.origin), "lib64", "libmqt-core-qdmi-ddsim-device.so") if s else "")')"
fi
export QCLOUD_QDMI_LIB
if [ -z "${QCLOUD_BIN:-}" ]; then
    (cd "$ROOT" && cargo build -q -p qcloud)
    QCLOUD_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/qcloud"
fi
(cd "$ROOT" && cargo build -q -p qcloud-agent)
export QCLOUD_BIN QCLOUD_AGENT_BIN="${QCLOUD_AGENT_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/qcloud-agent}"
export QCLOUD_EXAMPLE_AGENT="$ROOT/examples/agent.py"
cd "$HERE"
exec "$PY" -m pytest -q -p no:cacheprovider -rfE "$HERE/test_agent.py" "$@"
