"""Δ-learning surrogate for NEB: expensive ≈ cheap + offset + Gaussian process.

The surrogate of the accelerated NEB (:func:`perovflow.workflows.neb.accelerated_neb`) is a
Gaussian process with energy *and force* observations (Koistinen et al., J. Chem. Phys. 147,
152720 (2017); Torres et al., PRL 122, 156001 (2019) - refs 60-61 of seed 004) whose prior
mean is the cheap ML potential plus a constant. The process learns only the *difference*
between the two models from every expensive call made so far, so the surrogate improves with
each call instead of forgetting everything but the last geometry (a force-shift correction).
Far from the data it falls back to the cheap potential.

The regression itself is ASE's (``ase.optimize.gpmin``: squared-exponential kernel with
derivatives, Cholesky solve); this module adds the cheap-model prior, data bookkeeping and
an ASE calculator for the band.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.optimize.gpmin.gp import GaussianProcess
from ase.optimize.gpmin.kernel import SquaredExponential
from ase.optimize.gpmin.prior import Prior


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
