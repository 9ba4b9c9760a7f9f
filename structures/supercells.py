"""Supercells: explicit matrices ("2x1x1") and near-cubic cells with a minimum image distance.

The image distance of a periodic cell is the length of its shortest non-zero lattice
vector (including combinations such as a+b), i.e. the distance between a defect and its
nearest periodic image. :func:`min_length_supercell` rounds a simple-cubic, fcc or bcc target cell to an integer
matrix (the scheme of pymatgen's CubicSupercellTransformation, which only knows the cube)
and grows it until the exact image distance reaches the requested length; the fcc shape
reaches a given image distance with the fewest atoms.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from perovflow.errors import InputError

if TYPE_CHECKING:
    from pymatgen.core import Structure

_FIX = "give three positive integers like 2x1x1, or a 3x3 integer matrix with positive determinant"
MAX_SUPERCELL_ATOMS = 20000


@dataclass
class SupercellResult:
    """A supercell and how it was made.

    Attributes
    ----------
    structure
        The supercell.
    matrix
        3x3 integer matrix P with ``new_lattice = P @ old_lattice``.
    natoms
        Number of atoms in the supercell.
    image_distance
        Shortest periodic-image distance (Å).
    """

    structure: Structure
    matrix: list[list[int]]
    natoms: int
    image_distance: float


def parse_matrix(spec: str | Sequence) -> np.ndarray:
    """Parse a supercell specification into a 3x3 integer matrix.

    Accepts ``"2x1x1"``, ``"2"`` (= 2x2x2), ``"2 1 1"``, nine integers, ``[2, 1, 1]``
    or a 3x3 nested sequence.

    Raises
    ------
    InputError
        Malformed text, non-integers, or a determinant <= 0.
    """
    if isinstance(spec, str):
        tokens = [t for t in re.split(r"[x×X,;\s]+", spec.strip()) if t]
        try:
            values = [int(t) for t in tokens]
        except ValueError:
            raise InputError(f"cannot read supercell '{spec}'", _FIX) from None
    else:
        try:
            values = np.asarray(spec).ravel().tolist()
        except Exception:
            raise InputError(f"cannot read supercell {spec!r}", _FIX) from None
    if any(float(v) != int(float(v)) for v in values):
        raise InputError(f"supercell {spec!r} has non-integer entries", _FIX)
    values = [int(v) for v in values]
    if len(values) == 1:
        values = values * 3
    if len(values) == 3:
        matrix = np.diag(values)
    elif len(values) == 9:
        matrix = np.array(values).reshape(3, 3)
    else:
        raise InputError(f"supercell {spec!r} needs 1, 3 or 9 integers", _FIX)
    if round(np.linalg.det(matrix)) <= 0:
        raise InputError(f"supercell {spec!r} has determinant <= 0 (zero or inverted cell)", _FIX)
    return matrix.astype(int)


def image_distance(structure: Structure) -> float:
    """Return the shortest non-zero lattice vector (Å) of ``structure``'s cell.

    The lattice is LLL-reduced first; combinations with coefficients in -2..2 of the
    reduced basis then contain the shortest vector for any cell shape.
    """
    return _lattice_image_distance(structure.lattice.matrix)


def make_supercell(structure: Structure, spec: str | Sequence) -> Structure:
    """Return the supercell ``P @ lattice`` (atoms of each original site stay grouped)."""
    matrix = parse_matrix(spec)
    natoms = len(structure) * round(abs(np.linalg.det(matrix)))
    if natoms > MAX_SUPERCELL_ATOMS:
        raise InputError(
            f"supercell {spec!r} would have {natoms} atoms (limit {MAX_SUPERCELL_ATOMS})",
            "use a smaller supercell",
        )
    props = dict(structure.properties or {})
    supercell = structure.make_supercell(matrix, in_place=False)
    supercell.properties = props | {"supercell": matrix.tolist()}
    return supercell


_SHAPES = {  # target cell shapes, scaled so that the shortest lattice vector has length 1
    "sc": np.eye(3),
    "fcc": np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]]) / np.sqrt(2),
    "bcc": np.array([[-1, 1, 1], [1, -1, 1], [1, 1, -1]]) / np.sqrt(3),
}


def _lattice_image_distance(matrix: np.ndarray) -> float:
    from pymatgen.core import Lattice

    basis = Lattice(matrix).get_lll_reduced_lattice().matrix
    combos = np.array([n for n in itertools.product(range(-2, 3), repeat=3) if any(n)])
    return float(np.linalg.norm(combos @ basis, axis=1).min())


def _shaped_candidate(
    cell: np.ndarray, shape: str, min_length: float, max_cells: int
) -> np.ndarray | None:
    """Smallest P (rounded ``d * target @ inv(cell)``, d growing from L) with images >= L."""
    inverse = np.linalg.inv(cell)
    for d in min_length * (1 + 0.01 * np.arange(200)):
        matrix = np.rint(d * _SHAPES[shape] @ inverse).astype(int)
        det = round(np.linalg.det(matrix))
        if det == 0:
            continue
        if det < 0:
            matrix, det = -matrix, -det
        if det > max_cells:
            return None
        if _lattice_image_distance(matrix @ cell) >= min_length - 1e-6:
            return matrix
    return None


def min_length_supercell(
    structure: Structure, min_length: float, max_atoms: int = 2000, shape: str = "auto"
) -> SupercellResult:
    """Return the smallest near-cubic supercell whose periodic images are >= ``min_length`` apart.

    Candidates are the integer matrices closest to a simple-cubic, fcc- or bcc-shaped
    target cell (the rounding scheme of pymatgen's CubicSupercellTransformation,
    extended to the fcc/bcc shapes that pack periodic images most efficiently), grown
    until the image distance reaches ``min_length``.

    Parameters
    ----------
    structure
        The cell to repeat.
    min_length
        Minimum distance (Å) between an atom and its periodic images.
    max_atoms
        Refuse supercells with more atoms than this.
    shape
        ``"auto"`` (fewest atoms; ties prefer sc, then fcc), ``"sc"``, ``"fcc"`` or ``"bcc"``.

    Raises
    ------
    InputError
        ``min_length`` <= 0, unknown shape, or no supercell within ``max_atoms``.
    """
    if not min_length > 0:
        raise InputError(f"minimum length {min_length} Å is not positive", "give L > 0 in Å")
    shapes = list(_SHAPES) if shape == "auto" else [shape]
    if any(s not in _SHAPES for s in shapes):
        raise InputError(f"unknown supercell shape '{shape}'", "use auto, sc, fcc or bcc")
    if (dist := image_distance(structure)) >= min_length:
        return SupercellResult(
            structure.copy(), np.eye(3, dtype=int).tolist(), len(structure), dist
        )
    max_cells = max_atoms // len(structure)
    cell = structure.lattice.matrix
    found = [
        m for s in shapes if (m := _shaped_candidate(cell, s, min_length, max_cells)) is not None
    ]
    if not found:
        raise InputError(
            f"no supercell with periodic images {min_length:g} Å apart within {max_atoms} atoms",
            f"raise --max-atoms (now {max_atoms}) or lower the minimum length",
        )
    matrix = min(found, key=lambda m: round(np.linalg.det(m)))  # stable: sc first on ties
    supercell = structure.make_supercell(matrix, in_place=False)
    supercell.properties = dict(structure.properties or {}) | {"supercell": matrix.tolist()}
    return SupercellResult(supercell, matrix.tolist(), len(supercell), image_distance(supercell))
