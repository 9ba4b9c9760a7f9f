"""Readers for electrostatic potentials on a grid, and their planar averages.

Formats
-------
* Gaussian cube files: QE ``pp.x`` (``plot_num=11``, ``output_format=6``; Rydberg) and CP2K
  ``V_HARTREE_CUBE`` (``*-v_hartree-*.cube``; Hartree). Read with ASE.
* QE ``pp.x`` ``filplot`` files (the intermediate file, same header as projwfc's filproj;
  values in Rydberg, 5 per line, x fastest).

All potentials are returned in eV as the potential energy of an electron (the convention of
VASP's LOCPOT, which pymatgen-analysis-defects' Freysoldt correction expects). Both QE's
``v_bare + v_H`` and CP2K's Hartree potential follow it; pass ``sign=-1`` for a file that
stores the electrostatic potential itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from perovflow.errors import InputError

RY_EV = 13.605693122994
HA_EV = 27.211386245988
BOHR_A = 0.529177210903
UNITS = {"Ry": RY_EV, "Ha": HA_EV, "eV": 1.0}


@dataclass
class GridPotential:
    """A potential (eV) on a periodic grid and the structure of its cell."""

    data: np.ndarray
    structure: Any
    source: str = ""

    def planar_averages(self) -> dict[int, np.ndarray]:
        """Planar averages along the three lattice directions (eV)."""
        return {ax: planar_average(self.data, ax) for ax in range(3)}


def planar_average(data: np.ndarray, axis: int) -> np.ndarray:
    """Average of a 3-D grid over the planes normal to lattice direction ``axis``."""
    others = tuple(i for i in range(3) if i != axis)
    return np.asarray(data, dtype=float).mean(axis=others)


def _units_for(path: Path, header: str, units: str | None) -> float:
    if units is not None:
        if units not in UNITS:
            raise InputError(f"unknown potential unit {units!r}", "use Ry, Ha or eV")
        return UNITS[units]
    low = (path.name + header).lower()
    if "hartree" in low or "cp2k" in low:
        return HA_EV
    if "pwscf" in low or "espresso" in low or "pp.x" in low or path.suffix == ".dat":
        return RY_EV
    raise InputError(
        f"cannot tell the energy unit of {path.name}",
        "pass units='Ry' (QE pp.x) or units='Ha' (CP2K V_HARTREE)",
    )


def read_cube_potential(path: str | Path, units: str | None = None, sign: int = 1) -> GridPotential:
    """A QE pp.x or CP2K V_HARTREE cube file as a :class:`GridPotential` in eV."""
    import gzip

    from ase.io.cube import read_cube_data
    from pymatgen.io.ase import AseAtomsAdaptor

    path = Path(path)
    if not path.is_file():
        raise InputError(f"file {path} does not exist", "give the cube file of the potential")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        header = fh.readline() + fh.readline()
    try:
        data, atoms = read_cube_data(str(path))
    except Exception as exc:
        raise InputError(
            f"{path.name} is not a readable cube file ({type(exc).__name__})",
            "give a complete cube file (pp.x output_format=6 or CP2K V_HARTREE_CUBE)",
        ) from exc
    atoms.pbc = True
    scale = _units_for(path, header, units) * sign
    return GridPotential(data * scale, AseAtomsAdaptor.get_structure(atoms), str(path))


def read_filplot(path: str | Path, units: str | None = "Ry", sign: int = 1) -> GridPotential:
    """A QE pp.x ``filplot`` file (3-D grid, ibrav=0 cells) as a :class:`GridPotential`."""
    from pymatgen.core import Lattice, Structure

    from perovflow.engines.qe.projwfc import element_of, read_text

    path = Path(path)
    lines = read_text(path).splitlines()
    try:
        nr = [int(x) for x in lines[1].split()[:3]]
        nat, ntyp = (int(x) for x in lines[1].split()[6:8])
        head = lines[2].split()
        ibrav, alat = int(head[0]), float(head[1]) * BOHR_A
        if ibrav != 0:
            raise ValueError(f"ibrav={ibrav} cells are not supported, only ibrav=0")
        cell = np.array([[float(x) for x in lines[3 + i].split()] for i in range(3)]) * alat
        types = {}
        for line in lines[7 : 7 + ntyp]:
            parts = line.split()
            types[int(parts[0])] = element_of(parts[1])
        species, coords = [], []
        for line in lines[7 + ntyp : 7 + ntyp + nat]:
            parts = line.split()
            coords.append([float(x) * alat for x in parts[1:4]])
            species.append(types[int(parts[4])])
        values = np.array(" ".join(lines[7 + ntyp + nat :]).split(), dtype=float)
        if values.size != nr[0] * nr[1] * nr[2]:
            raise ValueError(f"{values.size} values for a {nr} grid")
    except (ValueError, IndexError, KeyError) as exc:
        raise InputError(
            f"{path.name} is not a complete pp.x filplot file ({exc})", "rerun pp.x"
        ) from exc
    data = values.reshape(nr[2], nr[1], nr[0]).transpose(2, 1, 0)
    structure = Structure(Lattice(cell), species, coords, coords_are_cartesian=True)
    return GridPotential(data * UNITS[units or "Ry"] * sign, structure, str(path))


def read_potential(path: str | Path, units: str | None = None, sign: int = 1) -> GridPotential:
    """Read a potential file, choosing the reader from its content (cube or filplot)."""
    path = Path(path)
    name = path.name.lower()
    if ".cube" in name:
        return read_cube_potential(path, units, sign)
    return read_filplot(path, units or "Ry", sign)
