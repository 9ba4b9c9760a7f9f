"""Δ-learning surrogate for NEB: expensive ≈ cheap + offset + Gaussian process.

The surrogate of the accelerated NEB (:func:`perovflow.workflows.neb.accelerated_neb`) is a
Gaussian process with energy *and force* observations (Koistinen et al., J. Chem. Phys. 147,
152720 (2017); Torres et al., PRL 122, 156001 (2019) - refs 60-61 of seed 004) whose prior
mean is the cheap ML potential plus a constant. The process learns only the *difference*
between the two models from every expensive call made so far, so the surrogate improves with
each call instead of forgetting everything but the last geometry (a force-shift correction).
Far from the data it falls back to the cheap potential.

:func:`refine_band` is the loop that uses it: expensive calls only at the images that moved,
the exact expensive NEB forces of the whole band as the convergence test.

The regression itself is ASE's (``ase.optimize.gpmin``: squared-exponential kernel with
derivatives, Cholesky solve); this module adds the cheap-model prior, data bookkeeping and
an ASE calculator for the band.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.singlepoint import SinglePointCalculator
from ase.mep import NEB
from ase.optimize.gpmin.gp import GaussianProcess
from ase.optimize.gpmin.kernel import SquaredExponential
from ase.optimize.gpmin.prior import Prior

from perovflow.workflows.neb_calcs import ShiftedCalculator

log = logging.getLogger("perovflow.neb")


class CheapPrior(Prior):
    """Prior mean ``[E_cheap(x) + offset, ∇E_cheap(x)]``, cached per geometry."""

    def __init__(self, template: Atoms, cheap: Calculator) -> None:
        super().__init__()
        self.atoms = template.copy()
        self.cheap = cheap
        self.offset = 0.0
        self._cache: dict[bytes, np.ndarray] = {}

    def raw(self, x: np.ndarray) -> np.ndarray:
        """Cheap energy and gradient at flattened positions ``x`` (no offset)."""
        key = np.round(x, 10).tobytes()
        if key not in self._cache:
            work = self.atoms.copy()
            work.set_positions(x.reshape(-1, 3))
            energy = float(self.cheap.get_potential_energy(work))
            grad = -np.asarray(self.cheap.get_forces(work)).reshape(-1)
            self._cache[key] = np.concatenate([[energy], grad])
        return self._cache[key]

    def potential(self, x: np.ndarray) -> np.ndarray:
        """Prior mean at ``x`` (what ``GaussianProcess`` subtracts from the data)."""
        out = self.raw(x).copy()
        out[0] += self.offset
        return out


class DeltaModel:
    """Expensive energy and forces predicted as cheap + offset + GP(expensive − cheap).

    Parameters
    ----------
    template
        Atoms with the band's species, cell and atom order.
    cheap
        The cheap calculator (prior mean).
    length
        Kernel length scale (Å, over all 3N coordinates).
    noise
        Regularisation of the force data (eV/Å); energies get ``noise * length``.
    max_rows
        Memory bound: the kernel matrix has ``observations x (3N + 1)`` rows, so only the
        first two observations (the frozen ends) and the most recent ones that fit are kept
        (6,000 rows: a 290 MB matrix; 25 observations of an 80-atom cell, 93 of a 21-atom one).
    """

    def __init__(
        self,
        template: Atoms,
        cheap: Calculator,
        length: float = 0.6,
        noise: float = 0.002,
        max_rows: int = 6000,
    ) -> None:
        self.prior = CheapPrior(template, cheap)
        self.length = length
        self.noise = noise
        self.max_points = max(4, max_rows // (3 * len(template) + 1))
        self.X: list[np.ndarray] = []
        self.Y: list[np.ndarray] = []
        self.gp: GaussianProcess | None = None

    def __len__(self) -> int:
        return len(self.X)

    def add(self, positions: np.ndarray, energy: float, forces: np.ndarray) -> None:
        """One expensive observation (positions in Å, energy in eV, forces in eV/Å)."""
        x = np.asarray(positions, dtype=float).reshape(-1)
        if any(np.allclose(x, old, atol=1e-8) for old in self.X):
            return
        self.X.append(x)
        self.Y.append(np.concatenate([[energy], -np.asarray(forces).reshape(-1)]))
        self.gp = None

    def fit(self) -> None:
        """Train on the kept observations: offset = mean energy difference, kernel weight from
        the RMS force difference."""
        keep = list(range(len(self.X)))
        if len(keep) > self.max_points:
            keep = keep[:2] + keep[len(keep) - (self.max_points - 2) :]
        X, Y = np.array([self.X[i] for i in keep]), np.array([self.Y[i] for i in keep])
        prior = np.array([self.prior.raw(x) for x in X])
        delta = Y - prior
        self.prior.offset = float(np.mean(delta[:, 0]))
        rms_force = float(np.sqrt(np.mean(delta[:, 1:] ** 2)))
        weight = self.length * max(rms_force, 0.02)
        gp = GaussianProcess(prior=self.prior, kernel=SquaredExponential())
        gp.set_hyperparams(np.array([weight, self.length, self.noise]))
        gp.train(X, Y)
        self.gp = gp

    def predict(self, positions: np.ndarray) -> tuple[float, np.ndarray]:
        """Predicted (energy, forces) at ``positions``."""
        if self.gp is None:
            self.fit()
        f = self.gp.predict(np.asarray(positions, dtype=float).reshape(-1))
        return float(f[0]), -f[1:].reshape(-1, 3)


class DeltaCalculator(Calculator):
    """ASE calculator on a :class:`DeltaModel` (energy in eV, forces in eV/Å)."""

    implemented_properties = ("energy", "free_energy", "forces")

    def __init__(self, model: DeltaModel) -> None:
        super().__init__()
        self.model = model

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        """Model energy and forces at the current positions."""
        super().calculate(atoms, properties, system_changes)
        energy, forces = self.model.predict(self.atoms.get_positions())
        self.results = {"energy": energy, "free_energy": energy, "forces": forces}


@dataclass
class BandData:
    """A band's intermediate images (positions, Å) and their expensive data."""

    positions: list[np.ndarray]
    known: dict[int, tuple[np.ndarray, float, np.ndarray]]


