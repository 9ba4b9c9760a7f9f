"""Images between two NEB end points: linear (minimum image) or IDPP-refined.

The IDPP refinement is pymatgen's :class:`~pymatgen.analysis.diffusion.neb.pathfinder.IDPPSolver`
(image-dependent pair potential, Smidstrup et al. 2014); this module adds the checks on the
end points and on overlapping atoms. End points come from
:func:`perovflow.structures.paths.hop_endpoints`.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Literal

import numpy as np

from perovflow.errors import InputError

if TYPE_CHECKING:
    from pymatgen.core import Structure

# Images fail when two atoms come closer than this fraction of their covalent-radius sum.
# 0.6, not 0.7: Cs's covalent radius (2.44 Å) is far above its ionic one, and the straight
# B'-B' hop of Cs2NaBiCl6 passes two Cs at 2.71 Å (0.66 of the Na+Cs sum) in every
# interpolation, including the linear one seed 004 used. Real overlaps sit far below 0.6.
OVERLAP_FACTOR = 0.6


def _linear(initial: Structure, final: Structure, nimages: int) -> list[Structure]:
    """Linear images with minimum-image displacements (ties keep the stored direction)."""
    disp = final.frac_coords - initial.frac_coords
    disp -= np.round(disp)  # numpy rounds half to even: a stored +-0.5 hop keeps its sign
    images = []
    for k in range(nimages + 2):
        img = initial.copy()
        coords = initial.frac_coords + disp * k / (nimages + 1)
        for i, c in enumerate(coords):
            img.translate_sites([i], c - img[i].frac_coords, frac_coords=True, to_unit_cell=False)
        images.append(img)
    return images


def min_distance_ratio(images: list[Structure]) -> float:
    """Smallest interatomic distance / covalent-radius sum over all ``images``.

    Values below :data:`OVERLAP_FACTOR` (0.6) mean overlapping atoms.
    """
    from ase.data import covalent_radii

    worst = np.inf
    for img in images:
        radii = np.array([covalent_radii[site.specie.Z] for site in img])
        dist = img.distance_matrix
        ratio = dist / (radii[:, None] + radii[None, :])
        np.fill_diagonal(ratio, np.inf)
        worst = min(worst, float(ratio.min()))
    return worst


def interpolate(
    initial: Structure,
    final: Structure,
    nimages: int = 9,
    method: Literal["idpp", "linear"] = "idpp",
    idpp_steps: int = 500,
    min_ratio: float = OVERLAP_FACTOR,
) -> list[Structure]:
    """Interpolate ``nimages`` intermediate images between two end points.

    Parameters
    ----------
    initial, final
        End points with the same lattice, species and atom order (see :func:`hop_endpoints`).
    nimages
        Number of intermediate images (seed 004 used 9).
    method
        ``"idpp"``: linear guess refined with pymatgen's IDPPSolver (image-dependent pair
        potential, Smidstrup et al. 2014); ``"linear"``: straight lines (minimum image).
    idpp_steps
        Maximum IDPP iterations (~20 ms each for 80 atoms and 9 images).
    min_ratio
        IDPP images fail when two atoms come closer than ``min_ratio`` x their covalent
        radius sum (see :data:`OVERLAP_FACTOR`).

    Returns
    -------
    list[Structure]
        ``nimages + 2`` structures, end points included.

    Raises
    ------
    InputError
        Mismatched end points, ``nimages < 1``, unknown method, or IDPP images in which two
        atoms come closer than ``min_ratio`` x their covalent-radius sum.
    """
    _check_request(initial, final, nimages, method)
    images = _linear(initial, final, nimages)
    if method == "linear":
        return images
    return _idpp(images, idpp_steps, min_ratio)


def _check_request(initial: Structure, final: Structure, nimages: int, method: str) -> None:
    """One-line errors for ``nimages < 1``, an unknown method or mismatched end points."""
    if nimages < 1:
        raise InputError(f"nimages must be at least 1, got {nimages}", "use e.g. --images 9")
    if method not in ("idpp", "linear"):
        raise InputError(f"unknown interpolation method {method!r}", "use idpp or linear")
    if [s.specie for s in initial] != [s.specie for s in final]:
        raise InputError(
            "end points differ in species or atom order",
            "build both with perovflow.structures.paths.hop_endpoints",
        )
    if not np.allclose(initial.lattice.matrix, final.lattice.matrix, atol=1e-6):
        raise InputError("end points have different cells", "use end points with the same lattice")


def _idpp(images: list[Structure], idpp_steps: int, min_ratio: float) -> list[Structure]:
    """Refine linear images with pymatgen's IDPPSolver; overlapping atoms are an error."""
    from pymatgen.analysis.diffusion.neb.pathfinder import IDPPSolver

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "maximum iteration number reached" is expected
        refined = IDPPSolver(images).run(maxiter=idpp_steps, tol=1e-5, gtol=1e-3)
    ratio = min_distance_ratio(refined)
    if ratio < min_ratio:
        raise InputError(
            f"IDPP images bring two atoms to {ratio:.2f} x their covalent-radius sum",
            "use more images or check that the end points belong to the same hop",
        )
    return refined
