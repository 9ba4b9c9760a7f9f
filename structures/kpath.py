"""High-symmetry k-paths expressed in the reciprocal basis of the cell that is calculated.

pymatgen's ``HighSymmKpath`` (Setyawan–Curtarolo, Comput. Mater. Sci. 49, 299 (2010))
gives the path in the reciprocal basis of *its* standard primitive cell, which is rotated
and re-chosen with respect to the user's cell. A bands run has to use the cell of the scf
whose charge density it reads, so instead of switching cells the path is carried over:

1. the standard primitive ``P`` (pymatgen frame) is aligned onto a primitive cell of the
   reference structure (user frame) by a lattice mapping (rotation + unimodular integer
   matrix), checked on the atoms so that the mapping is a symmetry of the crystal and not
   only of its lattice;
2. the cell that is calculated is written on that primitive cell, ``L_cell = M L_P``
   (rows are lattice vectors, ``M`` integer, ``det M`` = number of primitive cells);
3. a k-point with fractional coordinates ``f_P`` in the basis of ``P`` has coordinates
   ``f = M f_P`` in the reciprocal basis of the cell (exact, integer arithmetic).

For a supercell or a defect cell with ``reference`` = the pristine host, the path is the
host's path, folded into the smaller Brillouin zone of the cell: every labelled point is the
host's point of that name (its bands are the folded host bands there). Without a reference,
a cell gets the path of its own symmetry.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np

from perovflow.errors import InputError

#: Unicode forms of the LaTeX-like label names pymatgen uses (``\\Gamma``, ``B_1``)
_GREEK = {"\\Gamma": "Γ", "\\Sigma": "Σ", "\\Delta": "Δ", "\\Lambda": "Λ", "\\Pi": "Π"}
_SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def pretty_label(name: str | None) -> str:
    """A k-point label for text and HTML: ``\\Gamma`` -> Γ, ``B_1`` -> B₁ (``V_Br`` unchanged)."""
    if not name:
        return ""
    for tex, uni in _GREEK.items():
        name = name.replace(tex, uni)
    return re.sub(r"_(\d+)", lambda m: m.group(1).translate(_SUBSCRIPTS), name)


def mathtext_label(name: str | None) -> str:
    """A k-point label for matplotlib mathtext: ``\\Gamma`` -> ``$\\Gamma$``, ``B_1`` -> ``$B_1$``."""
    if not name:
        return ""
    return f"${name}$"


@dataclass
class CellKPath:
    """A high-symmetry path in the reciprocal basis of one cell.

    Attributes
    ----------
    points
        Label -> fractional coordinates in the cell's reciprocal basis.
    segments
        Continuous runs of labels (pymatgen's ``kpath["path"]``).
    transformation
        Integer ``M`` with ``L_cell = M L_P`` (rows), ``P`` the standard primitive cell.
    standard_points
        Label -> fractional coordinates in the standard primitive cell (the textbook ones).
    """

    points: dict[str, np.ndarray]
    segments: list[list[str]]
    transformation: np.ndarray
    standard_points: dict[str, np.ndarray]

    @property
    def folded(self) -> bool:
        """True when the cell holds several primitive cells (the path is folded)."""
        return abs(round(float(np.linalg.det(self.transformation)))) > 1


def _to_structure(obj: Any) -> Any:
    from pymatgen.core import Structure

    if isinstance(obj, Structure):
        return obj
    from pymatgen.io.ase import AseAtomsAdaptor

    return AseAtomsAdaptor.get_structure(obj)


def _same_crystal(ref: Any, species: list[str], cart: np.ndarray, tol: float = 0.3) -> bool:
    """Whether the sites (species, Cartesian) are the sites of ``ref`` after a translation."""
    ref_species = np.array([s.specie.symbol for s in ref])
    species = np.array(species)
    rare = min(set(species), key=lambda e: (species == e).sum())
    anchor = cart[int(np.flatnonzero(species == rare)[0])]
    mismatch = species[:, None] != ref_species[None, :]
    for j in np.flatnonzero(ref_species == rare):
        moved = ref.lattice.get_fractional_coords(cart + (ref[j].coords - anchor))
        dist = ref.lattice.get_all_distances(moved, ref.frac_coords)
        dist[mismatch] = np.inf
        if np.all(dist.min(axis=1) < tol):
            return True
    return False


def _align_standard(ref_prim: Any, std_prim: Any) -> np.ndarray:
    """Integer ``S`` with ``L_std (rotated into the user frame) = S L_ref_prim`` (rows)."""
    species = [s.specie.symbol for s in std_prim]
    first = None
    for _aligned, rot, scale in ref_prim.lattice.find_all_mappings(
        std_prim.lattice, ltol=0.02, atol=1.0
    ):
        scale = np.rint(scale).astype(int)
        if np.linalg.det(rot) < 0:  # an improper match: take the inverted basis (-a, -b, -c)
            rot, scale = -rot, -scale
        first = scale if first is None else first
        if _same_crystal(ref_prim, species, np.inner(std_prim.cart_coords, rot)):
            return scale
    if first is None:
        raise InputError(
            "the standard primitive cell does not match the structure's lattice",
            "symmetrise the structure (or give the k-points explicitly with kpts)",
        )
    warnings.warn("k-path: lattice mapping not checked on the atoms", stacklevel=3)
    return first


def _supercell_matrix(cell: np.ndarray, prim: np.ndarray, tol: float = 0.05) -> np.ndarray:
    """Integer ``N`` with ``cell = N prim`` (rows), or an InputError."""
    n = cell @ np.linalg.inv(prim)
    rounded = np.rint(n)
    if np.abs(n - rounded).max() > tol or abs(np.linalg.det(rounded)) < 0.5:
        raise InputError(
            "the cell is not a supercell of the reference structure's lattice",
            "give the pristine cell the defect/supercell was built from as reference",
        )
    return rounded.astype(int)


def cell_kpath(structure: Any, reference: Any = None, symprec: float = 0.01) -> CellKPath:
    """The Setyawan–Curtarolo path of ``reference`` (default: the structure) in the cell's basis.

    Parameters
    ----------
    structure
        The cell the bands are calculated on (pymatgen Structure or ASE Atoms).
    reference
        The crystal whose path is wanted, in the same orientation (the pristine host of a
        defect or supercell); ``structure``'s cell must be a supercell of its lattice.
    symprec
        Symmetry tolerance (Å) for spglib.
    """
    from pymatgen.symmetry.bandstructure import HighSymmKpath

    cell = _to_structure(structure)
    ref = _to_structure(reference) if reference is not None else cell
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "input structure does not match expected standard"
        kp = HighSymmKpath(ref, symprec=symprec, path_type="setyawan_curtarolo")
    ref_prim = ref.get_primitive_structure(tolerance=max(symprec * 10, 0.1))
    scale = _align_standard(ref_prim, kp.prim)
    # L_std = S L_refprim and L_cell = N L_refprim  ->  L_cell = N S^-1 L_std
    n = _supercell_matrix(cell.lattice.matrix, ref_prim.lattice.matrix)
    m = np.rint(n @ np.linalg.inv(scale)).astype(int)
    std = {k: np.asarray(v, dtype=float) for k, v in kp.kpath["kpoints"].items()}
    return CellKPath(
        points={k: m @ v for k, v in std.items()},
        segments=[list(s) for s in kp.kpath["path"]],
        transformation=m,
        standard_points=std,
    )


def _segment_points(a: np.ndarray, b: np.ndarray, recip: np.ndarray, density: float) -> int:
    """Intervals on a segment: ``density`` per Å⁻¹, at least 2 (so a corner is never a jump)."""
    length = float(np.linalg.norm((b - a) @ recip))
    return max(2, int(np.ceil(length * density)))


def path_kpoints(
    structure: Any,
    line_density: float,
    reference: Any = None,
    segments: list[list[str]] | None = None,
) -> tuple[np.ndarray, dict[int, str]]:
    """Explicit k-points (fractional in the cell's reciprocal basis, weight 1) and labels.

    Corners inside a continuous run appear once; between runs (a ``|`` jump) the last point
    of one run and the first of the next are adjacent and both labelled, and every segment
    has at least one interior point, so two adjacent labelled points always mean a jump.

    Parameters
    ----------
    structure, reference
        See :func:`cell_kpath`.
    line_density
        k-points per Å⁻¹ (2π included) along the path.
    segments
        Runs of labels to follow (default: the whole standard path).
    """
    if line_density <= 0:
        raise InputError(f"line density {line_density} must be positive", "use e.g. 20")
    path = cell_kpath(structure, reference)
    recip = _to_structure(structure).lattice.reciprocal_lattice.matrix
    runs = segments or path.segments
    unknown = sorted({n for run in runs for n in run} - set(path.points))
    if unknown:
        raise InputError(
            f"k-point labels {unknown} are not on this lattice's path",
            f"use labels of {sorted(path.points)}",
        )
    kpts: list[np.ndarray] = []
    labels: dict[int, str] = {}
    for run in runs:
        labels[len(kpts)] = run[0]
        kpts.append(path.points[run[0]])
        for start, end in pairwise(run):
            a, b = path.points[start], path.points[end]
            n = _segment_points(a, b, recip, line_density)
            kpts += [a + (b - a) * t for t in np.arange(1, n + 1) / n]
            labels[len(kpts) - 1] = end
    frac = np.array(kpts)
    return np.hstack([frac, np.ones((len(frac), 1))]), labels
