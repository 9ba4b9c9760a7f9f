"""Point defects: symmetry-distinct vacancy and substitution sites, charge states, builders.

Distinct sites are the equivalence classes of spglib's symmetrised structure
(:class:`~pymatgen.symmetry.analyzer.SpacegroupAnalyzer`, symprec 0.1), so in a doped
cell such as Cs2Na0.875Ag0.125BiCl6 the Cl next to Ag and the Cl next to Na come out
as different sites. Each site carries a local-environment description:

* first shell: atoms within 1.15 x the nearest-neighbour distance ("Cl bonded to Bi, Na");
* like-site shell: the nearest sites of the same sublattice, i.e. atoms with the same
  oxidation state and first-shell coordination number (Na+ and Ag+ on the B' sites of a
  double perovskite, but not Cs+). A Na whose like-site shell holds Ag is "next to Ag",
  otherwise "far from Ag".

Charge states follow pymatgen-analysis-defects (0 .. defect oxidation state, padded by
one on both sides): V_Br (Br-, defect oxidation state +1) -> [-1, 0, 1, 2].
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from perovflow.errors import InputError
from perovflow.structures.variants import _check_element, _sites_of

if TYPE_CHECKING:
    from pymatgen.core import Structure

SYMPREC = 0.1
FIRST_SHELL = 1.15  # x nearest-neighbour distance
LIKE_SHELL = 1.1  # x nearest like-site distance
LIKE_RANGE = 12.0  # Å, search radius for like sites
MAX_ABS_CHARGE = 4


@dataclass
class DefectSite:
    """One symmetry-distinct defect site of a host structure.

    Attributes
    ----------
    kind
        ``"vacancy"`` or ``"substitution"``.
    element
        Element removed (vacancy) or replaced (substitution).
    index
        Index of the representative site in the host structure.
    multiplicity
        Number of equivalent sites in the host cell.
    wyckoff
        Wyckoff label of the site in the host's space group (e.g. ``"24e"``).
    environment
        Readable local environment, e.g. ``"Cl bonded to Bi, Na"`` or
        ``"Na bonded to 6 Cl; next to Ag"`` (counts shown when above one).
    neighbours
        First-shell element counts.
    label
        Unique name among the listed sites, e.g. ``"V_Cl[Na]"``, ``"V_Na[next-to-Ag]"``.
    charge_states
        Suggested charge states (see :func:`suggest_charge_states`).
    substituent
        New element for substitutions, else None.
    like_shell
        Element counts of the nearest like-site shell.
    """

    kind: str
    element: str
    index: int
    multiplicity: int
    wyckoff: str
    environment: str
    neighbours: dict[str, int]
    label: str
    charge_states: list[int]
    substituent: str | None = None
    like_shell: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-ready dict."""
        return asdict(self)


@lru_cache(maxsize=64)
def _oxidation_states(formula: str) -> dict[str, int]:
    from pymatgen.core import Composition
    from pymatgen.core.periodic_table import Element

    composition = Composition(formula)
    guesses = composition.reduced_composition.oxi_state_guesses(max_sites=-1)
    if guesses:
        return {el: round(v) for el, v in guesses[0].items()}
    return {
        el.symbol: (Element(el.symbol).common_oxidation_states or (0,))[0] for el in composition
    }


def oxidation_state(structure: Structure, element: str) -> int:
    """Most likely oxidation state of ``element`` in ``structure`` (pymatgen guesses)."""
    from pymatgen.core.periodic_table import Element

    states = _oxidation_states(structure.composition.formula)
    if element in states:
        return states[element]
    return (Element(element).common_oxidation_states or (0,))[0]


def _substituent_state(structure: Structure, old: str, new: str) -> int:
    """Oxidation state of ``new`` closest to that of the replaced ``old`` ion."""
    from pymatgen.core.periodic_table import Element

    target = oxidation_state(structure, old)
    options = Element(new).common_oxidation_states or Element(new).oxidation_states or (0,)
    return min(options, key=lambda ox: (abs(ox - target), -ox))


