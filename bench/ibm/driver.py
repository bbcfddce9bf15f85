"""IBM facade benchmark through the real qiskit-ibm-runtime client: job mode (N sequential Bell jobs), a Batch of N
jobs submitted up front, a Session of M sequential jobs. Prints wall times, per-job overhead, and how much of it is
the client's poll interval (0.5 s in job mode, 0.1 s in a session: a job that ends just after a poll waits up to one
interval, half of one on average)."""

import argparse
import os
import time
import warnings

warnings.filterwarnings("ignore")
from qiskit import QuantumCircuit  # noqa: E402
from qiskit.transpiler import generate_preset_pass_manager  # noqa: E402
from qiskit_ibm_runtime import Batch, QiskitRuntimeService, SamplerV2, Session  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--url", required=True)
p.add_argument("--token", required=True)
p.add_argument("--backend", default="ibm_sim")
p.add_argument("--jobs", type=int, default=20)
p.add_argument("--session-jobs", type=int, default=10)
p.add_argument("--shots", type=int, default=1024)
a = p.parse_args()
os.environ.update(IAM_URL=f"{a.url}/ibm", GLOBAL_SEARCH_URL=f"{a.url}/ibm", GLOBAL_CATALOG_URL=f"{a.url}/ibm/catalog")
svc = QiskitRuntimeService(channel="ibm_quantum_platform", token=a.token, url=f"{a.url}/ibm/api/v1",
                           url_resolver=lambda url, *x, **k: url)
backend = svc.backend(a.backend)
qc = QuantumCircuit(2, 2)
qc.h(0)
qc.cx(0, 1)
qc.measure([0, 1], [0, 1])
isa = generate_preset_pass_manager(optimization_level=1, backend=backend).run(qc)
SamplerV2(mode=backend).run([isa], shots=a.shots).result()  # warm-up: caches, first connection


def check(r):
    assert sum(r[0].data.c.get_counts().values()) == a.shots


def row(name, n, wall, poll):
    per = wall / n
    print(f"{name:<22} {n:>4} jobs  wall {wall:7.3f} s  per job {per * 1000:7.1f} ms  "
          f"expected poll wait {poll * 1000:5.0f} ms/job  (qcloud + client work {max(per - poll, 0) * 1000:6.1f} ms/job)")


t = time.perf_counter()
for _ in range(a.jobs):
    check(SamplerV2(mode=backend).run([isa], shots=a.shots).result())
row("job mode (sequential)", a.jobs, time.perf_counter() - t, 0.25)

t = time.perf_counter()
with Batch(backend=backend) as batch:
    s = SamplerV2(mode=batch)
    jobs = [s.run([isa], shots=a.shots) for _ in range(a.jobs)]
    for j in jobs:
        check(j.result())
wall = time.perf_counter() - t
row("Batch (all up front)", a.jobs, wall, 0.05 / a.jobs)

t = time.perf_counter()
with Session(backend=backend) as session:
    s = SamplerV2(mode=session)
    for _ in range(a.session_jobs):
        check(s.run([isa], shots=a.shots).result())
row("Session (sequential)", a.session_jobs, time.perf_counter() - t, 0.05)
