#!/usr/bin/env python3
"""qsim vs Qiskit Aer: random circuits built with Qiskit (seeded), exported as OpenQASM 2, run
through `qsim run` and through Aer's statevector simulator.

- Estimator: exact expectation values of random Pauli sums, |qsim - Aer| <= 1e-9.
- Sampler: counts of qsim vs counts of Aer (same shots), total-variation distance below a loose
  threshold (fixed seeds, so the check is deterministic), including circuits with mid-circuit
  measurement and reset (qsim's per-shot path).

Usage: check_aer.py --qsim path/to/qsim [--cases N]. Ends with a line `N passed, M failed`.
"""

import argparse
import json
import subprocess
import sys

import numpy as np
from qiskit import QuantumCircuit, qasm2, transpile
from qiskit.quantum_info import SparsePauliOp, Statevector
from qiskit_aer import AerSimulator

ONE_Q = ["h", "x", "y", "z", "s", "sdg", "t", "tdg", "sx", "sxdg", "rx", "ry", "rz", "p", "u", "r"]
TWO_Q = ["cx", "cy", "cz", "ch", "cp", "crx", "cry", "crz", "cu", "swap", "rzz", "rxx", "ryy",
         "rzx", "csx", "cs", "csdg", "iswap", "ecr", "dcx", "cu3"]
THREE_Q = ["ccx", "cswap", "rccx", "ccz"]
FOUR_Q = ["c3x", "c3sx", "rc3x"]


def add_gate(qc, name, qubits, rng):
    ang = lambda: float(rng.uniform(-np.pi, np.pi))
    if name in ("rx", "ry", "rz", "p", "crx", "cry", "crz", "cp", "rzz", "rxx", "ryy", "rzx"):
        getattr(qc, name)(ang(), *qubits)
    elif name == "u":
        qc.u(ang(), ang(), ang(), *qubits)
    elif name == "r":
        qc.r(ang(), ang(), *qubits)
    elif name == "cu":
        qc.cu(ang(), ang(), ang(), ang(), *qubits)
    elif name == "cu3":
        from qiskit.circuit.library import CU3Gate
        qc.append(CU3Gate(ang(), ang(), ang()), qubits)
    elif name == "c3x":
        qc.mcx(qubits[:3], qubits[3])
    elif name == "c3sx":
        from qiskit.circuit.library import C3SXGate
        qc.append(C3SXGate(), qubits)
    elif name == "rc3x":
        qc.rcccx(*qubits)
    else:
        getattr(qc, name)(*qubits)


def random_circuit(n, depth, rng, dynamic=False):
    qc = QuantumCircuit(n, n)
    for _ in range(depth):
        k = rng.choice([1, 1, 2, 2, 3, 4]) if n >= 4 else rng.choice([1, 2])
        pool = {1: ONE_Q, 2: TWO_Q, 3: THREE_Q, 4: FOUR_Q}[k]
        qubits = [int(q) for q in rng.choice(n, size=k, replace=False)]
        add_gate(qc, str(rng.choice(pool)), qubits, rng)
        if dynamic and rng.uniform() < 0.1:
            q = int(rng.integers(n))
            if rng.uniform() < 0.5:
                qc.reset(q)
            else:
                qc.measure(q, int(rng.integers(n)))
    return qc


def qsim_run(qsim, payload):
    out = subprocess.run([qsim, "run"], input=json.dumps(payload), capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"qsim run failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


def random_observable(n, rng, terms=4):
    labels = ["".join(rng.choice(list("IXYZ"), size=n)) for _ in range(terms)]
    coeffs = [float(c) for c in rng.uniform(-1, 1, size=terms)]
    obs = {}
    for label, c in zip(labels, coeffs):
        obs[label] = obs.get(label, 0.0) + c
    return obs


def aer_statevector(qc, sim):
    c = qc.remove_final_measurements(inplace=False)
    c.save_statevector()
    res = sim.run(transpile(c, sim, optimization_level=0)).result()
    return Statevector(res.get_statevector())


def tvd(a, b, shots):
    keys = set(a) | set(b)
    return 0.5 * sum(abs(a.get(k, 0) - b.get(k, 0)) for k in keys) / shots


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qsim", required=True)
    ap.add_argument("--cases", type=int, default=40)
    ap.add_argument("--seed", type=int, default=2024)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    sim = AerSimulator(method="statevector", seed_simulator=args.seed)
    passed = failed = 0

    def report(ok, what):
        nonlocal passed, failed
        if ok:
            passed += 1
        else:
            failed += 1
            print(f"FAIL {what}", flush=True)

    # Estimator: exact expectation values.
    for case in range(args.cases):
        n = int(rng.integers(2, 7))
        qc = random_circuit(n, int(rng.integers(5, 40)), rng)
        observables = [random_observable(n, rng) for _ in range(3)]
        try:
            out = qsim_run(args.qsim, {"program": "estimator",
                                       "pubs": [[qasm2.dumps(qc), observables]]})
            evs = out["pub_results"][0]["evs"]
            sv = aer_statevector(qc, sim)
            want = [float(np.real(sv.expectation_value(SparsePauliOp.from_list(list(o.items())))))
                    for o in observables]
            err = max(abs(a - b) for a, b in zip(evs, want))
            report(err <= 1e-9, f"estimator case {case}: n={n} max error {err:.3e}\n{qasm2.dumps(qc)}")
        except Exception as e:  # noqa: BLE001 - report and continue
            report(False, f"estimator case {case}: {e}\n{qasm2.dumps(qc)}")

    # Sampler: counts within a statistical tolerance of Aer's counts.
    shots = 8192
    for case in range(args.cases):
        n = int(rng.integers(2, 7))
        dynamic = case % 3 == 2
        qc = random_circuit(n, int(rng.integers(5, 30)), rng, dynamic=dynamic)
        qc.measure(range(n), range(n))
        try:
            out = qsim_run(args.qsim, {"program": "sampler", "shots": shots, "seed": case,
                                       "pubs": [[qasm2.dumps(qc)]]})
            got = out["pub_results"][0]["data"]["c"]["counts"]
            aer = sim.run(transpile(qc, sim, optimization_level=0), shots=shots,
                          seed_simulator=case).result().get_counts()
            d = tvd(got, aer, shots)
            report(sum(got.values()) == shots and d < 0.08,
                   f"sampler case {case} (dynamic={dynamic}): n={n} TVD {d:.4f}")
        except Exception as e:  # noqa: BLE001
            report(False, f"sampler case {case}: {e}\n{qasm2.dumps(qc)}")

    # A larger circuit on the parallel path (16 qubits), estimator only.
    qc = random_circuit(16, 200, rng)
    obs = [random_observable(16, rng)]
    out = qsim_run(args.qsim, {"program": "estimator", "pubs": [[qasm2.dumps(qc), obs]]})
    sv = aer_statevector(qc, sim)
    want = float(np.real(sv.expectation_value(SparsePauliOp.from_list(list(obs[0].items())))))
    err = abs(out["pub_results"][0]["evs"][0] - want)
    report(err <= 1e-9, f"estimator 16 qubits: error {err:.3e}")

    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
