"""Chemical variants: substitutions (B-site alloying) and mixed halides.

Symmetry-distinct arrangements come from the space-group operations of the host cell
(spglib via :class:`~pymatgen.symmetry.analyzer.SpacegroupAnalyzer`): the operations
permute the candidate sites, and two arrangements are equivalent when an operation maps
one onto the other. For one substituted atom this is exactly the set of symmetry-
distinct sites; for several, every combination is reduced to its canonical
(lexicographically smallest) image, which keeps the enumeration exact and tractable.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from perovflow.errors import InputError

if TYPE_CHECKING:
    from pymatgen.core import Structure

SYMPREC = 0.1
MAX_COMBINATIONS = 200_000


@dataclass
class SubstitutionResult:
    """A substituted structure and the arrangement it was picked from.

    Attributes
    ----------
    structure
        The new structure (same site order as the input, species changed).
    n_distinct
        Number of symmetry-distinct arrangements of the substituted atoms.
    multiplicities
        How many equivalent arrangements each distinct one stands for (same order as the
        ``pick`` index).
    label
        Human-readable description, e.g. ``"Na->Ag x1 (arrangement 0 of 1)"``.
    supercell
        Diagonal supercell (e.g. ``"2x1x1"``) made first by :func:`mix_halides`, else None.
    indices
        Site indices that were substituted.
    """

    structure: Structure
    n_distinct: int
    multiplicities: list[int]
    label: str
    supercell: str | None = None
    indices: list[int] = field(default_factory=list)


def _check_element(symbol: str) -> str:
    from pymatgen.core.periodic_table import Element

    try:
        return Element(symbol.strip()).symbol
    except ValueError:
        raise InputError(
            f"'{symbol}' is not a chemical element", "use an element symbol such as Ag or Br"
        ) from None


def _sites_of(structure: Structure, element: str) -> list[int]:
    indices = [i for i, site in enumerate(structure) if site.specie.symbol == element]
    if not indices:
        present = ", ".join(sorted({s.specie.symbol for s in structure}))
        raise InputError(
            f"element {element} is not in the structure ({structure.composition.reduced_formula})",
            f"choose one of {present}",
        )
    return indices


def site_permutations(structure: Structure, indices: list[int]) -> np.ndarray:
    """Return the symmetry operations of ``structure`` as permutations of ``indices``.

    Row k maps position p (of ``indices``) to the position of its image under op k.
    """
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    ops = SpacegroupAnalyzer(structure, symprec=SYMPREC).get_symmetry_operations()
    frac = structure.frac_coords[indices]
    perms = []
    for op in ops:
        image = op.operate_multi(frac)
        delta = image[:, None, :] - frac[None, :, :]
        delta -= np.round(delta)
        dist = np.linalg.norm(delta @ structure.lattice.matrix, axis=2)
        target = dist.argmin(axis=1)
        if dist[np.arange(len(indices)), target].max() < 2 * SYMPREC:
            perms.append(target)
    return np.unique(np.array(perms), axis=0)


def distinct_arrangements(
    structure: Structure, indices: list[int], count: int
) -> list[tuple[tuple[int, ...], int]]:
    """Group the ``count``-subsets of ``indices`` into symmetry-equivalence classes.

    Returns
    -------
    list of (representative, multiplicity)
        Representatives are tuples of site indices, ordered by descending multiplicity
        (the most frequent arrangement first), ties by index.
    """
    total = math.comb(len(indices), count)
    if total > MAX_COMBINATIONS:
        raise InputError(
            f"{total} ways to place {count} atoms on {len(indices)} sites is too many to enumerate",
            "use a smaller supercell or fewer substituted atoms",
        )
    perms = site_permutations(structure, indices)
    classes: dict[tuple[int, ...], int] = {}
    for combo in itertools.combinations(range(len(indices)), count):
        images = np.sort(perms[:, list(combo)], axis=1)
        key = min(map(tuple, images.tolist()))
        classes[key] = classes.get(key, 0) + 1
    ordered = sorted(classes.items(), key=lambda kv: (-kv[1], kv[0]))
    return [(tuple(indices[p] for p in key), mult) for key, mult in ordered]


def substitute(
    structure: Structure, old: str, new: str, count: int, pick: int = 0
) -> SubstitutionResult:
    """Replace ``count`` atoms of ``old`` by ``new``, choosing a symmetry-distinct arrangement.

    Parameters
    ----------
    structure
        Host structure (make the supercell first).
    old, new
        Element symbols.
    count
        Number of atoms to replace (1 <= count <= number of ``old`` sites).
    pick
        Which distinct arrangement to build (0 = the one with the largest multiplicity).

    Raises
    ------
    InputError
        Unknown or absent element, count out of range, pick out of range.
    """
    old, new = _check_element(old), _check_element(new)
    sites = _sites_of(structure, old)
    if not 1 <= count <= len(sites):
        raise InputError(
            f"cannot replace {count} {old} atoms: the structure has {len(sites)} {old} sites",
            f"give a count between 1 and {len(sites)}, or make a supercell first",
        )
    classes = distinct_arrangements(structure, sites, count)
    if not 0 <= pick < len(classes):
        raise InputError(
            f"arrangement {pick} does not exist ({len(classes)} distinct arrangements)",
            f"pick an index between 0 and {len(classes) - 1}",
        )
    chosen = list(classes[pick][0])
    new_structure = structure.copy()
    for index in chosen:
        new_structure.replace(index, new)
    new_structure.properties = dict(structure.properties or {})
    label = f"{old}->{new} x{count} (arrangement {pick} of {len(classes)})"
    return SubstitutionResult(
        new_structure, len(classes), [m for _, m in classes], label, indices=chosen
    )


def _smallest_diagonal(n_cells: int, lattice_abc: tuple[float, float, float]) -> list[int]:
    """Diagonal repeat (n1, n2, n3), n1*n2*n3 == n_cells, most even lengths (ties: 2x1x1 first)."""
    best = None
    for n1 in range(1, n_cells + 1):
        for n2 in range(1, n_cells // n1 + 1):
            if n_cells % (n1 * n2):
                continue
            reps = (n1, n2, n_cells // (n1 * n2))
            lengths = [r * x for r, x in zip(reps, lattice_abc, strict=True)]
            key = (max(lengths) - min(lengths), tuple(-r for r in reps))
            best = key if best is None or key < best else best
    return [-r for r in best[1]]


def mix_halides(
    structure: Structure, old: str, new: str, fraction: float, pick: int = 0
) -> SubstitutionResult:
    """Replace a ``fraction`` of the ``old`` halide sites by ``new`` (e.g. I -> Br).

    If the cell has too few ``old`` sites for the fraction (FASnI2.5Br0.5 needs 1 Br out
    of 6 halides), the smallest diagonal supercell that makes the count an integer is
    built first (the most even one among equal sizes) and reported in ``supercell``.

    Examples
    --------
    FASnI(3-z)Br(z) with z = 0.5 is ``mix_halides(fasni3, "I", "Br", 0.5 / 3)``: a 2x1x1
    supercell with one Br out of six halides.
    """
    from perovflow.structures.supercells import make_supercell

    if not 0 <= fraction <= 1:
        raise InputError(
            f"fraction {fraction} is outside 0..1", "give the fraction of sites to swap"
        )
    old, new = _check_element(old), _check_element(new)
    n_sites = len(_sites_of(structure, old))
    frac = Fraction(fraction).limit_denominator(96)
    n_cells = frac.denominator // math.gcd(frac.denominator, n_sites)
    supercell = None
    if n_cells > 1:
        reps = _smallest_diagonal(n_cells, structure.lattice.abc)
        supercell = "x".join(map(str, reps))
        structure = make_supercell(structure, supercell)
    count = int(frac * n_sites * n_cells)
    if count == 0:
        unchanged = structure.copy()
        return SubstitutionResult(unchanged, 1, [1], f"{old}->{new} x0", supercell)
    result = substitute(structure, old, new, count, pick=pick)
    result.supercell = supercell
    return result
