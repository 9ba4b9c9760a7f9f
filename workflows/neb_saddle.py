"""The saddle of a symmetric hop, found without a band: a symmetry-constrained relaxation.

When a host operation carries one end point of a vacancy hop onto the other, the minimum
energy path is symmetric and - for a single-humped path - its saddle lies on the operation's
fixed set: the configuration that operations reversing the hop leave invariant. Relaxing a
mid-point configuration *within* its own symmetry (ASE's ``FixSymmetry``: forces and steps
symmetrised with the spglib group of the configuration) therefore lands on the saddle: along
the hop the symmetrised force vanishes by symmetry, in every symmetric direction the energy
is minimised. It costs one relaxation of one image instead of a band.

What is checked, not assumed:

* the mid-point group reverses the hop: the relaxed configuration is its own image under
  the hop-reversing operation (``asymmetry_A``, the largest atomic distance between the
  two) - otherwise the constraint would not hold it on the dividing surface and the
  relaxation could fall into an end point;
* the result is a maximum along the hop: one more expensive call at ``x + δτ`` (τ the unit
  hop tangent) gives the curvature ``-(F(x+δτ)·τ)/δ``, negative at a saddle (the symmetric
  force along τ is zero at x). Directions that break the symmetry other than τ are not
  probed: a path that leaves the symmetric plane (a double-humped or curved-away path) would
  make this point a higher-order saddle - compare with a band (:func:`accelerated_neb`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from perovflow.structures.endpoint_symmetry import EndpointMap, endpoint_map, symmetrize_image
from perovflow.workflows.neb_calcs import CallCounter, CountingCalculator, _ef, freeze, max_force

log = logging.getLogger("perovflow.neb")


@dataclass
class SaddleResult:
    """A symmetry-constrained saddle: energies in eV, forces in eV/Å, lengths in Å."""

    atoms: Atoms
    energy_eV: float
    barrier_eV: float
    max_force_eV_A: float
    converged: bool
    expensive_calls: int
    curvature_eV_A2: float
    spacegroup: str
    asymmetry_A: float
    steps: int

    @property
    def is_saddle_along_hop(self) -> bool:
        """Negative curvature along the hop tangent."""
        return self.curvature_eV_A2 < 0

    def summary(self) -> dict:
        """JSON-ready figures."""
        return {"energy_eV": self.energy_eV, "barrier_eV": self.barrier_eV,
                "max_force_eV_A": self.max_force_eV_A, "converged": self.converged,
                "expensive_calls": self.expensive_calls, "curvature_eV_A2": self.curvature_eV_A2,
                "saddle_along_hop": self.is_saddle_along_hop, "spacegroup": self.spacegroup,
                "asymmetry_A": self.asymmetry_A, "steps": self.steps}  # fmt: skip


def _hop(initial: Atoms, final: Atoms) -> np.ndarray:
    """Displacements final - initial under the minimum-image convention (Å)."""
    frac = (final.get_positions() - initial.get_positions()) @ np.linalg.inv(initial.cell[:])
    return (frac - np.round(frac)) @ initial.cell[:]


def _asymmetry(atoms: Atoms, op: EndpointMap) -> float:
    """Largest atomic distance between ``atoms`` and its image under the hop-reversing
    ``op`` (Å): zero on the dividing surface."""
    moved = symmetrize_image(atoms, op).get_positions() - atoms.get_positions()
    return 2 * float(np.linalg.norm(moved, axis=1).max())


def _curvature(
    saddle: Atoms, forces: np.ndarray, hop: np.ndarray, calc: Calculator, probe: float
) -> float:
    """Finite-difference curvature along the unit hop tangent (eV/Å²): one call at
    ``saddle + probe * tangent``; the force along the tangent at the saddle is zero by
    symmetry and subtracted all the same."""
    tangent = hop.reshape(-1) / np.linalg.norm(hop)
    step = saddle.copy()
    step.positions = saddle.positions + probe * tangent.reshape(-1, 3)
    step.calc = calc
    along = float(np.dot(np.asarray(step.get_forces()).reshape(-1), tangent))
    return -(along - float(np.dot(forces.reshape(-1), tangent))) / probe


def midpoint(initial: Atoms, final: Atoms) -> Atoms:
    """The linear mid-point of the two end points (minimum image)."""
    out = initial.copy()
    out.calc = None
    out.positions = initial.positions + 0.5 * _hop(initial, final)
    return out


def symmetric_saddle(
    initial: Atoms,
    final: Atoms,
    expensive: Calculator,
    guess: Atoms | None = None,
    fmax: float = 0.05,
    steps: int = 100,
    symprec: float = 0.05,
    probe: float = 0.02,
    op: EndpointMap | None = None,
) -> SaddleResult:
    """Relax ``guess`` (default: the linear mid-point) inside its own symmetry group.

    ``initial`` and ``final`` are the relaxed end points carrying their energies (frozen, as
    :func:`~perovflow.workflows.neb.accelerated_neb` makes them); ``symprec`` (Å) is the
    tolerance with which the group of ``guess`` is found and the guess symmetrised (it must
    absorb the noise of relaxed end points: ~0.05 Å on the DFT Cl hop); ``probe`` (Å) is the
    step along the hop for the curvature check. ``op`` is a hop-reversing operation
    (:func:`~perovflow.structures.endpoint_symmetry.endpoint_map` with ``swap=True``, best
    from the unrelaxed end points); the guess is first averaged with its image under it
    (:func:`~perovflow.structures.endpoint_symmetry.symmetrize_image`), so it starts on the
    dividing surface. Raises ValueError when there is no such operation or the group found
    does not hold the moving atom between its two sites.
    """
    from ase.constraints import FixSymmetry
    from ase.optimize import BFGS
    from ase.spacegroup.symmetrize import check_symmetry

    hop = _hop(initial, final)
    moving = int(np.argmax(np.linalg.norm(hop, axis=1)))
    op = op if op is not None else endpoint_map(initial, final, tol=symprec, swap=True)
    if op is None:
        raise ValueError("no symmetry operation reverses this hop (fix: the band, accelerated_neb)")
    work = symmetrize_image(guess if guess is not None else midpoint(initial, final), op)
    cell = work.cell[:].copy()
    work.set_constraint(FixSymmetry(work, symprec=symprec, adjust_cell=False))
    if not np.allclose(work.cell[:], cell):
        raise ValueError("symmetrising the guess changed the cell (fix: a smaller symprec)")
    group = check_symmetry(work, 1e-4).international
    if _asymmetry(work, op) > 1e-3:
        raise ValueError(
            f"the mid-point group {group} does not hold atom {moving} between its two sites "
            "(fix: a symmetric hop and guess, or a larger symprec)"
        )
    counter = CallCounter()
    work.calc = CountingCalculator(expensive, counter)
    opt = BFGS(work, logfile=None)
    converged = bool(opt.run(fmax=fmax, steps=steps))
    energy, forces = _ef(work)
    saddle = freeze(work, energy, forces)
    saddle.set_constraint()
    curvature = _curvature(saddle, forces, hop, CountingCalculator(expensive, counter), probe)
    result = SaddleResult(
        atoms=saddle, energy_eV=energy, barrier_eV=energy - float(initial.get_potential_energy()),
        max_force_eV_A=max_force(forces), converged=converged, expensive_calls=counter.calls,
        curvature_eV_A2=curvature, spacegroup=group,
        asymmetry_A=_asymmetry(saddle, op), steps=opt.nsteps,
    )  # fmt: skip
    log.info("symmetric saddle (%s): %.4f eV above the initial state, %d calls, curvature "
             "along the hop %.3f eV/Å²", group, result.barrier_eV, counter.calls, curvature)  # fmt: skip
    return result
