"""Literature crystal prototypes of halide perovskites and their competing phases.

Each prototype lives in ``prototypes.yaml`` as a space group, lattice parameters and
Wyckoff sites with a literature source; :func:`build_prototype` expands it with
pymatgen's :meth:`~pymatgen.core.Structure.from_spacegroup`, so the data stay readable
and the symmetry comes from the space-group tables, not from hand-written coordinates.

Examples
--------
>>> from perovflow.structures.prototypes import build_prototype
>>> len(build_prototype("Cs4PbBr6")), len(build_prototype("Cs4PbBr6", cell="primitive"))
(66, 22)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from perovflow.errors import InputError

if TYPE_CHECKING:
    from pymatgen.core import Structure

PROTOTYPE_FILE = Path(__file__).with_name("prototypes.yaml")
SYMPREC = 0.1
"""Symmetry tolerance (Å) used for every space-group check of a prototype."""

Cell = Literal["conventional", "primitive"]


@dataclass(frozen=True)
class PrototypeInfo:
    """What a prototype is, without building it.

    Attributes
    ----------
    name
        Key used by :func:`build_prototype` (e.g. ``"Cs4PbBr6"``).
    formula
        Reduced chemical formula as written in the literature.
    spacegroup
        Hermann-Mauguin symbol of the built structure.
    number
        International Tables space-group number.
    source
        Literature reference for lattice and coordinates.
    description
        One-line description of the phase.
    provenance
        ``reference``, ``lattice+relaxed`` or ``constructed`` (see prototypes.yaml).
    checked
        True when the numbers were copied from a structure file of ``source``; False when
        they are literature values entered without the file (verify before publishing).
    """

    name: str
    formula: str
    spacegroup: str
    number: int
    source: str
    description: str
    provenance: str
    checked: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-ready dict."""
        return dict(self.__dict__)


@lru_cache(maxsize=1)
def _table() -> dict[str, dict[str, Any]]:
    with PROTOTYPE_FILE.open() as fh:
        return yaml.safe_load(fh)


def _entry(name: str) -> dict[str, Any]:
    table = _table()
    if name not in table:
        lowered = {k.lower(): k for k in table}
        if name.lower() in lowered:
            name = lowered[name.lower()]
        else:
            raise InputError(
                f"unknown prototype '{name}'",
                f"use one of {', '.join(table)} or give a structure file (CIF, POSCAR, extxyz)",
            )
    return copy.deepcopy(table[name]) | {"name": name}


def list_prototypes() -> list[PrototypeInfo]:
    """Return every available prototype, in the order of ``prototypes.yaml``."""
    return [
        PrototypeInfo(
            name=name,
            formula=e["formula"],
            spacegroup=e["spacegroup"],
            number=int(e["number"]),
            source=e["source"],
            description=e["description"],
            provenance=e.get("provenance", "reference"),
            checked=bool(e.get("checked", False)),
        )
        for name, e in _table().items()
    ]


def prototype_names() -> list[str]:
    """Return the names accepted by :func:`build_prototype`."""
    return list(_table())


def _lattice(entry: dict[str, Any]):
    from pymatgen.core import Lattice

    par = entry["lattice"]
    a = float(par["a"])
    hexagonal = 143 <= int(entry["number"]) <= 194
    return Lattice.from_parameters(
        a,
        float(par.get("b", a)),
        float(par.get("c", a)),
        float(par.get("alpha", 90.0)),
        float(par.get("beta", 90.0)),
        float(par.get("gamma", 120.0 if hexagonal else 90.0)),
    )


def build_prototype(name: str, cell: Cell = "conventional") -> Structure:
    """Build a prototype crystal structure.

    Parameters
    ----------
    name
        Prototype name (see :func:`list_prototypes`; case-insensitive).
    cell
        ``"conventional"`` (standard conventional cell of the space group; hexagonal
        axes for rhombohedral groups) or ``"primitive"`` (spglib standard primitive cell).

    Returns
    -------
    pymatgen.core.Structure
        A fresh structure; ``structure.properties["prototype"]`` holds the name.

    Raises
    ------
    InputError
        Unknown name or cell choice.
    """
    from pymatgen.core import Structure

    entry = _entry(name)
    if cell not in ("conventional", "primitive"):
        raise InputError(f"unknown cell '{cell}'", "use --cell conventional or --cell primitive")
    sites = entry["sites"]
    structure = Structure.from_spacegroup(
        int(entry["number"]),
        _lattice(entry),
        [s["species"] for s in sites],
        [s["coords"] for s in sites],
        tol=1e-4,
    )
    if cell == "primitive":
        from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

        sga = SpacegroupAnalyzer(structure, symprec=SYMPREC)
        prim = sga.find_primitive()
        if (
            sga.get_lattice_type() == "rhombohedral"
            and max(prim.lattice.abc) - min(prim.lattice.abc) > 1e-6
        ):
            # the reduced cell of a rhombohedral lattice with alpha < 60 deg (A7 Bi) is not
            # the rhombohedral one: its k grid (n, n, m) would break the 3-fold axis
            prim = _rhombohedral_cell(structure)
        if len(prim) < len(structure):
            structure = prim
    structure.properties = {"prototype": entry["name"], "cell": cell}
    return structure


#: the rhombohedral primitive vectors in hexagonal (obverse) axes
_HEX_TO_RHOMBOHEDRAL = ((2 / 3, 1 / 3, 1 / 3), (-1 / 3, 1 / 3, 1 / 3), (-1 / 3, -2 / 3, 1 / 3))


def _rhombohedral_cell(hexagonal: Structure) -> Structure:
    """The rhombohedral primitive cell (a = b = c) of a structure in hexagonal axes, its 3-fold
    axis kept along the hexagonal c (and z): pw.x finds a cell's symmetry only among rotations
    about the Cartesian axes, so a cell turned another way would lose operations."""
    import numpy as np
    from pymatgen.core import Lattice
    from pymatgen.core import Structure as _Structure

    lattice = Lattice(np.array(_HEX_TO_RHOMBOHEDRAL) @ hexagonal.lattice.matrix)
    frac = np.round(lattice.get_fractional_coords(hexagonal.cart_coords), 6) % 1.0
    _, first = np.unique(np.round(frac, 4) % 1.0, axis=0, return_index=True)
    keep = sorted(first)
    return _Structure(lattice, [hexagonal[i].species for i in keep], frac[keep])
