#!/usr/bin/env python3
"""A stand-in for `qcloud-analog run`, for checking the harness itself (not used by run.sh).

Same contract as the CLI (payload on stdin, result or `{"error": ...}` with exit 2 on stdout). Pulser parses, binds
and samples the sequence; the physics is a small numpy port of protocols/pasqal-cloud.md §7.3: exact state vector,
piecewise-constant H per 1 ns sample. Usage: `pytest ... --analog-cli "python numpy_cli.py"`.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")

from pulser import Sequence  # noqa: E402
from pulser.sampler import sample  # noqa: E402
from scipy.sparse import csr_matrix, diags, identity, kron  # noqa: E402
from scipy.sparse.linalg import expm_multiply  # noqa: E402


MUTATE = os.environ.get("QCLOUD_NUMPY_CLI_MUTATE", "")


def site_op(op, k: int, n: int):
    out = identity(1, format="csr")
    for j in range(n):
        out = kron(out, op if j == k else identity(2, format="csr"), format="csr")
    return out


def evolve(built: Sequence) -> np.ndarray:
    qids = list(built.register.qubit_ids)
    n = len(qids)
    pos = np.array([built.register.qubits[q].as_array() for q in qids], dtype=float)
    c6 = built.device.interaction_coeff
    # Basis: atom 0 is the most significant bit, bit 1 = Rydberg.
    sp = csr_matrix(np.array([[0, 0], [1, 0]], dtype=complex))  # |r><g| with |g> = 0, |r> = 1
    nr = csr_matrix(np.array([[0, 0], [0, 1]], dtype=complex))
    plus = [site_op(sp, k, n) for k in range(n)]
    occ = [site_op(nr, k, n) for k in range(n)]
    dim = 2**n
    inter = csr_matrix((dim, dim), dtype=complex)
    for i in range(n):
        for j in range(i + 1, n):
            inter = inter + c6 / np.linalg.norm(pos[i] - pos[j]) ** 6 * (occ[i] @ occ[j])
    d = sample(built).to_nested_dict()
    total = built.get_duration()

    def pad(a):
        a = np.asarray(a, dtype=float)
        return np.pad(a, (0, total - len(a))) if len(a) < total else a[:total]

    # Separate global and local drive terms (§7.3): each carries its own Ω, δ, φ.
    drives = []  # (amp, det, phase, [atom indices])
    g = d.get("Global", {}).get("ground-rydberg")
    if g:
        drives.append((pad(g["amp"]), pad(g["det"]), pad(g["phase"]), list(range(n))))
    for q, s in d.get("Local", {}).get("ground-rydberg", {}).items():
        drives.append((pad(s["amp"]), pad(s["det"]), pad(s["phase"]), [qids.index(q)]))
    psi = np.zeros(dim, dtype=complex)
    psi[0] = 1.0
    key_prev, h = None, None
    for k in range(total):
        key = tuple((a[k], dt[k], ph[k]) for a, dt, ph, _ in drives)
        if key != key_prev:
            h = inter.copy()
            for a, dt, ph, atoms in drives:
                for i in atoms:
                    if a[k]:
                        # QCLOUD_NUMPY_CLI_MUTATE=phase flips the phase sign: a deliberate bug, to check that the
                        # suite catches one.
                        sign = -1 if MUTATE == "phase" else 1
                        x = 0.5 * a[k] * np.exp(sign * 1j * ph[k]) * plus[i]
                        h = h + x + x.getH()
                    if dt[k]:
                        h = h - dt[k] * occ[i]
            key_prev = key
        psi = expm_multiply(-1j * 1e-3 * h, psi)
    return np.abs(psi) ** 2


def main() -> int:
    t0 = time.perf_counter()
    try:
        payload = json.loads(sys.stdin.read())
        seq_repr = payload["sequence"]
        seq = Sequence.from_abstract_repr(seq_repr if isinstance(seq_repr, str) else json.dumps(seq_repr))
        variables = dict(payload.get("variables") or {})
        if seq.is_parametrized() or seq.is_register_mappable():
            built = seq.build(**variables)
        else:
            built = seq
        t1 = time.perf_counter()
        probs = evolve(built)
        n = len(built.register.qubit_ids)
        rng = np.random.default_rng(payload.get("seed"))
        p = probs / probs.sum()
        counts = rng.multinomial(int(payload["runs"]), p)
        keys = [format(i, f"0{n}b") for i in range(2**n)]
        if MUTATE == "bitorder":  # the other deliberate bug: atom 0 as the last character
            keys = [k[::-1] for k in keys]
        out = {
            "counter": {k: int(c) for k, c in zip(keys, counts) if c},
            "duration_ns": int(built.get_duration()),
            "atoms": n,
        }
        outputs = payload.get("outputs") or ["counts"]
        if "probabilities" in outputs:
            out["probabilities"] = {k: float(v) for k, v in zip(keys, p) if v > 0}
        if "occupation" in outputs:
            out["occupation"] = [float(sum(p[i] for i in range(2**n) if keys[i][a] == "1")) for a in range(n)]
    except Exception as e:  # the CLI's contract: any refusal is exit 2 with a message
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        return 2
    if "--time" in sys.argv:
        print(json.dumps({"prepare_s": t1 - t0, "run_s": time.perf_counter() - t1}), file=sys.stderr)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
