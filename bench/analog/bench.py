#!/usr/bin/env python3
"""qcloud-analog vs pulser-simulation on the issue-9 benchmark, in one run.

The sequence: a ladder register (two rows, atoms 6.5 µm apart) on AnalogDevice, one 2.5 µs pulse with a Blackman
amplitude (area 10 rad, peak ~9.5 rad/µs) and a detuning ramp -10 -> +10 rad/µs; final state only, 1000 samples.
Built with Pulser, serialized with `to_abstract_repr()`; both sides get the same JSON.

- qcloud: `qcloud-analog run --time` under /usr/bin/time -v: its own prepare_s/run_s (stderr line), the wall time of
  the whole process (start, parse, run, sample, print) and the peak RSS.
- pulser-simulation: a fresh Python child per repetition (so peak RSS is per run) that times
  `QutipEmulator.from_sequence(seq, evaluation_times="Minimal").run()` plus `sample_final_state(1000)`;
  its peak RSS (ru_maxrss, which includes the interpreter with pulser/qutip imported) and the RSS before the timed
  part are reported.

Each cell is the median of --reps repetitions. Ratio = pulser seconds / qcloud seconds (wall, and --time's
prepare+run). Sizes in --qcloud-only run qcloud alone (16 atoms by default: the target is < 10 s on 2 cores).

Usage: bench.py --cli path/to/qcloud-analog [--atoms 4 6 8 10 12 14] [--qcloud-only 16] [--reps 3] [--json out]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

DURATION_NS = 2500
AREA = 10.0
DET = (-10.0, 10.0)
SPACING = 6.5
SHOTS = 1000

PULSER_CHILD = r"""
import json, resource, sys, time, warnings
warnings.simplefilter("ignore")
from pulser import Sequence
from pulser_simulation import QutipEmulator
seq = Sequence.from_abstract_repr(open(sys.argv[1]).read())
base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
sim = QutipEmulator.from_sequence(seq, evaluation_times="Minimal")
res = sim.run()
counts = res.sample_final_state(N_samples=int(sys.argv[2]))
dt = time.perf_counter() - t0
assert sum(counts.values()) == int(sys.argv[2])
print(json.dumps({"seconds": dt, "base_kb": base_kb,
                  "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def ladder_sequence_json(n: int) -> str:
    import warnings

    warnings.simplefilter("ignore")
    from pulser import Pulse, Register, Sequence
    from pulser.devices import AnalogDevice
    from pulser.waveforms import BlackmanWaveform, RampWaveform

    if n % 2:
        raise SystemExit(f"a ladder needs an even number of atoms, not {n}")
    cols = n // 2
    coords = {}
    for j in range(cols):
        for row in range(2):
            coords[f"q{len(coords)}"] = ((j - (cols - 1) / 2) * SPACING, (row - 0.5) * SPACING)
    seq = Sequence(Register(coords), AnalogDevice)
    seq.declare_channel("ising", "rydberg_global")
    seq.add(Pulse(BlackmanWaveform(DURATION_NS, AREA), RampWaveform(DURATION_NS, *DET), 0.0), "ising")
    seq.measure("ground-rydberg")
    return seq.to_abstract_repr()


def run_qcloud(cli: str, seq_json: str, n: int) -> dict:
    payload = json.dumps({"sequence": json.loads(seq_json), "runs": SHOTS, "variables": {}, "seed": 1,
                          "outputs": ["counts"]})
    t0 = time.perf_counter()
    out = subprocess.run(["/usr/bin/time", "-v", cli, "run", "--time"], input=payload, capture_output=True,
                         text=True, check=False)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"qcloud-analog failed at {n} atoms (exit {out.returncode}): {out.stdout} {out.stderr}")
    doc = json.loads(out.stdout)
    if sum(doc["counter"].values()) != SHOTS or doc.get("atoms") != n:
        raise SystemExit(f"qcloud-analog gave a wrong result at {n} atoms: {out.stdout[:300]}")
    timing = None
    for line in out.stderr.splitlines():
        line = line.strip()
        if line.startswith("{") and "run_s" in line:
            timing = json.loads(line)
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr)
    if timing is None or m is None:
        raise SystemExit(f"no --time line or no /usr/bin/time figures in stderr: {out.stderr[-500:]}")
    # Keep whatever else --time reports (e.g. the integrator's substeps and error bound) in the raw figures.
    return dict(timing, wall_s=wall, peak_kb=int(m.group(1)))


def run_pulser(python: str, seq_path: str) -> dict:
    out = subprocess.run([python, "-c", PULSER_CHILD, seq_path, str(SHOTS)], capture_output=True, text=True,
                         check=False)
    if out.returncode != 0:
        raise SystemExit(f"pulser-simulation child failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_of(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cli", required=True)
    ap.add_argument("--atoms", type=int, nargs="*", default=[4, 6, 8, 10, 12, 14])
    ap.add_argument("--qcloud-only", type=int, nargs="*", default=[16])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--python", default=sys.executable, help="the Python with pulser-simulation")
    ap.add_argument("--json", help="also write the raw figures here")
    args = ap.parse_args()
    if not os.access("/usr/bin/time", os.X_OK):
        raise SystemExit("/usr/bin/time is missing (Debian package `time`; bench/analog/run.sh installs it)")

    print(f"load average {os.getloadavg()[0]:.1f} at the start", file=sys.stderr)
    rows = []
    tmp = tempfile.mkdtemp(prefix="qcloud-analog-bench-")
    for n in sorted(set(args.atoms) | set(args.qcloud_only)):
        seq_json = ladder_sequence_json(n)
        path = os.path.join(tmp, f"ladder{n}.json")
        with open(path, "w") as f:
            f.write(seq_json)
        q = [run_qcloud(args.cli, seq_json, n) for _ in range(args.reps)]
        p = [run_pulser(args.python, path) for _ in range(args.reps)] if n in args.atoms else []
        row = {
            "atoms": n,
            "qcloud_wall_s": median_of(q, "wall_s"),
            "qcloud_prepare_s": median_of(q, "prepare_s"),
            "qcloud_run_s": median_of(q, "run_s"),
            "qcloud_peak_mib": median_of(q, "peak_kb") / 1024,
            "qcloud_reps": q,
        }
        if p:
            row.update({
                "pulser_s": median_of(p, "seconds"),
                "pulser_peak_mib": median_of(p, "peak_kb") / 1024,
                "pulser_base_mib": median_of(p, "base_kb") / 1024,
                "pulser_reps": p,
            })
        rows.append(row)
        print(f"  {n} atoms done", file=sys.stderr, flush=True)

    hdr = (f"{'atoms':>5} {'qcloud wall s':>13} {'qcloud prep+run s':>17} {'pulser s':>9} {'ratio wall':>10} "
           f"{'ratio run':>9} {'qcloud MiB':>10} {'pulser MiB':>10} {'(pulser base)':>13}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        inner = r["qcloud_prepare_s"] + r["qcloud_run_s"]
        if "pulser_s" in r:
            print(f"{r['atoms']:>5} {r['qcloud_wall_s']:>13.4f} {inner:>17.4f} {r['pulser_s']:>9.4f} "
                  f"{r['pulser_s'] / r['qcloud_wall_s']:>10.2f} {r['pulser_s'] / inner:>9.2f} "
                  f"{r['qcloud_peak_mib']:>10.1f} {r['pulser_peak_mib']:>10.1f} {r['pulser_base_mib']:>13.1f}")
        else:
            print(f"{r['atoms']:>5} {r['qcloud_wall_s']:>13.4f} {inner:>17.4f} {'-':>9} {'-':>10} {'-':>9} "
                  f"{r['qcloud_peak_mib']:>10.1f} {'-':>10} {'-':>13}")
    print(f"median of {args.reps} reps; ratio = pulser s / qcloud s; {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f} at the end")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
