#!/usr/bin/env bash
# The Pasqal facade suite (issue 10): the real pasqal-cloud 0.24.0 SDK (its SDK calls, the Pulser way through
# PasqalCloudConnection, QRMI's pasqal-cloud resource) against a `qcloud serve` it starts on a fresh database; then
# the closed-batch example with pasqal-cloud 0.22 from a small venv of its own, tests/compat/pasqal/.venv-022, built
# here once from requirements-022.txt and reused while that file is unchanged. Uses $QCLOUD_COMPAT_PYTHON
# (scripts/test sets it) else tests/compat/.venv; $QCLOUD_BIN else builds the debug binary.
#   tests/compat/pasqal/run.sh [PYTEST ARGS...]     (the arguments go to the 0.24 run; QCLOUD_PASQAL_022=0 skips 0.22)
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
"$PY" -m pytest -q -p no:cacheprovider -rfE "$HERE/test_sdk.py" "$HERE/test_pulser.py" "$HERE/test_qrmi.py" "$@"
[ "${QCLOUD_PASQAL_022:-1}" = "0" ] && exit 0

# pasqal-cloud 0.22 in its own venv (the 0.24 venv cannot hold both).
VENV22="$HERE/.venv-022"
want="$(sha256sum "$HERE/requirements-022.txt" | cut -d' ' -f1)"
if [ "$(cat "$VENV22/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
    rm -rf "$VENV22"
    python3 -m venv "$VENV22"
    "$VENV22/bin/python" -m pip install -q -r "$HERE/requirements-022.txt"
    echo "$want" >"$VENV22/.requirements.sha256"
fi
exec "$VENV22/bin/python" -m pytest -q -p no:cacheprovider -rfE "$HERE/test_sdk_022.py"