@dataclass
class RefineState:
    """Where :func:`refine_band` stands after an expensive round: enough to continue it in
    another process (a checkpoint; see :mod:`perovflow.workflows.neb_checkpoint`).

    ``positions`` are the intermediate images' (Å), ``known`` their expensive (positions,
    energy, forces), ``observations`` every expensive call the Δ-model holds besides the frozen
    ends, ``trust`` and ``best`` the trust radius and lowest residual *before* this round's
    update, ``best_band`` the band that had it (``revert``), ``outer`` the round's index.
    """

    outer: int
    trust: float
    best: float
    positions: list[np.ndarray]
    known: dict[int, tuple[np.ndarray, float, np.ndarray]]
    observations: list[tuple[np.ndarray, float, np.ndarray]]
    history: list[dict[str, Any]] = field(default_factory=list)
    best_band: BandData | None = None


@dataclass
class Refinement:
    """Outcome of :func:`refine_band`: the test result, the expensive data at the final band."""

    converged: bool
    outer: int
    residual: float
    known: dict[int, tuple[np.ndarray, float, np.ndarray]]
    history: list[dict[str, Any]] = field(default_factory=list)


class _PartialNEB(NEB):
    """CI-NEB whose ``frozen`` images get zero force (the optimiser leaves them in place)."""

    def __init__(self, images: list[Atoms], frozen: set[int], **kwargs: Any) -> None:
        super().__init__(images, **kwargs)
        self.frozen = frozen

    def get_forces(self) -> np.ndarray:
        """NEB forces with the frozen images' rows zeroed."""
        forces = super().get_forces().reshape(self.nimages - 2, self.natoms, 3)
        for i in self.frozen:
            forces[i - 1] = 0.0
        return forces.reshape(-1, 3)


def _single_point(atoms: Atoms, energy: float, forces: np.ndarray) -> Atoms:
    out = atoms.copy()
    out.calc = SinglePointCalculator(out, energy=energy, forces=np.asarray(forces))
    return out


def neb_residuals(band: list[Atoms], known: dict[int, tuple]) -> np.ndarray:
    """Per intermediate image, the largest atomic NEB force (climbing image on, eV/Å) from the
    expensive energies and forces in ``known`` (index -> (positions, energy, forces)); the ends
    carry their own frozen values."""
    work = [band[0], *[_single_point(band[i], *known[i][1:]) for i in range(1, len(band) - 1)]]
    neb = NEB([*work, band[-1]], climb=True, method="improvedtangent")
    forces = neb.get_forces().reshape(len(band) - 2, -1, 3)
    return np.linalg.norm(forces, axis=2).max(axis=1)


