"""Coherent film/substrate interfaces from pymatgen's ZSL search and CoherentInterfaceBuilder.

Search, bounded so that it runs in seconds:

1. Miller pairs: the given ones, or every symmetry-distinct plane with index <= 1 of each
   side (pymatgen ``get_symmetrically_distinct_miller_indices``).
2. Screen each pair with a :class:`ZSLGenerator` (vector-length and angle tolerance = the
   requested strain, superlattice area <= ``max_area``) and keep the ``max_pairs`` pairs whose
   smallest matching cell is smallest (then lowest strain).
3. For those, :class:`CoherentInterfaceBuilder` enumerates *all* terminations of both slabs
   (symmetric and asymmetric) and builds the interface for each distinct match.

Strain is the Green–Lagrange strain that puts the film on the substrate; a candidate is kept
only when its largest absolute principal strain is <= ``max_strain``. Every site of the
Interface gets a ``domain`` property (the film or substrate reduced formula, e.g. CsPbBr3).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from perovflow.errors import InputError

if TYPE_CHECKING:
    from pymatgen.core import Structure
    from pymatgen.core.interface import Interface

Miller = tuple[int, int, int]


@dataclass
class InterfaceCandidate:
    """One coherent interface.

    Attributes
    ----------
    film_miller, substrate_miller
        Planes that meet.
    termination
        (film termination, substrate termination) labels from pymatgen.
    strain
        Largest absolute principal Green–Lagrange strain applied to the film.
    von_mises_strain
        Von Mises equivalent of that strain.
    area
        Interface (superlattice) area (Å²).
    natoms
        Atoms in the interface cell.
    structure
        The pymatgen Interface, with a ``domain`` site property.
    """

    film: str
    substrate: str
    film_miller: Miller
    substrate_miller: Miller
    termination: tuple[str, str]
    strain: float
    von_mises_strain: float
    area: float
    natoms: int
    structure: Interface | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no structure)."""
        return {
            "film": self.film,
            "substrate": self.substrate,
            "film_miller": list(self.film_miller),
            "substrate_miller": list(self.substrate_miller),
            "termination": list(self.termination),
            "strain": round(self.strain, 5),
            "von_mises_strain": round(self.von_mises_strain, 5),
            "area_A2": round(self.area, 2),
            "natoms": self.natoms,
        }


def _strain(match) -> tuple[float, float]:
    from pymatgen.analysis.elasticity.strain import Deformation

    eps = Deformation(match.match_transformation).green_lagrange_strain
    return float(np.abs(np.linalg.eigvalsh(np.asarray(eps))).max()), float(eps.von_mises_strain)


def _zsl(max_strain: float, max_area: float):
    from pymatgen.analysis.interfaces.zsl import ZSLGenerator

    return ZSLGenerator(max_area=max_area, max_length_tol=max_strain, max_angle_tol=max_strain)


def _plane_vectors(structure: Structure, miller: Miller) -> np.ndarray:
    from pymatgen.core.surface import SlabGenerator

    gen = SlabGenerator(
        structure, miller, 1, 3, in_unit_planes=True, primitive=True, reorient_lattice=False
    )
    return gen.get_slab(shift=0).lattice.matrix[:2]


def _screen(
    film, substrate, pairs, max_strain, max_area
) -> list[tuple[float, float, Miller, Miller]]:
    """Best (strain, area) of every Miller pair that has a match within the bounds."""
    zsl = _zsl(max_strain, max_area)
    film_vecs = {m: _plane_vectors(film, m) for m in {p[0] for p in pairs}}
    sub_vecs = {m: _plane_vectors(substrate, m) for m in {p[1] for p in pairs}}
    found = []
    for fm, sm in pairs:
        best = None
        for match in zsl(film_vecs[fm], sub_vecs[sm], lowest=False):
            s, _ = _strain(match)
            key = (round(match.match_area, 1), round(s, 4))
            if s <= max_strain and (best is None or key < best):
                best = key
        if best is not None:
            found.append((best[0], best[1], fm, sm))
    return sorted(found)


def _parse_miller(value: Miller | str | None) -> Miller | None:
    if value is None or isinstance(value, tuple):
        return value
    try:
        miller = tuple(int(v) for v in str(value).replace(" ", "").split(","))
    except ValueError:
        miller = ()
    if len(miller) != 3 or miller == (0, 0, 0):
        raise InputError(f"bad Miller index {value!r}", "write three integers, e.g. 1,0,0")
    return miller  # type: ignore[return-value]


def _resolve(item: Structure | str) -> tuple[Structure, str]:
    if isinstance(item, str):
        from perovflow.structures.io import load_structure

        item = load_structure(item)
    return item, item.composition.reduced_formula


def _distinct_matches(cib, max_strain: float) -> list:
    """ZSL matches within the strain bound, one per (strain, area), smallest area first."""
    seen, keep = set(), []
    for match in sorted(
        cib.zsl_matches, key=lambda m: (round(m.match_area, 1), round(_strain(m)[0], 4))
    ):
        s, _ = _strain(match)
        key = (round(s, 4), round(match.match_area, 1))
        if s <= max_strain and key not in seen:
            seen.add(key)
            keep.append(match)
    return keep


def _term_order(term: tuple[str, str]) -> tuple[int, ...]:
    """Sort pymatgen's indexed termination labels ("10_Br_...") numerically."""
    return tuple(int(t.split("_", 1)[0]) if t.split("_", 1)[0].isdigit() else 0 for t in term)


