"""projwfc.x after a uniform nscf: atom-projected DOS files and per-state projections.

The projwfc.x *output parser* (``parse_projwfc(dir) -> StateProjections``) lives in
:mod:`perovflow.engines.qe.projwfc`; it takes spin, k weights, occupations and levels from
the nscf run's ``data-file-schema.xml`` (:mod:`perovflow.engines.qe.xml`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from perovflow.engines.process import run_command
from perovflow.engines.qe.inputs import RY_EV
from perovflow.errors import EngineError

PROJWFC_IN = "projwfc.in"
PROJWFC_OUT = "projwfc.out"


def write_projwfc_input(directory: Path, params: dict[str, Any], delta_e_eV: float) -> Path:
    """Write ``projwfc.in`` for the pw.x run described by ``params``."""
    control = params["input_data"]["control"]
    system = params["input_data"]["system"]
    degauss = system.get("degauss", 0.01)
    text = (
        "&PROJWFC\n"
        f"  prefix = '{control.get('prefix', 'pwscf')}'\n"
        f"  outdir = '{control.get('outdir', './')}'\n"
        f"  filpdos = '{control.get('prefix', 'pwscf')}'\n"
        f"  filproj = '{control.get('prefix', 'pwscf')}'\n"
        f"  DeltaE = {delta_e_eV}\n"
        f"  degauss = {degauss}\n"
        "/\n"
    )
    path = Path(directory) / PROJWFC_IN
    path.write_text(text)
    return path


def read_total_dos(directory: Path, prefix: str = "pwscf") -> dict[str, Any] | None:
    """Energies (eV), total DOS and summed PDOS from ``<prefix>.pdos_tot``."""
    path = Path(directory) / f"{prefix}.pdos_tot"
    if not path.is_file():
        return None
    data = np.loadtxt(path)
    return {
        "energies_eV": data[:, 0].tolist(),
        "total": data[:, 1].tolist(),
        "pdos_sum": data[:, 2].tolist(),
        "source": path.name,
    }


def run_projwfc(
    directory: Path, params: dict[str, Any], delta_e_eV: float = 0.02
) -> dict[str, Any]:
    """Run projwfc.x in ``directory``; return task-document fields (dos, projections, files).

    Raises
    ------
    EngineError
        If projwfc.x fails (e.g. pseudopotentials without atomic wavefunctions).
    """
    from perovflow.settings import get_settings

    settings = get_settings()
    write_projwfc_input(directory, params, delta_e_eV)
    argv = [*settings.parallel_for("qe").command(settings.qe.projwfc_cmd), "-in", PROJWFC_IN]
    result = run_command(argv, directory, PROJWFC_OUT, "projwfc.err")
    if result.returncode != 0 or "JOB DONE" not in result.tail(40):
        raise EngineError(
            f"projwfc.x failed in {directory}; last output: {result.tail(6)}",
            "use pseudopotentials with atomic wavefunctions (the built-in gth-pbe UPFs have "
            "them when CP2K is installed) and check the nscf run",
        )
    prefix = params["input_data"]["control"].get("prefix", "pwscf")
    out: dict[str, Any] = {
        "dos": read_total_dos(directory, prefix),
        "files": {"projwfc_output": str(Path(directory) / PROJWFC_OUT)},
    }
    from perovflow.engines.qe.projwfc import parse_projwfc

    out["projections"] = parse_projwfc(directory).to_dict()
    return out


__all__ = ["RY_EV", "read_total_dos", "run_projwfc", "write_projwfc_input"]
