"""Nudged elastic band with any ASE calculator, counting every expensive force call.

Two procedures share one NEB engine (``ase.mep.NEB``, improved tangent, FIRE):

* :func:`plain_neb` - the seed papers' way: linear interpolation, climbing image from the
  first step, every step evaluated with the expensive calculator.
* :func:`accelerated_neb` - IDPP interpolation, the whole band converged with a cheap
  calculator (an ML potential; climbing image switched on late), then refined with the
  expensive calculator through a *surrogate*: the expensive forces are evaluated only at the
  current images, the band is optimised on ``cheap + offset + GP(expensive - cheap)`` (a
  Gaussian process trained on every expensive call so far, :mod:`~perovflow.workflows.neb_gp`)
  inside a trust radius, and the loop stops when the *expensive* NEB forces (climbing image
  on) are below ``fmax`` - the plain procedure's test, on the refined images.

Endpoints can be relaxed the same two ways (:func:`relax_atoms`, :func:`surrogate_relax`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from perovflow.workflows.neb_calcs import (
    CallCounter,
    CountingCalculator,
    _clip,
    _ef,
    freeze,
    max_force,
    relax_atoms,
    surrogate_relax,
)

CalcFactory = Callable[[int], Calculator]
EV_TO_KCAL_MOL = 23.060548
log = logging.getLogger("perovflow.neb")


@dataclass
class NEBResult:
    """Converged band: energies along the path, barriers and the cost of getting there."""

    energies: list[float]
    images: list[Atoms]
    converged: bool
    expensive_calls: int = 0
    expensive_seconds: float = 0.0
    cheap_calls: int = 0
    endpoint_calls: int = 0
    steps: int = 0
    wall_s: float = 0.0
    procedure: str = ""
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def forward_barrier_eV(self) -> float:
        """Highest image energy minus the initial energy (eV)."""
        return float(max(self.energies) - self.energies[0])

    @property
    def reverse_barrier_eV(self) -> float:
        """Highest image energy minus the final energy (eV)."""
        return float(max(self.energies) - self.energies[-1])

    @property
    def ts_index(self) -> int:
        """Index of the highest image."""
        return int(np.argmax(self.energies))

    def reaction_coordinate(self) -> list[float]:
        """Cumulative distance (Å) of the images along the band."""
        dist = [0.0]
        for a, b in zip(self.images[:-1], self.images[1:], strict=True):
            dist.append(dist[-1] + float(np.linalg.norm(b.get_positions() - a.get_positions())))
        return dist

    def summary(self) -> dict[str, Any]:
        """Small JSON-able summary (no structures)."""
        return {
            "procedure": self.procedure,
            "barrier_eV": round(self.forward_barrier_eV, 5),
            "barrier_kcal_mol": round(self.forward_barrier_eV * EV_TO_KCAL_MOL, 3),
            "reverse_barrier_eV": round(self.reverse_barrier_eV, 5),
            "reaction_energy_eV": round(self.energies[-1] - self.energies[0], 5),
            "ts_index": self.ts_index,
            "energies_eV": [round(e - self.energies[0], 5) for e in self.energies],
            "reaction_coordinate_A": [round(x, 4) for x in self.reaction_coordinate()],
            "converged": self.converged,
            "expensive_calls": self.expensive_calls,
            "endpoint_calls": self.endpoint_calls,
            "cheap_calls": self.cheap_calls,
            "steps": self.steps,
            "wall_s": round(self.wall_s, 2),
        }


def interpolate_band(
    initial: Atoms, final: Atoms, nimages: int, method: str = "idpp"
) -> list[Atoms]:
    """``nimages`` intermediate images between the endpoints (endpoints included in the list).

    Uses the structures layer (pymatgen's IDPPSolver) when present, ASE's otherwise.
    """
    try:
        from perovflow.structures.paths import interpolate
    except ImportError:
        interpolate = None
    if interpolate is not None:
        from pymatgen.io.ase import AseAtomsAdaptor

        a2s = AseAtomsAdaptor
        band = interpolate(a2s.get_structure(initial), a2s.get_structure(final), nimages, method)
        band = [a2s.get_atoms(s) if not isinstance(s, Atoms) else s for s in band]
        if len(band) == nimages + 2:
            return [initial, *[b.copy() for b in band[1:-1]], final]
    from ase.mep import NEB

    band = [initial.copy()] + [initial.copy() for _ in range(nimages)] + [final.copy()]
    NEB(band).interpolate(method="idpp" if method == "idpp" else "linear", mic=True)
    return [initial, *band[1:-1], final]


def _attach(band: list[Atoms], calcs: list[Calculator]) -> None:
    for image, calc in zip(band[1:-1], calcs, strict=True):
        image.calc = calc


def optimize_band(
    band: list[Atoms],
    fmax: float,
    steps: int,
    climb: bool = True,
    late_climb_fmax: float | None = None,
    shared: bool = False,
) -> tuple[bool, int]:
    """FIRE on the band (calculators already attached); returns (converged, steps taken).

    With ``late_climb_fmax`` the band is first converged to that force without climbing.
    """
    from ase.mep import NEB
    from ase.optimize import FIRE

    taken = 0
    if climb and late_climb_fmax:
        neb = NEB(band, climb=False, method="improvedtangent", allow_shared_calculator=shared)
        opt = FIRE(neb, logfile=None)
        opt.run(fmax=late_climb_fmax, steps=steps)
        taken = opt.nsteps
    neb = NEB(band, climb=climb, method="improvedtangent", allow_shared_calculator=shared)
    opt = FIRE(neb, logfile=None)
    converged = bool(opt.run(fmax=fmax, steps=max(steps - taken, 1)))
    return converged, taken + opt.nsteps


def _endpoints(
    initial: Atoms,
    final: Atoms,
    expensive: CalcFactory,
    fmax: float,
    steps: int,
    counter: CallCounter,
    relax: bool,
    cheap: Calculator | None = None,
) -> tuple[Atoms, Atoms]:
    """Endpoints frozen with expensive energies: relaxed (directly or via the surrogate)."""
    out = []
    for atoms, index in ((initial, 0), (final, -1)):
        if relax and cheap is not None:
            out.append(surrogate_relax(atoms, expensive(index), cheap, fmax, counter=counter)[0])
        elif relax:
            out.append(relax_atoms(atoms, expensive(index), fmax, steps, counter)[0])
        else:
            probe = atoms.copy()
            probe.calc = CountingCalculator(expensive(index), counter)
            out.append(freeze(probe, *_ef(probe)))
    return out[0], out[1]


def band_energies(band: list[Atoms]) -> list[float]:
    """Potential energies of all images (calculators attached)."""
    return [float(image.get_potential_energy()) for image in band]


def plain_neb(
    initial: Atoms,
    final: Atoms,
    expensive: CalcFactory,
    nimages: int = 9,
    fmax: float = 0.05,
    steps: int = 500,
    interpolation: str = "linear",
    relax_endpoints: bool = True,
) -> NEBResult:
    """The seed's procedure: linear band, CI-NEB from scratch with the expensive calculator.

    Steps: relax both endpoints (BFGS, expensive) -> interpolate -> CI-NEB (FIRE, climbing
    image from the first step) until every image force is below ``fmax``.
    """
    start, ends, counter = time.perf_counter(), CallCounter(), CallCounter()
    initial, final = _endpoints(initial, final, expensive, fmax, steps, ends, relax_endpoints)
    band = interpolate_band(initial, final, nimages, interpolation)
    _attach(band, [CountingCalculator(expensive(i + 1), counter) for i in range(nimages)])
    log.info("endpoints done (%d expensive calls); plain CI-NEB starts", ends.calls)
    converged, taken = optimize_band(band, fmax, steps, climb=True)
    log.info("plain CI-NEB: converged=%s in %d steps", converged, taken)
    energies = band_energies(band)
    return NEBResult(
        energies=energies,
        images=[freeze(b, e, b.get_forces()) for b, e in zip(band, energies, strict=True)],
        converged=converged,
        expensive_calls=counter.calls + ends.calls,
        expensive_seconds=counter.seconds + ends.seconds,
        endpoint_calls=ends.calls,
        steps=taken,
        wall_s=time.perf_counter() - start,
        procedure="plain",
    )


def _evaluate_band(band: list[Atoms], calcs: list[Calculator]) -> tuple[float, list[tuple]]:
    """Expensive NEB forces (climbing image on) at the current images: (max force, E/F)."""
    from ase.mep import NEB

    _attach(band, calcs)
    neb = NEB(band, climb=True, method="improvedtangent")
    residual = max_force(neb.get_forces())
    return residual, [_ef(image) for image in band[1:-1]]


def _refine(
    band: list[Atoms],
    expensive: list[Calculator],
    cheap: Calculator,
    fmax: float,
    outer_steps: int,
    trust: float,
    inner_steps: int = 150,
    patience: int = 6,
    fallback_steps: int = 500,
) -> tuple[bool, int, list[dict[str, float]]]:
    """Surrogate loop: expensive forces at the images, band relaxed on the Δ-model, repeat.

    Every expensive call (and the frozen ends of ``band``) trains a
    :class:`~perovflow.workflows.neb_gp.DeltaModel` (cheap + offset + Gaussian process); the
    band then takes CI-NEB steps on the model until it converges there or an atom leaves the
    trust region around the evaluated geometry. Every step is kept (the model learns from a
    bad one too); the trust radius halves when the expensive residual rises and grows by 1.5
    (up to its start value) when it reaches a new low. ``patience`` steps without a new low
    end in plain CI-NEB from the current band.
    """
    from perovflow.workflows.neb_gp import DeltaCalculator, DeltaModel

    model = DeltaModel(band[0], cheap)
    for end in (band[0], band[-1]):
        model.add(end.get_positions(), *_ef(end))
    history: list[dict[str, float]] = []
    residual, ef = _evaluate_band(band, expensive)
    best, failures, max_trust = np.inf, 0, trust
    for outer in range(outer_steps):
        for image, (e, f) in zip(band[1:-1], ef, strict=True):
            model.add(image.get_positions(), e, f)
        history.append({"outer": outer, "max_force": residual, "trust": trust})
        log.info("surrogate step %d: expensive NEB max force %.4f eV/Å", outer, residual)
        if residual < fmax:
            return True, outer, history
        if residual < best:
            best, failures, trust = residual, 0, min(trust * 1.5, max_trust)
        else:
            failures, trust = failures + 1, max(trust * 0.5, 0.05)
        if failures >= patience:  # the model does not describe this band: plain CI-NEB from here
            _attach(band, expensive)
            converged, taken = optimize_band(band, fmax, fallback_steps, climb=True)
            history.append({"outer": outer, "fallback_fire_steps": taken})
            log.info("surrogate gave up; direct CI-NEB: converged=%s in %d steps", converged, taken)
            return converged, outer + taken, history
        model.fit()
        refs = [image.get_positions() for image in band[1:-1]]
        surrogate = [band[0], *[image.copy() for image in band[1:-1]], band[-1]]
        _attach(surrogate, [DeltaCalculator(model) for _ in refs])
        _surrogate_steps(surrogate, refs, fmax / 2, inner_steps, trust)
        for i, image in enumerate(band[1:-1], start=1):
            image.set_positions(_clip(image, surrogate[i].get_positions(), trust).get_positions())
        residual, ef = _evaluate_band(band, expensive)
    history.append({"outer": outer_steps, "max_force": residual, "trust": trust})
    return residual < fmax, outer_steps, history


def _surrogate_steps(
    band: list[Atoms], refs: list[np.ndarray], fmax: float, steps: int, trust: float
) -> None:
    """CI-NEB (FIRE) on the surrogate band until converged or an atom leaves the trust region
    (``trust`` Å from ``refs``, the geometries the expensive calculator last saw)."""
    from ase.mep import NEB
    from ase.optimize import FIRE

    neb = NEB(band, climb=True, method="improvedtangent")
    opt = FIRE(neb, logfile=None, maxstep=trust / 2)
    for _ in opt.irun(fmax=fmax, steps=steps):
        moved = (im.get_positions() - r for im, r in zip(band[1:-1], refs, strict=True))
        if max(max_force(step) for step in moved) > trust:
            break


def _window(band: list[Atoms], window: int | None) -> tuple[int, int]:
    """Indices (lo, hi) of the frozen ends of the sub-band around the highest image."""
    n = len(band) - 2
    if window is None:
        return 0, n + 1
    imax = 1 + int(np.argmax([im.get_potential_energy() for im in band[1:-1]]))
    return max(0, imax - window - 1), min(n + 1, imax + window + 1)


def _freeze_expensive(atoms: Atoms, calc: Calculator, counter: CallCounter) -> Atoms:
    probe = atoms.copy()
    probe.calc = CountingCalculator(calc, counter)
    return freeze(probe, *_ef(probe))


def accelerated_neb(
    initial: Atoms,
    final: Atoms,
    expensive: CalcFactory,
    cheap: Calculator,
    nimages: int = 9,
    fmax: float = 0.05,
    outer_steps: int = 40,
    interpolation: str = "idpp",
    relax_endpoints: bool = True,
    trust: float = 0.3,
    cheap_steps: int = 500,
    window: int | None = 1,
) -> NEBResult:
    """NEB with few expensive force calls.

    Steps: relax both endpoints (cheap pre-relax, then surrogate relax with the expensive
    calculator) -> IDPP band -> CI-NEB converged with the cheap calculator (climbing image
    switched on late) -> the highest image and ``window`` neighbours on each side are refined
    with the expensive calculator between frozen neighbours (Δ-model surrogate loop; plain
    CI-NEB if it stalls) until their expensive NEB forces, the climbing image's included,
    are below ``fmax`` -> one expensive evaluation of the remaining images for the profile.
    ``window=None`` refines the whole band (the plain procedure's criterion).

    The climbing image converges to a first-order saddle of the expensive surface. It is the
    one next to the cheap model's path, which need not be the one a linear band finds: on
    the Cs4PbBr6 Br hop a symmetric linear band stays symmetric and climbs to a higher saddle
    (see ``benchmarks/bench_neb.py``). Outer images stay on the cheap path.
    """
    start, ends, counter, cheap_count = (
        time.perf_counter(),
        CallCounter(),
        CallCounter(),
        CallCounter(),
    )
    cheap = CountingCalculator(cheap, cheap_count)
    initial, final = _endpoints(initial, final, expensive, fmax, 300, ends, relax_endpoints, cheap)
    band = interpolate_band(initial, final, nimages, interpolation)
    pre = [initial.copy(), *band[1:-1], final.copy()]
    for atoms in pre:
        atoms.calc = cheap
    pre[0] = freeze(pre[0], *_ef(pre[0]))
    pre[-1] = freeze(pre[-1], *_ef(pre[-1]))
    late = max(0.3, fmax * 4)
    log.info("endpoints done (%d expensive calls); cheap NEB starts", ends.calls)
    ok, taken = optimize_band(pre, fmax, cheap_steps, climb=True, late_climb_fmax=late, shared=True)
    log.info("cheap NEB: converged=%s in %d steps (%d cheap calls)", ok, taken, cheap_count.calls)
    lo, hi = _window(pre, window)
    band = [initial, *pre[1:-1], final]
    for edge in (lo, hi):
        if 0 < edge < nimages + 1:
            band[edge] = _freeze_expensive(band[edge], expensive(edge), counter)
    calcs = [CountingCalculator(expensive(i), counter) for i in range(lo + 1, hi)]
    converged, outer, history = _refine(band[lo : hi + 1], calcs, cheap, fmax, outer_steps, trust)
    for i in range(1, nimages + 1):
        if not lo <= i <= hi:
            band[i] = _freeze_expensive(band[i], expensive(i), counter)
    energies = band_energies(band)
    return NEBResult(
        energies=energies,
        images=[freeze(b, e, b.get_forces()) for b, e in zip(band, energies, strict=True)],
        converged=converged,
        expensive_calls=counter.calls + ends.calls,
        expensive_seconds=counter.seconds + ends.seconds,
        cheap_calls=cheap_count.calls,
        endpoint_calls=ends.calls,
        steps=outer,
        wall_s=time.perf_counter() - start,
        procedure="accelerated",
        history=history,
    )
