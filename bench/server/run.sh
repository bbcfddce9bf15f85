#!/usr/bin/env bash
# qcloud server benchmark. Builds the release binaries, starts a fresh `qcloud serve` on a fresh
# database of the local Postgres, runs qcloud-bench scenario by scenario, and around each one
# records what Postgres and the processes did (committed transactions per job, CPU seconds of
# the server, of this database's Postgres backends and of the bench client, and samples of
# pg_stat_activity). Then it stops the server, drops the database and prints the figures.
#
# Usage: bench/server/run.sh [--with-graphile] [extra qcloud-bench flags, e.g. --jobs 20000 --clients 64]
#   --with-graphile  also runs ../shared/bench/graphile/run.sh (GRAPHILE_RUN) on the same Postgres in
#                    the same run (one process, batching on, as many jobs as the drain scenario) and
#                    prints the drain scenario's ratio to it.
# Environment: PGHOST (127.0.0.1), PGPORT (5432), PGUSER (postgres), BENCH_PORT (18080),
#              BENCH_OUT (target/bench-server: logs and samples), BENCH_SCENARIOS (scenario[:devices] ...),
#              BENCH_SERVER_BIN, BENCH_CLIENT_BIN (the binaries; default the release build), BENCH_NO_BUILD=1 (skip cargo build),
#              BENCH_LOG_STATEMENTS=1 (log every statement of the bench database with its duration, and print
#              bench/server/statements.py's profile per scenario: needs read access to the Postgres log).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
PORT="${BENCH_PORT:-18080}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="${BENCH_OUT:-$TARGET/bench-server}"
DB="qcloud_bench_$$"
TOKEN="bench-admin-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
URL="http://127.0.0.1:$PORT"
SCENARIOS="${BENCH_SCENARIOS:-submit e2e:1 e2e:8 e2e:64 latency gap batch bulk drain deep}"
WITH_GRAPHILE=0
GRAPHILE_RUN="${GRAPHILE_RUN:-$ROOT/../shared/bench/graphile/run.sh}"
[ -f "$GRAPHILE_RUN" ] || GRAPHILE_RUN=/work/shared/bench/graphile/run.sh
BENCH_ARGS=()
DRAIN_JOBS=100000
prev=""
for a in "$@"; do
    case "$a" in
    --with-graphile) WITH_GRAPHILE=1 ;;
    *) BENCH_ARGS+=("$a") ;;
    esac
    [ "$prev" = "--drain-jobs" ] && DRAIN_JOBS="$a"
    case "$a" in --drain-jobs=*) DRAIN_JOBS="${a#*=}" ;; esac
    prev="$a"
done
set -- "${BENCH_ARGS[@]+"${BENCH_ARGS[@]}"}"
mkdir -p "$OUT"

# BENCH_SERVER_BIN runs another server binary (a baseline build) under the same bench client.
SERVER_BIN="${BENCH_SERVER_BIN:-$TARGET/release/qcloud}"
CLIENT_BIN="${BENCH_CLIENT_BIN:-$TARGET/release/qcloud-bench}"
[ "${BENCH_NO_BUILD:-0}" = 1 ] || cargo build --release -q -p qcloud -p qcloud-bench

SERVER_PID=""
SAMPLER_PID=""
cleanup() {
    # The sampler loop ends when its flag file goes; psql ends with its input.
    rm -f "$OUT/.sampling"
    [ -n "$SAMPLER_PID" ] && wait "$SAMPLER_PID" 2>/dev/null || true
    if [ -n "$SERVER_PID" ]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    dropdb --if-exists --force "$DB" 2>/dev/null || true
}
trap cleanup EXIT

createdb "$DB"
PGLOG="${PGLOG:-$(ls -t /var/log/postgresql/postgresql-*.log 2>/dev/null | head -1)}"
if [ "${BENCH_LOG_STATEMENTS:-0}" = 1 ]; then
    # Every statement of this database only, with its duration (slows Postgres: profile runs only).
    psql -d "$DB" -qc "ALTER DATABASE $DB SET log_min_duration_statement = 0"
