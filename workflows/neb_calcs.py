"""Calculator wrappers and relaxations used by the NEB procedures.

* :class:`CountingCalculator` counts the expensive energy+force calls (and their time).
* :class:`ShiftedCalculator` is the surrogate: a cheap model corrected to match the expensive
  energy and forces exactly at a reference geometry, with an optional proximal term.
* :class:`CachedCalculator` stores every result on disk and replays it (restarts).
* :func:`relax_atoms` (BFGS with any calculator) and :func:`surrogate_relax` (few expensive
  calls: cheap pre-relax, then shifted-cheap relaxations).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.singlepoint import SinglePointCalculator

log = logging.getLogger("perovflow.neb")


@dataclass
class CallCounter:
    """How many times a calculator was asked for energy and forces, and how long it took."""

    calls: int = 0
    seconds: float = 0.0


class CountingCalculator(Calculator):
    """Wrap ``inner`` (any ASE calculator); every new geometry is one counted force call."""

    implemented_properties = ("energy", "free_energy", "forces")

    def __init__(self, inner: Calculator, counter: CallCounter) -> None:
        super().__init__()
        self.inner = inner
        self.counter = counter

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        """Run the inner calculator once for energy and forces."""
        super().calculate(atoms, properties, system_changes)
        start = time.perf_counter()
        work = self.atoms.copy()
        energy = float(self.inner.get_potential_energy(work))
        forces = np.array(self.inner.get_forces(work))
        self.counter.calls += 1
        self.counter.seconds += time.perf_counter() - start
        self.results = {"energy": energy, "free_energy": energy, "forces": forces}


class ShiftedCalculator(Calculator):
    """Cheap calculator plus a linear correction that is exact at ``ref`` positions.

    ``E(x) = E_cheap(x) + dE - dF . (x - ref) + k/2 |x - ref|^2`` so that
    ``F(x) = F_cheap(x) + dF - k (x - ref)``; at ``x = ref`` energy and forces equal the
    expensive ones used to build it. The proximal term ``k`` (eV/Å²) keeps steps short
    along directions where the cheap model is much softer than the expensive one.
    """

    implemented_properties = ("energy", "free_energy", "forces")

    def __init__(
        self,
        cheap: Calculator,
        ref: Atoms,
        energy: float,
        forces: np.ndarray,
        stiffness: float = 0.0,
    ) -> None:
        super().__init__()
        self.cheap = cheap
        self.stiffness = stiffness
        self.ref = ref.get_positions()
        probe = ref.copy()
        e_cheap = float(cheap.get_potential_energy(probe))
        self.dE = energy - e_cheap
        self.dF = np.asarray(forces) - np.array(cheap.get_forces(probe))

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        """Cheap energy and forces plus the correction."""
        super().calculate(atoms, properties, system_changes)
        work = self.atoms.copy()
        shift = self.atoms.get_positions() - self.ref
        energy = (
            float(self.cheap.get_potential_energy(work))
            + self.dE
            - float(np.sum(self.dF * shift))
            + 0.5 * self.stiffness * float(np.sum(shift**2))
        )
        forces = np.array(self.cheap.get_forces(work)) + self.dF - self.stiffness * shift
        self.results = {"energy": energy, "free_energy": energy, "forces": forces}


def max_force(forces: np.ndarray) -> float:
    """Largest per-atom force norm in an (n, 3) or (m, n, 3) array (eV/Å)."""
    return float(np.max(np.linalg.norm(np.asarray(forces).reshape(-1, 3), axis=1)))


def freeze(atoms: Atoms, energy: float, forces: np.ndarray) -> Atoms:
    """Copy of ``atoms`` carrying fixed energy and forces (endpoints of a band)."""
    out = atoms.copy()
    out.calc = SinglePointCalculator(out, energy=energy, forces=np.asarray(forces))
    return out


def relax_atoms(
    atoms: Atoms, calc: Calculator, fmax: float, steps: int, counter: CallCounter | None = None
) -> tuple[Atoms, float, np.ndarray, bool]:
    """Relax positions (fixed cell) with BFGS; return (atoms, energy, forces, converged)."""
    from ase.optimize import BFGS

    counter = counter if counter is not None else CallCounter()
    work = atoms.copy()
    work.calc = CountingCalculator(calc, counter)
    converged = bool(BFGS(work, logfile=None).run(fmax=fmax, steps=steps))
    return freeze(work, work.get_potential_energy(), work.get_forces()), *_ef(work), converged


def _ef(atoms: Atoms) -> tuple[float, np.ndarray]:
    return float(atoms.get_potential_energy()), np.array(atoms.get_forces())


def surrogate_relax(
    atoms: Atoms,
    expensive: Calculator,
    cheap: Calculator,
    fmax: float,
    steps: int = 30,
    trust: float = 0.2,
    counter: CallCounter | None = None,
    min_trust: float = 0.01,
) -> tuple[Atoms, float, np.ndarray, bool]:
    """Relax with few expensive calls: cheap pre-relax, then shifted-cheap relaxations.

    Each outer step costs one expensive call; it stops when the expensive forces are below
    ``fmax`` (the same criterion as :func:`relax_atoms`). A step that lowers the expensive
    energy or the largest force widens the trust radius (to 0.3 Å), any other halves it.
    When the radius falls below ``min_trust`` (the surrogate no longer helps: a soft mode
    the cheap model gets wrong) or the surrogate step is not finite, the relaxation
    finishes with BFGS on the expensive calculator from the last expensive geometry (those
    calls counted too).
    """
    from ase.optimize import BFGS

    counter = counter if counter is not None else CallCounter()
    current, *_ = relax_atoms(atoms, cheap, fmax / 2, 300)
    best_e = best_f = np.inf
    for _ in range(steps):
        probe = current.copy()
        probe.calc = CountingCalculator(expensive, counter)
        energy, forces = _ef(probe)
        if max_force(forces) < fmax:
            return freeze(probe, energy, forces), energy, forces, True
        improved = energy < best_e or max_force(forces) < best_f
        trust = min(trust * 1.5, 0.3) if improved else trust * 0.5
        best_e, best_f = min(best_e, energy), min(best_f, max_force(forces))
        work = probe.copy()
        work.calc = ShiftedCalculator(cheap, probe, energy, forces)
        BFGS(work, logfile=None, maxstep=trust).run(fmax=fmax / 3, steps=100)
        if trust < min_trust or not np.isfinite(work.get_positions()).all():
            log.info("surrogate relax stalls (trust %.3g Å): BFGS on the expensive surface", trust)
            return relax_atoms(probe, expensive, fmax, 300, counter)
        current = _clip(probe, work.get_positions(), trust)
    return freeze(probe, energy, forces), energy, forces, False


def _clip(ref: Atoms, new_positions: np.ndarray, trust: float) -> Atoms:
    """``ref`` moved toward ``new_positions`` by at most ``trust`` Å on any atom."""
    step = new_positions - ref.get_positions()
    largest = max_force(step)
    if largest > trust:
        step *= trust / largest
    out = ref.copy()
    out.set_positions(ref.get_positions() + step)
    return out


class CachedCalculator(Calculator):
    """Wrap ``inner``; every result is appended to ``path`` (one JSON line per geometry) and
    replayed from there when the same geometry comes again, so an interrupted NEB (a killed
    benchmark, a lost allocation) restarts without repeating a single expensive call.

    The optimisers are deterministic, but an ML potential's float32 arithmetic is not the
    same on every CPU: a run resumed on another machine retraces the stored geometries only
    to ~1e-5 Å. A geometry within ``tol`` Å (largest atomic displacement; same species and
    cell) of a stored one therefore replays that result too (``near`` counts those and
    ``worst`` is the largest such distance); with a force constant of 10 eV/Å² a 1e-4 Å
    offset changes a force by 1e-3 eV/Å; ``tol=0`` replays exact geometries only. A truncated
    last line (a kill mid-write) is ignored.
    """

    implemented_properties = ("energy", "free_energy", "forces")

    def __init__(self, inner: Calculator, path: str | Path, tol: float = 1e-4) -> None:
        super().__init__()
        self.inner = inner
        self.path = Path(path)
        self.tol = tol
        self.store: dict[str, tuple[float, list]] = {}
        self.geometries: dict[str, tuple[list[np.ndarray], list[str]]] = {}
        self._stacked: dict[str, np.ndarray] = {}
        self.replayed = self.near = 0
        self.worst = 0.0
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                self._remember(row)

    def _remember(self, row: dict) -> None:
        self.store[row["key"]] = (row["energy"], row["forces"])
        if "positions" in row:
            positions, keys = self.geometries.setdefault(row["frame"], ([], []))
            positions.append(np.array(row["positions"], dtype=float))
            keys.append(row["key"])
            self._stacked.pop(row["frame"], None)

    @staticmethod
    def key(atoms: Atoms) -> str:
        """Hash of the species, cell and positions (rounded to 1e-6 Å)."""
        data = [atoms.numbers.tolist(), np.round(atoms.cell[:], 6).tolist(),
                np.round(atoms.get_positions(), 6).tolist()]  # fmt: skip
        return hashlib.sha1(json.dumps(data).encode()).hexdigest()

    @staticmethod
    def frame(atoms: Atoms) -> str:
        """Hash of the species and cell (what a near geometry must share)."""
        data = [atoms.numbers.tolist(), np.round(atoms.cell[:], 6).tolist()]
        return hashlib.sha1(json.dumps(data).encode()).hexdigest()

    def _lookup(self, atoms: Atoms) -> str | None:
        """Key of the stored result for ``atoms``: the same geometry, or one within ``tol``."""
        key = self.key(atoms)
        if key in self.store:
            return key
        frame = self.frame(atoms)
        if self.tol <= 0 or frame not in self.geometries:
            return None
        if frame not in self._stacked:
            self._stacked[frame] = np.stack(self.geometries[frame][0])
        dist = np.linalg.norm(self._stacked[frame] - atoms.get_positions(), axis=2).max(axis=1)
        best = int(np.argmin(dist))
        if dist[best] > self.tol:
            return None
        self.near += 1
        self.worst = max(self.worst, float(dist[best]))
        return self.geometries[frame][1][best]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        """Stored result for this geometry, or the inner calculator's (then stored)."""
        super().calculate(atoms, properties, system_changes)
        key = self._lookup(self.atoms)
        if key is not None:
            energy, forces = self.store[key]
            self.replayed += 1
        else:
            work = self.atoms.copy()
            energy = float(self.inner.get_potential_energy(work))
            forces = np.array(self.inner.get_forces(work)).tolist()
            row = {"key": self.key(self.atoms), "frame": self.frame(self.atoms),
                   "energy": energy, "forces": forces,
                   "positions": self.atoms.get_positions().tolist()}  # fmt: skip
            self._remember(row)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        self.results = {"energy": energy, "free_energy": energy, "forces": np.array(forces)}
