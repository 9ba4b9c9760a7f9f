"""Read, write and sanity-check structures.

:func:`load_structure` accepts a prototype name or any file ASE or pymatgen can read
(CIF, POSCAR/CONTCAR/*.vasp, extxyz, ...). :func:`write_structure` picks the format from
the suffix and writes atomically (temporary file in the same folder, then rename), so a
failed write never leaves a half-written file. Every problem is an
:class:`~perovflow.errors.InputError` naming the problem and the fix.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from perovflow.errors import InputError

if TYPE_CHECKING:
    from ase import Atoms
    from pymatgen.core import Structure

_POSCAR_NAMES = ("POSCAR", "CONTCAR")
_WRITE_FORMATS = {".cif": "cif", ".extxyz": "extxyz", ".xyz": "extxyz", ".vasp": "vasp"}
_DEFAULT_RADIUS = 1.5  # Å, for species without a tabulated covalent radius


def to_atoms(structure: Any) -> Atoms:
    """ASE Atoms from a pymatgen Structure or Molecule (no pbc), ASE Atoms (copied) or their dicts.

    Raises
    ------
    InputError
        For anything else.
    """
    from ase import Atoms
    from pymatgen.core import Molecule, Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    if isinstance(structure, Atoms):
        return structure.copy()
    if isinstance(structure, dict):
        cls = Molecule if structure.get("@class") == "Molecule" else Structure
        structure = cls.from_dict(structure)
    if isinstance(structure, Molecule):
        atoms = AseAtomsAdaptor.get_atoms(structure)
        atoms.pbc = False
        return atoms
    if isinstance(structure, Structure):
        return AseAtomsAdaptor.get_atoms(structure)
    raise InputError(
        f"cannot use a {type(structure).__name__} as a structure",
        "pass a pymatgen Structure or Molecule, or an ASE Atoms",
    )


def from_atoms(atoms: Atoms) -> Structure:
    """Convert ASE atoms to a pymatgen structure (requires a 3D periodic cell)."""
    from pymatgen.io.ase import AseAtomsAdaptor

    if atoms.cell.rank < 3:
        raise InputError(
            "the structure has no 3D cell (a molecule or slab without cell vectors)",
            "give a periodic structure with three lattice vectors",
        )
    structure = AseAtomsAdaptor.get_structure(atoms)
    structure.properties = {}
    return structure


def _is_poscar(path: Path) -> bool:
    return path.suffix.lower() == ".vasp" or any(path.name.startswith(n) for n in _POSCAR_NAMES)


def _read_file(path: Path) -> Structure:
    """Read ``path`` with pymatgen (CIF, POSCAR) or ASE (anything else)."""
    suffix = path.suffix.lower()
    hint = "check that it is a complete CIF, POSCAR or extxyz file (open it in a viewer or ASE)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if suffix == ".cif":
                from pymatgen.io.cif import CifParser

                structures = CifParser(path).parse_structures(primitive=False)
                if not structures:
                    raise ValueError("no structure block")
                structure = structures[0]
            else:
                from ase.io import read

                fmt = "vasp" if _is_poscar(path) else None
                structure = from_atoms(read(path, format=fmt))
    except InputError:
        raise
    except Exception as exc:  # every parser fails differently; report one line
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read a structure from {path}: {reason[:160]}", hint) from exc
    if len(structure) == 0:
        raise InputError(f"{path} contains no atoms", hint)
    structure.properties = {"source_file": str(path)}
    return structure


def load_structure(name_or_path: str | Path, cell: str = "conventional") -> Structure:
    """Return a structure from a prototype name or a structure file.

    Parameters
    ----------
    name_or_path
        A prototype name (see :func:`perovflow.structures.prototypes.list_prototypes`)
        or the path of a CIF/POSCAR/extxyz/ASE-readable file.
    cell
        ``"conventional"`` or ``"primitive"``; for files, ``"primitive"`` reduces the
        structure to its spglib primitive cell.

    Raises
    ------
    InputError
        Unknown name, missing or unreadable file, overlapping atoms.
    """
    from perovflow.structures.prototypes import SYMPREC, build_prototype, prototype_names

    path = Path(name_or_path).expanduser()
    if not path.is_file():
        text = str(name_or_path)
        looks_like_file = path.suffix or os.sep in text or text.startswith(_POSCAR_NAMES)
        if looks_like_file and text not in prototype_names():
            raise InputError(
                f"structure file {text} not found",
                f"check the path, or use a prototype name ({', '.join(prototype_names())})",
            )
        return build_prototype(text, cell=cell)  # raises for unknown names
    if cell not in ("conventional", "primitive"):
        raise InputError(f"unknown cell '{cell}'", "use conventional or primitive")
    structure = _read_file(path)
    check_structure(structure)
    if cell == "primitive":
        from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

        props = structure.properties
        prim = SpacegroupAnalyzer(structure, symprec=SYMPREC).find_primitive()
        if prim is not None and len(prim) < len(structure):
            structure = prim
            structure.properties = props
    return structure


def _radius(symbol: str) -> float:
    from pymatgen.analysis.molecule_structure_comparator import CovalentRadius

    return float(CovalentRadius.radius.get(symbol, _DEFAULT_RADIUS))


def check_structure(structure: Structure, min_ratio: float = 0.7) -> None:
    """Raise if two atoms are closer than ``min_ratio`` × (sum of covalent radii).

    Periodic images are included, so a cell that is too small for its contents is also
    caught. Radii are pymatgen's covalent radii (Cordero et al. 2008).

    Raises
    ------
    InputError
        Naming the closest offending pair (indices, elements, distance).
    """
    if len(structure) == 0:
        raise InputError("the structure has no atoms", "give a structure with at least one atom")
    symbols = [site.specie.symbol for site in structure]
    radii = np.array([_radius(s) for s in symbols])
    cutoff = float(2 * radii.max() * min_ratio)
    i, j, _, dist = structure.get_neighbor_list(cutoff)
    if len(i) == 0:
        return
    ratio = dist / (radii[i] + radii[j])
    worst = int(np.argmin(ratio))
    if ratio[worst] >= min_ratio:
        return
    a, b = int(i[worst]), int(j[worst])
    limit = min_ratio * (radii[a] + radii[b])
    raise InputError(
        f"atoms {a} ({symbols[a]}) and {b} ({symbols[b]}) are {dist[worst]:.2f} Å apart, "
        f"closer than {min_ratio:g} x the sum of covalent radii ({limit:.2f} Å)",
        "check the coordinates and the cell (Å, fractional vs Cartesian) and remove duplicate atoms",
    )


def _format_for(path: Path) -> str:
    if _is_poscar(path):
        return "vasp"
    fmt = _WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(
            f"cannot tell the file format of {path.name} from its suffix",
            "name the output *.cif, *.extxyz, *.xyz, *.vasp or POSCAR",
        )
    return fmt


def write_structure(structure: Structure, path: str | Path) -> Path:
    """Write ``structure`` to ``path`` atomically; the suffix picks the format.

    ``.cif`` (pymatgen CifWriter, P1), ``.extxyz``/``.xyz`` (ASE extended XYZ),
    ``.vasp``/``POSCAR*``/``CONTCAR*`` (VASP 5 POSCAR, direct coordinates).

    Returns
    -------
    Path
        The absolute path written.
    """
    path = Path(path).expanduser().resolve()
    fmt = _format_for(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if fmt == "cif":
            from pymatgen.io.cif import CifWriter

            CifWriter(structure).write_file(tmp)
        else:
            from ase.io import write

            kwargs = {"direct": True} if fmt == "vasp" else {}
            write(tmp, to_atoms(structure), format=fmt, **kwargs)
        os.replace(tmp, path)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, InputError):
            raise
        raise InputError(
            f"could not write {path}: {exc}", "check the folder is writable and has free space"
        ) from exc
    return path