fi
RUST_LOG="${RUST_LOG:-warn}" "$SERVER_BIN" serve --listen "127.0.0.1:$PORT" \
    --database-url "postgres://$PGUSER@$PGHOST:$PGPORT/$DB" --admin-token "$TOKEN" --no-seed \
    >"$OUT/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do
    curl -fsS "$URL/readyz" >/dev/null 2>&1 && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$OUT/server.log"; echo "server exited" >&2; exit 1; }
    sleep 0.1
done
curl -fsS "$URL/readyz" >/dev/null

q() { psql -d "$DB" -Atqc "$1"; }
# CPU seconds (user + system) of a process, from /proc.
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# CPU seconds of the Postgres backends connected to the bench database (their titles name it).
pg_cpu() {
    local total=0 pid
    for pid in $(pgrep -f "postgres: .* $DB " || true); do
        total=$(awk -v a="$total" -v b="$(cpu_of "$pid")" 'BEGIN { printf "%.2f", a + b }')
    done
    echo "$total"
}
# Resident memory of a process, MB.
rss_of() { awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo 0; }
xacts() { q "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '$DB'"; }
jobs_count() { q "SELECT count(*) FROM jobs"; }

# One psql session samples pg_stat_activity every 50 ms while the bench runs.
: >"$OUT/activity.txt"
touch "$OUT/.sampling"
(
    while [ -e "$OUT/.sampling" ] && sleep 0.05; do
        echo "SELECT coalesce(wait_event_type || ':' || wait_event, 'cpu') || ' | ' || state || ' | ' || regexp_replace(left(query, 70), '\s+', ' ', 'g') FROM pg_stat_activity WHERE datname = '$DB' AND pid <> pg_backend_pid() AND state <> 'idle';"
    done | psql -d "$DB" -Atq >>"$OUT/activity.raw" 2>/dev/null
) &
SAMPLER_PID=$!

# Idle background rate: transactions per second of the server doing nothing.
sleep 2
x0=$(xacts); sleep 5; x1=$(xacts)
IDLE_TPS=$(awk -v a="$x0" -v b="$x1" 'BEGIN { printf "%.1f", (b - a) / 5 }')

printf '%s\n' "qcloud server benchmark: $(nproc) cores, $(psql -Atqc 'SHOW server_version' -d "$DB") on $PGHOST:$PGPORT, database $DB" >"$OUT/figures.txt"
: >"$OUT/bench.txt"
declare -a SUMMARY
for s in $SCENARIOS; do
    name="${s%%:*}"
    args=(--scenario "$name")
    [ "$s" != "$name" ] && args+=(--devices "${s#*:}")
    sleep 2 # let the previous scenario's statistics reach pg_stat_database
    x0=$(xacts); j0=$(jobs_count); c0=$(cpu_of "$SERVER_PID"); p0=$(pg_cpu)
    log0=$(stat -c %s "$PGLOG" 2>/dev/null || echo 0)
    : >"$OUT/activity.raw"
    t0=$(date +%s.%N)
    TIMEFORMAT="%U %S"
    { time "$CLIENT_BIN" --url "$URL" --token "$TOKEN" "${args[@]}" "$@" \
        >"$OUT/bench-$s.txt" 2>"$OUT/bench-$s.log"; } 2>"$OUT/bench-$s.time"
    t1=$(date +%s.%N)
    sleep 2
    x1=$(xacts); j1=$(jobs_count); c1=$(cpu_of "$SERVER_PID"); p1=$(pg_cpu); rss=$(rss_of "$SERVER_PID")
    read -r bu bs <"$OUT/bench-$s.time"
    if [ "${BENCH_LOG_STATEMENTS:-0}" = 1 ] && [ "$j1" -gt "$j0" ]; then
        python3 "$ROOT/bench/server/statements.py" "$PGLOG" "$DB" "$((j1 - j0))" "$log0" \
            >"$OUT/statements-$s.txt" 2>&1 || true
        { echo "== $s: statements (from the Postgres log)"; cat "$OUT/statements-$s.txt"; } >>"$OUT/activity.txt"
    fi
    sed -n '/^scenario/,$p' "$OUT/bench-$s.txt" | tail -n +3 >>"$OUT/bench.txt"
    {
        echo "== $s: top pg_stat_activity samples (wait | state | query), of $(wc -l <"$OUT/activity.raw") non-idle backend samples"
        sort "$OUT/activity.raw" | uniq -c | sort -rn | awk 'NR <= 8' # reads all its input: no SIGPIPE under pipefail
    } >>"$OUT/activity.txt"
    SUMMARY+=("$(awk -v s="$s" -v x0="$x0" -v x1="$x1" -v j0="$j0" -v j1="$j1" -v t0="$t0" -v t1="$t1" \
        -v c0="$c0" -v c1="$c1" -v p0="$p0" -v p1="$p1" -v bu="$bu" -v bs="$bs" -v idle="$IDLE_TPS" -v rss="$rss" 'BEGIN {
        jobs = j1 - j0; wall = t1 - t0 + 4; tx = (x1 - x0) - idle * wall;
        printf "%-10s %7d %9d %8.2f %8.2f %8.2f %8.2f %8.2f %8.2f %8.2f %7d", s, jobs, x1 - x0, (jobs > 0 ? tx / jobs : 0),
            t1 - t0, c1 - c0, p1 - p0, bu + bs, (jobs > 0 ? (c1 - c0) * 1000 / jobs : 0),
            (jobs > 0 ? (p1 - p0) * 1000 / jobs : 0), rss }')")
