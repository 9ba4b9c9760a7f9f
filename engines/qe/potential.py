"""pp.x after an scf: the electrostatic potential (``plot_num=11``) as a cube file.

``plot_num=11`` is the bare (local pseudopotential) plus Hartree potential, the
electrostatic potential energy of an electron in Rydberg: what the Freysoldt and eFNV
corrections of charged defect cells compare between the defect and the bulk cell. The
cube (``potential.cube``, ``output_format=6``) stays in the job folder; the task document
keeps its path, the planar averages and the atomic-site potentials
(:func:`perovflow.grids.potential_record`) in eV.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from perovflow.engines.process import run_command
from perovflow.engines.qe.inputs import RY_EV
from perovflow.errors import EngineError

PP_IN = "pp_potential.in"
PP_OUT = "pp_potential.out"
CUBE = "potential.cube"
FILPLOT = "potential.filplot"


def write_pp_input(directory: Path, params: dict[str, Any]) -> Path:
    """Write the pp.x input of ``plot_num=11`` (3-D cube) for the pw.x run of ``params``."""
    control = params["input_data"]["control"]
    text = (
        "&INPUTPP\n"
        f"  prefix = '{control.get('prefix', 'pwscf')}'\n"
        f"  outdir = '{control.get('outdir', './')}'\n"
        f"  filplot = '{FILPLOT}'\n"
        "  plot_num = 11\n"
        "/\n"
        "&PLOT\n"
        "  nfile = 1\n"
        f"  filepp(1) = '{FILPLOT}'\n"
        "  iflag = 3\n"
        "  output_format = 6\n"
        f"  fileout = '{CUBE}'\n"
        "/\n"
    )
    path = Path(directory) / PP_IN
    path.write_text(text)
    return path


def run_pp_potential(directory: Path, params: dict[str, Any], structure: Any) -> dict[str, Any]:
    """Run pp.x in the scf folder ``directory``; task-document fields (``potential``, files).

    ``structure`` is the cell of the run (its sites give the site potentials).

    Raises
    ------
    EngineError
        If pp.x fails or writes no cube file.
    """
    from ase.io.cube import read_cube_data

    from perovflow.grids import potential_record
    from perovflow.settings import get_settings

    settings = get_settings()
    directory = Path(directory)
    write_pp_input(directory, params)
    argv = [*settings.parallel_for("qe").command(settings.qe.pp_cmd), "-in", PP_IN]
    result = run_command(argv, directory, PP_OUT, "pp_potential.err")
    cube = directory / CUBE
    if result.returncode != 0 or not cube.is_file():
        raise EngineError(
            f"pp.x (plot_num=11) failed in {directory}; last output: {result.tail(6)}",
            "check that the scf finished and left its .save folder (charge density)",
        )
    (directory / FILPLOT).unlink(missing_ok=True)  # the cube holds the same grid
    data, _ = read_cube_data(str(cube))
    lattice = structure.lattice if hasattr(structure, "lattice") else None
    matrix = lattice.matrix if lattice is not None else structure.cell.array
    frac = structure.frac_coords if lattice is not None else structure.get_scaled_positions()
    record = potential_record(data * RY_EV, matrix, frac, str(cube), "pp.x plot_num=11")
    return {"potential": record, "files": {"potential_cube": str(cube)}}
