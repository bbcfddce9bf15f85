"""QRMI (PyPI `qrmi`, behind the Slurm SPANK plugin) against qcloud's /pasqal facade (issue 10): resource type
`pasqal-cloud` configured with its documented `{device}_QRMI_PASQAL_CLOUD_{BASE_URL,PROJECT_ID,AUTH_TOKEN}`
variables. It reads device availability (`GET /core-fast/api/v1/devices`, no token) and the device's specs, starts
a task (a closed batch of one job), polls it (`/api/v2/batches/{id}`, `/api/v2/jobs/{id}`), stops one, and reads a
result through `GET /core-fast/api/v1/batches/{id}/full_results`."""
import json
import math
import os
import time

import pytest
import requests

qrmi = pytest.importorskip("qrmi")


def pi_pulse_sequence():
    """One atom, a resonant pulse of area pi: the atom ends in |r> (`1`)."""
    from pulser import Pulse, Register, Sequence
    from pulser.devices import MockDevice

    seq = Sequence(Register.from_coordinates([(0.0, 0.0)], prefix="q"), MockDevice)
    seq.declare_channel("ryd", "rydberg_global")
    seq.add(Pulse.ConstantPulse(1000, math.pi, 0.0, 0.0), "ryd")
    seq.measure("ground-rydberg")
    return seq.to_abstract_repr()


def wait_final(resource, task, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = resource.task_status(task)
        if st in (qrmi.TaskStatus.Completed, qrmi.TaskStatus.Failed, qrmi.TaskStatus.Cancelled):
            return st
        time.sleep(0.2)
    raise AssertionError(f"task {task} did not finish")


def test_qrmi_pasqal_cloud_runs_a_sequence_and_reads_its_result(server, alice):
    dev = "EMU_FREE"
    os.environ.update({
        f"{dev}_QRMI_PASQAL_CLOUD_BASE_URL": f"{server['url']}/pasqal",
        f"{dev}_QRMI_PASQAL_CLOUD_PROJECT_ID": alice["project_id"],
        f"{dev}_QRMI_PASQAL_CLOUD_AUTH_TOKEN": alice["token"],
    })
    resource = qrmi.QuantumResource(dev, qrmi.ResourceType.PasqalCloud)
    assert resource.is_accessible()
    specs = json.loads(resource.target().value)
    assert any(s["device_type"] == dev for s in specs)
    lock = resource.acquire()
    try:
        seq = pi_pulse_sequence()
        # A task stopped at once ends canceled (or done, if the emulator was quicker).
        stopped = resource.task_start(qrmi.Payload.PasqalCloud(sequence=seq, job_runs=50))
        resource.task_stop(stopped)
        assert wait_final(resource, stopped) in (qrmi.TaskStatus.Cancelled, qrmi.TaskStatus.Completed)

        task = resource.task_start(qrmi.Payload.PasqalCloud(sequence=seq, job_runs=120))
        assert wait_final(resource, task) == qrmi.TaskStatus.Completed
        counter = json.loads(resource.task_result(task).value)["counter"]
        assert sum(counter.values()) == 120 and counter.get("1", 0) >= 114, counter
    finally:
        resource.release(lock)


def test_devices_and_full_results_as_pasqal_serves_them(server, alice):
    u = f"{server['url']}/pasqal/core-fast/api/v1"
    r = requests.get(f"{u}/devices")
    assert r.status_code == 200, r.text
    types = {d["device_type"]: d for d in r.json()["data"]}
    assert {"EMU_FREE", "EMU_SV", "FRESNEL"} <= set(types)
    assert types["EMU_FREE"]["availability"] == "ACTIVE" and types["EMU_FREE"]["status"] == "UP"
    only = requests.get(f"{u}/devices", params={"device_type": "FRESNEL"}).json()["data"]
    assert [d["device_type"] for d in only] == ["FRESNEL"]
    assert requests.get(f"{u}/devices", params={"colour": "red"}).status_code == 400
    h = {"Authorization": f"Bearer {alice['token']}"}
    spec = requests.get(f"{u}/devices/specs/FRESNEL", headers=h).json()["data"]
    assert spec["device_type"] == "FRESNEL" and json.loads(spec["specs"])["name"] == "AnalogDevice"
    assert requests.get(f"{u}/devices/specs/NOPE", headers=h).status_code == 404
    # full_results of another project's batch is 404; of a malformed id 400.
    body = {"sequence_builder": pi_pulse_sequence(), "jobs": [{"runs": 30}, {"runs": 40}],
            "device_type": "EMU_FREE", "project_id": alice["project_id"]}
    b = requests.post(f"{u}/batches", headers=h, json=body).json()["data"]
    deadline = time.time() + 60
    while time.time() < deadline:
        data = requests.get(f"{server['url']}/pasqal/core-fast/api/v2/batches/{b['id']}", headers=h).json()["data"]
        if data["status"] == "DONE":
            break
        time.sleep(0.2)
    full = requests.get(f"{u}/batches/{b['id']}/full_results", headers=h).json()["data"]
    assert set(full) == set(b["job_ids"])
    assert sorted(sum(r["counter"].values()) for r in full.values()) == [30, 40]
    eve = {"Authorization": f"Bearer {server['token']('eve-qrmi', 'eve')}"}
    assert requests.get(f"{u}/batches/{b['id']}/full_results", headers=eve).status_code == 404
    assert requests.get(f"{u}/batches/nope/full_results", headers=h).status_code == 400
