"""CP2K's Hartree potential cube (``V_HARTREE_CUBE``) for the charged-defect corrections.

CP2K writes the electrostatic (Hartree) potential of the total charge, electrons and
Gaussian-smeared cores, in Hartree, as the potential energy of an electron:
``<project>-v_hartree-1_0.cube``. ``STRIDE 1 1 1`` keeps the full grid, so that the bulk and
defect cells of one cutoff share it. The document keeps the path, the planar averages and
the site potentials in eV (:func:`perovflow.grids.potential_record`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from perovflow.errors import EngineError

HA_EV = 27.211386245988


def add_hartree_cube(params: dict[str, Any]) -> None:
    """Ask for the full-grid V_HARTREE cube (a user's own V_HARTREE_CUBE section wins)."""
    prints = params["FORCE_EVAL"]["DFT"].setdefault("PRINT", {})
    if not any(str(k).upper().startswith("V_HARTREE_CUBE") for k in prints):
        prints["V_HARTREE_CUBE"] = {"STRIDE": "1 1 1", "APPEND": False}


def read_hartree_cube(directory: Path, structure: dict[str, Any]) -> dict[str, Any]:
    """The potential record of the newest ``*v_hartree*.cube`` in ``directory``.

    Raises
    ------
    EngineError
        If CP2K wrote no V_HARTREE cube.
    """
    from ase.io.cube import read_cube_data
    from pymatgen.core import Structure

    from perovflow.grids import potential_record

    cubes = sorted(Path(directory).glob("*v_hartree*.cube"), key=lambda p: p.stat().st_mtime)
    if not cubes:
        raise EngineError(
            f"CP2K wrote no V_HARTREE cube in {directory}",
            "check the DFT%PRINT%V_HARTREE_CUBE section of the input",
        )
    data, _ = read_cube_data(str(cubes[-1]))
    cell = Structure.from_dict(structure)
    return potential_record(
        data * HA_EV, cell.lattice.matrix, cell.frac_coords, str(cubes[-1]), "CP2K V_HARTREE_CUBE"
    )
