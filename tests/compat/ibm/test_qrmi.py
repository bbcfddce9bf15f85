"""QRMI (IBM's Quantum Resource Management Interface, the Slurm SPANK plugin's library) against the IBM facade:
resource type ibm-quantum-compute-service configured with its documented {backend}_QRMI_IBM_QCS_* variables;
acquire a session, run Sampler and Estimator tasks (QRMI sends OpenQASM 3), release."""

import os

import pytest
import requests
from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp
from qiskit.transpiler import generate_preset_pass_manager

from conftest import BACKEND

qrmi = pytest.importorskip("qrmi")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_qrmi_acquires_runs_sampler_and_estimator_and_releases(server, token):
    from qrmi.primitives.ibm import EstimatorV2, SamplerV2, get_target

    env = {
        f"{BACKEND}_QRMI_IBM_QCS_ENDPOINT": f"{server.url}/ibm/api/v1",
        f"{BACKEND}_QRMI_IBM_QCS_IAM_ENDPOINT": f"{server.url}/ibm",
        f"{BACKEND}_QRMI_IBM_QCS_IAM_APIKEY": token,
        f"{BACKEND}_QRMI_IBM_QCS_SERVICE_CRN": server.crn(token),
        f"{BACKEND}_QRMI_IBM_QCS_SESSION_MODE": "batch",
    }
    os.environ.update(env)
    resource = qrmi.QuantumResource(BACKEND, qrmi.ResourceType.IBMQuantumComputeService)
    assert resource.is_accessible()
    lock = resource.acquire()
    try:
        r = requests.get(f"{server.url}/ibm/api/v1/sessions/{lock}", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json()["mode"] == "batch", r.text
        target = get_target(resource)
        pm = generate_preset_pass_manager(optimization_level=1, target=target)
        qc = QuantumCircuit(2, 2)
        qc.h(0)
        qc.cx(0, 1)
        qc.measure([0, 1], [0, 1])
        counts = SamplerV2(resource).run([pm.run(qc)], shots=400).result()[0].data.c.get_counts()
        assert set(counts) <= {"00", "11"} and sum(counts.values()) == 400 and min(counts.values()) > 100
        bell = QuantumCircuit(2)
        bell.h(0)
        bell.cx(0, 1)
        isa = pm.run(bell)
        evs = EstimatorV2(resource).run([(isa, SparsePauliOp("ZZ").apply_layout(isa.layout))]).result()[0].data.evs
        assert abs(float(evs) - 1.0) < 0.1
    finally:
        resource.release(lock)
    r = requests.get(f"{server.url}/ibm/api/v1/sessions/{lock}", headers={"Authorization": f"Bearer {token}"})
    assert r.json()["accepting_jobs"] is False
