#!/usr/bin/env bash
# Integration test against the deployment: builds the image, brings up docker-compose.yml (postgres + qcloud), waits
# until /readyz answers, runs the e2e suite (tests/e2e, test target `api`) against it over HTTP, and tears the stack
# down with its volumes whatever happens.
#
#   tests/docker/e2e.sh [ARGS...]     ARGS go to the test binary (e.g. a test name filter)
#
# Environment: QCLOUD_PORT (published port, default 8080), QCLOUD_ADMIN_TOKEN (default: a fresh random token),
# QCLOUD_E2E_KEEP=1 leaves the stack running afterwards.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

die() {
    printf 'tests/docker/e2e.sh: %s\n' "$*" >&2
    exit 1
}

command -v docker >/dev/null 2>&1 || die "docker not found: install Docker with the compose plugin"
docker compose version >/dev/null 2>&1 || die "'docker compose' is not available: install the Docker compose plugin"
docker info >/dev/null 2>&1 || die "no Docker engine answers (is the daemon running, may this user use it?)"
command -v curl >/dev/null 2>&1 || die "curl not found"

port="${QCLOUD_PORT:-8080}"
token="${QCLOUD_ADMIN_TOKEN:-qcloud-e2e-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}"
export QCLOUD_PORT="$port" QCLOUD_ADMIN_TOKEN="$token"
# A project name of its own, so a developer's `docker compose up` stack is not touched.
compose=(docker compose --project-name qcloud-e2e --file "$root/docker-compose.yml")
url="http://127.0.0.1:$port"

cleanup() {
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "--- qcloud logs (last 100 lines) ---" >&2
        "${compose[@]}" logs --no-color --tail 100 qcloud >&2 || true
    fi
    if [ "${QCLOUD_E2E_KEEP:-0}" = "1" ]; then
        echo "stack left running (QCLOUD_E2E_KEEP=1): ${compose[*]} down -v" >&2
    else
        "${compose[@]}" down -v --remove-orphans >&2 || true
    fi
    exit "$rc"
}
trap cleanup EXIT

echo "==> docker compose up -d --build --wait" >&2
"${compose[@]}" up -d --build --wait

echo "==> waiting for $url/readyz" >&2
ready=0
for _ in $(seq 1 120); do
    if curl -fsS "$url/readyz" >/dev/null 2>&1; then
        ready=1
        break
    fi
    sleep 1
done
[ "$ready" = "1" ] || die "$url/readyz did not answer within 120 s"

echo "==> e2e suite against $url" >&2
QCLOUD_E2E_URL="$url" QCLOUD_E2E_TOKEN="$token" cargo test -p qcloud-e2e --test api -- "$@"
