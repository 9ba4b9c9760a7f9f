"""Finite nanocrystal models: CsBr-terminated CsPbBr3 cubes and half-sphere heterostructures.

Cube rule (seed 002's "trap-free" ~3.2 nm Cs200Pb125Br450 model). With ``n`` Pb per edge,
the cube is the ``n x n x n`` block of corner-sharing PbBr6 octahedra (``n^3`` Pb,
``3 n^2 (n+1)`` Br) wrapped in the full CsBr shell of A sites, ``(n+1)^3`` Cs. That shell is
``3n + 1`` units too positive (Cs +1, Pb +2, Br -1), so ``3n + 1`` surface Cs are removed: the
eight corners first, then, one at a time, the outermost Cs farthest from those already
removed (a deterministic spread that keeps the dipole small). n = 5 gives Cs200Pb125Br450.

Every site carries a ``domain`` property (material name) for PDOS/IPR by domain.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np

from perovflow.errors import InputError

if TYPE_CHECKING:
    from pymatgen.core import Molecule, Structure

OVERLAP_FACTOR = 0.7
CUBE_DOMAIN = "CsPbBr3"


def _cube_lattice_constant() -> float:
    from perovflow.structures.prototypes import build_prototype

    proto = build_prototype("CsPbBr3-cubic", cell="primitive")
    return float(proto.lattice.abc[0])


def _grid(lo: int, hi: int, dims: int = 3) -> np.ndarray:
    return np.array(list(itertools.product(range(lo, hi + 1), repeat=dims)), dtype=float)


def _cube_sites(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pb, Br and Cs positions in units of the cubic lattice constant (Pb at integers)."""
    pb = _grid(0, n - 1)
    plane = _grid(0, n - 1, 2)
    half = np.arange(n + 1) - 0.5
    br = []
    for axis in range(3):
        for h in half:
            pts = np.insert(plane, axis, h, axis=1)
            br.append(pts)
    cs = _grid(-1, n - 1) + 0.5
    return pb, np.vstack(br), cs


def _spread_removal(points: np.ndarray, count: int) -> list[int]:
    """Pick ``count`` outermost points keeping the removed set's dipole, then clustering, low."""
    radius = np.round(np.linalg.norm(points, axis=1), 6)
    chosen: list[int] = []
    for _ in range(count):
        left = [i for i in range(len(points)) if i not in chosen]
        rmax = max(radius[i] for i in left)
        shell = [i for i in left if radius[i] >= rmax - 1e-6]
        total = points[chosen].sum(axis=0) if chosen else np.zeros(3)

        def score(i: int, total: np.ndarray = total) -> tuple[float, float, int]:
            dip = round(float(np.linalg.norm(total + points[i])), 6)
            near = min((np.linalg.norm(points[i] - points[j]) for j in chosen), default=0.0)
            return dip, -round(float(near), 6), i

        chosen.append(min(shell, key=score))
    return chosen


def csbr_cube(
    edge_cells: int | None = None,
    edge_nm: float | None = None,
    lattice_constant: float | None = None,
) -> Molecule:
    """Build a charge-neutral, CsBr-terminated CsPbBr3 cube.

    Parameters
    ----------
    edge_cells
        Pb per cube edge ``n`` (5 gives seed 002's Cs200Pb125Br450).
    edge_nm
        Edge length instead of ``n``: ``n = round(10 * edge_nm / a)`` (3.2 nm -> 5).
    lattice_constant
        Cubic lattice constant (Å); default: the ``CsPbBr3-cubic`` prototype.

    Returns
    -------
    Molecule
        Centred at the origin, charge 0, site property ``domain = "CsPbBr3"``.
    """
    from pymatgen.core import Molecule

    a = lattice_constant or _cube_lattice_constant()
    if (edge_cells is None) == (edge_nm is None):
        raise InputError(
            "give exactly one of edge_cells and edge_nm", "e.g. --edge 5 or --edge-nm 3.2"
        )
    n = edge_cells if edge_cells is not None else round(10.0 * edge_nm / a)
    if n < 1 or n > 12:
        raise InputError(
            f"cube edge of {n} Pb is out of range", "use 1 to 12 Pb per edge (~0.6-7 nm)"
        )
    pb, br, cs = _cube_sites(n)
    centre = (n - 1) / 2.0
    cs_c = cs - centre
    drop = set(_spread_removal(cs_c, 3 * n + 1))
    cs_c = np.array([p for i, p in enumerate(cs_c) if i not in drop])
    coords = np.vstack([cs_c, pb - centre, br - centre]) * a
    species = ["Cs"] * len(cs_c) + ["Pb"] * len(pb) + ["Br"] * len(br)
    return Molecule(
        species, coords, charge=0, site_properties={"domain": [CUBE_DOMAIN] * len(species)}
    )


