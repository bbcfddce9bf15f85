#!/usr/bin/env python3
"""Statement profile of one database from the Postgres server log (issue 11, step 1).

pg_stat_statements needs shared_preload_libraries (a server restart); where that is not possible,
`ALTER DATABASE <db> SET log_min_duration_statement = 0` makes Postgres log every statement of that
database with its duration. This reads those lines (default log_line_prefix '%m [%p] %q%u@%d ')
and prints, per normalised statement: calls, calls per job, total and mean server time.

Usage: statements.py LOGFILE DB JOBS [START_OFFSET]
"""
import re
import sys
from collections import defaultdict

log, db, jobs = sys.argv[1], sys.argv[2], int(sys.argv[3])
start = int(sys.argv[4]) if len(sys.argv) > 4 else 0
head = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \S+ \[(\d+)\] (\S*)@(\S*) (LOG|ERROR|STATEMENT|DETAIL|WARNING):\s+(.*)$")
dur = re.compile(r"^duration: ([0-9.]+) ms\s+(?:(parse|bind|execute) [^:]*|statement): (.*)$")

entries = []
cur = None
with open(log, errors="replace") as f:
    f.seek(start)
    for line in f:
        m = head.match(line)
        if m:
            if cur:
                entries.append(cur)
            cur = None
            if m.group(3) == db and m.group(4) == "LOG":
                d = dur.match(m.group(5))
                if d:
                    cur = [d.group(2) or "simple", float(d.group(1)), d.group(3)]
        elif cur is not None and (line.startswith("\t") or line.startswith(" ")):
            cur[2] += " " + line.strip()
    if cur:
        entries.append(cur)

stats = defaultdict(lambda: [0, 0.0])
phase_time = defaultdict(float)
for phase, ms, text in entries:
    phase_time[phase] += ms
    if phase in ("parse", "bind"):
        continue
    key = re.sub(r"\s+", " ", text).strip()
    key = re.sub(r"'[^']*'", "'?'", key)
    key = re.sub(r"\b\d+\b", "N", key)
    stats[key][0] += 1
    stats[key][1] += ms

total_calls = sum(v[0] for v in stats.values())
total_ms = sum(v[1] for v in stats.values())
print(f"{db}: {jobs} jobs, {total_calls} statements executed ({total_calls / jobs:.2f} per job), "
      f"{total_ms:.0f} ms of execution ({total_ms / jobs:.3f} ms per job); parse {phase_time['parse']:.0f} ms, "
      f"bind {phase_time['bind']:.0f} ms")
print(f"{'calls':>8} {'per job':>8} {'total ms':>9} {'mean ms':>8}  statement")
for key, (n, ms) in sorted(stats.items(), key=lambda kv: -kv[1][0]):
    if n < jobs * 0.01:
        continue
    print(f"{n:>8} {n / jobs:>8.2f} {ms:>9.0f} {ms / n:>8.3f}  {key[:150]}")
