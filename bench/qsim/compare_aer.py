#!/usr/bin/env python3
"""Time qsim (`qsim bench`) and Qiskit Aer (statevector method) on the same circuits.

Both compute the final state vector of the same circuit (`qsim gen` prints the circuit qsim times
as OpenQASM 2; Aer runs it with `save_statevector`, shots=1, `max_parallel_threads` = T). Each
measurement runs in its own child process, so that peak memory (ru_maxrss from wait4) is per run.
Times are the minimum over --reps repetitions of the simulation alone (Aer: `run().result()` on an
already transpiled circuit; qsim: state allocation + gate application).

Usage: compare_aer.py --qsim path/to/qsim [--qubits 16 20 24 26] [--threads 1 2] [--reps 3]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

AER_CHILD = r"""
import json, sys, time
from qiskit import qasm2, transpile
from qiskit_aer import AerSimulator
path, threads, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
qc = qasm2.load(path, custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS)
qc.save_statevector()
sim = AerSimulator(method="statevector", max_parallel_threads=threads)
tqc = transpile(qc, sim, optimization_level=0)
times = []
for _ in range(reps):
    t = time.perf_counter()
    res = sim.run(tqc, shots=1).result()
    times.append(time.perf_counter() - t)
    assert res.success
    del res
print(json.dumps(min(times)))
"""


def run_child(cmd):
    """Run cmd, return (stdout, peak RSS in MiB) using wait4 for per-child rusage."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = p.stdout.read()
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {err.strip()[-500:]}")
    return out, ru.ru_maxrss / 1024.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qsim", required=True)
    ap.add_argument("--qubits", type=int, nargs="+", default=[16, 20, 24, 26])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--circuits", nargs="+", default=["qft", "random"])
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()

    rows = []
    header = (f"{'circuit':8} {'qubits':>6} {'threads':>7} {'qsim s':>9} {'aer s':>9} "
              f"{'ratio':>6} {'qsim MiB':>9} {'aer MiB':>8}")
    print(header)
    print("-" * len(header), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for circ in args.circuits:
            for n in args.qubits:
                qasm, _ = run_child([args.qsim, "gen", "--circuit", circ, "--qubits", str(n)])
                path = os.path.join(tmp, f"{circ}{n}.qasm")
                with open(path, "w") as f:
                    f.write(qasm)
                for t in args.threads:
                    reps = args.reps if n < 26 else max(1, min(args.reps, 2))
                    out, q_mem = run_child([args.qsim, "bench", "--circuit", circ, "--qubits",
                                            str(n), "--threads", str(t), "--reps", str(reps)])
                    q_s = float(out.split()[0])
                    out, a_mem = run_child([sys.executable, "-c", AER_CHILD, path, str(t),
                                            str(reps)])
                    a_s = json.loads(out)
                    ratio = q_s / a_s if a_s > 0 else float("inf")
                    rows.append((circ, n, t, q_s, a_s, ratio, q_mem, a_mem))
                    print(f"{circ:8} {n:>6} {t:>7} {q_s:>9.4f} {a_s:>9.4f} {ratio:>6.2f} "
                          f"{q_mem:>9.0f} {a_mem:>8.0f}", flush=True)
    worst = max(r[5] for r in rows)
    print(f"worst ratio qsim/aer: {worst:.2f}")


if __name__ == "__main__":
    main()
