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
#              bench/server/statements.py's profile per scenario: needs read access to the Postgres log),
#              BENCH_PROFILE=debug (run target/debug binaries instead of the release build: tool tests only),
#              BENCH_PRIVATE_PG=1, BENCH_PERF=1 (below).
#
# Scenario `history` (last by default: it leaves its history in the database) loads --history-jobs terminal
# jobs (default 5,000,000) straight into the bench database by SQL and prints submit, GET and list latencies
# before and after, with their ratio, then times one pass of the retention pruner; the bench client gets
# --database-url for it. In the summary, jobs are the server's own (seq > 0; the loaded history has seq <= 0).
#
# BENCH_PRIVATE_PG=1: run on a private Postgres cluster started by scripts/pg-env (under .qcloud/bench-pg,
#   port BENCH_PG_PORT, default 5439; stopped at the end if this run started it) with
#   shared_preload_libraries=pg_stat_statements and durable settings (fsync and synchronous_commit on, as on
#   the shared server; BENCH_PG_OPTS adds `-c name=value` settings), and print at the end the top 15
#   statements of the bench database by total_exec_time (bench/server/pgss.sql): calls, total and mean ms,
#   rows, and per 1,000 of the server's jobs. run.sh's own queries and the history loader are not tracked.
#   The default (the shared server on PGHOST:PGPORT) is unchanged. --with-graphile still runs graphile's
#   script on 127.0.0.1:5432 (it names its server), so its ratio is then not from the same Postgres.
#   Example: BENCH_PRIVATE_PG=1 BENCH_SCENARIOS="submit e2e:64 drain" bash bench/server/run.sh --jobs 10000
#
# BENCH_PERF=1: record the server with `perf record` (BENCH_PERF_FREQ Hz, default 99; call graphs by
#   BENCH_PERF_CALLGRAPH, default dwarf,16384: release builds keep no frame pointers, so stacks are copied and
#   unwound from .eh_frame; about 16 KB per sample, ~3 MB/s with both cores busy) from its start to the end of
#   the scenarios, then write $BENCH_OUT/perf.data, server.folded (folded stacks, one line per stack and count)
#   and, when inferno is installed (cargo install inferno), server-flame.svg; without inferno an awk folds the
#   stacks. The unwinder stops at the task's future (the handler or the scheduler loop), so stacks start there,
#   under an `[unknown]` frame. Equivalent by hand:
#     perf record -F 99 --call-graph dwarf,16384 -p <server pid> -o perf.data   (until Ctrl-C)
#     perf script --no-inline -i perf.data | inferno-collapse-perf > server.folded
#     inferno-flamegraph < server.folded > server-flame.svg
#   Example: BENCH_PERF=1 BENCH_SCENARIOS="e2e:64" bash bench/server/run.sh --jobs 10000
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
SCENARIOS="${BENCH_SCENARIOS:-submit e2e:1 e2e:8 e2e:64 latency gap batch bulk drain deep history}"
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
PROFILE="${BENCH_PROFILE:-release}"
case "$PROFILE" in
release) BUILD_FLAGS=(--release) ;;
debug) BUILD_FLAGS=() ;;
*) echo "BENCH_PROFILE must be release or debug, not $PROFILE" >&2; exit 2 ;;
esac
SERVER_BIN="${BENCH_SERVER_BIN:-$TARGET/$PROFILE/qcloud}"
CLIENT_BIN="${BENCH_CLIENT_BIN:-$TARGET/$PROFILE/qcloud-bench}"
[ "${BENCH_NO_BUILD:-0}" = 1 ] || cargo build "${BUILD_FLAGS[@]+"${BUILD_FLAGS[@]}"}" -q -p qcloud -p qcloud-bench

PRIVATE_PG="${BENCH_PRIVATE_PG:-0}"
PERF="${BENCH_PERF:-0}"
PG_STARTED=0
if [ "$PRIVATE_PG" = 1 ]; then
    # A private cluster of its own (not the tests' .qcloud/test-pg), durable like the shared server.
    export QCLOUD_TEST_PG_DIR="$ROOT/.qcloud/bench-pg" QCLOUD_TEST_PG_PORT="${BENCH_PG_PORT:-5439}"
    export QCLOUD_TEST_PG_PRIVATE=1 QCLOUD_TEST_PG_DURABLE=1
    export QCLOUD_TEST_PG_EXTRA_OPTS="-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.max=10000 ${BENCH_PG_OPTS:-}"
    # shellcheck source=../../scripts/pg-env
    source "$ROOT/scripts/pg-env"
    qcloud_pg_env
    PG_STARTED="$QCLOUD_TEST_PG_STARTED"
    export PGHOST=127.0.0.1 PGPORT="$QCLOUD_TEST_PG_PORT" PGUSER=postgres PGDATABASE=postgres
    if ! psql -Atqc 'SHOW shared_preload_libraries' | grep -q pg_stat_statements; then
        echo "the Postgres on port $PGPORT runs without pg_stat_statements (a cluster started by someone else?):" \
            "stop it (scripts/pg-env stop with QCLOUD_TEST_PG_DIR=$QCLOUD_TEST_PG_DIR) or set BENCH_PG_PORT" >&2
        exit 1
    fi
    # run.sh's own queries (the activity sampler above all) stay out of the statement profile; the
    # server and the bench client do not inherit this.
    export PGOPTIONS="-c pg_stat_statements.track=none"
fi