done

GRAPHILE_LINE=""
if [ "$WITH_GRAPHILE" = 1 ]; then
    # Same Postgres, same run, after qcloud's scenarios (the server stays up but idle).
    GRAPHILE_CONFIGS=1x1 bash "$GRAPHILE_RUN" "$DRAIN_JOBS" >"$OUT/graphile.txt" 2>"$OUT/graphile.log" || true
    g=$(sed -n 's/.*burn-down \([0-9.]*\) jobs\/s.*/\1/p' "$OUT/graphile.txt" | head -1)
    # qcloud-bench's progress line: "  drain [64 paused] completed ...: jobs/s N p50 ...".
    d=$(sed -n 's/^  drain \[.*: jobs\/s \([0-9.]*\) .*/\1/p' "$OUT/bench-drain.log" 2>/dev/null | head -1)
    GRAPHILE_LINE="graphile-worker (1 process, batching on, $DRAIN_JOBS jobs): $(cat "$OUT/graphile.txt" | tr '\n' ' ')"
    if [ -n "$g" ] && [ -n "$d" ]; then
        GRAPHILE_LINE="$GRAPHILE_LINE
drain / graphile = $(awk -v d="$d" -v g="$g" 'BEGIN { printf "%.3f (%s / %s jobs/s)", d / g, d, g }')"
    fi
fi

{
    echo
    sed -n '/^scenario/,/^---/p' "$OUT/bench-${SCENARIOS%% *}.txt" | head -2
    cat "$OUT/bench.txt"
    echo
    echo "Per scenario (transactions: committed + rolled back in the bench database, net of the idle"
    echo "background rate of $IDLE_TPS tx/s; CPU seconds: server process, its Postgres backends, bench client, and of the"
    echo "server and Postgres per 1,000 jobs; the server's resident memory after the scenario):"
    printf '%-10s %7s %9s %8s %8s %8s %8s %8s %8s %8s %7s\n' scenario jobs xacts 'tx/job' 'wall s' 'srv cpu' 'pg cpu' 'cli cpu' \
        'srv/1k' 'pg/1k' 'rss MB'
    printf '%s\n' "${SUMMARY[@]}"
    echo
    [ -n "$GRAPHILE_LINE" ] && { echo "$GRAPHILE_LINE"; echo; }
    cat "$OUT/activity.txt"
} >>"$OUT/figures.txt"
cat "$OUT/figures.txt"
echo
echo "(logs, raw output and samples in $OUT)"
