"""IBM facade benchmark through the real qiskit-ibm-runtime client: job mode (N sequential Bell jobs), a Batch of N
jobs submitted up front, a Session of M sequential jobs. Prints wall times, per-job overhead, and how much of it is
the client's poll interval (0.5 s in job mode, 0.1 s in a session: a job that ends just after a poll waits up to one
interval, half of one on average)."""

import argparse
import time
import warnings

warnings.filterwarnings("ignore")
from common import bell, connect  # noqa: E402
from qiskit_ibm_runtime import Batch, SamplerV2, Session  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--url", required=True)
p.add_argument("--token", required=True)
p.add_argument("--backend", default="ibm_sim")
p.add_argument("--jobs", type=int, default=20)
p.add_argument("--session-jobs", type=int, default=10)
p.add_argument("--shots", type=int, default=1024)
p.add_argument("--trace", action="store_true",
               help="also print the HTTP calls of one job in job mode and one in a session, with their timing")
a = p.parse_args()
backend = connect(a.url, a.token, a.backend)
isa = bell(backend, a.shots)


# Where each row's wall time goes: time inside HTTP calls (qcloud's work plus loopback and the
# requests library), time asleep between polls (runtime_job_v2's poll interval), and the rest
# (the client's own Python work: QPY, encoding, decoding, result objects).
import requests  # noqa: E402

split = {"http": 0.0, "sleep": 0.0}
_request = requests.Session.request
_sleep = time.sleep


def _timed_request(self, *args, **kwargs):
    t0 = time.perf_counter()
    try:
        return _request(self, *args, **kwargs)
    finally:
        split["http"] += time.perf_counter() - t0


def _timed_sleep(s):
    t0 = time.perf_counter()
    try:
        return _sleep(s)
    finally:
        split["sleep"] += time.perf_counter() - t0


requests.Session.request = _timed_request
time.sleep = _timed_sleep


def reset():
    split.update(http=0.0, sleep=0.0)


def check(r):
    assert sum(r[0].data.c.get_counts().values()) == a.shots


def row(name, n, wall, poll):
    per = wall / n
    http, slept = split["http"] / n, split["sleep"] / n
    print(f"{name:<22} {n:>4} jobs  wall {wall:7.3f} s  per job {per * 1000:6.1f} ms = HTTP {http * 1000:5.1f} "
          f"+ poll sleeps {slept * 1000:5.1f} + client work {max(per - http - slept, 0) * 1000:5.1f} ms  "
          f"(expected poll wait without the hold {poll * 1000:4.0f} ms/job)")


reset()
t = time.perf_counter()
for _ in range(a.jobs):
    check(SamplerV2(mode=backend).run([isa], shots=a.shots).result())
row("job mode (sequential)", a.jobs, time.perf_counter() - t, 0.25)

reset()
t = time.perf_counter()
with Batch(backend=backend) as batch:
    s = SamplerV2(mode=batch)
    jobs = [s.run([isa], shots=a.shots) for _ in range(a.jobs)]
    for j in jobs:
        check(j.result())
wall = time.perf_counter() - t
row("Batch (all up front)", a.jobs, wall, 0.05 / a.jobs)

reset()
t = time.perf_counter()
with Session(backend=backend) as session:
    s = SamplerV2(mode=session)
    for _ in range(a.session_jobs):
        check(s.run([isa], shots=a.shots).result())
row("Session (sequential)", a.session_jobs, time.perf_counter() - t, 0.05)


if a.trace:
    from datetime import datetime

    calls = []

    def traced(self, method, url, *args, **kwargs):
        t = time.perf_counter()
        try:
            return _request(self, method, url, *args, **kwargs)
        finally:
            calls.append((t, time.perf_counter(), method, url.split("/api/v1", 1)[-1].split("?")[0]))

    requests.Session.request = traced

    def server_times(job_id):
        v = _request(requests.Session(), "GET", f"{a.url}/v1/jobs/{job_id}",
                     headers={"Authorization": f"Bearer {a.token}"}).json()
        return {k: datetime.fromisoformat(v[k].replace("Z", "+00:00")) for k in ("created_at", "started_at",
                                                                                 "finished_at")}

    def trace(name, mode):
        calls.clear()
        t0 = time.perf_counter()
        w0 = datetime.now().astimezone()
        job = SamplerV2(mode=mode).run([isa], shots=a.shots)
        check(job.result())
        end = time.perf_counter()
        print(f"\n{name}: {1000 * (end - t0):.1f} ms")
        for s_, e_, m, path in calls:
            print(f"  {1000 * (s_ - t0):8.1f} ms  +{1000 * (e_ - s_):6.1f} ms  {m:<6} {path}")
        st = server_times(job.job_id())
        for k, v in st.items():
            print(f"  {1000 * (v - w0).total_seconds():8.1f} ms  server {k}")

    trace("one job in job mode", backend)

    calls.clear()
    t0 = time.perf_counter()
    with Batch(backend=backend) as batch:
        s = SamplerV2(mode=batch)
        jobs = [s.run([isa], shots=a.shots) for _ in range(5)]
        t_sub = time.perf_counter()
        for j in jobs:
            check(j.result())
    end = time.perf_counter()
    print(f"\na Batch of 5: {1000 * (end - t0):.1f} ms (submits {1000 * (t_sub - t0):.1f} ms)")
    for s_, e_, m, path in calls:
        print(f"  {1000 * (s_ - t0):8.1f} ms  +{1000 * (e_ - s_):6.1f} ms  {m:<6} {path}")
    with Session(backend=backend) as session:
        SamplerV2(mode=session).run([isa], shots=a.shots).result()
        trace("one job in a session (after a first)", session)
