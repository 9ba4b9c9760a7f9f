"""jobflow Makers for Quantum ESPRESSO (atomate2 style): static, relax, bands, DOS.

Each maker is a dataclass of a few fields; ``make(structure, prev_dir=None)`` runs pw.x in
the job's working directory (jobflow's ``run_locally(create_folders=True)`` gives each job
its own folder) and returns a :class:`~perovflow.engines.schemas.TaskDocument`. Big arrays
go to the JobStore's ``data`` store (``@job(data=BIG_FIELDS)``). Makers never change
themselves: parameters are built fresh on every call.

Steps of ``make``: pick pseudopotentials -> build the input set (protocol, automatic
choices, user overrides) -> (bands/DOS) link the charge density of ``prev_dir``, the scf
folder; (relax/static) restart from ``prev_dir``, an earlier run of the same calculation:
its last geometry and charge density (:mod:`perovflow.engines.qe.restart`) -> run pw.x
with error recovery (under SLURM ``max_seconds`` follows the job's remaining time) ->
(DOS) run projwfc.x -> parse -> task document.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobflow import job

from perovflow.engines.base import DFTMaker, with_structure_charge, write_additional_data
from perovflow.engines.schemas import BIG_FIELDS, TaskDocument
from perovflow.errors import InputError
from perovflow.structures.io import to_atoms

SAVE_FILES = ("charge-density.dat", "data-file-schema.xml")


@dataclass
class BaseQEMaker(DFTMaker):
    """Common fields of the QE makers (see :class:`~perovflow.engines.base.DFTMaker`).

    ``input_set_overrides`` takes pw.x settings: ``{"system": {"ecutwfc": 30}}``,
    ``{"ecutwfc": 30}`` or ``{"kpts": [2, 2, 2]}``. ``spin``: spin polarisation, None
    (default) for odd electron counts of non-metals, True always, False never (a user
    ``nspin``/``tot_magnetization`` override wins; see
    :func:`perovflow.engines.qe.inputs.spin_settings`). ``soc``: spin–orbit coupling
    (non-collinear, fully relativistic pseudopotentials); None takes the protocol's ``soc``.
    """

    name: str = "qe static"
    spin: bool | None = None
    soc: bool | None = None

    @job(data=BIG_FIELDS)
    def make(self, structure: Any, prev_dir: str | None = None) -> TaskDocument:
        """Run the calculation on ``structure`` (pymatgen Structure or ASE Atoms).

        ``prev_dir``: for bands/DOS the finished scf folder (required); for relax/static an
        earlier, unfinished run of this same calculation to restart from (optional).
        """
        write_additional_data(self.write_additional_data, Path.cwd())
        return run_qe_task(with_structure_charge(self, structure), structure, prev_dir, Path.cwd())


@dataclass
class QEStaticMaker(BaseQEMaker):
    """Self-consistent field (scf) single point."""

    name: str = "qe static"
    calc_type = "static"


@dataclass
class QERelaxMaker(BaseQEMaker):
    """Relaxation with pw.x's BFGS (force threshold fmax_bulk / fmax_defect).

    ``relax_cell`` makes it a ``vc-relax``: the cell relaxes too, to the protocol's
    ``press_kbar`` within ``press_conv_kbar`` (``cell_dofree`` from the protocol); a cell
    that outgrew its plane-wave basis is relaxed again from where it ended
    (:class:`~perovflow.engines.qe.handlers.VCRelaxHandler`).
    """

    name: str = "qe relax"
    relax_cell: bool = False
    calc_type = "relax"


@dataclass
class QEBandsMaker(BaseQEMaker):
    """Non-self-consistent bands along the Setyawan–Curtarolo path (needs the scf ``prev_dir``).

    ``line_density`` is the number of k-points per Å⁻¹ along the path; None (default) takes
    the protocol's ``bands_line_density`` (``fast`` 10, ``standard``/``seed`` 20).
    """

    name: str = "qe bands"
    line_density: float | None = None
    calc_type = "bands"


@dataclass
class QEDosMaker(BaseQEMaker):
    """Uniform nscf (half the protocol k spacing) plus projwfc.x (needs the scf ``prev_dir``).

    ``delta_e_eV`` is projwfc's energy step.
    """

    name: str = "qe dos"
    delta_e_eV: float = 0.02
    calc_type = "dos"


def link_charge_density(
    prev_dir: str | Path | None, directory: Path, prefix: str = "pwscf"
) -> None:
    """Copy only the charge density and the data file of a previous scf into ``directory``."""
    if prev_dir is None:
        raise InputError(
            "a bands/DOS calculation needs the directory of a finished scf",
            "pass prev_dir (the scf job's dir_name output)",
        )
    src = Path(prev_dir) / f"{prefix}.save"
    missing = [f for f in SAVE_FILES if not (src / f).is_file()]
    if missing:
        raise InputError(
            f"{src} lacks {', '.join(missing)}",
            "run a QE static (scf) calculation first and pass its directory",
        )
    dst = directory / f"{prefix}.save"
    dst.mkdir(parents=True, exist_ok=True)
    for name in SAVE_FILES:
        shutil.copy2(src / name, dst / name)


def run_qe_task(
    maker: BaseQEMaker, structure: Any, prev_dir: str | None, directory: Path
) -> TaskDocument:
    """Everything ``make`` does (see the module docstring for the steps)."""
    from perovflow.engines.pseudos import get_pseudos, pseudo_dir_for
    from perovflow.engines.qe.calc import run_pw
    from perovflow.engines.qe.inputs import qe_input_set
    from perovflow.settings import get_settings

    protocol = maker.protocol or get_settings().protocol
    atoms = to_atoms(structure)
    if not atoms.pbc.all() or atoms.cell.rank < 3:
        raise InputError(
            "pw.x needs a periodic cell, but the structure is a molecule/cluster",
            "use the CP2K engine for clusters, or put the molecule in a box (a Structure with vacuum)",
        )
    soc = _soc(maker, protocol)
    pseudos = get_pseudos(sorted(set(atoms.get_chemical_symbols())), "qe", soc=soc)
    params = qe_input_set(
        atoms, maker.calc_type, protocol, pseudos, charge=maker.charge,
        defect=maker.defect, overrides=maker.input_set_overrides, spin=maker.spin, soc=soc,
    )  # fmt: skip
    if getattr(maker, "relax_cell", False):
        from perovflow.engines.qe.inputs import cell_relax_settings

        params = cell_relax_settings(params, protocol, maker.input_set_overrides)
    labels = {}
    restart = None
    if maker.calc_type in ("static", "relax"):
        from perovflow.engines.qe.restart import prepare_restart

        params, restart = prepare_restart(prev_dir, directory, atoms, params)
    if maker.calc_type in ("bands", "dos"):
        link_charge_density(prev_dir, directory, params["input_data"]["control"]["prefix"])
    if maker.calc_type == "bands" and "kpts" not in (maker.input_set_overrides or {}):
        params["kpts"], labels = band_path(atoms, maker.line_density, protocol=protocol)
    from perovflow.engines.fingerprint import task_hash

    identity = task_hash("qe", atoms, params, maker.calc_type, protocol)
    outcome = run_pw(
        atoms, params, directory, pseudo_dir_for(pseudos),
        max_attempts=maker.max_attempts, walltime_s=maker.walltime_s,
    )  # fmt: skip
    if restart is not None:
        outcome.recovery.insert(0, restart)
    extra: dict[str, Any] = {}
    if maker.calc_type == "dos":
        from perovflow.engines.qe.dos import run_projwfc

        extra = run_projwfc(directory, outcome.params, maker.delta_e_eV)
    from perovflow.engines.qe.document import build_task_document

    doc = build_task_document(
        maker, atoms, outcome, directory, protocol, pseudos, prev_dir, labels, extra
    )
    doc.calc_hash = identity
    return doc


def _soc(maker: BaseQEMaker, protocol: str) -> bool:
    """The maker's spin–orbit switch resolved against the protocol and the user's overrides."""
    from perovflow.engines.protocols import get_protocol
    from perovflow.engines.qe.inputs import nest_overrides
    from perovflow.engines.qe.soc import resolve_soc

    return resolve_soc(
        maker.soc, get_protocol(protocol, "qe"), nest_overrides(maker.input_set_overrides)
    )


def band_path(
    atoms: Any,
    line_density: float | None = None,
    reference: Any = None,
    protocol: str | None = None,
    segments: list[list[str]] | None = None,
) -> tuple[Any, dict[int, str]]:
    """k-points (fractional in this cell's reciprocal basis, weight 1) and their labels.

    The Setyawan–Curtarolo path of ``reference`` (default: the cell itself) carried into
    this cell through the integer matrix between the cells
    (:func:`perovflow.structures.kpath.path_kpoints`): every label sits at its true point;
    for a supercell/defect cell of ``reference`` the path is the host's, folded.
    ``line_density`` (per Å⁻¹) defaults to the protocol's ``bands_line_density``.
    """
    from perovflow.structures.kpath import path_kpoints

    if line_density is None:
        from perovflow.engines.protocols import get_protocol
        from perovflow.settings import get_settings

        proto = get_protocol(protocol or get_settings().protocol, "qe")
        line_density = float(proto["bands_line_density"])
    return path_kpoints(atoms, line_density, reference=reference, segments=segments)
