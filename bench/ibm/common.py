"""What the IBM facade benchmark scripts share: the real qiskit-ibm-runtime client connected to a qcloud server by
the documented settings alone, and the Bell circuit transpiled for a backend."""

import os

from qiskit import QuantumCircuit
from qiskit.transpiler import generate_preset_pass_manager
from qiskit_ibm_runtime import QiskitRuntimeService, SamplerV2


def connect(url, token, backend):
    """`backend` on the server at `url` (IAM, Global Search and Catalog under /ibm)."""
    os.environ.update(IAM_URL=f"{url}/ibm", GLOBAL_SEARCH_URL=f"{url}/ibm", GLOBAL_CATALOG_URL=f"{url}/ibm/catalog")
    svc = QiskitRuntimeService(channel="ibm_quantum_platform", token=token, url=f"{url}/ibm/api/v1",
                               url_resolver=lambda u, *x, **k: u)
    return svc.backend(backend)


def bell(backend, shots):
    """A Bell circuit transpiled for `backend`, after one job of it in job mode (caches, the first connection)."""
    qc = QuantumCircuit(2, 2)
    qc.h(0)
    qc.cx(0, 1)
    qc.measure([0, 1], [0, 1])
    isa = generate_preset_pass_manager(optimization_level=1, backend=backend).run(qc)
    SamplerV2(mode=backend).run([isa], shots=shots).result()
    return isa
