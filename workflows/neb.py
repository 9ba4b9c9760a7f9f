"""Nudged elastic band with any ASE calculator, counting every expensive force call.

Two procedures share one NEB engine (``ase.mep.NEB``, improved tangent, FIRE) and one test:
every image's NEB force (climbing image on) below ``fmax`` with the *expensive* calculator.

* :func:`plain_neb` - the seed papers' way: every step evaluated with the expensive
  calculator, climbing image from the first step (linear or IDPP band).
* :func:`accelerated_neb` - the same band converged with a cheap calculator (an ML potential;
  climbing image switched on late), then converged on the expensive surface through a
  Δ-model surrogate (:func:`~perovflow.workflows.neb_gp.refine_band`): expensive calls only
  at the images that moved, the band stepped on ``cheap + offset + GP(expensive - cheap)``.
  By default the whole band is refined (the plain procedure's criterion); ``window=k``
  refines only the highest image and ``k`` neighbours on each side (cheaper; the barrier then
  comes from the refined images only and ``converged`` still means the whole-band test).

Both return :class:`perovflow.analysis.neb_result.NEBResult` (barrier from the highest refined
image, the climbing image; spline profile; convergence, end-point status and cost).
Endpoints can be relaxed the same two ways (:func:`relax_atoms`, :func:`surrogate_relax`);
with ``symmetric_ends`` only the initial one is, when the final one is its symmetry image.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from perovflow.analysis.neb_result import NEBResult
from perovflow.structures.endpoint_symmetry import endpoint_map, map_endpoint
from perovflow.workflows.neb_calcs import (
    CallCounter,
    CountingCalculator,
    _ef,
    freeze,
    max_force,
    relax_atoms,
    surrogate_relax,
)
from perovflow.workflows.neb_checkpoint import NEBCheckpoint
from perovflow.workflows.neb_gp import Refinement, RefineState, neb_residuals, refine_band

CalcFactory = Callable[[int], Calculator]
log = logging.getLogger("perovflow.neb")


def interpolate_band(
    initial: Atoms, final: Atoms, nimages: int, method: str = "idpp", perturb: float = 0.0
) -> list[Atoms]:
    """``nimages`` intermediate images between the endpoints (endpoints included in the list).

    Uses the structures layer (:func:`perovflow.structures.interpolation.interpolate`,
    pymatgen's IDPPSolver). ``perturb`` (Å) adds the same small random displacements (fixed
    seed) to the intermediate images every time: a symmetric band otherwise keeps its
    symmetry under NEB forces and can converge to a higher-order stationary point.
    """
    from pymatgen.io.ase import AseAtomsAdaptor

    from perovflow.structures.interpolation import interpolate

    a2s = AseAtomsAdaptor
    band = interpolate(a2s.get_structure(initial), a2s.get_structure(final), nimages, method)
    band = [a2s.get_atoms(s) if not isinstance(s, Atoms) else s for s in band]
    inner = [b.copy() for b in band[1:-1]]
    if perturb > 0:
        rng = np.random.default_rng(0)
        for image in inner:
            image.positions += rng.normal(scale=perturb, size=image.positions.shape)
    return [initial, *inner, final]


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
    counter: CallCounter,
    relax: bool,
    cheap: Calculator | None = None,
    symmetric: bool = False,
) -> tuple[Atoms, Atoms, list[bool], list[float], bool]:
    """End points frozen with expensive energies: relaxed (BFGS, or via the surrogate when
    ``cheap`` is given) or evaluated as given; returns (initial, final, converged per end,
    expensive max force per end, whether the final end is the initial's symmetry image).
    Converged: the relaxation's own test, or - for end points relaxed elsewhere (the
    migration flow's relax jobs) - their expensive forces below ``fmax``. ``symmetric``: when a host operation carries the initial end point onto the
    final one (:func:`~perovflow.structures.endpoint_symmetry.endpoint_map`), only the
    initial one is relaxed and the final one is its image (same energy, rotated forces)."""
    op = None
    if symmetric and relax:
        op = endpoint_map(initial, final)
        log.info("end points %s", "symmetry-equivalent: final = image of initial"
                 if op is not None else "not equivalent: both relaxed")  # fmt: skip
    out, status = [], []
    for atoms, index in ((initial, 0), (final, -1)):
        if index == -1 and op is not None:
            out.append(map_endpoint(out[0], op, final))
            status.append(status[0])
            continue
        if relax and cheap is not None:
            ends = surrogate_relax(atoms, expensive(index), cheap, fmax, counter=counter)
        elif relax:
            ends = relax_atoms(atoms, expensive(index), fmax, 300, counter)
        else:
            probe = atoms.copy()
            probe.calc = CountingCalculator(expensive(index), counter)
            ends = (freeze(probe, *_ef(probe)), max_force(probe.get_forces()) < fmax)
        out.append(ends[0])
        status.append(bool(ends[-1]))
    forces = [max_force(end.get_forces()) for end in out]
    return out[0], out[1], status, forces, op is not None


def band_energies(band: list[Atoms]) -> list[float]:
    """Potential energies of all images (calculators attached)."""
    return [float(image.get_potential_energy()) for image in band]


def _known(band: list[Atoms]) -> dict[int, tuple]:
    """index -> (positions, energy, forces) of the intermediate images (calculators attached)."""
    return {i: (im.get_positions(), *_ef(im)) for i, im in enumerate(band) if 0 < i < len(band) - 1}


def _result(
    band: list[Atoms], refined: list[int], converged: bool, record: dict[str, Any]
) -> NEBResult:
    """The NEB result of a finished band (every image carrying expensive energy and forces)."""
    from perovflow.analysis.neb import analyze_neb

    images = [freeze(im, *_ef(im)) for im in band]
    result = analyze_neb(images, refined=refined)
    result.converged = bool(converged)
    result.max_force_eV_A = float(neb_residuals(images, _known(images)).max())
    for key, value in record.items():
        setattr(result, key, value)
    return result


def plain_neb(
    initial: Atoms,
    final: Atoms,
    expensive: CalcFactory,
    nimages: int = 9,
    fmax: float = 0.05,
    steps: int = 500,
    interpolation: str = "linear",
    relax_endpoints: bool = True,
    late_climb_fmax: float | None = None,
    perturb: float = 0.0,
    symmetric_ends: bool = False,
    endpoint_fmax: float | None = None,
) -> NEBResult:
    """The seed's procedure: CI-NEB from scratch with the expensive calculator.

    Steps: relax both endpoints (BFGS, expensive) -> interpolate (linear: the seed's band;
    IDPP: the accelerated procedure's; ``perturb`` as in :func:`interpolate_band`) -> CI-NEB
    (FIRE; climbing image from the first step, or with ``late_climb_fmax`` once the plain
    band is below that force) until every image force is below ``fmax`` or ``steps`` steps.
    ``endpoint_fmax`` (eV/Å; default ``fmax``): the end points' relaxation threshold.
    """
    start, ends, counter = time.perf_counter(), CallCounter(), CallCounter()
    end_fmax = endpoint_fmax or fmax
    initial, final, status, end_forces, mapped = _endpoints(
        initial, final, expensive, end_fmax, ends, relax_endpoints, symmetric=symmetric_ends
    )
    band = interpolate_band(initial, final, nimages, interpolation, perturb)
    _attach(band, [CountingCalculator(expensive(i + 1), counter) for i in range(nimages)])
    log.info("endpoints done (%d expensive calls); plain CI-NEB starts", ends.calls)
    converged, taken = optimize_band(band, fmax, steps, climb=True, late_climb_fmax=late_climb_fmax)
    log.info("plain CI-NEB: converged=%s in %d steps", converged, taken)
    record = {
        "procedure": f"plain ({interpolation})",
        "endpoints_converged": status,
        "expensive_calls": counter.calls + ends.calls,
        "expensive_seconds": counter.seconds + ends.seconds,
        "endpoint_calls": ends.calls,
        "steps": taken,
        "wall_s": time.perf_counter() - start,
        "meta": {"endpoint_max_force_eV_A": end_forces, "fmax": fmax, "endpoint_fmax": end_fmax,
                 "final_end_mapped": mapped},
    }  # fmt: skip
    return _result(band, list(range(1, nimages + 1)), converged, record)


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


def _cheap_band(
    initial: Atoms, final: Atoms, cheap: Calculator, nimages: int, interpolation: str,
    fmax: float, steps: int, perturb: float = 0.0,
) -> list[Atoms]:  # fmt: skip
    """The interpolated band converged with the cheap calculator (climbing image late)."""
    band = interpolate_band(initial, final, nimages, interpolation, perturb)
    pre = [initial.copy(), *band[1:-1], final.copy()]
    for atoms in pre:
        atoms.calc = cheap
    pre[0], pre[-1] = freeze(pre[0], *_ef(pre[0])), freeze(pre[-1], *_ef(pre[-1]))
    if steps > 0:
        late = max(0.3, fmax * 4)
        ok, taken = optimize_band(pre, fmax, steps, climb=True, late_climb_fmax=late, shared=True)
        log.info("cheap NEB: converged=%s in %d steps", ok, taken)
    return [initial, *pre[1:-1], final]


def _refine_on_expensive(
    band: list[Atoms],
    span: tuple[int, int],
    expensive: CalcFactory,
    cheap: Calculator,
    counter: CallCounter,
    options: dict[str, Any],
) -> Refinement:
    """Converge ``band[lo+1:hi]`` on the expensive surface in place; return the refinement.

    The frozen window edges (when inside the band) and every image outside the window get
    one expensive evaluation each, so the whole-band test can be made on expensive forces.
    ``options`` are :func:`~perovflow.workflows.neb_gp.refine_band`'s ``fmax``,
    ``outer_steps``, ``trust``, ``move_above`` and ``length``.
    """
    lo, hi = span
    nimages = len(band) - 2
    for edge in (lo, hi):
        if 0 < edge < nimages + 1:
            band[edge] = _freeze_expensive(band[edge], expensive(edge), counter)
    calcs = [CountingCalculator(expensive(i), counter) for i in range(lo + 1, hi)]
    sub = band[lo : hi + 1]
    refinement = refine_band(sub, calcs, cheap, **options)
    for i, (_pos, energy, forces) in refinement.known.items():
        band[lo + i] = freeze(sub[i], energy, forces)
    for i in range(1, nimages + 1):
        if not lo <= i <= hi:
            band[i] = _freeze_expensive(band[i], expensive(i), counter)
    return refinement


def _save(chk: NEBCheckpoint, path: str | Path | None) -> None:
    if path is not None:
        chk.save(path)


def _start(
    initial: Atoms, final: Atoms, expensive: CalcFactory, fmax: float, counter: CallCounter,
    relax: bool, cheap: Calculator, symmetric: bool, checkpoint: str | Path | None,
) -> tuple[Atoms, Atoms, NEBCheckpoint]:  # fmt: skip
    """The frozen end points and the checkpoint: read from ``checkpoint`` when it exists,
    else made now (:func:`_endpoints`) and written there."""
    chk = NEBCheckpoint.load(checkpoint) if checkpoint is not None else None
    if chk is not None:
        log.info("resumed from %s (round %s)", checkpoint, getattr(chk.refine, "outer", "none"))
        return *chk.end_atoms(initial), chk
    initial, final, status, end_forces, mapped = _endpoints(
        initial, final, expensive, fmax, counter, relax, cheap, symmetric
    )
    ends = [(e.get_positions(), *_ef(e)) for e in (initial, final)]
    chk = NEBCheckpoint(ends, status, end_forces, mapped, counter.calls)
    _save(chk, checkpoint)
    return initial, final, chk


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
    window: int | None = None,
    gp_length: float = 2.0,
    move_above: float = 1.0,
    perturb: float = 0.0,
    symmetric_ends: bool = False,
    checkpoint: str | Path | None = None,
    revert: bool = False,
    endpoint_fmax: float | None = None,
) -> NEBResult:
    """NEB with few expensive force calls, converged to the plain procedure's test.

    Steps: relax both endpoints (cheap pre-relax, then surrogate relax with the expensive
    calculator) -> IDPP band (``perturb``: see :func:`interpolate_band`) -> CI-NEB converged with the cheap calculator (``cheap_steps``;
    0 skips it) -> the band converged on the expensive surface through the Δ-model surrogate
    (:func:`~perovflow.workflows.neb_gp.refine_band`, at most ``outer_steps`` rounds) until
    every image's expensive NEB force, the climbing image's included, is below ``fmax``.

    ``window=k`` (the windowed mode) refines only the highest cheap image and ``k`` neighbours
    on each side between frozen expensive neighbours; the outer images get one expensive
    evaluation each. The barrier then comes from the refined images only
    (``result.refined``), and ``converged`` is the whole-band test on the final band, which
    the unrefined images usually fail.

    A band from another start (the seed's linear one) can end on another saddle: on the
    Cs4PbBr6 Br hop there are several (see ``benchmarks/bench_neb.py``).

    ``revert`` rejects a round whose expensive residual rises above the lowest so far
    (the band steps again from the lowest one with a halved trust radius; ``refine_band``).
    ``endpoint_fmax`` (eV/Å; default ``fmax``): the end points' relaxation threshold (a
    flat landscape, such as octahedral tilts, needs it tighter than the band's).

    ``checkpoint`` (a JSON path; :class:`~perovflow.workflows.neb_checkpoint.NEBCheckpoint`)
    is written after the end points and after every expensive round; when it exists, the run
    continues from it (end points, band, Δ-model data, trust radius, call counts) without
    repeating a call - on any machine, unlike a replay of stored calls.
    """
    if checkpoint is not None and window is not None:
        raise ValueError("checkpoint needs the whole-band mode (fix: window=None)")
    start = time.perf_counter()
    ends, counter, cheap_count = CallCounter(), CallCounter(), CallCounter()
    cheap = CountingCalculator(cheap, cheap_count)
    end_fmax = endpoint_fmax or fmax
    initial, final, chk = _start(
        initial, final, expensive, end_fmax, ends, relax_endpoints, cheap, symmetric_ends,
        checkpoint,
    )  # fmt: skip
    log.info("endpoints done (%d expensive calls); cheap NEB starts", chk.endpoint_calls)
    state = chk.refine
    steps = 0 if state is not None else cheap_steps
    band = _cheap_band(initial, final, cheap, nimages, interpolation, fmax, steps, perturb)
    lo, hi = _window(band, window)
    base_band, base_cheap = chk.band_calls, chk.cheap_calls

    def on_round(new: RefineState) -> None:
        chk.refine, chk.band_calls = new, base_band + counter.calls
        chk.cheap_calls = base_cheap + cheap_count.calls
        _save(chk, checkpoint)

    refinement = _refine_on_expensive(
        band, (lo, hi), expensive, cheap, counter,
        {"fmax": fmax, "outer_steps": outer_steps, "trust": trust, "move_above": move_above,
         "length": gp_length, "revert": revert, "state": state, "on_round": on_round},
    )  # fmt: skip
    whole = float(neb_residuals(band, _known(band)).max())
    record = {
        "procedure": "accelerated" if window is None else f"accelerated (window {window})",
        "endpoints_converged": chk.endpoints_converged,
        "expensive_calls": base_band + counter.calls + chk.endpoint_calls,
        "expensive_seconds": counter.seconds + ends.seconds,
        "cheap_calls": base_cheap + cheap_count.calls,
        "endpoint_calls": chk.endpoint_calls,
        "steps": refinement.outer,
        "wall_s": time.perf_counter() - start,
        "history": refinement.history,
        "meta": {"endpoint_max_force_eV_A": chk.endpoint_max_force, "fmax": fmax,
                 "endpoint_fmax": end_fmax,
                 "refined_converged": refinement.converged,
                 "final_end_mapped": chk.final_end_mapped},
    }  # fmt: skip
    return _result(band, list(range(lo + 1, hi)), whole < fmax, record)