SERVER_PID=""
SAMPLER_PID=""
PERF_PID=""
cleanup() {
    # The sampler loop ends when its flag file goes; psql ends with its input.
    rm -f "$OUT/.sampling"
    [ -n "$SAMPLER_PID" ] && wait "$SAMPLER_PID" 2>/dev/null || true
    if [ -n "$PERF_PID" ]; then
        kill -INT "$PERF_PID" 2>/dev/null || true
        wait "$PERF_PID" 2>/dev/null || true
    fi
    if [ -n "$SERVER_PID" ]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    dropdb --if-exists --force "$DB" 2>/dev/null || true
    if [ "$PG_STARTED" = 1 ]; then qcloud_pg_stop || true; fi
}
trap cleanup EXIT

createdb "$DB"
if [ "$PRIVATE_PG" = 1 ]; then
    PGLOG="${PGLOG:-$(qcloud_pg__cluster_dir)/postgres.log}"
    PGOPTIONS= psql -d "$DB" -qc "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"
else
    PGLOG="${PGLOG:-$(ls -t /var/log/postgresql/postgresql-*.log 2>/dev/null | head -1)}"
fi
if [ "${BENCH_LOG_STATEMENTS:-0}" = 1 ]; then
    # Every statement of this database only, with its duration (slows Postgres: profile runs only).
    psql -d "$DB" -qc "ALTER DATABASE $DB SET log_min_duration_statement = 0"
fi
DB_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$DB"
RUST_LOG="${RUST_LOG:-warn}" env -u PGOPTIONS "$SERVER_BIN" serve --listen "127.0.0.1:$PORT" \
    --database-url "$DB_URL" --admin-token "$TOKEN" --no-seed \
    >"$OUT/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do
    curl -fsS "$URL/readyz" >/dev/null 2>&1 && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$OUT/server.log"; echo "server exited" >&2; exit 1; }
    sleep 0.1
done
curl -fsS "$URL/readyz" >/dev/null
if [ "$PERF" = 1 ]; then
    perf record -F "${BENCH_PERF_FREQ:-99}" --call-graph "${BENCH_PERF_CALLGRAPH:-dwarf,16384}" -p "$SERVER_PID" \
        -o "$OUT/perf.data" >"$OUT/perf.log" 2>&1 &
    PERF_PID=$!
    sleep 1
    kill -0 "$PERF_PID" 2>/dev/null || { cat "$OUT/perf.log" >&2; echo "perf record did not start" >&2; exit 1; }
fi

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
# The server's jobs: the history scenario's loaded jobs carry seq <= 0.
jobs_count() { q "SELECT count(*) FROM jobs WHERE seq > 0"; }

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

printf '%s\n' "qcloud server benchmark: $(nproc) cores, $(psql -Atqc 'SHOW server_version' -d "$DB") on $PGHOST:$PGPORT, database $DB, $PROFILE build" >"$OUT/figures.txt"
[ "$PRIVATE_PG" = 1 ] && q "SELECT pg_stat_statements_reset()" >/dev/null
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
    { time env -u PGOPTIONS "$CLIENT_BIN" --url "$URL" --token "$TOKEN" --database-url "$DB_URL" "${args[@]}" "$@" \
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

PERF_LINE=""
if [ -n "$PERF_PID" ]; then
    # The profile covers the server from its start to the end of the last scenario.
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
    PERF_PID=""
    # --no-inline: resolving inlined frames (addr2line) takes minutes; the symbols suffice here.
    perf script --no-inline -i "$OUT/perf.data" 2>>"$OUT/perf.log" >"$OUT/perf.script" || true
    if command -v inferno-collapse-perf >/dev/null 2>&1; then
        inferno-collapse-perf "$OUT/perf.script" >"$OUT/server.folded"
        inferno-flamegraph --title "qcloud server: $SCENARIOS" <"$OUT/server.folded" >"$OUT/server-flame.svg"
        PERF_LINE="server profile: $OUT/server.folded, $OUT/server-flame.svg ($(wc -l <"$OUT/server.folded") stacks)"
    else
        # Without inferno: fold perf script's stacks here (one line per stack, outermost frame first).
        awk '/^[^ \t]/ { comm = $1; n = 0; next }
             /^[ \t]/ { sym = $0; sub(/^[ \t]*[0-9a-f]+ /, "", sym); sub(/ \([^()]*\)$/, "", sym)
                        sub(/\+0x[0-9a-f]+$/, "", sym); f[++n] = sym; next }
             /^$/ { if (n) { s = comm; for (i = n; i >= 1; i--) s = s ";" f[i]; c[s]++ } n = 0 }
             END { if (n) { s = comm; for (i = n; i >= 1; i--) s = s ";" f[i]; c[s]++ } for (k in c) print k, c[k] }' \
            "$OUT/perf.script" | sort >"$OUT/server.folded"
        PERF_LINE="server profile: $OUT/server.folded (no inferno-flamegraph for an SVG: cargo install inferno)"
    fi
    rm -f "$OUT/perf.script"
fi

GRAPHILE_LINE=""
if [ "$WITH_GRAPHILE" = 1 ]; then
    [ "$PRIVATE_PG" = 1 ] && echo "note: graphile's script runs on 127.0.0.1:5432, not on the private Postgres" >&2
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
    [ -n "$PERF_LINE" ] && { echo "$PERF_LINE"; echo; }
    if [ "$PRIVATE_PG" = 1 ]; then
        psql -d "$DB" -X -q -v jobs="$(jobs_count)" -v db="$DB" -f "$ROOT/bench/server/pgss.sql" || true
        echo
    fi
    cat "$OUT/activity.txt"
} >>"$OUT/figures.txt"
cat "$OUT/figures.txt"
echo
echo "(logs, raw output and samples in $OUT)"
