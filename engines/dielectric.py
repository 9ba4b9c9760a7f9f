"""Dielectric tensors from linear response: the document and the ionic (phonon) term.

Every engine that gets the electronic tensor ε∞, the Born effective charges Z* and the
Γ-point force constants returns a :class:`DielectricDocument`. The static tensor follows
from the Γ modes (Gonze & Lee, Phys. Rev. B 55, 10355 (1997), eq. 58), in Hartree atomic
units::

    ε0_ab = ε∞_ab + 4π/Ω Σ_m p_m,a p_m,b / ω_m²,    p_m,a = Σ_κβ Z*_κ,aβ e_m,κβ / √M_κ

with e_m the eigenvectors of the mass-scaled dynamical matrix and the three acoustic modes
left out. Both acoustic sum rules are applied first: the Born charges sum to zero (their mean
is removed) and each atom's self force constant is reset so that a rigid translation costs
nothing (QE's ``asr='simple'``; the acoustic modes then sit at exactly zero). Anisotropic tensors are kept whole (3x3 lists).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from perovflow.errors import EngineError

AMU_ME = 1822.888486  # atomic mass unit in electron masses
HA_CM = 219474.6313705  # 1 Hartree in cm⁻¹
BOHR_A = 0.529177210903


class DielectricDocument(BaseModel):
    """ε∞, Born charges, Γ phonons and ε0 of one insulating cell (3x3 lists, Cartesian)."""

    code: str = Field(description="Engine that computed it (qe, cp2k).")
    method: str = Field(description="How, e.g. 'DFPT (ph.x epsil+trans)'.")
    formula: str = Field(description="Reduced formula of the cell.")
    volume_A3: float = Field(description="Cell volume (Å³).")
    epsilon_electronic: list[list[float]] = Field(description="ε∞ (clamped ions), 3x3.")
    born_charges: list[list[list[float]]] | None = Field(
        None, description="Z*_κ,ab per atom (a: field, b: displacement), sum rule applied."
    )
    phonon_frequencies_cm: list[float] | None = Field(
        None, description="Γ frequencies (cm⁻¹) after the acoustic sum rule, ascending."
    )
    epsilon_ionic: list[list[float]] | None = Field(None, description="Ionic term, 3x3.")
    epsilon_static: list[list[float]] | None = Field(None, description="ε0 = ε∞ + ionic, 3x3.")
    epsilon_static_check: list[list[float]] | None = Field(
        None, description="ε0 from an independent program (QE: dynmat.x, lperm), 3x3."
    )
    isotropic: bool = Field(description="Whether ε∞ and ε0 are multiples of the unit matrix.")
    structure: dict[str, Any] | None = Field(None, description="pymatgen Structure as dict.")
    dir_name: str | None = Field(None, description="Folder of the run.")
    calc_hash: str | None = Field(None, description="Hash of the scf it rests on.")
    source: str = Field("computed", description="'computed' or where a given tensor is from.")

    def average(self, which: str = "epsilon_static") -> float | None:
        """One third of the trace of ``which`` (the isotropic value Freysoldt needs)."""
        tensor = getattr(self, which)
        return None if tensor is None else float(np.trace(np.asarray(tensor)) / 3)


def born_sum_rule(born: np.ndarray) -> np.ndarray:
    """Born charges (N, 3, 3) with their mean removed, so that Σ_κ Z*_κ = 0."""
    born = np.asarray(born, dtype=float)
    return born - born.mean(axis=0)


def force_constant_sum_rule(dynmat: np.ndarray) -> np.ndarray:
    """Γ force constants (3N, 3N) with each atom's self term reset so that every row of
    blocks sums to zero: Φ_κκ = -Σ_κ'≠κ Φ_κκ' (QE's ``asr='simple'``).

    The violation is a spurious on-site spring (a rigid translation costs energy on the
    real-space grid); resetting the self term removes it rather than spreading it over the
    optical modes. The result is symmetrised.
    """
    fc = np.array(dynmat, dtype=float)
    n = fc.shape[0] // 3
    for k in range(n):
        rows = slice(3 * k, 3 * k + 3)
        others = sum(fc[rows, 3 * j : 3 * j + 3] for j in range(n) if j != k)
        fc[rows, rows] = -others if n > 1 else 0.0
    return 0.5 * (fc + fc.T)


def gamma_modes(dynmat: np.ndarray, masses_me: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Γ frequencies (Hartree, negative for unstable modes) and eigenvectors (columns) of
    the mass-scaled dynamical matrix, after :func:`force_constant_sum_rule`."""
    sqrt_m = np.repeat(np.sqrt(masses_me), 3)
    scaled = force_constant_sum_rule(dynmat) / np.outer(sqrt_m, sqrt_m)
    w2, vecs = np.linalg.eigh(scaled)
    return np.sign(w2) * np.sqrt(np.abs(w2)), vecs


def ionic_dielectric(
    born: np.ndarray, dynmat: np.ndarray, masses_me: np.ndarray, volume_bohr3: float
) -> tuple[np.ndarray, np.ndarray]:
    """Ionic dielectric tensor (3x3) and the Γ frequencies (cm⁻¹), sum rules applied.

    Parameters
    ----------
    born
        Born charges Z*_κ,ab (N, 3, 3), a the field direction, b the displacement.
    dynmat
        Γ force constants (3N, 3N) in Hartree/bohr², atom-major (κ, b) ordering.
    masses_me
        Atomic masses (N,) in electron masses.
    volume_bohr3
        Cell volume (bohr³).

    Raises
    ------
    EngineError
        If an optical mode is unstable (imaginary): the cell is not at a minimum.
    """
    z = born_sum_rule(born)
    omega, vecs = gamma_modes(dynmat, masses_me)
    sqrt_m = np.repeat(np.sqrt(masses_me), 3)
    zflat = z.transpose(1, 0, 2).reshape(3, -1)  # (a, κb)
    optical = np.ones(len(omega), dtype=bool)
    optical[np.argsort(np.abs(omega))[:3]] = False  # the three translations, now at zero
    if np.any(omega[optical] < 0):
        worst = float(omega[optical].min() * HA_CM)
        raise EngineError(
            f"an optical Γ mode is unstable ({worst:.1f} cm⁻¹): the cell is not at a minimum",
            "relax the cell (vc-relax) at the same settings before computing ε0",
        )
    p = zflat @ (vecs[:, optical] / sqrt_m[:, None])  # (3, modes)
    eps = 4 * np.pi / volume_bohr3 * (p / omega[optical] ** 2) @ p.T
    return 0.5 * (eps + eps.T), np.sort(omega * HA_CM)


def is_isotropic(tensor: Any, tol: float = 1e-3) -> bool:
    """Whether a 3x3 tensor is a multiple of the unit matrix (relative ``tol``)."""
    t = np.asarray(tensor, dtype=float)
    avg = np.trace(t) / 3
    return bool(np.abs(t - avg * np.eye(3)).max() <= tol * max(abs(avg), 1e-12))


def tensor_list(tensor: Any, digits: int = 6) -> list[list[float]]:
    """A 3x3 array as nested lists of rounded floats (JSON-friendly, whole tensor kept)."""
    return np.round(np.asarray(tensor, dtype=float), digits).tolist()
