#!/usr/bin/env python3
"""A complete qcloud agent in Python with `requests` only (docs/agent-protocol.md).

It serves one device: reports it online, claims the jobs the scheduler starts there (a long poll),
heartbeats each job's lease on a thread, and completes the job with the lease's epoch. Replace
`run()` with a call into your control software. Usage:

    QCLOUD_AGENT_SERVER=http://localhost:8080 QCLOUD_AGENT_TOKEN=qc_... python3 examples/agent.py
"""
import os
import random
import sys
import threading

import requests

SERVER = os.environ.get("QCLOUD_AGENT_SERVER", "http://localhost:8080").rstrip("/") + "/v1/agent"
TOKEN = os.environ["QCLOUD_AGENT_TOKEN"]
MAX_JOBS = int(os.environ.get("QCLOUD_AGENT_MAX_JOBS", "0"))  # 0: serve forever
http = requests.Session()
http.headers["Authorization"] = f"Bearer {TOKEN}"


def call(method, path, body=None, timeout=40):
    r = http.request(method, SERVER + path, json=body, timeout=timeout)
    if r.status_code == 409:
        raise LeaseLost(r.json()["error"]["message"])
    r.raise_for_status()
    return r.json() if r.status_code != 204 else None


class LeaseLost(Exception):
    pass


def run(job, stop):
    """The device's work. Here: a fake sampler returning random bitstrings for each pub."""
    if job["program"] != "sampler":
        raise ValueError(f"this device runs 'sampler', not '{job['program']}'")
    results = []
    for pub in job["payload"].get("pubs", []):
        shots = (pub[2] if isinstance(pub, list) and len(pub) > 2 and pub[2] else None) or job["shots"] or 1024
        counts = {}
        for _ in range(shots):
            if stop.is_set():
                raise InterruptedError("canceled")
            key = random.choice(["00", "11"])
            counts[key] = counts.get(key, 0) + 1
        results.append({"shape": [], "data": {"c": {"counts": counts}}, "metadata": {"shots": shots}})
    return {"pub_results": results}


def heartbeat(lease, stop, why):
    while not stop.wait(lease["heartbeat_ms"] / 1000):
        try:
            answer = call("POST", f"/jobs/{lease['job_id']}/heartbeat", {"epoch": lease["epoch"]})
        except LeaseLost:
            why.append("lease_lost")
            stop.set()
            return
        except requests.RequestException as e:
            print("heartbeat failed:", e, file=sys.stderr)
            continue
        if answer["stop"]:
            why.append(answer["stop"])  # "canceled" or "max_execution_time"
            stop.set()


def serve_one(claim):
    lease, job = claim["lease"], claim["job"]
    stop, why = threading.Event(), []
    beat = threading.Thread(target=heartbeat, args=(lease, stop, why), daemon=True)
    beat.start()
    path = f"/jobs/{job['id']}"
    try:
        result = run(job, stop)
        outcome = ("complete", {"epoch": lease["epoch"], "result": result})
    except Exception as e:  # the job fails with the reason; a cancel is recorded as canceled
        outcome = ("fail", {"epoch": lease["epoch"], "reason": str(e) or type(e).__name__})
    stop.set()
    beat.join()
    if why and why[0] in ("lease_lost", "max_execution_time"):
        print(f"job {job['id']}: stopped ({why[0]})", file=sys.stderr)
        return
    if why:
        outcome = ("fail", {"epoch": lease["epoch"], "reason": "canceled"})
    try:
        done = call("POST", f"{path}/{outcome[0]}", outcome[1])
        print(f"job {job['id']}: {done['status']}", file=sys.stderr)
    except LeaseLost as e:
        print(f"job {job['id']}: answer refused ({e})", file=sys.stderr)


def main():
    device = call("PUT", "/device", {"status": "online", "message": "examples/agent.py"})
    print(f"serving {device['name']}", file=sys.stderr)
    served = 0
    try:
        while not MAX_JOBS or served < MAX_JOBS:
            claim = call("POST", "/claim", {"wait_seconds": 30})
            if claim:
                serve_one(claim)
                served += 1
    finally:
        call("PUT", "/device", {"status": "offline"})


if __name__ == "__main__":
    main()
