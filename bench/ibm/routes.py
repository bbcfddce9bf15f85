"""Where a Batch job's HTTP time goes, route by route: one Batch of --jobs Bell jobs through the real
qiskit-ibm-runtime client, every HTTP call timed (the client's requests.Session.request) and grouped by route
(p50 and mean), then the per-job wall time and a floor: GET /healthz, a route that reads nothing."""

import argparse
import collections
import re
import time
import warnings

warnings.filterwarnings("ignore")
p = argparse.ArgumentParser()
p.add_argument("--url", required=True)
p.add_argument("--token", required=True)
p.add_argument("--backend", default="ibm_sim")
p.add_argument("--jobs", type=int, default=60)
a = p.parse_args()
from common import bell, connect  # noqa: E402
from qiskit_ibm_runtime import Batch, SamplerV2  # noqa: E402
import requests  # noqa: E402

url = a.url
backend = connect(url, a.token, a.backend)
isa = bell(backend, 1024)
_req = requests.Session.request
times = collections.defaultdict(list)


def traced(self, method, u, *args, **kw):
    t = time.perf_counter()
    try:
        return _req(self, method, u, *args, **kw)
    finally:
        p = re.sub(r"[0-9a-f-]{36}", "{id}", u.split("/api/v1", 1)[-1].split("?")[0])
        times[f"{method} {p}"].append((time.perf_counter() - t) * 1000)


requests.Session.request = traced
n = a.jobs
t0 = time.perf_counter()
with Batch(backend=backend) as b:
    s = SamplerV2(mode=b)
    jobs = [s.run([isa], shots=1024) for _ in range(n)]
    t1 = time.perf_counter()
    for j in jobs:
        j.result()
wall = time.perf_counter() - t0
tot = 0
for k, v in sorted(times.items()):
    v2 = sorted(v)
    tot += sum(v)
    print(f"{k:<40} n={len(v):3}  p50 {v2[len(v2)//2]:6.2f}  mean {sum(v)/len(v):6.2f} ms")
print(f"wall {wall*1000/n:.2f} ms/job, submit phase {(t1-t0)*1000/n:.2f} ms/job, http {tot/n:.2f} ms/job")
s2 = requests.Session()
xs = []
for _ in range(200):
    t = time.perf_counter()
    s2.get(f"{url}/healthz")
    xs.append((time.perf_counter() - t) * 1000)
xs.sort()
print(f"healthz p50 {xs[100]:.2f} ms")
