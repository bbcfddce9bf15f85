"""The reference: exact final-state probabilities from pulser-simulation's QutipEmulator.

No noise, no modulation (`with_modulation=False`, the default) and `evaluation_times="Minimal"`, whose last state is
the state at T (with "Full" the last state is at T - 1 ns).

pulser-simulation hands QuTiP the per-ns samples as array coefficients, which QuTiP reads as a cubic spline through
the samples (`QobjEvo(order=3)`, the default). The samples themselves mean a piecewise-constant drive (one value per
ns, as in protocols/pasqal-cloud.md §7.3). On smooth sequences both readings agree to ~1e-6; at hard edges (a
constant or ramp pulse switching on at full amplitude, a phase jump under a non-zero amplitude) the spline over- and
undershoots and the two readings differ by up to ~2e-3 in TVD. `probabilities_step` is the same pulser-simulation
Hamiltonian read as steps (`order=0`) and integrated with tight tolerances: it agrees with an independent numpy
piecewise-constant solver (numpy_cli.py) to ~1e-6, so it is the reading to use when the spline's own artifact is
what separates two answers.
"""

from __future__ import annotations

import warnings
from unittest import mock

import qutip
from pulser import Sequence
from pulser_simulation import QutipEmulator

# Steps every 0.25 ns and tight tolerances: an adaptive solver stepping over the per-ns jumps of a step-read
# coefficient with the default max_step (1 ns) is off by ~1e-4.
STEP_OPTIONS = {"max_step": 2.5e-4, "atol": 1e-10, "rtol": 1e-9, "nsteps": 10**7}


def _run(built: Sequence, **options) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sim = QutipEmulator.from_sequence(built, evaluation_times="Minimal", with_modulation=False)
        res = sim.run(**options)
    # QutipResult.sampling_dist: bitstring character k = atom k in register order, '1' = Rydberg (zeros omitted).
    return {k: float(v) for k, v in res[-1].sampling_dist.items()}


def probabilities(built: Sequence) -> dict[str, float]:
    """pulser-simulation as users run it (spline-read coefficients, default solver options)."""
    return _run(built)


def probabilities_step(built: Sequence) -> dict[str, float]:
    """pulser-simulation's Hamiltonian with its samples read as steps (order=0), tight solver tolerances."""
    real = qutip.QobjEvo

    def step_qobjevo(*args, **kwargs):
        kwargs.setdefault("order", 0)
        return real(*args, **kwargs)

    with mock.patch.object(qutip, "QobjEvo", step_qobjevo):
        return _run(built, **STEP_OPTIONS)