def _shells(structure: Structure) -> tuple[list[Counter], np.ndarray]:
    """First-shell element counts and coordination numbers of every site."""
    neighbours = structure.get_all_neighbors(6.0)
    shells = []
    for nbrs in neighbours:
        if not nbrs:
            shells.append(Counter())
            continue
        d_min = min(n.nn_distance for n in nbrs)
        shells.append(
            Counter(n.specie.symbol for n in nbrs if n.nn_distance <= FIRST_SHELL * d_min)
        )
    return shells, np.array([sum(c.values()) for c in shells])


def _like_shell(structure: Structure, index: int, cns: np.ndarray) -> tuple[Counter, set[str]]:
    """Nearest like-site shell of ``index`` (images included) and its sublattice elements."""
    ox = {el.symbol: oxidation_state(structure, el.symbol) for el in structure.composition}
    me = structure[index].specie.symbol
    partners = {
        j
        for j, site in enumerate(structure)
        if ox[site.specie.symbol] == ox[me] and cns[j] == cns[index]
    }
    sublattice = {structure[j].specie.symbol for j in partners}
    nbrs = [n for n in structure.get_neighbors(structure[index], LIKE_RANGE) if n.index in partners]
    if not nbrs:
        return Counter(), sublattice
    cutoff = LIKE_SHELL * min(n.nn_distance for n in nbrs)
    return Counter(n.specie.symbol for n in nbrs if n.nn_distance <= cutoff), sublattice


def _describe(structure, index, shells, cns) -> tuple[str, str, Counter]:
    """Environment text, the like-site tag (e.g. 'next-to-Ag') and the like shell."""
    me = structure[index].specie.symbol
    first = shells[index]
    order = sorted(first, key=lambda el: (-first[el], el))
    bonded = ", ".join(f"{first[el]} {el}" if first[el] > 1 else el for el in order)
    text = f"{me} bonded to {bonded}" if bonded else f"{me} (isolated)"
    like, sublattice = _like_shell(structure, index, cns)
    tags = []
    for other in sorted(sublattice - {me}):
        tags.append(f"next to {other}" if like.get(other) else f"far from {other}")
    if tags:
        text += "; " + ", ".join(tags)
    return text, "|".join(t.replace(" ", "-") for t in tags), like


def _distinct_sites(structure: Structure, element: str):
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    symmetrized = SpacegroupAnalyzer(structure, symprec=SYMPREC).get_symmetrized_structure()
    for group, wyckoff in zip(
        symmetrized.equivalent_indices, symmetrized.wyckoff_symbols, strict=True
    ):
        if structure[group[0]].specie.symbol == element:
            yield sorted(group), wyckoff


def _label_sites(sites: list[DefectSite], prefix: str, tags: list[str]) -> None:
    """Unique labels: prefix[distinguishing first shell|like-site tag|Wyckoff][#n].

    The Wyckoff letter is added only where the chemistry alone does not tell sites apart,
    and a running number only where even that is not enough.
    """
    if len(sites) == 1:
        sites[0].label = prefix
        return
    common = set.intersection(*(set(s.neighbours) for s in sites))
    parts = [
        [p for p in (",".join(sorted(set(s.neighbours) - common)), tag) if p]
        for s, tag in zip(sites, tags, strict=True)
    ]
    first = Counter("|".join(p) for p in parts)
    for p, site in zip(parts, sites, strict=True):
        if not p or first["|".join(p)] > 1:
            p.append(site.wyckoff)
    labels = [f"{prefix}[{'|'.join(p)}]" for p in parts]
    counts, seen = Counter(labels), Counter()
    for site, label in zip(sites, labels, strict=True):
        seen[label] += 1
        site.label = label if counts[label] == 1 else f"{label}#{seen[label]}"


def _enumerate(structure: Structure, element: str, new: str | None) -> list[DefectSite]:
    element = _check_element(element)
    _sites_of(structure, element)
    shells, cns = _shells(structure)
    sites, tags = [], []
    for group, wyckoff in _distinct_sites(structure, element):
        index, mult = group[0], len(group)
        text, tag, like = _describe(structure, index, shells, cns)
        site = DefectSite(
            kind="vacancy" if new is None else "substitution",
            element=element,
            index=index,
            multiplicity=mult,
            wyckoff=wyckoff,
            environment=text,
            neighbours=dict(sorted(shells[index].items())),
            label="",
            charge_states=[],
            substituent=new,
            like_shell=dict(sorted(like.items())),
        )
        site.charge_states = suggest_charge_states(structure, site)
        sites.append(site)
        tags.append(tag)
    prefix = f"V_{element}" if new is None else f"{new}_{element}"
    _label_sites(sites, prefix, tags)
    return sites


