"""pytest wiring for the analog suite: where the CLI is, and the TVD summary at the end of the session."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(HERE))

TVD_KEY = pytest.StashKey[list]()


def pytest_addoption(parser):
    parser.addoption(
        "--analog-cli",
        default=os.environ.get("QCLOUD_ANALOG_BIN", str(ROOT / "target" / "release" / "qcloud-analog")),
        help="the qcloud-analog command (split like a shell line; default $QCLOUD_ANALOG_BIN or "
        "<repo>/target/release/qcloud-analog)",
    )
    parser.addoption(
        "--all-readings",
        action="store_true",
        help="also compare every case with pulser-simulation's step reading (reference.py), not only the cases "
        "beyond the bound against its spline reading (slower: ~2 s per case)",
    )


def pytest_configure(config):
    config.stash[TVD_KEY] = []
    # Pulser warns about every duration it rounds up to the clock period, which the random sequences do on purpose.
    config.addinivalue_line("filterwarnings", "ignore::UserWarning")
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning")


@pytest.fixture(scope="session")
def cli(request) -> list[str]:
    argv = shlex.split(request.config.getoption("--analog-cli"))
    exe = argv[0]
    if shutil.which(exe) is None:
        pytest.fail(f"the qcloud-analog CLI {exe!r} does not exist or is not executable (run.sh builds it)")
    return argv


@pytest.fixture(scope="session")
def all_readings(request) -> bool:
    return bool(request.config.getoption("--all-readings"))


@pytest.fixture(scope="session")
def tvd_log(request) -> list:
    return request.config.stash[TVD_KEY]


def _quantile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    if len(xs) == 1:
        return xs[0]
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def tvd_summary(records: list[dict], key: str = "tvd") -> dict:
    groups: dict[str, list[float]] = {"all": [r[key] for r in records]}
    for r in records:
        groups.setdefault(r["category"], []).append(r[key])
    return {
        cat: {
            "n": len(v),
            "min": min(v),
            "median": statistics.median(v),
            "p90": _quantile(v, 0.9),
            "max": max(v),
        }
        for cat, v in groups.items()
        if v
    }


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    records = config.stash.get(TVD_KEY, [])
    if not records:
        return
    strict = tvd_summary(records, "tvd")
    best = tvd_summary(records, "tvd_best")
    with_step = [r for r in records if "tvd_step" in r]
    via_step = [r["name"] for r in records if r.get("passed_via") == "step"]
    out = Path(os.environ.get("TMPDIR", tempfile.gettempdir())) / "qcloud-analog-tvd.json"
    out.write_text(json.dumps({"tvd_vs_pulser_simulation": strict, "tvd_best_of_readings": best,
                               "passed_via_step_reading": via_step, "cases": records}, indent=1))
    tr = terminalreporter
    for title, summary in (("TVD vs pulser-simulation (QutipEmulator, exact final-state probabilities)", strict),
                           ("TVD vs the closer of its spline / step readings (see reference.py)", best)):
        tr.section(title)
        tr.write_line(f"{'category':<22}{'n':>4}{'min':>11}{'median':>11}{'p90':>11}{'max':>11}")
        for cat, s in summary.items():
            tr.write_line(f"{cat:<22}{s['n']:>4}{s['min']:>11.2e}{s['median']:>11.2e}{s['p90']:>11.2e}"
                          f"{s['max']:>11.2e}")
    if len(with_step) == len(records):
        for title, key in (("TVD vs the step reading alone", "tvd_step"),
                           ("pulser-simulation's spline vs step readings (the reference's own spread)",
                            "spline_vs_step")):
            summary = tvd_summary(records, key)
            tr.section(title)
            tr.write_line(f"{'category':<22}{'n':>4}{'min':>11}{'median':>11}{'p90':>11}{'max':>11}")
            for cat, s in summary.items():
                tr.write_line(f"{cat:<22}{s['n']:>4}{s['min']:>11.2e}{s['median']:>11.2e}{s['p90']:>11.2e}"
                              f"{s['max']:>11.2e}")
    worst = max(records, key=lambda r: r["tvd"])
    tr.write_line(f"worst vs pulser-simulation: {worst['name']} ({worst['tvd']:.2e}); "
                  f"{len(via_step)} case(s) within the bound only against the step reading: {via_step}")
    tr.write_line(f"all cases written to {out}")