def _evaluate_moved(
    band: list[Atoms], expensive: list[Calculator], known: dict[int, tuple], model: DeltaModel
) -> int:
    """Expensive energy and forces of every image that moved since its last call; returns the
    number of calls."""
    calls = 0
    for i in range(1, len(band) - 1):
        pos = band[i].get_positions()
        if i in known and np.allclose(known[i][0], pos, atol=1e-10):
            continue
        probe = band[i].copy()
        probe.calc = expensive[i - 1]
        energy, forces = float(probe.get_potential_energy()), np.array(probe.get_forces())
        known[i] = (pos, energy, forces)
        model.add(pos, energy, forces)
        calls += 1
    return calls


def refine_band(
    band: list[Atoms],
    expensive: list[Calculator],
    cheap: Calculator,
    fmax: float,
    outer_steps: int = 40,
    trust: float = 0.3,
    move_above: float = 1.0,
    inner_steps: int = 150,
    length: float = 2.0,
    revert: bool = False,
    state: RefineState | None = None,
    on_round: Callable[[RefineState], None] | None = None,
) -> Refinement:
    """Converge ``band`` (ends frozen with expensive values) on the expensive surface.

    Each outer step: expensive energy and forces at every image that moved (only those), the
    exact expensive NEB forces of the band (climbing image on) from them, and the test
    ``max < fmax`` - the plain procedure's criterion. If it fails, the Δ-model
    (:class:`DeltaModel`, trained on every call so far) is refitted and the images whose NEB
    force exceeds ``move_above * fmax`` take CI-NEB steps on it, the others held in place
    with their exact values, until converged on the model or an atom leaves the trust region
    (``trust`` Å). ``length`` is the kernel length scale (Å over all 3N coordinates; long,
    so the learnt correction persists over a step). The trust radius halves when the
    expensive residual rises and grows by 1.5 (up to its start value) at a new low.
    ``revert``: a round whose residual rises above the lowest so far is rejected - the band
    goes back to the lowest one (the rejected calls stay in the model) and steps again with
    the halved radius, as a trust-region method does.

    ``state`` continues a refinement from a checkpoint (the band, the model's data, the
    trust radius; ``trust`` is then the cap it grows back to); ``on_round`` receives the state
    after each round's expensive calls (to write the checkpoint).
    """
    model = DeltaModel(band[0], cheap, length=length)
    for end in (band[0], band[-1]):
        model.add(end.get_positions(), end.get_potential_energy(), end.get_forces())
    known: dict[int, tuple] = {}
    history: list[dict[str, Any]] = []
    start, best, max_trust, lowest = 0, np.inf, trust, None
    if state is not None:
        start, trust, best, known, history = _restore(band, model, state)
        lowest = state.best_band
    for outer in range(start, outer_steps + 1):
        calls = _evaluate_moved(band, expensive, known, model)
        per_image = neb_residuals(band, known)
        residual = float(per_image.max())
        if not (state is not None and outer == start):  # a restored round is in the history
            history.append({"outer": outer, "max_force": residual, "calls": calls, "trust": trust,
                            "image_forces": [round(float(r), 4) for r in per_image]})  # fmt: skip
        log.info("refine %d: %d expensive calls, NEB max force %.4f eV/Å", outer, calls, residual)
        if on_round is not None:
            on_round(_state(band, outer, trust, best, known, model, history, lowest))
        if residual < fmax or outer == outer_steps:
            break
        if residual < best:
            trust, best = min(trust * 1.5, max_trust), residual
            lowest = BandData([im.get_positions() for im in band[1:-1]], dict(known))
        else:
            trust = max(trust * 0.5, 0.05)
            if revert and lowest is not None:
                known, per_image = _back_to(band, lowest)
                log.info("refine %d rejected (%.4f > %.4f eV/Å): back to that band, trust "
                         "%.3f Å", outer, residual, best, trust)  # fmt: skip
        _step(band, known, model, {i + 1 for i, r in enumerate(per_image) if r < move_above * fmax},
              fmax, inner_steps, trust)  # fmt: skip
    return Refinement(residual < fmax, outer, residual, known, history)


