"""The unmodified qiskit-ibm-runtime 0.51 client against qcloud's IBM facade: the examples of issue 8, each
asserting on results."""

import datetime
import os
import threading
import time

import numpy as np
import pytest
import requests
from qiskit import QuantumCircuit
from qiskit.circuit.random import random_circuit
from qiskit.quantum_info import SparsePauliOp, Statevector
from qiskit.transpiler import generate_preset_pass_manager
from qiskit_ibm_runtime import Batch, EstimatorV2, QiskitRuntimeService, SamplerV2, Session
from qiskit_ibm_runtime.exceptions import RuntimeJobMaxTimeoutError, RuntimeJobNotFound

from conftest import BACKEND, HEAVY_HEX, SLOW_BACKEND

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def bell(measure=True):
    qc = QuantumCircuit(2, 2) if measure else QuantumCircuit(2)
    qc.h(0)
    qc.cx(0, 1)
    if measure:
        qc.measure([0, 1], [0, 1])
    return qc


def isa(backend, qc):
    return generate_preset_pass_manager(optimization_level=1, backend=backend, seed_transpiler=1).run(qc)


def tvd(counts, probs):
    shots = sum(counts.values())
    keys = set(counts) | set(probs)
    return 0.5 * sum(abs(counts.get(k, 0) / shots - probs.get(k, 0.0)) for k in keys)


