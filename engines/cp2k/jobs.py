"""jobflow Makers for CP2K (atomate2 style): static (energy, forces, MOs, projections) and relax.

``make(structure_or_molecule, prev_dir=None)`` runs ``cp2k.psmp -i cp2k.inp`` in the job's
working directory and returns a :class:`~perovflow.engines.schemas.TaskDocument`. A pymatgen
``Structure`` (or periodic ASE Atoms) is a crystal; a ``Molecule`` (or Atoms without pbc) is a
cluster, solved without periodic images (wavelet Poisson solver, box with vacuum).

Steps of ``make``: GTH potentials (shared with QE, :func:`perovflow.engines.pseudos.get_pseudos`)
-> input set (protocol, automatic choices, user overrides) -> wavefunction guess from
``prev_dir`` when it holds the same atoms -> run CP2K with custodian's handlers
(:mod:`perovflow.engines.cp2k.handlers`) -> parse energy, forces, MOs, per-atom projections,
final geometry -> task document. Makers never change themselves.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobflow import job

from perovflow.engines.base import DFTMaker, with_structure_charge, write_additional_data
from perovflow.engines.cp2k.inputs import COORD_FILE, INPUT_FILE, OUTPUT_FILE, PROJECT
from perovflow.engines.schemas import BIG_FIELDS, TaskDocument
from perovflow.errors import EngineError
from perovflow.structures.io import to_atoms

WFN = f"{PROJECT}-RESTART.wfn"
PREV_WFN = "previous.wfn"
TRAJ = f"{PROJECT}-pos-1.xyz"
CELL_TRAJ = f"{PROJECT}-1.cell"


@dataclass
class BaseCP2KMaker(DFTMaker):
    """Common fields of the CP2K makers (see :class:`~perovflow.engines.base.DFTMaker`).

    ``input_set_overrides`` takes protocol keys (``{"cutoff_eV": 4000}``), options of
    :data:`perovflow.engines.cp2k.inputs.OPTIONS` (``{"kpoints": "gamma", "scf": "ot"}``) or raw
    CP2K sections (``{"FORCE_EVAL": {"DFT": {"SCF": {"MAX_SCF": 200}}}}``; ``None`` removes a
    keyword). ``multiplicity`` is the spin multiplicity; None: 1 for an even electron count,
    else 2 (UKS). ``xc`` (``pbe``, ``hse06``, ``pbe0``; None: the protocol's) wins over the
    protocol; an ``xc`` in ``input_set_overrides`` wins over both. Hybrids use ADMM
    (:mod:`perovflow.engines.cp2k.hybrid`); give the PBE run's folder as ``prev_dir`` to start
    from its wavefunction.
    """

    name: str = "cp2k static"
    multiplicity: int | None = None
    xc: str | None = None

    @job(data=BIG_FIELDS)
    def make(self, structure: Any, prev_dir: str | None = None) -> TaskDocument:
        """Run CP2K on ``structure`` (Structure, Molecule, ASE Atoms or their dicts)."""
        write_additional_data(self.write_additional_data, Path.cwd())
        return run_cp2k_task(
            with_structure_charge(self, structure), structure, prev_dir, Path.cwd()
        )


@dataclass
class CP2KStaticMaker(BaseCP2KMaker):
    """Energy and forces, MO eigenvalues and occupations, per-atom MO projections (Γ only)."""

    name: str = "cp2k static"
    calc_type = "static"


@dataclass
class CP2KRelaxMaker(BaseCP2KMaker):
    """GEO_OPT (BFGS; LBFGS above 300 atoms) to the protocol's force threshold.

    ``relax_cell`` makes it a CELL_OPT: the cell relaxes too (analytical stress), to the
    protocol's ``press_kbar`` within ``press_conv_kbar``; a restart continues from the last
    cell and geometry written.
    """

    name: str = "cp2k relax"
    relax_cell: bool = False
    calc_type = "relax"


def cp2k_command() -> tuple[list[str], dict[str, str]]:
    """argv and environment from ``settings.cp2k.cmd`` and ``settings.parallel_for('cp2k')``."""
    from perovflow.settings import get_settings

    settings = get_settings()
    par = settings.parallel_for("cp2k")
    return [*par.command(settings.cp2k.cmd), "-i", INPUT_FILE], {
        "OMP_NUM_THREADS": str(par.omp_threads)
    }


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _previous_wfn(prev_dir: str | None, directory: Path, atoms: Any, mult: int) -> bool:
    """Copy ``prev_dir``'s wavefunction when it belongs to the same atoms and spin state."""
    if prev_dir is None:
        return False
    src = Path(prev_dir)
    if not (src / WFN).is_file() or not (src / COORD_FILE).is_file():
        return False
    symbols = (src / COORD_FILE).read_text().split("\n", 2)[2].split()[::4]
    prev_inp = (src / INPUT_FILE).read_text() if (src / INPUT_FILE).is_file() else ""
    m = re.search(r"^\s*MULTIPLICITY\s+(\d+)", prev_inp, re.M)
    if symbols != atoms.get_chemical_symbols() or (m and int(m.group(1)) != mult):
        return False
    shutil.copy2(src / WFN, directory / PREV_WFN)
    return True


def run_cp2k_task(
    maker: BaseCP2KMaker, structure: Any, prev_dir: str | None, directory: Path
) -> TaskDocument:
    """Everything ``make`` does (see the module docstring for the steps)."""
    from perovflow.engines.cp2k.handlers import default_handlers
    from perovflow.engines.cp2k.inputs import cp2k_input_set
    from perovflow.engines.protocols import merge
    from perovflow.engines.pseudos import get_pseudos
    from perovflow.engines.runner import run_with_recovery
    from perovflow.settings import get_settings

    protocol = maker.protocol or get_settings().protocol
    atoms = to_atoms(structure)
    potentials = get_pseudos(sorted(set(atoms.get_chemical_symbols())), "cp2k")
    fields = {"walltime_s": maker.walltime_s, **({"xc": maker.xc} if maker.xc else {})}
    overrides = merge(fields, maker.input_set_overrides)
    params, placed, info = cp2k_input_set(
        atoms, maker.calc_type, protocol, potentials, charge=maker.charge,
        multiplicity=maker.multiplicity, defect=maker.defect, overrides=overrides,
        relax_cell=bool(getattr(maker, "relax_cell", False)),
    )  # fmt: skip
    if maker.write_potential and maker.calc_type in ("static", "relax"):
        from perovflow.engines.cp2k.potential import add_hartree_cube

        add_hartree_cube(params)
    directory.mkdir(parents=True, exist_ok=True)
    if _previous_wfn(prev_dir, directory, placed, info["multiplicity"]):
        user_scf = overrides.get("FORCE_EVAL", {}).get("DFT", {}).get("SCF", {})
        if "SCF_GUESS" not in {k.upper() for k in user_scf}:
            params["FORCE_EVAL"]["DFT"]["WFN_RESTART_FILE_NAME"] = PREV_WFN
            params["FORCE_EVAL"]["DFT"]["SCF"]["SCF_GUESS"] = "RESTART"
            from perovflow.engines.cp2k.hybrid import screen_on_restart

            screen_on_restart(params, overrides)
    from perovflow.engines.fingerprint import task_hash

    identity = task_hash("cp2k", placed, params, maker.calc_type, protocol)
    frames: list[dict[str, Any]] = []
    execute = _executor(placed, directory, frames, maker.walltime_s)
    try:
        outcome = run_with_recovery(
            execute, params, default_handlers(), directory,
            completed=lambda r: r.returncode == 0 and _ended(directory),
            max_attempts=maker.max_attempts, label="CP2K",
        )  # fmt: skip
    except EngineError as exc:
        raise _with_abort_message(exc, directory) from None
    from perovflow.engines.cp2k.document import build_task_document

    doc = build_task_document(
        maker, atoms, placed, outcome, directory, protocol, potentials, info, frames
    )
    doc.calc_hash = identity
    if maker.write_potential and maker.calc_type in ("static", "relax"):
        from perovflow.engines.cp2k.potential import read_hartree_cube

        doc.potential = read_hartree_cube(directory, doc.structure)
        doc.files["potential_cube"] = doc.potential["file"]
    return doc


def _with_abort_message(exc: EngineError, directory: Path) -> EngineError:
    """Put CP2K's own ``[ABORT]`` message first in a crash error."""
    from perovflow.engines.cp2k.parsers import abort_message

    out = directory / OUTPUT_FILE
    message = abort_message(out.read_text(errors="replace")) if out.is_file() else None
    if not message:
        return exc
    return EngineError(f"CP2K aborted: {message}; {exc.problem}", exc.fix)


def _ended(directory: Path) -> bool:
    from perovflow.engines.process import output_tail

    return "PROGRAM ENDED AT" in output_tail(directory / OUTPUT_FILE, 12)


def _set_cell(params: dict[str, Any], cell: Any) -> None:
    """Write cell vectors (Å) into the ``&CELL`` section of ``params`` (in place)."""
    section = params["FORCE_EVAL"]["SUBSYS"]["CELL"]
    for key, row in zip("ABC", cell, strict=True):
        section[key] = [float(x) for x in row]


def _executor(placed: Any, directory: Path, frames: list, walltime_s: float | None):
    """The ``execute(params, attempt)`` callback: write inputs, clean stale files, run CP2K."""
    from perovflow.engines.cp2k.parsers import read_cells, read_trajectory
    from perovflow.engines.cp2k.writer import coords_text, render
    from perovflow.engines.process import run_command

    state = {"atoms": placed.copy()}

    def execute(params: dict[str, Any], attempt: int) -> Any:
        traj, cells = directory / TRAJ, directory / CELL_TRAJ
        if traj.is_file():  # a relaxation restarts from its last complete frame
            done = read_trajectory(traj)
            frames.extend(done)
            if done:
                state["atoms"].positions = done[-1]["positions"]
            traj.rename(directory / f"{PROJECT}-pos.attempt{attempt}.xyz")
        if cells.is_file():  # a CELL_OPT restarts from its last cell too
            last = read_cells(cells)
            if len(last):
                state["atoms"].set_cell(last[-1])
                _set_cell(params, last[-1])
            cells.rename(directory / f"{PROJECT}-cell.attempt{attempt}.cell")
        for stale in directory.glob(f"{PROJECT}-*.pdos"):
            stale.unlink()
        _atomic_write(directory / COORD_FILE, coords_text(state["atoms"]))
        _atomic_write(directory / INPUT_FILE, render(params))
        argv, env = cp2k_command()
        return run_command(
            argv, directory, stdout=OUTPUT_FILE, stderr="cp2k.err", walltime_s=walltime_s, env=env
        )

    return execute
