"""The agent suite: examples/agent.py and qcloud-agent --qdmi (MQT DDSIM) against a real `qcloud serve`."""
import base64, io, os, re, subprocess, sys, time, uuid

import pytest
import requests

ADMIN = "agent_suite_admin_token_0123456789"
BELL = 'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[2] q;\nbit[2] c;\nh q[0];\ncx q[0], q[1];\nc = measure q;\n'


@pytest.fixture(scope="module")
def server():
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    db = "agent_compat_" + uuid.uuid4().hex[:8]
    root = base.rsplit("/", 1)[0]
    subprocess.run(["psql", base, "-qc", f"CREATE DATABASE {db}"], check=True)
    env = dict(os.environ, DATABASE_URL=f"{root}/{db}", QCLOUD_ADMIN_TOKEN=ADMIN, QCLOUD_LEASE_MS="1500",
               QCLOUD_RATE_LIMIT_PER_SECOND="0")
    proc = subprocess.Popen([os.environ["QCLOUD_BIN"], "serve", "--listen", "127.0.0.1:0", "--no-seed"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url = None
    for line in proc.stdout:
        m = re.search(r"qcloud listening on (http://\S+)", line)
        if m:
            url = m.group(1)
            break
    assert url, "qcloud serve printed no address"

    def cli(*args):
        out = subprocess.run([os.environ["QCLOUD_BIN"], *args], env=env, check=True, capture_output=True, text=True)
        return out.stdout.strip().splitlines()[-1]

    user = cli("tokens", "create", "--project", "lab", "--user", "alice")
    yield {"url": url, "cli": cli, "user": {"Authorization": f"Bearer {user}"}, "token": user}
    proc.terminate()
    proc.wait(10)
    subprocess.run(["psql", base, "-qc", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"])


def agent_device(server, qubits=5):
    name = "qpu_" + uuid.uuid4().hex[:6]
    server["cli"]("devices", "add", name, "--driver", "agent", "--num-qubits", str(qubits))
    return name, server["cli"]("devices", "token", name)


def wait_job(server, job_id, limit=60):
    t0 = time.time()
    while True:
        j = requests.get(f"{server['url']}/v1/jobs/{job_id}", headers=server["user"]).json()
        if j["status"] in ("completed", "failed", "canceled"):
            return j
        assert time.time() - t0 < limit, j
        time.sleep(0.05)


def submit(server, body):
    r = requests.post(f"{server['url']}/v1/jobs", json=body, headers=server["user"])
    assert r.status_code == 201, r.text
    return r.json()["id"]


def result(server, job_id):
    return requests.get(f"{server['url']}/v1/jobs/{job_id}/result", headers=server["user"]).json()["result"]


def counts(res):
    return res["pub_results"][0]["data"]["c"]["counts"]


def test_the_example_agent_serves_a_device(server):
    name, token = agent_device(server)
    env = dict(os.environ, QCLOUD_AGENT_SERVER=server["url"], QCLOUD_AGENT_TOKEN=token, QCLOUD_AGENT_MAX_JOBS="2")
    agent = subprocess.Popen([sys.executable, os.environ["QCLOUD_EXAMPLE_AGENT"]], env=env)
    try:
        ok = submit(server, {"device": name, "program": "sampler", "payload": {"pubs": [[BELL, None, 100]]}})
        j = wait_job(server, ok)
        assert j["status"] == "completed", j
        c = counts(result(server, ok))
        assert set(c) <= {"00", "11"} and sum(c.values()) == 100
        bad = submit(server, {"device": name, "program": "estimator", "payload": {}})
        j = wait_job(server, bad)
        assert j["status"] == "failed" and "'sampler'" in j["reason"], j
        assert agent.wait(30) == 0
    finally:
        agent.kill()


@pytest.fixture(scope="module")
def qdmi(server):
    lib = os.environ.get("QCLOUD_QDMI_LIB", "")
    if not lib or not os.path.exists(lib):
        pytest.fail(f"the DDSIM QDMI device library is missing ({lib!r}): pip install mqt-core==4.1.1")
    name, token = agent_device(server, qubits=20)
    log = open(f"/tmp/qcloud-agent-qdmi-{name}.log", "w+")
    agent = subprocess.Popen([os.environ["QCLOUD_AGENT_BIN"], "--server", server["url"], "--device", name,
                              "--token", token, "--qdmi", lib, "--qdmi-prefix", "MQT_DDSIM", "--wait", "5"],
                             stdout=subprocess.DEVNULL, stderr=log)
    t0 = time.time()
    while True:
        d = requests.get(f"{server['url']}/v1/devices/{name}", headers=server["user"]).json()
        if d["status"] == "online":
            break
        assert agent.poll() is None, open(log.name).read()
        assert time.time() - t0 < 30, d
        time.sleep(0.1)
    yield {"name": name, "device": d, "log": log.name}
    agent.terminate()
    agent.wait(10)


def test_qdmi_publishes_the_device_as_its_target(server, qdmi):
    t = qdmi["device"]["config"]["target"]
    assert qdmi["device"]["num_qubits"] == t["num_qubits"] and t["num_qubits"] > 0
    assert "cx" in t["basis_gates"] or "cz" in t["basis_gates"], t
    assert t["coupling_map"], t


def test_a_bell_circuit_on_ddsim_gives_only_00_and_11(server, qdmi):
    for circuit in (BELL, 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n'):
        job = submit(server, {"device": qdmi["name"], "program": "sampler", "payload": {"pubs": [[circuit, None, 500]]}})
        j = wait_job(server, job)
        assert j["status"] == "completed", (j, open(qdmi["log"]).read())
        c = counts(result(server, job))
        assert set(c) <= {"00", "11"} and sum(c.values()) == 500, c
        assert len(c) == 2, c


def test_a_qpy_circuit_from_qiskit_runs_on_ddsim(server, qdmi):
    from qiskit import QuantumCircuit, qpy
    qc = QuantumCircuit(3, 3)
    qc.h(0)
    qc.cx(0, 1)
    qc.cx(1, 2)
    qc.sxdg(2)
    qc.sx(2)
    qc.measure([0, 1, 2], [0, 1, 2])
    buf = io.BytesIO()
    qpy.dump(qc, buf)
    pub = {"__type__": "QuantumCircuit", "__value__": base64.b64encode(buf.getvalue()).decode()}
    job = submit(server, {"device": qdmi["name"], "program": "sampler", "payload": {"pubs": [[pub, None, 300]]}})
    j = wait_job(server, job)
    assert j["status"] == "completed", (j, open(qdmi["log"]).read())
    c = counts(result(server, job))
    assert set(c) <= {"000", "111"} and sum(c.values()) == 300, c


def test_qiskit_transpiles_for_the_qdmi_device_and_samples_through_the_ibm_facade(server, qdmi):
    # The unmodified qiskit-ibm-runtime client, connected as tests/compat/ibm does.
    import warnings
    from qiskit import QuantumCircuit
    from qiskit.transpiler import generate_preset_pass_manager
    from qiskit_ibm_runtime import QiskitRuntimeService, SamplerV2
    url = server["url"].rstrip("/")
    os.environ.update(IAM_URL=f"{url}/ibm", GLOBAL_SEARCH_URL=f"{url}/ibm", GLOBAL_CATALOG_URL=f"{url}/ibm/catalog")
    r = requests.post(f"{url}/ibm/v3/resources/search", headers=server["user"],
                      json={"query": "service_name:quantum-computing"})
    r.raise_for_status()
    service = QiskitRuntimeService(channel="ibm_quantum_platform", token=server["token"],
                                   instance=r.json()["items"][0]["crn"], url=f"{url}/ibm/api/v1",
                                   url_resolver=lambda u, *a, **k: u)
    with warnings.catch_warnings():
        # "No gate definition for ... is being excluded": every published gate is one Qiskit builds.
        warnings.simplefilter("error", RuntimeWarning)
        backend = service.backend(qdmi["name"])
        target = backend.target
    assert backend.num_qubits == 20
    names = set(target.operation_names)
    assert {"cx", "h", "measure"} <= names, names
    assert not names & {"cu1", "rccx", "ccx", "mcx"}, names
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.cx(0, 1)
    qc.measure_all()
    isa = generate_preset_pass_manager(optimization_level=1, backend=backend).run(qc)
    assert set(isa.count_ops()) <= names | {"barrier"}, isa.count_ops()
    assert isa.num_qubits == 20
    job = SamplerV2(mode=backend).run([isa], shots=400)
    got = job.result()[0].data.meas.get_counts()
    assert set(got) <= {"00", "11"} and sum(got.values()) == 400, (got, open(qdmi["log"]).read())
    assert len(got) == 2, got


def test_a_cancel_reaches_job_cancel(server, qdmi):
    # A deep random circuit on 14 qubits keeps DDSIM's decision diagram large, so the job runs
    # for seconds even on an idle machine (3 qubits finished within a second here).
    import random
    rnd = random.Random(7)
    n = 14
    lines = ['OPENQASM 3.0;', 'include "stdgates.inc";', f"qubit[{n}] q;", f"bit[{n}] c;"]
    for _ in range(300):
        for k in range(n):
            lines.append(f"rx({rnd.uniform(0, 3.1):.4f}) q[{k}];")
        for k in range(n - 1):
            lines.append(f"cx q[{k}], q[{k + 1}];")
    lines.append("c = measure q;")
    job = submit(server, {"device": qdmi["name"], "program": "sampler",
                          "payload": {"pubs": [["\n".join(lines) + "\n", None, 2000000]]}})
    t0 = time.time()
    while requests.get(f"{server['url']}/v1/jobs/{job}", headers=server["user"]).json()["status"] != "running":
        assert time.time() - t0 < 30
        time.sleep(0.05)
    time.sleep(0.3)
    r = requests.post(f"{server['url']}/v1/jobs/{job}/cancel", json={}, headers=server["user"])
    assert r.status_code == 200, r.text
    j = wait_job(server, job, limit=120)
    text = open(qdmi["log"]).read()
    assert "job_cancel" in text, text
    assert j["status"] == "canceled", (j, text)