def enumerate_vacancies(structure: Structure, element: str) -> list[DefectSite]:
    """Return the symmetry-distinct vacancy sites of ``element`` (InputError if absent)."""
    return _enumerate(structure, element, None)


def enumerate_substitutions(structure: Structure, old: str, new: str) -> list[DefectSite]:
    """Return the symmetry-distinct sites where ``new`` can replace ``old``."""
    return _enumerate(structure, old, _check_element(new))


def _as_site(structure: Structure, site: DefectSite | int) -> DefectSite:
    if isinstance(site, DefectSite):
        if (
            not 0 <= site.index < len(structure)
            or structure[site.index].specie.symbol != site.element
        ):
            raise InputError(
                f"defect site {site.label} (index {site.index}) does not match this structure",
                "enumerate the defect sites on the same structure you build the defect in",
            )
        return site
    if not 0 <= int(site) < len(structure):
        raise InputError(
            f"site index {site} is outside 0..{len(structure) - 1}", "give a valid site index"
        )
    index = int(site)
    element = structure[index].specie.symbol
    groups = {group[0]: group for group, _ in _distinct_sites(structure, element)}
    for candidate in enumerate_vacancies(structure, element):
        if index in groups[candidate.index]:
            return replace(candidate, index=index)
    raise InputError(f"site {index} has no symmetry class", "check the structure")  # unreachable


def suggest_charge_states(structure: Structure, site: DefectSite | int) -> list[int]:
    """Charge states from 0 to the defect's oxidation state, padded by one on each side.

    Uses :meth:`pymatgen.analysis.defects.core.Defect.get_charge_states`; the defect
    oxidation state is -ox(removed ion) for a vacancy and ox(new) - ox(old) for a
    substitution, with oxidation states from pymatgen's composition guesses.
    """
    from pymatgen.analysis.defects.core import Substitution, Vacancy
    from pymatgen.core import PeriodicSite

    if isinstance(site, int):
        site = _as_site(structure, site)
    host_site = structure[site.index]
    old_ox = oxidation_state(structure, site.element)
    if site.kind == "vacancy":
        defect = Vacancy(structure, host_site, multiplicity=site.multiplicity, oxi_state=-old_ox)
    else:
        new_ox = _substituent_state(structure, site.element, site.substituent)
        new_site = PeriodicSite(site.substituent, host_site.frac_coords, structure.lattice)
        defect = Substitution(
            structure, new_site, multiplicity=site.multiplicity, oxi_state=new_ox - old_ox
        )
    return [q for q in defect.get_charge_states(padding=1) if abs(q) <= MAX_ABS_CHARGE]


def validate_charge(structure: Structure, site: DefectSite | int, q: int) -> int:
    """Return ``q`` if it is a sensible charge for ``site``, else raise InputError."""
    site = _as_site(structure, site)
    allowed = suggest_charge_states(structure, site)
    if int(q) != q or abs(q) > MAX_ABS_CHARGE or q not in allowed:
        raise InputError(
            f"charge {q:+g} is not plausible for {site.label or site.element}",
            f"use one of {', '.join(f'{c:+d}' if c else '0' for c in allowed)}",
        )
    return int(q)


def build_defect(structure: Structure, site: DefectSite | int, charge: int | None = None):
    """Return the host with ``site`` removed (vacancy) or replaced (substitution).

    All other atoms keep their order. ``structure.properties`` gets ``defect`` (label),
    ``charge`` (validated, or None), ``defect_index`` and ``host_formula``.
    """
    site = _as_site(structure, site)
    if charge is not None:
        charge = validate_charge(structure, site, charge)
    defect = structure.copy()
    if site.kind == "vacancy":
        defect.remove_sites([site.index])
    else:
        defect.replace(site.index, site.substituent)
    defect.properties = dict(structure.properties or {}) | {
        "defect": site.label,
        "charge": charge,
        "defect_index": site.index,
        "host_formula": structure.composition.formula,
    }
    return defect