def _back_to(band: list[Atoms], lowest: BandData) -> tuple[dict[int, tuple], np.ndarray]:
    """Put ``lowest``'s images into ``band``; returns its expensive data and NEB forces."""
    _place(band, lowest.positions)
    known = dict(lowest.known)
    return known, neb_residuals(band, known)


def _place(band: list[Atoms], positions: list[np.ndarray]) -> None:
    """Set the intermediate images' positions (Å), in order."""
    for i, image_positions in enumerate(positions, 1):
        band[i].set_positions(np.asarray(image_positions, dtype=float))


def _step(band, known, model: DeltaModel, frozen: set[int], fmax, steps, trust) -> None:
    """One round's surrogate steps (refitted model); anchored when the plain ones stall."""
    model.fit()
    if not _surrogate_steps(band, known, model, frozen, fmax / 2, steps, trust):
        log.info("surrogate converged at the band (its noise floor): steps anchored to the "
                 "last expensive forces")  # fmt: skip
        _surrogate_steps(band, known, model, frozen, fmax / 2, steps, trust, True)


def _restore(band: list[Atoms], model: DeltaModel, state: RefineState) -> tuple:
    """Put a checkpoint's band and data in place; returns (outer, trust, best, known, history)."""
    for positions, energy, forces in state.observations:
        model.add(positions, energy, forces)
    _place(band, state.positions)
    known = {int(i): (np.asarray(p, dtype=float), float(e), np.asarray(f, dtype=float))
             for i, (p, e, f) in state.known.items()}  # fmt: skip
    return state.outer, state.trust, state.best, known, list(state.history)


def _state(band, outer, trust, best, known, model: DeltaModel, history, lowest) -> RefineState:
    """The refinement's state after a round (the model's observations without the two ends)."""
    observations = [(x.reshape(-1, 3), float(y[0]), -y[1:].reshape(-1, 3))
                    for x, y in zip(model.X[2:], model.Y[2:], strict=True)]  # fmt: skip
    return RefineState(outer, trust, best, [im.get_positions() for im in band[1:-1]],
                       dict(known), observations, list(history), lowest)  # fmt: skip


def _surrogate_steps(
    band: list[Atoms],
    known: dict[int, tuple],
    model: DeltaModel,
    frozen: set[int],
    fmax: float,
    steps: int,
    trust: float,
    anchored: bool = False,
) -> bool:
    """CI-NEB (FIRE) on the model until converged or an atom of a moving image leaves the trust
    region around its last expensive geometry; the moving images of ``band`` take the result.
    ``anchored``: each moving image on the model made exact at its last expensive call
    (:class:`~perovflow.workflows.neb_calcs.ShiftedCalculator` around the model: the
    regularised GP reproduces its data only to its noise, ~0.01 eV/Å, which can exceed a
    tight ``fmax``). Returns whether any image moved."""
    from ase.optimize import FIRE

    n = len(band) - 2
    moving = [i for i in range(1, n + 1) if i not in frozen]
    work = [band[0]]
    for i in range(1, n + 1):
        atoms = band[i].copy()
        atoms.calc = SinglePointCalculator(atoms, energy=known[i][1], forces=known[i][2])
        if i in moving:
            surrogate = DeltaCalculator(model)
            if anchored:  # exact at the image's last expensive call
                surrogate = ShiftedCalculator(surrogate, atoms, *known[i][1:])
            atoms.calc = surrogate
        work.append(atoms)
    work.append(band[-1])
    neb = _PartialNEB(work, frozen, climb=True, method="improvedtangent")
    opt = FIRE(neb, logfile=None, maxstep=trust / 2)
    for _ in opt.irun(fmax=fmax, steps=steps):
        steps_ = (work[i].get_positions() - known[i][0] for i in moving)
        if max(float(np.linalg.norm(d, axis=1).max()) for d in steps_) > trust:
            break
    for i in moving:
        step = work[i].get_positions() - known[i][0]
        largest = float(np.linalg.norm(step, axis=1).max())
        if largest > trust:
            step *= trust / largest
        band[i].set_positions(known[i][0] + step)
    return any(not np.allclose(band[i].get_positions(), known[i][0], atol=1e-10) for i in moving)
