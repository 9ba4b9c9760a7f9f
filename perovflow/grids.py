"""Periodic grids of a cell (electrostatic potentials): planar and atomic-site averages.

Shared by the engines (which store a potential's averages in the task document) and the
analysis (finite-size corrections). Grids are indexed ``data[i, j, k]`` at fractional
coordinates ``(i/n1, j/n2, k/n3)``, as Gaussian cube files and QE ``filplot`` files hold them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: width (Å) of the Gaussian weight around an atom for its site potential
SITE_SIGMA_A = 0.5


def planar_average(data: np.ndarray, axis: int) -> np.ndarray:
    """Average of a 3-D grid over the planes normal to lattice direction ``axis``."""
    others = tuple(i for i in range(3) if i != axis)
    return np.asarray(data, dtype=float).mean(axis=others)


def planar_averages(data: np.ndarray) -> dict[int, np.ndarray]:
    """Planar averages along the three lattice directions."""
    return {ax: planar_average(data, ax) for ax in range(3)}


def site_averages(
    data: np.ndarray, matrix: Any, frac_coords: Any, sigma_A: float = SITE_SIGMA_A
) -> np.ndarray:
    """Gaussian-weighted average of a periodic grid around each site (one value per site).

    The weight ``exp(-d²/2σ²)`` (cut at 3σ) is centred on the site itself, so an atom's own
    core potential, which moves with the atom, is sampled the same way in a relaxed defect
    cell and in the bulk: the difference of the two is the long-range potential that the
    eFNV correction aligns (Kumagai & Oba, PRB 89, 195205 (2014)).
    """
    grid = np.asarray(data, dtype=float)
    shape = np.array(grid.shape)
    matrix = np.asarray(matrix, dtype=float)
    cut = 3.0 * sigma_A
    # fractional half-width of a sphere of radius ``cut`` along each axis: cut * |b_i|
    half = np.ceil(cut * np.linalg.norm(np.linalg.inv(matrix).T, axis=1) * shape).astype(int)
    offsets = [np.arange(-h, h + 1) for h in half]
    out = []
    for f in np.asarray(frac_coords, dtype=float) % 1.0:
        centre = np.rint(f * shape).astype(int)
        idx = [c + o for c, o in zip(centre, offsets, strict=True)]
        frac = np.stack(np.meshgrid(*[i / n for i, n in zip(idx, shape, strict=True)],
                                    indexing="ij"), axis=-1) - f  # fmt: skip
        dist2 = np.sum((frac @ matrix) ** 2, axis=-1)
        w = np.where(dist2 < cut * cut, np.exp(-dist2 / (2 * sigma_A**2)), 0.0)
        block = grid[np.ix_(*[i % n for i, n in zip(idx, shape, strict=True)])]
        out.append(float(np.sum(w * block) / np.sum(w)))
    return np.array(out)


def potential_record(
    data_eV: np.ndarray, matrix: Any, frac_coords: Any, path: str, source: str
) -> dict[str, Any]:
    """What a task document keeps of a potential (eV, electron potential energy).

    The file stays in the job folder; the document holds its path, the planar averages
    (Freysoldt) and the site potentials (eFNV), which the additional store keeps.
    """
    return {
        "file": str(path),
        "source": source,
        "units": "eV",
        "convention": "potential energy of an electron (as VASP LOCPOT)",
        "grid_shape": [int(n) for n in np.shape(data_eV)],
        "planar_averages_eV": {
            str(ax): np.round(v, 6).tolist() for ax, v in planar_averages(data_eV).items()
        },
        "site_potentials_eV": np.round(site_averages(data_eV, matrix, frac_coords), 6).tolist(),
        "site_sigma_A": SITE_SIGMA_A,
    }