def _build(cib, match, termination, names, thickness, gap, vacuum) -> Interface:
    cib.zsl_matches = [match]  # get_interfaces builds one interface per stored match
    iface = next(
        cib.get_interfaces(
            termination,
            gap=gap,
            vacuum_over_film=vacuum,
            film_thickness=thickness[0],
            substrate_thickness=thickness[1],
        )
    )
    roles = iface.site_properties["interface_label"]
    iface.add_site_property("domain", [names[0] if r == "film" else names[1] for r in roles])
    return iface


def build_interfaces(
    film: Structure | str,
    substrate: Structure | str,
    film_miller: Miller | str | None = None,
    substrate_miller: Miller | str | None = None,
    max_strain: float = 0.03,
    max_area: float = 400.0,
    max_pairs: int = 2,
    max_candidates: int = 12,
    film_layers: int = 2,
    substrate_layers: int = 2,
    gap: float = 2.5,
    vacuum: float = 15.0,
) -> list[InterfaceCandidate]:
    """Enumerate coherent interfaces of ``film`` on ``substrate``.

    Parameters
    ----------
    film, substrate
        Structures, or names/paths for :func:`perovflow.structures.io.load_structure`.
    film_miller, substrate_miller
        Planes (``(1, 0, 0)`` or ``"1,0,0"``); ``None``: all distinct planes of index <= 1.
    max_strain
        Largest absolute principal strain allowed on the film (0.03 = 3 %).
    max_area
        Largest interface area searched (Å²).
    max_pairs
        Miller pairs kept after the screen (lowest strain first).
    max_candidates
        Interfaces built and returned (smallest area, then lowest strain, first).
    film_layers, substrate_layers
        Slab thickness in unit planes.
    gap, vacuum
        Film–substrate distance and vacuum over the film (Å).

    Returns
    -------
    list[InterfaceCandidate]
        Smallest interface area first, then lowest strain, then termination.

    Raises
    ------
    InputError
        Bad Miller index or bounds, or no match within ``max_strain`` and ``max_area``.
    """
    _check_bounds(max_strain, max_area)
    (film_s, film_name), (sub_s, sub_name) = _resolve(film), _resolve(substrate)
    millers = _miller_pairs(film_s, sub_s, film_miller, substrate_miller)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pairs = _screen(film_s, sub_s, millers, max_strain, max_area)
        if not pairs:
            raise _no_match(film_name, sub_name, max_strain, max_area)
        found = _matches(film_s, sub_s, pairs[:max_pairs], max_strain, max_area, max_candidates)
        names, layers = (film_name, sub_name), (film_layers, substrate_layers)
        return [
            _candidate(names, c, _build(c[5], c[6], c[2], names, layers, gap, vacuum))
            for c in found[:max_candidates]
        ]


def _no_match(film: str, substrate: str, max_strain: float, max_area: float) -> InputError:
    """The error of a search that found no Miller pair within the strain and area bounds."""
    return InputError(
        f"no coherent {film}/{substrate} match within {max_strain:.1%} strain "
        f"and {max_area:.0f} Å²",
        "raise --max-strain or --max-area, or try other Miller planes",
    )


def _check_bounds(max_strain: float, max_area: float) -> None:
    """A strain bound outside (0, 0.5) or an area outside [10, 5000] Å² is an error."""
    if not 0 < max_strain < 0.5 or not 10.0 <= max_area <= 5000.0:
        raise InputError(
            f"max_strain {max_strain} / max_area {max_area} out of range",
            "use 0 < max-strain < 0.5 and 10 <= max-area <= 5000 Å²",
        )


def _miller_pairs(
    film: Structure, substrate: Structure, film_miller: Any, substrate_miller: Any
) -> list[tuple[Miller, Miller]]:
    """(film, substrate) Miller pairs: the planes given, else all distinct ones of index <= 1."""
    from pymatgen.core.surface import get_symmetrically_distinct_miller_indices

    fm, sm = _parse_miller(film_miller), _parse_miller(substrate_miller)
    f_list = [fm] if fm else get_symmetrically_distinct_miller_indices(film, 1)
    s_list = [sm] if sm else get_symmetrically_distinct_miller_indices(substrate, 1)
    return [(f, s) for f in f_list for s in s_list]


def _matches(
    film: Structure, sub: Structure, pairs: list, max_strain: float, max_area: float, limit: int
) -> list[tuple]:
    """(strain, area, termination, film plane, substrate plane, builder, match, von Mises)
    of every coherent match of the screened plane pairs: smallest area, lowest strain first."""
    from pymatgen.analysis.interfaces.coherent_interfaces import CoherentInterfaceBuilder

    out = []
    for _, _, f, s in pairs:
        cib = CoherentInterfaceBuilder(
            sub, film, tuple(f), tuple(s), zslgen=_zsl(max_strain, max_area),
            filter_out_sym_slabs=False, label_index=True,
        )  # fmt: skip
        for match in _distinct_matches(cib, max_strain)[:limit]:
            strain, vm = _strain(match)
            for term in cib.terminations:
                out.append((strain, match.match_area, term, f, s, cib, match, vm))
    out.sort(key=lambda c: (round(c[1], 1), round(c[0], 4), _term_order(c[2])))
    return out


def _candidate(names: tuple[str, str], match: tuple, iface: Structure) -> InterfaceCandidate:
    strain, area, term, f, s, _, _, vm = match
    return InterfaceCandidate(
        names[0], names[1], tuple(f), tuple(s), term, strain, vm, float(area), len(iface), iface
    )
