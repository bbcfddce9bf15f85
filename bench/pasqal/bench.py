"""Pasqal facade benchmark through the real pasqal-cloud SDK (issue 10): a closed batch of N jobs of R runs of the
shared param_blackman_ramp sequence (`create_batch(..., wait=True)`), and an open batch fed the same N jobs one at a
time (`add_jobs([job], wait=True)` each, then `close(wait=True)`). For each it prints:
  wall      first SDK call to the last result read (client clock)
  http      time inside HTTP calls to qcloud (client-observed: the server's work plus loopback)
  backoff   time the SDK slept in its polling back-off (tenacity: 2 s, 4 s, 8 s ... between status polls)
  emulator  the jobs' device time as qcloud recorded it (usage_seconds: the analog driver's run time)
  other     the rest (the SDK's own Python work)
Time in the back-off is measured by wrapping time.sleep (the SDK's only sleep); HTTP time by wrapping
requests.Session.request."""

import argparse
import json
import time

import requests
from pasqal_cloud import SDK
from pasqal_cloud.authentication import TokenProvider
from pasqal_cloud.endpoints import Endpoints

p = argparse.ArgumentParser()
p.add_argument("--url", required=True)
p.add_argument("--token", required=True)
p.add_argument("--sequence", required=True)
p.add_argument("--jobs", type=int, default=20)
p.add_argument("--runs", type=int, default=100)
p.add_argument("--device", default="EMU_FREE")
a = p.parse_args()
SEQ = open(a.sequence).read()

clock = {"http": 0.0, "sleep": 0.0, "calls": 0, "routes": {}}
_request = requests.Session.request
_sleep = time.sleep


def route(method, url):
    path = url.split("/pasqal", 1)[-1].split("?")[0]
    parts = ["{id}" if len(x) == 36 and x.count("-") == 4 else ("{link}" if len(x) > 36 else x)
             for x in path.split("/")]
    return f"{method} {'/'.join(parts)}"


def timed_request(self, method, url, *args, **kwargs):
    t = time.perf_counter()
    try:
        return _request(self, method, url, *args, **kwargs)
    finally:
        d = time.perf_counter() - t
        clock["http"] += d
        clock["calls"] += 1
        r = clock["routes"].setdefault(route(method, url), [0, 0.0])
        r[0] += 1
        r[1] += d


def timed_sleep(s):
    t = time.perf_counter()
    _sleep(s)
    clock["sleep"] += time.perf_counter() - t


requests.Session.request = timed_request
time.sleep = timed_sleep


class Static(TokenProvider):
    def get_token(self):
        return a.token


H = {"Authorization": f"Bearer {a.token}"}
project = requests.get(f"{a.url}/pasqal/account/api/v1/projects", headers=H).json()["data"][0]["id"]
sdk = SDK(project_id=project, token_provider=Static(),
          endpoints=Endpoints(core=f"{a.url}/pasqal/core-fast", account=f"{a.url}/pasqal/account"))
jobs = [{"runs": a.runs, "variables": {"omega_max": 1.0 + 0.05 * i}} for i in range(a.jobs)]


def emulator_seconds(batch):
    total = 0.0
    for j in batch.ordered_jobs:
        v = _request(requests.Session(), "GET", f"{a.url}/v1/jobs/{j.id}", headers=H).json()
        total += v["usage_seconds"]
    return total


def check(batch):
    assert batch.status == "DONE", batch.status
    assert len(batch.ordered_jobs) == a.jobs
    for j in batch.ordered_jobs:
        assert j.status == "DONE" and sum(j.result.values()) == a.runs, (j.status, j.result)


def measure(name, body):
    clock.update(http=0.0, sleep=0.0, calls=0, routes={})
    t = time.perf_counter()
    batch = body()
    # Read every result as a user would (one results link per job).
    for j in batch.ordered_jobs:
        _ = j.result
    wall = time.perf_counter() - t
    http, sleep, calls = clock["http"], clock["sleep"], clock["calls"]
    check(batch)
    emu = emulator_seconds(batch)
    other = wall - http - sleep
    print(f"{name:<34} wall {wall:7.3f} s   http {http:6.3f} s ({calls} calls)   backoff {sleep:6.3f} s "
          f"({100 * sleep / wall:4.1f} %)   emulator {emu:6.3f} s   other {other:6.3f} s")
    for r, (n, d) in sorted(clock["routes"].items(), key=lambda x: -x[1][1]):
        print(f"    {r:<52} {n:4d} calls {1000 * d:8.1f} ms  ({1000 * d / n:6.1f} ms each)")
    return wall


def closed():
    return sdk.create_batch(SEQ, jobs, device_type=a.device, wait=True)


def open_fed():
    b = sdk.create_batch(SEQ, [], device_type=a.device, open=True)
    for j in jobs:
        b.add_jobs([j], wait=True)
    b.close(wait=True)
    return b


# Warm-up: the first batch pays for connections and caches.
sdk.create_batch(SEQ, jobs[:1], device_type=a.device, wait=True)
print(f"device {a.device}: {a.jobs} jobs x {a.runs} runs of {json.loads(SEQ)['name'] if 'name' in json.loads(SEQ) else 'sequence'}")
measure(f"closed batch of {a.jobs}", closed)
measure(f"open batch fed {a.jobs} one at a time", open_fed)
