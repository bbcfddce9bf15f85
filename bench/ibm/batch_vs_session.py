"""Batch faster than Session (issue 8), through the real qiskit-ibm-runtime client: the same N circuits (random
3-qubit circuits transpiled for the backend, one circuit per job) submitted up front as a `Batch` and as a
`Session`, on a device with a QPU-like timing model (classical preparation prep_ms + prep_per_circuit_ms per job on
the worker pool, then setup_ms + per_shot_ms per shot on the device). Prints the wall time of each (first submit to
last result, client clock), the device span (first job started to last finished, server timestamps), the ratio,
and what the timing model predicts (the same model as qcloud_core::predicted_wall_ms)."""

import argparse
import time
import warnings
from datetime import datetime

warnings.filterwarnings("ignore")
import requests  # noqa: E402
from qiskit.circuit.random import random_circuit  # noqa: E402
from qiskit.transpiler import generate_preset_pass_manager  # noqa: E402
from common import connect  # noqa: E402
from qiskit_ibm_runtime import Batch, SamplerV2, Session  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--url", required=True)
p.add_argument("--token", required=True)
p.add_argument("--backend", default="heavyhex_127")
p.add_argument("--circuits", type=int, default=50)
p.add_argument("--shots", type=int, default=1000)
p.add_argument("--window", type=int, default=16, help="the scheduler's prepare_ahead (default 16)")
a = p.parse_args()
backend = connect(a.url, a.token, a.backend)
H = {"Authorization": f"Bearer {a.token}"}
timing = requests.get(f"{a.url}/v1/devices/{a.backend}", headers=H).json()["timing"]
circuits = [random_circuit(3, 4, measure=True, seed=100 + i) for i in range(a.circuits)]
isa = generate_preset_pass_manager(optimization_level=1, backend=backend, seed_transpiler=0).run(circuits)


def predicted_ms(batch, jobs, circuits, shots, window):
    """qcloud_core::predicted_wall_ms."""
    prep = timing.get("prep_ms", 0) + timing.get("prep_per_circuit_ms", 0) * circuits
    run = timing.get("setup_ms", 0) + timing.get("per_shot_ms", 0) * shots
    if not batch or window == 0:
        return jobs * (prep + run)
    ready = [None] * jobs
    started_upto, device_free = 0, 0.0
    for k in range(jobs):
        taken = device_free
        if max(started_upto - k, 0) < window // 2:
            for i in range(max(started_upto, k + 1), min(k + 1 + window, jobs)):
                ready[i] = taken + prep
            started_upto = max(started_upto, min(k + 1 + window, jobs))
        if ready[k] is None:
            ready[k] = taken + prep
        device_free = max(ready[k], taken) + run
    return device_free


def ts(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def run(kind):
    t0 = time.perf_counter()
    with kind(backend=backend) as mode:
        sampler = SamplerV2(mode=mode)
        jobs = [sampler.run([c], shots=a.shots) for c in isa]
        results = [j.result() for j in jobs]
    wall = time.perf_counter() - t0
    assert all(sum(r[0].data.c.get_counts().values()) == a.shots for r in results)
    rows = [requests.get(f"{a.url}/v1/jobs/{j.job_id()}", headers=H).json() for j in jobs]
    span = (max(ts(r["finished_at"]) for r in rows) - min(ts(r["started_at"]) for r in rows)).total_seconds()
    return wall, span


print(f"backend {a.backend}: timing {timing}; {a.circuits} jobs of 1 circuit x {a.shots} shots, submitted up front")
out = {}
for name, kind in (("Batch", Batch), ("Session", Session)):
    wall, span = run(kind)
    model = predicted_ms(kind is Batch, a.circuits, 1, a.shots, a.window) / 1000
    out[name] = (wall, span, model)
    print(f"{name:>8}: wall {wall:7.3f} s  device span {span:7.3f} s  model {model:7.3f} s  "
          f"(wall - model {1000 * (wall - model) / a.circuits:6.1f} ms/job)")
(bw, bs, bm), (sw, ss, sm) = out["Batch"], out["Session"]
print(f"Session / Batch: wall {sw / bw:.2f}, device span {ss / bs:.2f}, model {sm / bm:.2f}")
