#!/usr/bin/env python3
"""Batch faster than Session (issue 8): the same N jobs as a `batch` and as a `dedicated` session
on a device whose timing model has a classical preparation time, through the native API.

Prints the wall time of each (first submit to last job finished, client clock), the device span
(first job started to last finished, server timestamps), the ratio, and what the timing model
predicts (the same model as qcloud_core::predicted_wall_ms). Standard library only.

Usage: bench.py URL ADMIN_TOKEN [--jobs 50] [--prep-ms 100] [--run-ms 50] [--window 16]
"""
import argparse
import json
import time
import urllib.request
import uuid
from datetime import datetime


def call(url, token, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


def predicted_ms(prep, run, batch, jobs, window):
    """qcloud_core::predicted_wall_ms (no circuits, no shots)."""
    if not batch or window == 0:
        return jobs * (prep + run)
    ready = [None] * jobs
    started_upto = 0
    device_free = 0.0
    for k in range(jobs):
        taken = device_free
        if max(started_upto - k, 0) < window // 2:
            frm, end = max(started_upto, k + 1), min(k + 1 + window, jobs)
            for i in range(frm, end):
                ready[i] = taken + prep
            started_upto = max(started_upto, end)
        if ready[k] is None:
            ready[k] = taken + prep
        device_free = max(ready[k], taken) + run
    return device_free


def ts(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def run(url, token, device, mode, jobs):
    sid = call(url, token, "POST", "/v1/sessions", {"device": device, "mode": mode})["id"]
    t0 = time.monotonic()
    ids = [
        call(url, token, "POST", "/v1/jobs", {"session_id": sid, "program": "noop", "payload": {}})["id"]
        for _ in range(jobs)
    ]
    call(url, token, "POST", f"/v1/sessions/{sid}/close", {})
    while call(url, token, "GET", f"/v1/sessions/{sid}")["state"] != "closed":
        time.sleep(0.01)
    wall = time.monotonic() - t0
    rows = [call(url, token, "GET", f"/v1/jobs/{i}") for i in ids]
    assert all(r["status"] == "completed" for r in rows), [r["status"] for r in rows]
    span = (max(ts(r["finished_at"]) for r in rows) - min(ts(r["started_at"]) for r in rows)).total_seconds()
    return wall, span


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("token")
    ap.add_argument("--jobs", type=int, default=50)
    ap.add_argument("--prep-ms", type=float, default=100)
    ap.add_argument("--run-ms", type=float, default=50)
    ap.add_argument("--window", type=int, default=16, help="the scheduler's prepare_ahead (default 16)")
    a = ap.parse_args()
    device = f"bench_prep_{uuid.uuid4().hex[:8]}"
    timing = {"setup_ms": a.run_ms, "prep_ms": a.prep_ms}
    call(a.url, a.token, "POST", "/v1/devices", {"name": device, "driver": "noop", "num_qubits": 5, "timing": timing})
    print(f"device {device}: timing {json.dumps(timing)}, {a.jobs} noop jobs per session")
    out = {}
    for mode in ("batch", "dedicated"):
        wall, span = run(a.url, a.token, device, mode, a.jobs)
        pred = predicted_ms(a.prep_ms, a.run_ms, mode == "batch", a.jobs, a.window) / 1000
        out[mode] = (wall, pred)
        print(f"{mode:>9}: wall {wall:7.3f} s  device span {span:7.3f} s  model {pred:7.3f} s  "
              f"overhead {1000 * (wall - pred) / a.jobs:6.1f} ms/job")
    ratio = out["dedicated"][0] / out["batch"][0]
    model = out["dedicated"][1] / out["batch"][1]
    print(f"dedicated / batch: measured {ratio:.2f}, model {model:.2f}")


if __name__ == "__main__":
    main()
