"""Random Pulser sequences for the analog accuracy suite.

Every case is built with real Pulser from a seeded numpy Generator, so a run is reproducible. A case is
`Case(name, category, seq, variables)`: `seq` is the (possibly parametrized / mappable) Sequence, measured in the
ground-rydberg basis; `variables` is the CLI's `variables` object (including `qubits` for a mappable register) and
`build_kwargs()` is what `seq.build(**...)` needs for the reference.

Pulser validates everything it is given (channel limits, retargeting, ...). A draw that Pulser refuses is redrawn from
the same generator, so the generated set stays deterministic for a given seed.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Callable

import numpy as np
from pulser import Pulse, Register, Sequence
from pulser.devices import AnalogDevice, DigitalAnalogDevice, MockDevice
from pulser.register import Register3D, RegisterLayout
from pulser.waveforms import (
    BlackmanWaveform,
    CompositeWaveform,
    ConstantWaveform,
    CustomWaveform,
    InterpolatedWaveform,
    KaiserWaveform,
    RampWaveform,
)

warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=UserWarning)

# Amplitude kept below every device's channel maximum (AnalogDevice: 4π rad/µs) and low enough that the dynamics
# stay resolvable at 1 ns.
AMP_MAX = 12.0
DET_MAX = 20.0

AMP_KINDS = ["constant", "ramp", "blackman", "blackman_max", "kaiser", "kaiser_max", "interpolated", "composite",
             "custom"]
DET_KINDS = ["constant", "ramp", "blackman", "kaiser", "interpolated", "composite", "custom"]


@dataclasses.dataclass
class Case:
    name: str
    category: str
    seq: Sequence
    variables: dict[str, Any]
    features: list[str]

    def build_kwargs(self) -> dict[str, Any]:
        return dict(self.variables)

    def built(self) -> Sequence:
        if self.seq.is_parametrized() or self.seq.is_register_mappable():
            return self.seq.build(**self.build_kwargs())
        return self.seq


def _duration(rng: np.random.Generator, lo: int = 60, hi: int = 600) -> int:
    # Deliberately not a multiple of 4 (the clock period of AnalogDevice / DigitalAnalogDevice) most of the time.
    return int(rng.integers(lo, hi))


def _amp_waveform(rng: np.random.Generator, kind: str, duration: int, amax: float, feats: list[str]):
    """An amplitude waveform (non-negative) of `kind`; returns the waveform (its duration may differ for *_max)."""
    feats.append(f"amp:{kind}")
    d = duration
    if kind == "constant":
        return ConstantWaveform(d, float(rng.uniform(0.5, amax)))
    if kind == "ramp":
        return RampWaveform(d, float(rng.uniform(0, amax)), float(rng.uniform(0, amax)))
    if kind == "blackman":
        # The Blackman peak is area / (0.42 · d[µs]).
        area = float(rng.uniform(0.2, 0.95)) * amax * 0.42 * d * 1e-3
        return BlackmanWaveform(d, area)
    if kind == "blackman_max":
        return BlackmanWaveform.from_max_val(float(rng.uniform(2, amax)), float(rng.uniform(0.5, 4.0)))
    if kind == "kaiser":
        beta = float(rng.uniform(2, 16))
        area = float(rng.uniform(0.2, 0.9)) * amax * 0.3 * d * 1e-3
        return KaiserWaveform(d, area, beta)
    if kind == "kaiser_max":
        return KaiserWaveform.from_max_val(float(rng.uniform(2, amax)), float(rng.uniform(0.5, 4.0)),
                                           float(rng.uniform(4, 16)))
    if kind == "interpolated":
        n = int(rng.integers(2, 7))
        values = rng.uniform(0, amax, size=n)
        if rng.uniform() < 0.5:
            times = np.sort(np.concatenate([[0.0, 1.0], rng.uniform(0, 1, size=n - 2)]))
            times = np.unique(times)
            values = values[: len(times)]
            return InterpolatedWaveform(d, values, times=times)
        return InterpolatedWaveform(d, values)
    if kind == "composite":
        d1 = int(rng.integers(16, max(17, d - 16)))
        k1, k2 = rng.choice(["constant", "ramp", "blackman", "interpolated", "custom"], size=2)
        w1 = _amp_waveform(rng, str(k1), d1, amax, feats)
        w2 = _amp_waveform(rng, str(k2), d - d1, amax, feats)
        return CompositeWaveform(w1, w2)
    if kind == "custom":
        # A smooth random envelope plus small noise, so the samples are arbitrary but not pure noise.
        t = np.linspace(0, 1, d)
        base = np.sin(np.pi * t) ** 2 * rng.uniform(1, amax * 0.9)
        noise = rng.uniform(0, 0.1 * amax, size=d)
        return CustomWaveform(np.clip(base + noise, 0, amax))
    raise ValueError(kind)


def _det_waveform(rng: np.random.Generator, kind: str, duration: int, feats: list[str]):
    feats.append(f"det:{kind}")
    d = duration
    if kind == "constant":
        return ConstantWaveform(d, float(rng.uniform(-DET_MAX, DET_MAX)))
    if kind == "ramp":
        return RampWaveform(d, float(rng.uniform(-DET_MAX, DET_MAX)), float(rng.uniform(-DET_MAX, DET_MAX)))
    if kind == "blackman":
        area = float(rng.uniform(-0.9, 0.9)) * DET_MAX * 0.42 * d * 1e-3
        return BlackmanWaveform(d, area)
    if kind == "kaiser":
        area = float(rng.uniform(-0.9, 0.9)) * DET_MAX * 0.3 * d * 1e-3
        return KaiserWaveform(d, area, float(rng.uniform(2, 14)))
    if kind == "interpolated":
        n = int(rng.integers(2, 6))
        return InterpolatedWaveform(d, rng.uniform(-DET_MAX, DET_MAX, size=n))
    if kind == "composite":
        d1 = int(rng.integers(16, max(17, d - 16)))
        return CompositeWaveform(_det_waveform(rng, "ramp", d1, feats), _det_waveform(rng, "constant", d - d1, feats))
    if kind == "custom":
        t = np.linspace(0, 1, d)
        a, b = rng.uniform(-DET_MAX, DET_MAX, size=2)
        return CustomWaveform(a + (b - a) * t + rng.uniform(-1, 1, size=d))
    raise ValueError(kind)


def random_pulse(rng: np.random.Generator, amax: float, feats: list[str]) -> Pulse:
    """A pulse with random amplitude/detuning waveforms, phase and post_phase_shift (sometimes the
    ConstantAmplitude / ConstantDetuning / ArbitraryPhase encodings)."""
    phase = float(rng.uniform(0, 2 * np.pi)) if rng.uniform() < 0.5 else 0.0
    pps = float(rng.uniform(-np.pi, np.pi)) if rng.uniform() < 0.3 else 0.0
    if phase:
        feats.append("phase")
    if pps:
        feats.append("post_phase_shift")
    form = rng.choice(["full", "full", "full", "const_amp", "const_det", "arb_phase"], p=[.25, .25, .2, .1, .1, .1])
    if form == "const_amp":
        feats.append("ConstantAmplitude")
        det = _det_waveform(rng, str(rng.choice(DET_KINDS)), _duration(rng), feats)
        return Pulse.ConstantAmplitude(float(rng.uniform(0.5, amax)), det, phase, post_phase_shift=pps)
    if form == "const_det":
        feats.append("ConstantDetuning")
        amp = _amp_waveform(rng, str(rng.choice(AMP_KINDS)), _duration(rng), amax, feats)
        return Pulse.ConstantDetuning(amp, float(rng.uniform(-DET_MAX, DET_MAX)), phase, post_phase_shift=pps)
    if form == "arb_phase":
        # The phase waveform's derivative becomes a detuning: keep it gentle (|dφ/dt| a few rad/µs).
        feats.append("ArbitraryPhase")
        d = _duration(rng)
        amp = _amp_waveform(rng, str(rng.choice(["constant", "blackman", "ramp"])), d, amax, feats)
        phase_wf = RampWaveform(amp.duration, float(rng.uniform(0, 1)), float(rng.uniform(-2, 2)))
        return Pulse.ArbitraryPhase(amp, phase_wf, post_phase_shift=pps)
    amp = _amp_waveform(rng, str(rng.choice(AMP_KINDS)), _duration(rng), amax, feats)
    det = _det_waveform(rng, str(rng.choice(DET_KINDS)), amp.duration, feats)
    return Pulse(amp, det, phase, post_phase_shift=pps)


def random_coords(rng: np.random.Generator, n: int, dmin: float, rmax: float, dim: int = 2) -> np.ndarray:
    """n points at least `dmin` apart (plus a margin, so rounding never breaks the device limit) within `rmax` of the
    origin; spacings mostly 5–10 µm so interactions are neither negligible nor overwhelming."""
    radius = min(rmax - 1.0, 3.0 + 3.5 * n ** (1 / dim) * 1.5)
    pts: list[np.ndarray] = []
    while len(pts) < n:
        p = rng.uniform(-radius, radius, size=dim)
        if np.linalg.norm(p) > radius:
            continue
        if all(np.linalg.norm(p - q) >= dmin + 0.3 for q in pts):
            pts.append(np.round(p, 3))
    return np.array(pts)


def _make_seq_register(rng, device, n, dim=2):
    coords = random_coords(rng, n, max(5.0, device.min_atom_distance), device.max_radial_distance or 40.0, dim)
    ids = [f"q{i}" for i in range(n)]
    if dim == 3:
        return Register3D(dict(zip(ids, coords)))
    return Register(dict(zip(ids, coords)))


def _schedule(rng, seq: Sequence, channels: list[str], qubits: list[str], local_max_targets, n_ops: int,
              amax: dict[str, float], feats: list[str]) -> None:
    protocols = ["min-delay", "no-delay", "wait-for-all"]
    for _ in range(n_ops):
        r = rng.uniform()
        ch = str(rng.choice(channels))
        if r < 0.6:
            proto = str(rng.choice(protocols))
            feats.append(f"protocol:{proto}")
            seq.add(random_pulse(rng, amax[ch], feats), ch, protocol=proto)
        elif r < 0.7:
            feats.append("delay")
            seq.delay(_duration(rng, 10, 300), ch, at_rest=bool(rng.uniform() < 0.3))
        elif r < 0.78:
            feats.append("phase_shift")
            k = int(rng.integers(1, len(qubits) + 1))
            targets = [str(q) for q in rng.choice(qubits, size=k, replace=False)]
            seq.phase_shift(float(rng.uniform(-np.pi, np.pi)), *targets, basis="ground-rydberg")
        elif r < 0.86 and len(channels) > 1:
            feats.append("align")
            seq.align(*channels, at_rest=bool(rng.uniform() < 0.5))
        elif ch in local_max_targets:
            feats.append("target")
            mt = local_max_targets[ch] or len(qubits)
            k = int(rng.integers(1, min(mt, len(qubits)) + 1))
            seq.target([str(q) for q in rng.choice(qubits, size=k, replace=False)], ch)
        else:
            proto = str(rng.choice(protocols))
            feats.append(f"protocol:{proto}")
            seq.add(random_pulse(rng, amax[ch], feats), ch, protocol=proto)


def _case_plain(rng, device, local: bool, dim: int = 2) -> tuple[Sequence, dict, list[str]]:
    feats: list[str] = []
    n = int(rng.integers(2, 9))
    reg = _make_seq_register(rng, device, n, dim)
    if dim == 3:
        feats.append("3D")
    seq = Sequence(reg, device)
    qubits = list(reg.qubit_ids)
    channels = ["g"]
    seq.declare_channel("g", "rydberg_global")
    local_max: dict[str, int | None] = {}
    amax = {"g": AMP_MAX}
    if local:
        feats.append("rydberg_local")
        mt = device.channels["rydberg_local"].max_targets
        k = int(rng.integers(1, (mt or n) + 1)) if mt else int(rng.integers(1, n + 1))
        seq.declare_channel("l", "rydberg_local", initial_target=[str(q) for q in rng.choice(qubits, k, replace=False)])
        channels.append("l")
        local_max["l"] = mt
        amax["l"] = AMP_MAX
        if rng.uniform() < 0.2:
            channels.remove("g")  # local-only sequences too (the global channel stays declared, unused)
    _schedule(rng, seq, channels, qubits, local_max, int(rng.integers(3, 8)), amax, feats)
    # At least one pulse on every channel in use, so each contributes a drive.
    for ch in channels:
        seq.add(random_pulse(rng, AMP_MAX, feats), ch, protocol=str(rng.choice(["min-delay", "no-delay"])))
    return seq, {}, feats


def _case_param(rng, device) -> tuple[Sequence, dict, list[str]]:
    """A parametrized sequence: a scalar float, an int duration and a size-2 array variable."""
    feats = ["variables"]
    n = int(rng.integers(2, 9))
    reg = _make_seq_register(rng, device, n)
    seq = Sequence(reg, device)
    seq.declare_channel("g", "rydberg_global")
    area = seq.declare_variable("area", dtype=float)
    dur = seq.declare_variable("dur", dtype=int)
    dets = seq.declare_variable("dets", size=2, dtype=float)
    amp = seq.declare_variable("amp", dtype=float)
    vals = seq.declare_variable("vals", size=3, dtype=float)
    seq.add(Pulse.ConstantDetuning(BlackmanWaveform(dur, area), dets[0], 0.0), "g")
    seq.add(Pulse(InterpolatedWaveform(dur, vals), RampWaveform(dur, dets[0], dets[1]),
                  float(rng.uniform(0, 2 * np.pi))), "g")
    if rng.uniform() < 0.5:
        seq.delay(dur * 0.5, "g")
        feats.append("delay")
    seq.add(Pulse.ConstantAmplitude(amp * 0.8, RampWaveform(dur + 3, dets[1], -dets[0] * 0.5), 0.0), "g")
    d = _duration(rng, 150, 700)
    variables = {
        "area": float(rng.uniform(0.3, 0.9)) * AMP_MAX * 0.42 * d * 1e-3,
        "dur": d,
        "dets": [float(x) for x in rng.uniform(-DET_MAX, DET_MAX, 2)],
        "amp": float(rng.uniform(1, AMP_MAX * 0.9)),
        "vals": [0.0] + [float(x) for x in rng.uniform(0, AMP_MAX, 2)],
    }
    return seq, variables, feats


def _case_param_ops(rng, device) -> tuple[Sequence, dict, list[str]]:
    """Parametrized forms Pulser serializes as calls: `blackman_max` / `kaiser_max` waveforms (from_max_val with
    variables), `pulse_arbitrary_phase` (ArbitraryPhase with a variable) and every expression operator of the
    abstract repr but `round` (which Pulser cannot serialize)."""
    import math

    feats = ["variables", "expressions", "amp:blackman_max", "amp:kaiser_max", "pulse_arbitrary_phase"]
    n = int(rng.integers(2, 9))
    seq = Sequence(_make_seq_register(rng, device, n), device)
    seq.declare_channel("g", "rydberg_global")
    a = seq.declare_variable("a")
    t = seq.declare_variable("t", dtype=int)
    x = seq.declare_variable("x", size=2)
    seq.add(Pulse.ConstantDetuning(BlackmanWaveform.from_max_val(a, x[0] + 1), -a / 2, 0.0), "g")
    seq.add(Pulse.ConstantDetuning(KaiserWaveform.from_max_val(a * 0.9, x[1] ** 2, 10.0), abs(x[0] - x[1]), 0.3),
            "g", protocol=str(rng.choice(["min-delay", "no-delay"])))
    # Blackman peak = area / (0.42 t[µs]) <= 0.3·√10 / (0.42·0.25) < 9.1 rad/µs.
    seq.add(Pulse.ArbitraryPhase(BlackmanWaveform(t, a.sqrt() * 0.3), RampWaveform(t, 0.0, x[0].sin())), "g")
    seq.delay(t % 7 + math.ceil(a) + math.floor(x[1]) + 16, "g")  # delays are >= 16 ns
    seq.add(Pulse.ConstantAmplitude((x[0] * 0.1).exp(), RampWaveform(t, a.cos() + a.log() - x[1].tan(),
                                                                     x[1].tanh() * 5), a.log2()), "g")
    variables = {
        "a": float(rng.uniform(4, 10)),
        "t": int(rng.integers(250, 600)),
        "x": [float(v) for v in rng.uniform(0.5, 1.3, 2)],
    }
    return seq, variables, feats


def _case_mappable(rng, device) -> tuple[Sequence, dict, list[str]]:
    feats = ["layout", "mappable"]
    n_traps = int(rng.integers(8, 14))
    coords = random_coords(rng, n_traps, max(5.0, device.min_atom_distance), device.max_radial_distance or 40, 2)
    layout = RegisterLayout(coords)
    n = int(rng.integers(2, min(8, n_traps) + 1))
    reg = layout.make_mappable_register(n)
    seq = Sequence(reg, device)
    seq.declare_channel("g", "rydberg_global")
    _schedule(rng, seq, ["g"], [f"q{i}" for i in range(n)], {}, int(rng.integers(1, 4)), {"g": AMP_MAX}, feats)
    seq.add(random_pulse(rng, AMP_MAX, feats), "g")
    traps = [int(t) for t in rng.choice(n_traps, size=n, replace=False)]
    # Pulser requires the mapping to cover the first k qids; use all of them here.
    return seq, {"qubits": {f"q{i}": t for i, t in enumerate(traps)}}, feats


RECIPES: list[tuple[str, int, Callable]] = [
    ("analog-global", 12, lambda rng: _case_plain(rng, AnalogDevice, local=False)),
    ("digitalanalog-local", 12, lambda rng: _case_plain(rng, DigitalAnalogDevice, local=True)),
    ("mock-local", 8, lambda rng: _case_plain(rng, MockDevice, local=True, dim=int(rng.choice([2, 3])))),
    ("mappable", 6, lambda rng: _case_mappable(rng, AnalogDevice if rng.uniform() < 0.5 else DigitalAnalogDevice)),
    ("parametrized", 8, lambda rng: _case_param(rng, AnalogDevice if rng.uniform() < 0.5 else DigitalAnalogDevice)),
    ("param-expressions", 5,
     lambda rng: _case_param_ops(rng, AnalogDevice if rng.uniform() < 0.5 else DigitalAnalogDevice)),
]

MAX_TRIES = 50


def generate(seed: int = 20261202) -> list[Case]:
    cases: list[Case] = []
    for ri, (category, count, make) in enumerate(RECIPES):
        for i in range(count):
            rng = np.random.default_rng([seed, ri, i])
            for _ in range(MAX_TRIES):
                try:
                    seq, variables, feats = make(rng)
                    seq.measure("ground-rydberg")
                    case = Case(f"{category}-{i:02d}", category, seq, variables, sorted(set(feats)))
                    built = case.built()
                    # The reference needs a non-trivial, serializable sequence within the device's duration.
                    total = built.get_duration()
                    if total == 0 or total > 4000:
                        continue
                    seq.to_abstract_repr()
                    cases.append(case)
                    break
                except (ValueError, TypeError, NotImplementedError):
                    continue
            else:
                raise RuntimeError(f"could not draw a valid {category} sequence #{i}")
    return cases
