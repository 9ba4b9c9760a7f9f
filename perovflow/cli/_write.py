"""Atomic writing of assembled structures for the CLI (Structure or Molecule).

``write_atomic(obj, path) -> Path``: a Structure through
:func:`perovflow.structures.io.write_structure`; a Molecule (nanocrystal) as extended XYZ
with its per-atom ``domain`` labels. Both land under a temporary name in the target folder
and are renamed when complete.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from perovflow.errors import InputError


def _write_molecule(molecule: Any, path: Path) -> None:
    """Extended XYZ of a Molecule, with its ``domain`` labels as a per-atom column."""
    import numpy as np
    from ase import Atoms
    from ase.io import write

    atoms = Atoms([s.specie.symbol for s in molecule], positions=molecule.cart_coords)
    domains = molecule.site_properties.get("domain")
    if domains is not None:
        atoms.new_array("domain", np.array([str(d) for d in domains]))
    write(str(path), atoms, format="extxyz")


def write_atomic(obj: Any, path: Path) -> Path:
    """Write a Structure (any format of the structures layer) or a Molecule (.xyz/.extxyz).

    Both go through a temporary file in the target folder and a rename.
    """
    path = Path(path).expanduser().resolve()
    if hasattr(obj, "lattice"):
        from perovflow.structures.io import write_structure

        return write_structure(obj, path)
    if path.suffix.lower() not in (".xyz", ".extxyz"):
        raise InputError(
            f"a nanocrystal cannot be written as {path.name}", "name the output *.xyz or *.extxyz"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        _write_molecule(obj, Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
