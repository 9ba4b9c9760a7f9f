"""Vacancy-mediated migration hops and NEB end points.

A hop moves one ion from a host site into a neighbouring vacancy. Hops are made
symmetry-distinct with the space group of the *defect-free host* (spglib through
pymatgen's :class:`~pymatgen.symmetry.analyzer.SpacegroupAnalyzer`): two hops into the same
vacant site are equivalent when an operation that keeps the vacant site in place maps one
hop vector onto the other. This is the site-stabiliser version of what
:class:`pymatgen.analysis.diffusion.neb.pathfinder.DistinctPathFinder` does for a single
migrating species; it is written here because DistinctPathFinder groups paths by the whole
space group between sites of one species, while a vacancy calculation needs the hops into
*one* vacant site and also hops of another species (Ag -> V_Na). The images between the end
points come from :mod:`perovflow.structures.interpolation` (re-exported here).

Choice for ``vacancy_site=None``: every symmetry-distinct site of the vacancy element is
used, so the list covers all vacancy environments (e.g. V_Na next to Ag and far from it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from perovflow.errors import InputError
from perovflow.structures.interpolation import (  # noqa: F401 (public here too)
    OVERLAP_FACTOR,
    interpolate,
    min_distance_ratio,
)

if TYPE_CHECKING:
    from pymatgen.core import Structure

ANIONS = frozenset({"F", "Cl", "Br", "I", "O", "S", "Se", "Te", "N"})
FIRST_SHELL_TOL = 1.15  # default cutoff = 1.15 x the shortest vacancy-to-ion distance
BOND_TOL = 1.2  # first-shell cations of an anion: within 1.2 x the nearest cation distance
SYMPREC = 0.01
SEARCH_RADIUS = 12.0  # Å searched for the first shell when no cutoff is given


@dataclass(frozen=True)
class Hop:
    """One symmetry-distinct hop of an ion into a vacancy.

    Attributes
    ----------
    moving_element
        Element of the ion that moves.
    from_index
        Host site index of the moving ion (defect-free host numbering).
    vacancy_index
        Host site index of the vacant site.
    length
        Straight-line hop length (Å).
    environment_left
        Environment the ion leaves, e.g. ``"Cl from Ag–Cl octahedron"`` or ``"Na"``.
    label
        Human-readable one-line label.
    multiplicity
        Number of equivalent hops into this vacant site that this one stands for.
    image
        Lattice translation (fractional) of the moving ion's periodic image that hops.
    vacancy_environment
        Environment of the vacant site, e.g. ``"V_Cl in Na–Cl octahedron"``.
    """

    moving_element: str
    from_index: int
    vacancy_index: int
    length: float
    environment_left: str
    label: str
    multiplicity: int
    image: tuple[int, int, int] = (0, 0, 0)
    vacancy_environment: str = ""

    @property
    def moving_index(self) -> int:
        """Index of the moving ion in the end points (one site fewer than the host)."""
        return self.from_index - int(self.from_index > self.vacancy_index)

    def to_dict(self) -> dict:
        """Return a JSON-ready dictionary (``Hop(**d)`` rebuilds the hop)."""
        return asdict(self)


def _check_elements(structure: Structure, elements: list[str], what: str) -> None:
    from pymatgen.core.periodic_table import Element

    present = sorted({sp.symbol for sp in structure.composition.elements})
    for el in elements:
        if not Element.is_valid_symbol(el):
            raise InputError(
                f"unknown element {el!r} for {what}", "use an element symbol such as Cl, Na or Br"
            )
        if el not in present:
            raise InputError(
                f"{what} element {el} is not in the structure ({', '.join(present)})",
                f"choose one of {', '.join(present)}",
            )


def _symmetry(structure: Structure):
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    sga = SpacegroupAnalyzer(structure, symprec=SYMPREC)
    return sga.get_symmetry_operations(cartesian=False), sga.get_symmetrized_structure()


def _first_shell(structure: Structure, index: int) -> list[str]:
    """Cation elements in the first shell of the anion at ``index``."""
    neigh = [
        n for n in structure.get_neighbors(structure[index], 4.5) if n.specie.symbol not in ANIONS
    ]
    if not neigh:
        return []
    dmin = min(n.nn_distance for n in neigh)
    return sorted({n.specie.symbol for n in neigh if n.nn_distance <= BOND_TOL * dmin})


def _environment(structure: Structure, index: int, framework: set[str]) -> str:
    """Describe the site ``index``: cations by symbol, anions by their octahedron."""
    el = structure[index].specie.symbol
    if el not in ANIONS:
        return el
    shell = _first_shell(structure, index)
    named = [e for e in shell if e not in framework] or shell
    return f"{el} from {'/'.join(named)}–{el} octahedron" if named else el


def _framework(structure: Structure, element: str) -> set[str]:
    """Cations bonded to every anion of ``element`` (e.g. Bi for Cl in Cs2NaBiCl6)."""
    if element not in ANIONS:
        return set()
    shells = [
        set(_first_shell(structure, i))
        for i, s in enumerate(structure)
        if s.specie.symbol == element
    ]
    return set.intersection(*shells) if shells else set()


def _vacancy_environment(structure: Structure, index: int, frameworks: dict) -> str:
    """``"V_Cl in Na–Cl octahedron"`` for an anion site, ``"V_Na"`` for a cation site."""
    el = structure[index].specie.symbol
    env = _environment(structure, index, frameworks.get(el, set()))
    return f"V_{el} in {env.split(' from ', 1)[1]}" if " from " in env else f"V_{el}"


def _stabiliser(ops, frac: np.ndarray) -> list[np.ndarray]:
    """Rotation parts (fractional) of the operations that keep ``frac`` in place (mod lattice)."""
    rots = []
    for op in ops:
        d = op.operate(frac) - frac
        if np.allclose(d - np.round(d), 0.0, atol=1e-3):
            rots.append(op.rotation_matrix)
    return rots


def _hops_into(structure, vac: int, species: list[str], cutoff, ops, frameworks) -> list[Hop]:
    """Symmetry-distinct hops of ``species`` into the vacant site ``vac``."""
    site = structure[vac]
    neigh = [
        n
        for n in structure.get_neighbors(site, cutoff or SEARCH_RADIUS)
        if n.specie.symbol in species
    ]
    if not neigh:
        return []
    limit = cutoff if cutoff is not None else FIRST_SHELL_TOL * min(n.nn_distance for n in neigh)
    neigh = sorted(
        (n for n in neigh if n.nn_distance <= limit), key=lambda n: (n.nn_distance, n.index)
    )
    rots = _stabiliser(ops, site.frac_coords)
    vac_env = _vacancy_environment(structure, vac, frameworks)
    groups: list[list] = []
    for n in neigh:
        u = n.frac_coords - site.frac_coords
        for group in groups:
            ref = group[0].frac_coords - site.frac_coords
            if any(np.allclose(r @ ref, u, atol=2e-3) for r in rots):
                group.append(n)
                break
        else:
            groups.append([n])
    hops = []
    for group in groups:
        n = group[0]
        env = _environment(structure, n.index, frameworks.get(n.specie.symbol, set()))
        el = n.specie.symbol
        hops.append(
            Hop(
                moving_element=el,
                from_index=int(n.index),
                vacancy_index=int(vac),
                length=round(float(n.nn_distance), 4),
                environment_left=env,
                label=f"{el}->V_{site.specie.symbol}@{vac} ({env}, {n.nn_distance:.2f} Å)",
                multiplicity=len(group),
                image=tuple(int(i) for i in n.image),
                vacancy_environment=vac_env,
            )
        )
    return hops


def enumerate_hops(
    structure: Structure,
    vacancy_element: str,
    vacancy_site: int | None = None,
    cutoff: float | None = None,
    species: list[str] | None = None,
) -> list[Hop]:
    """List the symmetry-distinct hops of neighbouring ions into a vacancy.

    Parameters
    ----------
    structure
        Defect-free host; its symmetry decides which hops are equivalent.
    vacancy_element
        Element whose site is vacant (``"Na"``, ``"Cl"``).
    vacancy_site
        Host index of the vacant site. ``None``: every symmetry-distinct site of
        ``vacancy_element`` (one representative per Wyckoff orbit).
    cutoff
        Longest hop (Å). ``None``: the first shell, 1.15 x the shortest distance from the
        vacant site to an ion of ``species``.
    species
        Elements allowed to move; default ``[vacancy_element]``. ``["Na", "Ag"]`` adds
        Ag -> V_Na hops.

    Returns
    -------
    list[Hop]
        Ordered by vacant site, then hop length, then environment.

    Raises
    ------
    InputError
        Unknown element, element absent, bad site index, or no ion within ``cutoff``.
    """
    species = list(species) if species else [vacancy_element]
    _check_elements(structure, [vacancy_element], "vacancy")
    _check_elements(structure, species, "moving species")
    if cutoff is not None and cutoff <= 0:
        raise InputError(f"cutoff must be positive, got {cutoff}", "give a cutoff in Å, e.g. 8.0")
    ops, sym = _symmetry(structure)
    sites = _vacancy_sites(structure, vacancy_element, vacancy_site, sym)
    frameworks = {el: _framework(structure, el) for el in {vacancy_element, *species}}
    hops = [
        h for v in sorted(sites) for h in _hops_into(structure, v, species, cutoff, ops, frameworks)
    ]
    if not hops:
        raise InputError(
            f"no {'/'.join(species)} ion within {cutoff or SEARCH_RADIUS} Å of a {vacancy_element} vacancy",
            "increase the cutoff (the shortest hop in perovskites is ~3.5-4.5 Å for halides)",
        )
    return sorted(hops, key=lambda h: (h.vacancy_index, round(h.length, 2), h.environment_left))


def _vacancy_sites(structure: Structure, element: str, site: int | None, sym: Any) -> list[int]:
    """The given vacant site (checked), else one site per symmetry orbit of ``element``."""
    if site is None:
        return [
            grp[0] for grp in sym.equivalent_indices if structure[grp[0]].specie.symbol == element
        ]
    if not 0 <= site < len(structure) or structure[site].specie.symbol != element:
        raise InputError(
            f"site {site} is not a {element} site",
            f"pick the index of a {element} site (0-based) or leave the site out",
        )
    return [site]


def seed_hops(
    structure: Structure, vacancy_b: str = "Na", dopant: str = "Ag", anion: str = "Cl"
) -> list[Hop]:
    """Pick the four hops of seed 004 in Cs2Na(1-x)Ag(x)BiCl6.

    Path 1: Na -> V_Na, path 2: Ag -> V_Na (same V_Na, next to Ag), path 3: Cl from the
    Na–Cl octahedron -> V_Cl in a Na–Cl octahedron, path 4: Cl from the Ag–Cl octahedron
    -> the same V_Cl. Each path is the shortest of its kind; in Cs2NaBiCl6 (Bi–Cl shorter than
    Na–Cl) paths 3 and 4 both cross a BiCl6 edge and differ only in the B' cation the Cl leaves.

    Raises
    ------
    InputError
        The structure has no Na site next to the dopant or no suitable Cl vacancy.
    """
    b_hops = enumerate_hops(structure, vacancy_b, species=[vacancy_b, dopant])
    x_hops = enumerate_hops(structure, anion)
    picks = []
    for group, first, second in (
        (b_hops, vacancy_b, dopant),
        (x_hops, f"{anion} from {vacancy_b}–", f"{anion} from {dopant}–"),
    ):
        by_site: dict[int, list[Hop]] = {}
        for h in group:
            by_site.setdefault(h.vacancy_index, []).append(h)
        for site_hops in by_site.values():
            one = [h for h in site_hops if h.environment_left.startswith(first)]
            two = [h for h in site_hops if h.environment_left.startswith(second)]
            needs_b = group is b_hops or f"{vacancy_b}–" in site_hops[0].vacancy_environment
            if one and two and needs_b:
                picks += [min(one, key=lambda h: h.length), min(two, key=lambda h: h.length)]
                break
        else:
            raise InputError(
                f"no {first.split()[0]} vacancy with both {first.strip('– ')} and {second.strip('– ')} hops",
                f"use a {vacancy_b}-rich cell with one {dopant} (e.g. the 80-atom 2x1x1 Cs2Na0.875Ag0.125BiCl6)",
            )
    return picks


def hop_endpoints(structure: Structure, hop: Hop) -> tuple[Structure, Structure]:
    """Return the NEB end points of ``hop``, both with one vacancy and the same atom order.

    ``initial`` is the host without the ion at ``vacancy_index``; ``final`` is the same list
    of atoms with the moving ion moved onto the vacant site (so the vacancy is now at
    ``from_index``). The moving ion's final fractional coordinates are left unwrapped so that
    ``final - initial`` is exactly the hop vector.
    """
    for idx in (hop.from_index, hop.vacancy_index):
        if not 0 <= idx < len(structure):
            raise InputError(
                f"hop refers to site {idx}, outside the structure",
                "enumerate hops on this structure",
            )
    if structure[hop.from_index].specie.symbol != hop.moving_element:
        raise InputError(
            "hop does not belong to this structure", "enumerate hops on this structure"
        )
    initial = structure.copy()
    final = structure.copy()
    target = structure[hop.vacancy_index].frac_coords - np.asarray(hop.image, dtype=float)
    shift = target - structure[hop.from_index].frac_coords
    final.translate_sites([hop.from_index], shift, frac_coords=True, to_unit_cell=False)
    initial.remove_sites([hop.vacancy_index])
    final.remove_sites([hop.vacancy_index])
    return initial, final
