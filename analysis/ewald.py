"""Point charges in an anisotropic dielectric: Ewald potential and lattice energy.

A periodic array of point charges ``q`` (one per cell, with the neutralising background)
in a medium of dielectric tensor ε has, at ``r`` from the charge (Kumagai & Oba, PRB 89,
195205 (2014), eqs. 8-9; Rurali & Cartoixà, Nano Lett. 9, 975 (2009))::

    φ(r) = k q [ 4π/Ω Σ_{G≠0} exp(-G·εG/4γ²) cos(G·r) / (G·εG)
                 + Σ_R erfc(γ d_R) / (√det ε d_R) - π/(Ω γ²) ],
    d_R = √((r + R)·ε⁻¹(r + R)),

whose cell average is zero. The interaction energy of one charge with its images and the
background is ``E_lat = q/2 lim_{r→0} [φ(r) - k q/(√det ε d_0)]``; ``-E_lat`` is the
point-charge correction of the eFNV scheme. Isotropic simple cubic: ``E_lat =
-k q² α_M / (2 ε L)``, α_M = 2.8373. Units: Å, e, eV (k = 14.3996 eV Å).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import erfc

COULOMB_EV_A = 14.399645478425668  # e²/(4πε0) in eV Å
_TOL = 32.0  # exp(-32) ~ 1e-14: where both sums stop


def dielectric_tensor(dielectric: float | Any) -> np.ndarray:
    """A scalar or 3x3 dielectric constant as a 3x3 tensor (kept whole)."""
    eps = np.asarray(dielectric, dtype=float)
    return np.eye(3) * float(eps) if eps.ndim == 0 else eps.reshape(3, 3)


def _split(matrix: np.ndarray, eps: np.ndarray) -> float:
    """Ewald parameter γ (1/Å): both sums then need a few shells."""
    vol = abs(np.linalg.det(matrix))
    return float(np.sqrt(np.pi) / vol ** (1 / 3) / np.linalg.det(eps) ** (1 / 6))


def _shells(matrix: np.ndarray, radius: float) -> np.ndarray:
    """Integer triples n with |n @ matrix| possibly below ``radius`` (a superset)."""
    inv = np.linalg.inv(matrix)
    nmax = np.ceil(radius * np.linalg.norm(inv, axis=0)).astype(int)
    axes = [np.arange(-n, n + 1) for n in nmax]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)


def _real_vectors(matrix: np.ndarray, eps: np.ndarray, gamma: float) -> np.ndarray:
    # d ≥ |r|/√λ_max: |r| up to √(_TOL λ_max)/γ, plus a cell for displacements in it
    radius = np.sqrt(_TOL * np.linalg.eigvalsh(eps).max()) / gamma
    return _shells(matrix, radius + np.linalg.norm(matrix, axis=1).sum()) @ matrix


def _recip_vectors(matrix: np.ndarray, eps: np.ndarray, gamma: float) -> np.ndarray:
    recip = 2 * np.pi * np.linalg.inv(matrix).T
    radius = 2 * gamma * np.sqrt(_TOL / np.linalg.eigvalsh(eps).min())
    g = _shells(recip, radius) @ recip
    return g[np.any(np.abs(g) > 1e-12, axis=1)]


def _ewald_terms(matrix: Any, dielectric: float | Any) -> tuple:
    """What both Ewald sums need: (cell, ε, split γ, volume, ε⁻¹, √det ε, G, G·ε·G)."""
    matrix = np.asarray(matrix, dtype=float)
    eps = dielectric_tensor(dielectric)
    gamma = _split(matrix, eps)
    vol = abs(np.linalg.det(matrix))
    inv_eps, sqrt_det = np.linalg.inv(eps), np.sqrt(np.linalg.det(eps))
    g = _recip_vectors(matrix, eps, gamma)
    geg = np.einsum("ij,jk,ik->i", g, eps, g)
    return matrix, eps, gamma, vol, inv_eps, sqrt_det, g, geg


def point_charge_potential(
    matrix: Any, dielectric: float | Any, displacements: Any, q: float = 1.0
) -> np.ndarray:
    """φ (V) of the periodic point charge ``q`` at Cartesian ``displacements`` (Å) from it.

    ``-q_e φ`` is the potential energy of an electron, the convention of the planar and
    site potentials in :mod:`perovflow.grids`.
    """
    matrix, eps, gamma, vol, inv_eps, sqrt_det, g, geg = _ewald_terms(matrix, dielectric)
    weight = np.exp(-geg / (4 * gamma**2)) / geg
    lattice = _real_vectors(matrix, eps, gamma)
    out = []
    for r in np.atleast_2d(np.asarray(displacements, dtype=float)):
        recip = 4 * np.pi / vol * np.sum(weight * np.cos(g @ r))
        v = r + lattice
        d = np.sqrt(np.einsum("ij,jk,ik->i", v, inv_eps, v))
        real = np.sum(erfc(gamma * d) / d) / sqrt_det
        out.append(recip + real - np.pi / (vol * gamma**2))
    return COULOMB_EV_A * q * np.array(out)


def lattice_energy(matrix: Any, dielectric: float | Any, q: float = 1.0) -> float:
    """E_lat (eV): a point charge's interaction with its periodic images and the background.

    Negative; ``-E_lat`` is the point-charge (Makov–Payne leading) correction.
    """
    matrix, eps, gamma, vol, inv_eps, sqrt_det, _g, geg = _ewald_terms(matrix, dielectric)
    recip = 4 * np.pi / vol * np.sum(np.exp(-geg / (4 * gamma**2)) / geg)
    v = _real_vectors(matrix, eps, gamma)
    v = v[np.linalg.norm(v, axis=1) > 1e-9]
    d = np.sqrt(np.einsum("ij,jk,ik->i", v, inv_eps, v))
    real = np.sum(erfc(gamma * d) / d) / sqrt_det
    self_term = 2 * gamma / (np.sqrt(np.pi) * sqrt_det)
    return float(0.5 * COULOMB_EV_A * q * q * (recip + real - np.pi / (vol * gamma**2) - self_term))