def wait_for(pred, timeout=60.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


# --- connecting --------------------------------------------------------------------------------------------------


def test_connect_with_crn_by_name_without_instance_and_by_environment(server, token):
    crn = server.crn(token)
    resolver = dict(url=f"{server.url}/ibm/api/v1", url_resolver=lambda url, *a, **k: url)
    by_crn = QiskitRuntimeService(channel="ibm_quantum_platform", token=token, instance=crn, **resolver)
    by_name = QiskitRuntimeService(channel="ibm_quantum_platform", token=token, instance="ibm-alpha", **resolver)
    no_instance = QiskitRuntimeService(channel="ibm_quantum_platform", token=token, **resolver)
    env = {"QISKIT_IBM_TOKEN": token, "QISKIT_IBM_INSTANCE": crn, "QISKIT_IBM_CHANNEL": "ibm_quantum_platform",
           "QISKIT_IBM_URL": f"{server.url}/ibm/experimental/api/v1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        by_env = QiskitRuntimeService()
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    for svc in (by_crn, by_name, no_instance, by_env):
        names = {b.name for b in svc.backends()}
        assert {BACKEND, SLOW_BACKEND} <= names
        assert "ibm_analog" not in names  # analog devices are not IBM backends
    assert by_name.instances()[0]["crn"] == crn
    b = by_env.backend(BACKEND)
    assert b.configuration().simulator is False and b.num_qubits == 5
    assert by_env.least_busy(simulator=False, operational=True).name in {BACKEND, SLOW_BACKEND, HEAVY_HEX}
    # A job through the environment-only service.
    counts = SamplerV2(mode=b).run([isa(b, bell())], shots=200).result()[0].data.c.get_counts()
    assert set(counts) <= {"00", "11"} and sum(counts.values()) == 200


def test_tokens_and_instances_of_other_projects_are_refused(server, token):
    other = server.token("ibm-beta", "bob")
    with pytest.raises(Exception):
        QiskitRuntimeService(channel="ibm_quantum_platform", token=token, instance=server.crn(other),
                             url=f"{server.url}/ibm/api/v1", url_resolver=lambda url, *a, **k: url)
    r = requests.get(f"{server.url}/ibm/api/v1/backends",
                     headers={"Authorization": f"Bearer {token}", "Service-CRN": server.crn(other)})
    assert r.status_code == 403 and r.json()["errors"][0]["message"]


# --- Batch (the Batch class example) ------------------------------------------------------------------------------


def test_batch_of_fifty_random_circuits_matches_exact_probabilities(backend):
    circuits = [random_circuit(3, 4, measure=True, seed=100 + i) for i in range(50)]
    exact = [Statevector(c.remove_final_measurements(inplace=False)).probabilities_dict() for c in circuits]
    isa_circuits = generate_preset_pass_manager(optimization_level=1, backend=backend, seed_transpiler=0).run(circuits)
    partitions = [isa_circuits[i:i + 10] for i in range(0, 50, 10)]
    with Batch(backend=backend) as batch:
        assert batch.details()["mode"] == "batch"
        sampler = SamplerV2()
        jobs = [sampler.run(p, shots=4000) for p in partitions]
        assert all(j.session_id == batch.session_id for j in jobs)
    results = [r for j in jobs for r in j.result()]
    assert len(results) == 50
    for k, (res, probs) in enumerate(zip(results, exact)):
        counts = res.data.c.get_counts()
        assert sum(counts.values()) == 4000
        assert tvd(counts, probs) < 0.05, (k, counts, probs)
    details = wait_for(lambda: (d := batch.details())["state"] == "closed" and d, what="the batch to close")
    assert details["accepting_jobs"] is False and details["usage_time"] >= 0
    assert Batch.from_id(batch.session_id, service=backend.service).details()["mode"] == "batch"


# --- the seeded 127-qubit heavy-hex device --------------------------------------------------------------------------


def test_heavy_hex_backend_transpiles_and_runs_with_correct_counts(service):
    b = service.backend(HEAVY_HEX)
    conf = b.configuration()
    assert b.num_qubits == 127 and conf.simulator is False
    assert set(conf.basis_gates) >= {"ecr", "rz", "sx", "x"}
    # Heavy-hex: 144 couplers, degree at most 3 (the coupling map lists both directions or one).
    edges = {tuple(sorted(e)) for e in conf.coupling_map}
    assert len(edges) == 144
    assert max(sum(q in e for e in edges) for q in range(127)) == 3
    assert service.least_busy(simulator=False, operational=True).name in {BACKEND, SLOW_BACKEND, HEAVY_HEX}
    assert HEAVY_HEX in {x.name for x in service.backends(simulator=False, min_num_qubits=100)}
    qc = QuantumCircuit(3, 3)
    qc.h(0)
    qc.cx(0, 1)
    qc.cx(1, 2)
    qc.measure([0, 1, 2], [0, 1, 2])
    circ = generate_preset_pass_manager(optimization_level=1, backend=b, seed_transpiler=3).run(qc)
    # An ISA circuit on the device's 127 qubits, in its basis.
    assert circ.num_qubits == 127
    assert set(circ.count_ops()) <= set(conf.basis_gates) | {"measure", "barrier"}
    counts = SamplerV2(mode=b).run([circ], shots=400).result()[0].data.c.get_counts()
    assert sum(counts.values()) == 400 and set(counts) <= {"000", "111"} and min(counts.values()) > 120
    # Estimator with observables laid out on the 127 qubits.
    ghz = generate_preset_pass_manager(optimization_level=1, backend=b, seed_transpiler=3).run(
        qc.remove_final_measurements(inplace=False))
    obs = [SparsePauliOp(p).apply_layout(ghz.layout) for p in ("ZZI", "IZZ", "XXX", "ZII")]
    evs = EstimatorV2(mode=b).run([(ghz, obs)]).result()[0].data.evs
    assert np.allclose(evs, [1.0, 1.0, 1.0, 0.0], atol=0.1), evs


def test_batch_class_example_on_the_heavy_hex_device(service):
    """The Batch class example on heavyhex_127 (its QPU-like timing: about 2.1 s of device time per job here)."""
    b = service.backend(HEAVY_HEX)
    circuits = [random_circuit(3, 4, measure=True, seed=200 + i) for i in range(50)]
    exact = [Statevector(c.remove_final_measurements(inplace=False)).probabilities_dict() for c in circuits]
    isa_circuits = generate_preset_pass_manager(optimization_level=1, backend=b, seed_transpiler=0).run(circuits)
    assert all(c.num_qubits == 127 for c in isa_circuits)
    partitions = [isa_circuits[i:i + 10] for i in range(0, 50, 10)]
    with Batch(backend=b) as batch:
        sampler = SamplerV2()
        jobs = [sampler.run(p, shots=2000) for p in partitions]
    results = [r for j in jobs for r in j.result()]
    assert len(results) == 50
    for k, (res, probs) in enumerate(zip(results, exact)):
        counts = res.data.c.get_counts()
        assert sum(counts.values()) == 2000
        assert tvd(counts, probs) < 0.08, (k, counts, probs)
    assert all(j.session_id == batch.session_id for j in jobs)


# --- Session ------------------------------------------------------------------------------------------------------


def test_session_with_sampler_and_estimator_through_every_state(slow_backend):
    b = slow_backend
    session = Session(backend=b, max_time="25m")
    d = session.details()
    assert (d["max_time"], d["mode"], d["state"], d["accepting_jobs"]) == (1500, "dedicated", "open", True)
    assert session.status() == "Pending"
    sampler = SamplerV2(mode=session)
    counts = sampler.run([isa(b, bell())], shots=500).result()[0].data.c.get_counts()
    assert set(counts) <= {"00", "11"} and min(counts.values()) > 150
    assert session.status() == "In progress, accepting new jobs"
    assert session.details()["last_job_completed"] is not None
    circ = isa(b, bell(measure=False))
    est = EstimatorV2(mode=session)
    ev = est.run([(circ, [SparsePauliOp("ZZ").apply_layout(circ.layout), SparsePauliOp("XI").apply_layout(circ.layout)])])
    data = ev.result()[0].data
    assert data.evs.shape == (2,) and abs(data.evs[0] - 1.0) < 0.1 and abs(data.evs[1]) < 0.1
    assert np.allclose(data.stds, 0.015625)
    # A long job, then close: no new jobs, the running one finishes.
    job = sampler.run([isa(b, bell())], shots=4096)
    wait_for(lambda: job.status() == "RUNNING", what="the job to run")
    session.close()
    assert session.status() == "In progress, not accepting new jobs"
    assert sum(job.result()[0].data.c.get_counts().values()) == 4096
    wait_for(lambda: session.status() == "Closed", what="the session to close")
    d = session.details()
    assert d["closed_at"] is not None and d["usage_time"] > 0
    assert [t["status"] for t in d["timestamps"]] == ["open", "active", "closed"]


def test_session_context_manager_and_from_id(backend, service):
    with Session(backend=backend) as session:
        sampler = SamplerV2()
        estimator = EstimatorV2()
        counts = sampler.run([isa(backend, bell())], shots=300).result()[0].data.c.get_counts()
        circ = isa(backend, bell(measure=False))
        evs = estimator.run([(circ, SparsePauliOp("ZZ").apply_layout(circ.layout))]).result()[0].data.evs
        again = Session.from_id(session.session_id, service=service)
        assert again.details()["backend_name"] == BACKEND
        more = SamplerV2(mode=again).run([isa(backend, bell())], shots=100).result()[0].data.c.get_counts()
    assert sum(counts.values()) == 300 and sum(more.values()) == 100
    assert abs(float(evs) - 1.0) < 0.1
    wait_for(lambda: session.details()["state"] == "closed", what="the session to close on exit")
    assert session.details()["accepting_jobs"] is False


def test_session_cancel_fails_the_queued_jobs(slow_backend):
    session = Session(backend=slow_backend)
    sampler = SamplerV2(mode=session)
    circ = isa(slow_backend, bell())
    # The first job holds the device for about 10 s (0.5 ms per shot), so that on a loaded machine it is still
    # running when the other three have been submitted.
    jobs = [sampler.run([circ], shots=20000 if k == 0 else 4096) for k in range(4)]
    wait_for(lambda: jobs[0].status() == "RUNNING", what="the first job to run")
    session.cancel()
    statuses = [wait_for(lambda j=j: j.status() if j.status() in ("DONE", "CANCELLED", "ERROR") else None,
                         what="a final status") for j in jobs]
    assert statuses[0] == "DONE"
    assert statuses[1:] == ["CANCELLED"] * 3
    assert session.details()["state"] == "closed"
    with pytest.raises(Exception):
        requests_patch = sampler.run([isa(slow_backend, bell())])  # the client knows the session is closed
        requests_patch.result()


# --- tags, listing and paging -------------------------------------------------------------------------------------


def test_two_threads_with_tags_then_filters_and_paging(backend, service):
    start = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(seconds=5)
    circ = isa(backend, bell())
    ids = {"thread-a": [], "thread-b": []}
    with Session(backend=backend) as session:
        def work(tag):
            sampler = SamplerV2(mode=session)
            sampler.options.environment.job_tags = [tag]
            for _ in range(3):
                job = sampler.run([circ], shots=50)
                job.result()
                ids[tag].append(job.job_id())
        threads = [threading.Thread(target=work, args=(t,)) for t in ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for tag, mine in ids.items():
        found = service.jobs(job_tags=[tag], limit=None)
        assert sorted(j.job_id() for j in found) == sorted(mine)
    in_session = service.jobs(session_id=session.session_id, limit=None)
    assert len(in_session) == 6
    assert {j.job_id() for j in service.jobs(backend_name=BACKEND, created_after=start, limit=None)} >= set(
        ids["thread-a"] + ids["thread-b"])
    assert service.jobs(session_id=session.session_id, pending=True) == []
    assert len(service.jobs(session_id=session.session_id, pending=False, limit=None)) == 6
    assert service.jobs(session_id=session.session_id, created_before=start) == []
    pages = [service.jobs(session_id=session.session_id, limit=2, skip=k) for k in (0, 2, 4, 6)]
    assert [len(p) for p in pages] == [2, 2, 2, 0]
    paged = [j.job_id() for p in pages for j in p]
    assert sorted(paged) == sorted(ids["thread-a"] + ids["thread-b"])
    newest_first = [j.creation_date for j in in_session]
    assert newest_first == sorted(newest_first, reverse=True)
    oldest_first = service.jobs(session_id=session.session_id, descending=False, limit=None)
    assert [j.job_id() for j in oldest_first] == [j.job_id() for j in reversed(in_session)]


# --- job mode -----------------------------------------------------------------------------------------------------


def test_job_mode_metrics_inputs_tags_and_delete(backend, service):
    sampler = SamplerV2(mode=backend)
    job = sampler.run([isa(backend, bell())], shots=123)
    assert job.session_id is None
    assert sum(job.result()[0].data.c.get_counts().values()) == 123
    m = job.metrics()
    assert m["timestamps"]["created"] and m["timestamps"]["finished"]
    assert job.usage() >= 0
    assert job.inputs["pubs"][0][2] == 123
    job.update_tags(["first", "second"])
    assert sorted(service.job(job.job_id()).tags) == ["first", "second"]
    assert job.logs() == ""
    service.delete_job(job.job_id())
    with pytest.raises(RuntimeJobNotFound):
        service.job(job.job_id())


def test_job_cancel(slow_backend):
    sampler = SamplerV2(mode=slow_backend)
    first = sampler.run([isa(slow_backend, bell())], shots=4096)
    queued = sampler.run([isa(slow_backend, bell())], shots=4096)
    assert queued.status() in ("QUEUED", "RUNNING")
    queued.cancel()
    wait_for(lambda: queued.status() == "CANCELLED", what="the job to be cancelled")
    assert first.result() is not None


def test_cost_exceeded_fails_as_a_time_out(slow_backend):
    sampler = SamplerV2(mode=slow_backend)
    sampler.options.max_execution_time = 1
    job = sampler.run([isa(slow_backend, bell())], shots=8000)  # 0.3 s + 4 s of device time
    with pytest.raises(RuntimeJobMaxTimeoutError):
        job.result()
    assert job.status() == "ERROR"


def test_interactive_ttl_deactivates_and_a_new_job_reactivates(server, token, service, slow_backend):
    # A session with a 1 s interactive TTL (the facade takes IBM's interactive_ttl per request).
    r = requests.post(f"{server.url}/ibm/api/v1/sessions", headers={"Authorization": f"Bearer {token}"},
                      json={"backend": SLOW_BACKEND, "mode": "dedicated", "interactive_ttl": 1})
    r.raise_for_status()
    session = Session.from_id(r.json()["id"], service=service)
    sampler = SamplerV2(mode=session)
    sampler.run([isa(slow_backend, bell())], shots=10).result()
    assert session.details()["state"] == "active"
    wait_for(lambda: session.details()["state"] == "inactive", what="the session to deactivate")
    assert session.status() == "Pending"
    counts = sampler.run([isa(slow_backend, bell())], shots=10).result()[0].data.c.get_counts()
    assert sum(counts.values()) == 10
    assert session.details()["state"] in ("active", "inactive")
    d = session.details()
    assert d["interactive_timeout"] == 1
    session.close()
