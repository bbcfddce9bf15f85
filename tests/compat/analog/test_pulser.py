"""qcloud-analog vs pulser-simulation (QutipEmulator), issue 9.

Cases: every sequence in sequences/ (copied from shared/fixtures/pasqal/sequences, variables in
sequences/variables.json) plus the seeded random sequences of seqgen.py, built with real Pulser. For each:

- exact final-state probabilities: total-variation distance to pulser-simulation <= 1e-3. Where that fails, the
  same bound against pulser-simulation's Hamiltonian with its samples read as steps rather than as a cubic spline
  (reference.py says why the two readings differ at hard edges) also passes, and the record says so
  (`passed_via: step`). The occupations <n_i> agree with the matched reference's marginals to the same bound;
  `atoms` and `duration_ns` are Pulser's;
- sampled counts (runs=2000, fixed seed): a G-test against the reference probabilities (bins with expected < 5
  merged) must give p > 1e-4;
- Pulser's own errors: a missing and a mis-sized variable (and a mappable register without `qubits`) are refused with
  exit 2 and a message that says so.

A failing case's payload is written to $TMPDIR/qcloud-analog-failures/<case>.json so it can be replayed with
`qcloud-analog run < file`.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import subprocess
import tempfile
import zlib
from pathlib import Path

import pytest
from pulser import Sequence
from scipy.stats import chi2

import reference
import seqgen

HERE = Path(__file__).resolve().parent
SEQ_DIR = HERE / "sequences"
RUNS = 2000
TVD_BOUND = 1e-3
P_MIN = 1e-4
FAIL_DIR = Path(os.environ.get("TMPDIR", tempfile.gettempdir())) / "qcloud-analog-failures"


class Item:
    """One sequence: the CLI payload and the Pulser sequence the reference builds."""

    def __init__(self, name: str, category: str, repr_json: str, variables: dict, seq: Sequence):
        self.name = name
        self.category = category
        self.repr_obj = json.loads(repr_json)
        self.variables = variables
        self.seq = seq

    def built(self) -> Sequence:
        if self.seq.is_parametrized() or self.seq.is_register_mappable():
            return self.seq.build(**self.variables)
        return self.seq

    def payload(self, **extra) -> dict:
        p = {
            "sequence": self.repr_obj,
            "runs": RUNS,
            "variables": self.variables,
            "seed": zlib.crc32(self.name.encode()),
            "outputs": ["counts", "probabilities", "occupation"],
        }
        p.update(extra)
        return p


def fixture_items() -> list[Item]:
    variables = json.loads((SEQ_DIR / "variables.json").read_text())
    items = []
    for path in sorted(SEQ_DIR.glob("*.json")):
        if path.name == "variables.json":
            continue
        text = path.read_text()
        items.append(Item(path.stem, "fixture", text, variables[path.name], Sequence.from_abstract_repr(text)))
    return items


def generated_items() -> list[Item]:
    return [Item(c.name, c.category, c.seq.to_abstract_repr(), c.variables, c.seq) for c in seqgen.generate()]


ITEMS = fixture_items() + generated_items()
BY_NAME = {it.name: it for it in ITEMS}


def run_cli(cli: list[str], payload: dict, timeout: float = 300) -> tuple[int, dict, str]:
    out = subprocess.run([*cli, "run"], input=json.dumps(payload), capture_output=True, text=True,
                         timeout=timeout, check=False)
    try:
        doc = json.loads(out.stdout)
    except json.JSONDecodeError:
        doc = {"unparsable_stdout": out.stdout[:2000]}
    return out.returncode, doc, out.stderr


def save_failure(name: str, payload: dict, why: str) -> None:
    FAIL_DIR.mkdir(parents=True, exist_ok=True)
    (FAIL_DIR / f"{name}.json").write_text(json.dumps({"why": why, "payload": payload}))


@functools.lru_cache(maxsize=None)
def ref_probs(name: str) -> dict[str, float]:
    return reference.probabilities(BY_NAME[name].built())


@functools.lru_cache(maxsize=None)
def ref_probs_step(name: str) -> dict[str, float]:
    return reference.probabilities_step(BY_NAME[name].built())


_cli_cache: dict[str, tuple[int, dict, str]] = {}


def cli_result(cli: list[str], name: str) -> tuple[int, dict, str]:
    if name not in _cli_cache:
        _cli_cache[name] = run_cli(cli, BY_NAME[name].payload())
    return _cli_cache[name]


def tvd(p: dict[str, float], q: dict[str, float]) -> float:
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in set(p) | set(q))


def g_test(counts: dict[str, int], probs: dict[str, float], runs: int) -> tuple[float, int, float]:
    """(G, degrees of freedom, p-value). Bins with expected count < 5 are merged into one; if that bin is still
    below 5 it joins the smallest kept bin."""
    keys = set(probs) | set(counts)
    big = [k for k in keys if runs * probs.get(k, 0.0) >= 5]
    small = [k for k in keys if k not in big]
    bins = [(runs * probs[k], counts.get(k, 0)) for k in big]
    rest_e = sum(runs * probs.get(k, 0.0) for k in small)
    rest_o = sum(counts.get(k, 0) for k in small)
    if rest_e >= 5 or not bins:
        bins.append((rest_e, rest_o))
    else:
        i = min(range(len(bins)), key=lambda j: bins[j][0])
        bins[i] = (bins[i][0] + rest_e, bins[i][1] + rest_o)
    g = 2.0 * sum(o * math.log(o / e) for e, o in bins if o > 0)
    df = len(bins) - 1
    return g, df, (float(chi2.sf(g, df)) if df > 0 else 1.0)


def check_bitstrings(keys, n: int) -> None:
    bad = [k for k in keys if not re.fullmatch(f"[01]{{{n}}}", k)]
    assert not bad, f"bitstrings that are not {n} characters of 0/1: {bad[:5]}"


@pytest.mark.parametrize("name", [it.name for it in ITEMS])
def test_exact_probabilities(cli, tvd_log, all_readings, name):
    item = BY_NAME[name]
    built = item.built()
    n = len(built.register.qubit_ids)
    ref = ref_probs(name)
    code, doc, err = cli_result(cli, name)
    if code != 0:
        save_failure(name, item.payload(), f"exit {code}: {doc} {err[-500:]}")
    assert code == 0, f"qcloud-analog exited {code}: {doc} {err[-500:]}"
    assert doc.get("atoms") == n
    assert doc.get("duration_ns") == built.get_duration(), "duration differs from Pulser's get_duration()"
    probs = doc.get("probabilities")
    assert isinstance(probs, dict), f"no probabilities in the output: {list(doc)}"
    check_bitstrings(probs, n)
    assert abs(sum(probs.values()) - 1.0) < 1e-6, f"probabilities sum to {sum(probs.values())}"
    d = tvd(probs, ref)
    record = {"name": name, "category": item.category, "atoms": n, "duration_ns": int(built.get_duration()), "tvd": d,
              "tvd_best": d}
    tvd_log.append(record)
    matched = ref
    if all_readings and d <= TVD_BOUND:
        step = ref_probs_step(name)
        record.update(tvd_step=tvd(probs, step), spline_vs_step=tvd(ref, step))
        record["tvd_best"] = min(d, record["tvd_step"])
    if d > TVD_BOUND:
        # Beyond the bound against the spline reading: try pulser-simulation's step reading (see reference.py).
        step = ref_probs_step(name)
        d_step = tvd(probs, step)
        record.update(tvd_step=d_step, spline_vs_step=tvd(ref, step), tvd_best=min(d, d_step))
        if d_step <= TVD_BOUND:
            record["passed_via"] = "step"
            matched = step
        else:
            save_failure(name, item.payload(), f"TVD {d:.3e} (spline) / {d_step:.3e} (step) > {TVD_BOUND}")
        assert d_step <= TVD_BOUND, (
            f"TVD {d:.3e} vs pulser-simulation and {d_step:.3e} vs its step reading, both > {TVD_BOUND} "
            f"(the two readings differ by {record['spline_vs_step']:.3e})")
    occ = doc.get("occupation")
    assert isinstance(occ, list) and len(occ) == n, f"occupation {occ!r} is not a list of {n} numbers"
    ref_occ = [sum(p for k, p in matched.items() if k[i] == "1") for i in range(n)]
    worst = max(abs(a - b) for a, b in zip(occ, ref_occ))
    assert worst <= TVD_BOUND, f"occupation differs from the reference marginals by {worst:.3e}"


@pytest.mark.parametrize("name", [it.name for it in ITEMS])
def test_sampled_counts(cli, name):
    item = BY_NAME[name]
    n = len(item.built().register.qubit_ids)
    code, doc, err = cli_result(cli, name)
    assert code == 0, f"qcloud-analog exited {code}: {doc} {err[-500:]}"
    counts = doc.get("counter")
    assert isinstance(counts, dict)
    check_bitstrings(counts, n)
    assert sum(counts.values()) == RUNS, f"counts sum to {sum(counts.values())}, not runs={RUNS}"
    g, df, p = g_test(counts, ref_probs(name), RUNS)
    if p <= P_MIN:
        save_failure(name, item.payload(), f"G-test G={g:.1f} df={df} p={p:.2e}")
    assert p > P_MIN, f"sampled counts do not follow the reference: G={g:.1f}, df={df}, p={p:.2e}"


def test_seed_reproducible_and_matters(cli):
    item = BY_NAME["param_blackman_ramp"]
    base = item.payload(outputs=["counts"], seed=7)
    a = run_cli(cli, base)
    b = run_cli(cli, base)
    c = run_cli(cli, dict(base, seed=8))
    assert a[0] == b[0] == c[0] == 0, (a, c)
    assert a[1]["counter"] == b[1]["counter"], "the same seed gave different counts"
    # 16 outcomes of which several carry > 10 %: two seeds agreeing on all 2000 shots is not plausible.
    assert a[1]["counter"] != c[1]["counter"], "seeds 7 and 8 gave identical counts"
    assert "probabilities" not in a[1], "probabilities were not asked for"


def test_sequence_given_as_string(cli):
    item = BY_NAME["phases_pair"]
    code, doc, err = run_cli(cli, item.payload(sequence=json.dumps(item.repr_obj)))
    assert code == 0, (doc, err)
    assert tvd(doc["probabilities"], ref_probs("phases_pair")) <= TVD_BOUND


def _error(cli, payload) -> str:
    code, doc, _ = run_cli(cli, payload)
    assert code == 2, f"expected exit 2, got {code}: {doc}"
    assert isinstance(doc.get("error"), str) and doc["error"], doc
    return doc["error"]


def _pulser_error(item: Item, variables: dict) -> str:
    with pytest.raises((TypeError, ValueError)) as info:
        item.seq.build(**variables)
    return str(info.value)


def test_missing_variable(cli):
    item = BY_NAME["param_blackman_ramp"]
    # Pulser: "Did not receive values for variables: omega_max".
    assert "omega_max" in _pulser_error(item, {})
    msg = _error(cli, item.payload(variables={}))
    assert "omega_max" in msg, msg
    assert re.search(r"did not receive|missing|no value|not given|required|undefined", msg, re.I), msg


def test_missing_one_of_several_variables(cli):
    item = next(it for it in ITEMS if it.category == "parametrized")
    partial = {k: v for k, v in item.variables.items() if k != "dets"}
    assert "dets" in _pulser_error(item, partial)
    msg = _error(cli, item.payload(variables=partial))
    assert "dets" in msg, msg
    assert re.search(r"did not receive|missing|no value|not given|required|undefined", msg, re.I), msg


@pytest.mark.parametrize("value,got,want", [([1.0, 2.0], 2, 1), ([0.5, 0.6, 0.7], 3, 1)])
def test_mis_sized_scalar_variable(cli, value, got, want):
    item = BY_NAME["param_blackman_ramp"]
    # Pulser: "Can't assign array of size 2 to variable of size 1".
    assert "size" in _pulser_error(item, {"omega_max": value})
    msg = _error(cli, item.payload(variables={"omega_max": value}))
    assert re.search(r"size|length|elements", msg, re.I), msg
    assert str(got) in msg and str(want) in msg, msg


def test_mis_sized_array_variable(cli):
    item = next(it for it in ITEMS if it.category == "parametrized")
    bad = dict(item.variables, dets=[1.0, 2.0, 3.0])
    assert "size" in _pulser_error(item, bad)
    msg = _error(cli, item.payload(variables=bad))
    assert re.search(r"size|length|elements", msg, re.I) and "3" in msg and "2" in msg, msg


def test_mappable_register_without_qubits(cli):
    item = next(it for it in ITEMS if it.category == "mappable")
    msg = _error(cli, item.payload(variables={}))
    assert "qubits" in msg.lower(), msg
