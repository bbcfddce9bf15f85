"""The IBM compatibility suite's server: a `qcloud serve` on a fresh database, started once per run, with the
devices of devices.toml, and a qcloud token in each of two projects. The unmodified qiskit-ibm-runtime client
reaches it through the documented settings (IAM_URL, GLOBAL_SEARCH_URL, GLOBAL_CATALOG_URL and a runtime URL)."""

import os
import re
import subprocess
import time
import urllib.parse

import pytest
import requests

HERE = os.path.dirname(os.path.abspath(__file__))
# The backend most tests run on (a statevector device of devices.toml). One constant, so the suite moves to the
# seeded heavy-hex device by changing this line.
BACKEND = "ibm_sim"
# The same with a QPU-like occupancy per job (0.3 s + 0.5 ms per shot): cancel, close, time-out and TTL tests.
SLOW_BACKEND = "ibm_slow"
# The seeded IBM-shaped QPU (127-qubit heavy-hex target, QPU-like timing), as devices.toml declares it.
HEAVY_HEX = "heavyhex_127"
ADMIN_TOKEN = "ibm-compat-admin-token-0123456789"


def _fresh_database(base_url: str, name: str) -> str:
    parts = urllib.parse.urlsplit(base_url)
    admin = urllib.parse.urlunsplit(parts._replace(path="/postgres"))
    for sql in (f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'):
        subprocess.run(["psql", admin, "-qc", sql], check=True, capture_output=True)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


class Server:
    def __init__(self, url, env, binary):
        self.url, self.env, self.binary = url, env, binary

    def token(self, project: str, user: str) -> str:
        out = subprocess.run([self.binary, "tokens", "create", "--project", project, "--user", user],
                             env=self.env, check=True, capture_output=True, text=True)
        return out.stdout.strip().splitlines()[-1]

    def crn(self, token: str) -> str:
        r = requests.post(f"{self.url}/ibm/v3/resources/search", headers={"Authorization": f"Bearer {token}"},
                          json={"query": "service_name:quantum-computing"})
        r.raise_for_status()
        return r.json()["items"][0]["crn"]


@pytest.fixture(scope="session")
def server():
    binary = os.environ.get("QCLOUD_BIN") or os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(HERE, "../../../target")), "debug", "qcloud")
    db = _fresh_database(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
                         "qcloud_ibm_compat")
    env = dict(os.environ, DATABASE_URL=db, QCLOUD_ADMIN_TOKEN=ADMIN_TOKEN,
               QCLOUD_DEVICES=os.path.join(HERE, "devices.toml"), RUST_LOG="warn")
    proc = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = None
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        m = re.search(r"listening on (http://\S+)", line)
        if m:
            url = m.group(1).rstrip("/")
            break
    if url is None:
        proc.kill()
        raise RuntimeError("qcloud serve did not print its address")
    # Keep draining its output so that it never blocks on a full pipe.
    import threading
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    os.environ.update(IAM_URL=f"{url}/ibm", GLOBAL_SEARCH_URL=f"{url}/ibm", GLOBAL_CATALOG_URL=f"{url}/ibm/catalog")
    try:
        yield Server(url, env, binary)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def token(server):
    return server.token("ibm-alpha", "ann")


@pytest.fixture(scope="session")
def service(server, token):
    from qiskit_ibm_runtime import QiskitRuntimeService
    return QiskitRuntimeService(channel="ibm_quantum_platform", token=token, instance=server.crn(token),
                                url=f"{server.url}/ibm/api/v1", url_resolver=lambda url, *a, **k: url)


@pytest.fixture(scope="session")
def backend(service):
    return service.backend(BACKEND)


@pytest.fixture(scope="session")
def slow_backend(service):
    return service.backend(SLOW_BACKEND)