def _charges(structure: Structure) -> dict[str, float]:
    """Formal charges per element from pymatgen's oxidation-state guess."""
    guesses = structure.composition.oxi_state_guesses(max_sites=-1)
    if not guesses:
        raise InputError(
            f"cannot assign formal charges to {structure.composition.reduced_formula}",
            "use a charge-balanced bulk structure",
        )
    return {el: float(q) for el, q in guesses[0].items()}


def _bulk_charges(name: str) -> dict[str, float]:
    from perovflow.structures.prototypes import build_prototype

    return _charges(build_prototype(name, cell="primitive"))


def _neutralise(species: list[str], dist: np.ndarray, charges: dict[str, float]) -> list[int]:
    """Indices to drop (outermost first) so that the formal charges sum to zero."""
    q = sum(charges[s] for s in species)
    dropped: list[int] = []
    order = list(np.argsort(-dist, kind="stable"))
    while abs(q) > 1e-6:
        pick = next(
            (
                i
                for i in order
                if i not in dropped
                and charges[species[i]] * q > 0
                and abs(charges[species[i]]) <= abs(q) + 1e-6
            ),
            None,
        )
        if pick is None:  # only larger charges left on that side: overshoot, then fix back
            pick = next(i for i in order if i not in dropped and charges[species[i]] * q > 0)
        dropped.append(pick)
        q -= charges[species[pick]]
    return dropped


def _oriented_bulk(name: str, axis: str, twist_deg: float) -> Structure:
    """Bulk ``name`` rotated so that lattice ``axis`` is along z, twisted by ``twist_deg``."""
    from pymatgen.core.operations import SymmOp

    from perovflow.structures.prototypes import build_prototype

    bulk = build_prototype(name, cell="conventional")
    k = "abc".index(axis)
    normal = bulk.lattice.matrix[k] / np.linalg.norm(bulk.lattice.matrix[k])
    inplane = bulk.lattice.matrix[(k + 1) % 3]
    x = inplane - normal * (inplane @ normal)
    x /= np.linalg.norm(x)
    rot = np.array([x, np.cross(normal, x), normal])
    t = np.radians(twist_deg)
    twist = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    bulk.apply_operation(SymmOp.from_rotation_and_translation(twist @ rot, [0, 0, 0]))
    return bulk


def half_sphere(
    name: str = "Pb4S3Br2",
    radius: float = 21.0,
    axis: str = "b",
    twist_deg: float = 45.0,
    centre_element: str = "Pb",
) -> Molecule:
    """Cut a charge-neutral half-sphere from bulk ``name``; flat face at z = 0, dome to +z.

    The sphere is centred on the ``centre_element`` site nearest the cell centre; the flat
    face is the lattice plane through it normal to ``axis`` (seed 002 aligns the Pb ions of
    Pb4S3Br2 along [010] on the perovskite: ``axis="b"``, in-plane twist 45° so that its
    a ≈ c ≈ √2·a(CsPbBr3) net lies along the perovskite's <110>). Outermost ions are removed
    until the formal charges sum to zero. Site property ``domain = name``.
    """
    from pymatgen.core import Molecule

    if axis not in ("a", "b", "c"):
        raise InputError(f"unknown lattice axis {axis!r}", "use a, b or c")
    if not 3.0 <= radius <= 60.0:
        raise InputError(f"half-sphere radius {radius} Å is out of range", "use 3 to 60 Å")
    bulk = _oriented_bulk(name, axis, twist_deg)
    charges = _charges(bulk)
    mid = bulk.lattice.get_cartesian_coords([0.5, 0.5, 0.5])
    picks = [i for i, s in enumerate(bulk) if s.specie.symbol == centre_element]
    if not picks:
        raise InputError(
            f"{name} has no {centre_element}",
            f"pick an element of {bulk.composition.reduced_formula}",
        )
    centre = bulk[min(picks, key=lambda i: np.linalg.norm(bulk[i].coords - mid))].coords
    sites = [s for s in bulk.get_sites_in_sphere(centre, radius) if s.coords[2] - centre[2] >= -0.3]
    species = [s.specie.symbol for s in sites]
    coords = np.array([s.coords for s in sites]) - centre
    drop = set(_neutralise(species, np.linalg.norm(coords, axis=1), charges))
    keep = [i for i in range(len(sites)) if i not in drop]
    coords = coords[keep]
    coords[:, 2] -= coords[:, 2].min()
    return Molecule(
        [species[i] for i in keep], coords, site_properties={"domain": [name] * len(keep)}
    )


_FACES = {"+x": (0, 1), "-x": (0, -1), "+y": (1, 1), "-y": (1, -1), "+z": (2, 1), "-z": (2, -1)}


def _face_frame(face: str) -> np.ndarray:
    """Rotation taking the local frame (dome along +z) to the cube face ``face``."""
    if face not in _FACES:
        raise InputError(f"unknown cube face {face!r}", f"use one of {', '.join(_FACES)}")
    k, sign = _FACES[face]
    rot = np.eye(3)
    if k != 2:  # cyclic permutation keeps the in-plane Pb rows along the cube axes
        rot = np.roll(np.eye(3), k - 2, axis=0)
    if sign < 0:
        rot = rot @ np.diag([1.0, -1.0, -1.0])
    return rot


def _no_clash(
    cube: Molecule, local: np.ndarray, species: list[str], coords: np.ndarray
) -> list[int]:
    """Indices of the new atoms farther than 0.7 x covalent sum from every cube atom."""
    from ase.data import atomic_numbers, covalent_radii

    r_cube = np.array([covalent_radii[s.specie.Z] for s in cube])
    keep = []
    for i, (el, x) in enumerate(zip(species, coords, strict=True)):
        d = np.linalg.norm(local - x, axis=1)
        if not np.any(d < OVERLAP_FACTOR * (r_cube + covalent_radii[atomic_numbers[el]])):
            keep.append(i)
    return keep


def place_half_sphere(
    cube: Molecule | int | None = None,
    half_sphere_species: str = "Pb4S3Br2",
    radius: float = 21.0,
    face: str = "+z",
    gap: float | None = None,
) -> Molecule:
    """Attach a half-sphere of ``half_sphere_species`` to one face of ``cube`` (seed 002).

    The flat face of :func:`half_sphere` is put at ``gap`` above the outermost CsBr layer
    (default: half the Pb–Pb spacing of the cube, where the next PbBr2 layer would sit), with
    its central Pb above the cube's central Pb column. Half-sphere ions closer to a cube ion
    than 0.7 x their covalent-radius sum are removed, then outermost half-sphere ions until it
    is neutral again.

    Parameters
    ----------
    cube
        A :func:`csbr_cube` molecule, or its Pb per edge (``None``: 5, seed 002's cube).
    half_sphere_species, radius
        Bulk prototype and radius (Å) of the half-sphere (seed 002: Pb4S3Br2, 21 Å).
    face
        Cube face: ``+x``, ``-x``, ``+y``, ``-y``, ``+z`` or ``-z``.
    gap
        Flat face to outermost CsBr layer (Å).

    Returns
    -------
    Molecule
        Cube sites first, then half-sphere sites; ``domain`` site property per atom.
    """
    from pymatgen.core import Molecule

    if cube is None or isinstance(cube, int):
        cube = csbr_cube(edge_cells=cube or 5)
    if "domain" not in cube.site_properties:
        raise InputError("the cube has no domain labels", "build it with csbr_cube")
    dome = half_sphere(half_sphere_species, radius)
    rot = _face_frame(face)
    local = np.asarray(cube.cart_coords) @ rot  # cube coordinates in the face frame
    pb = local[[s.specie.symbol == "Pb" for s in cube]]
    spacing = float(np.min(np.linalg.norm(pb[1:] - pb[0], axis=1))) if len(pb) > 1 else 5.87
    column = pb[np.argmin(np.linalg.norm(pb[:, :2], axis=1)), :2]
    shift = np.array(
        [column[0], column[1], local[:, 2].max() + (gap if gap is not None else spacing / 2)]
    )
    coords = dome.cart_coords + shift
    species = [s.specie.symbol for s in dome]
    keep = _no_clash(cube, local, species, coords)
    species, coords = [species[i] for i in keep], coords[keep]
    charges = _bulk_charges(half_sphere_species)
    drop = set(_neutralise(species, np.linalg.norm(coords - shift, axis=1), charges))
    keep = [i for i in range(len(species)) if i not in drop]
    all_species = [s.specie.symbol for s in cube] + [species[i] for i in keep]
    all_coords = np.vstack([cube.cart_coords, coords[keep] @ rot.T])
    domains = list(cube.site_properties["domain"]) + [half_sphere_species] * len(keep)
    return Molecule(all_species, all_coords, site_properties={"domain": domains})


FORMAL_CHARGES = {
    "Cs": 1,
    "Pb": 2,
    "Sn": 2,
    "Na": 1,
    "Ag": 1,
    "Bi": 3,
    "Br": -1,
    "Cl": -1,
    "I": -1,
    "S": -2,
}


def describe(molecule: Molecule) -> dict:
    """Formula, atom count, net formal charge, diameter (nm) and atoms per domain."""
    from scipy.spatial.distance import pdist

    species = [s.specie.symbol for s in molecule]
    unknown = sorted({el for el in species if el not in FORMAL_CHARGES})
    domains: dict[str, int] = {}
    for d in molecule.site_properties.get("domain", ["?"] * len(molecule)):
        domains[d] = domains.get(d, 0) + 1
    return {
        "formula": molecule.composition.formula.replace(" ", ""),
        "natoms": len(molecule),
        "net_charge": None if unknown else round(sum(FORMAL_CHARGES[el] for el in species)),
        "diameter_nm": round(float(pdist(molecule.cart_coords).max()) / 10.0, 3)
        if len(molecule) > 1
        else 0.0,
        "domains": domains,
    }
