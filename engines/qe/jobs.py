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
(DOS, scf+PDOS) run projwfc.x -> parse -> task document -> (``write_potential``) pp.x
``plot_num=11`` on the scf (:mod:`perovflow.engines.qe.potential`).
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
    ``xc``: ``pbe``, ``hse06`` or ``pbe0``; None takes the protocol's ``xc``. Hybrid cost
    controls (:mod:`perovflow.engines.qe.hybrid`): ``nqx`` (Fock q grid, an int or three;
    None: the k grid, Γ-only along lattice vectors of 10 Å or more), ``ecutfock_eV`` (None:
    pw.x's ``ecutrho``), ``exx_restart`` (a hybrid given ``prev_dir`` starts from its
    wavefunctions and density, e.g. the PBE static of the same cell). ``projwfc``: run
    projwfc.x on the static's own k grid (projections without an nscf; the way to project
    a hybrid, which pw.x 6.7 cannot run non-self-consistently).
    """

    name: str = "qe static"
    spin: bool | None = None
    soc: bool | None = None
    xc: str | None = None
    nqx: int | list[int] | None = None
    ecutfock_eV: float | None = None
    exx_restart: bool = True
    projwfc: bool = False

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


@dataclass
class QEStaticPdosMaker(QEStaticMaker):
    """scf whose own states are projected: projwfc.x on the scf run, no nscf.

    For a PDOS/IPR on the scf's own k grid (a Γ-only defect cell), where the uniform nscf of
    :class:`QEDosMaker` would repeat the scf's diagonalisation at the same k-points. The task
    document carries ``dos`` and ``projections`` as a DOS task's does; ``nbnd`` (an input
    override) sets how many empty states are projected. ``delta_e_eV`` is projwfc's step.
    (A :class:`QEStaticMaker` with ``projwfc=True``, named for the demo's step.)
    """

    name: str = "qe scf+pdos"
    delta_e_eV: float = 0.02
    projwfc: bool = True


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
    from perovflow.engines.qe.inputs import qe_input_set
    from perovflow.engines.qe.run import run_pw
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
    hybrid = _hybrid_bands(maker, protocol)
    params = qe_input_set(
        atoms, "static" if hybrid else maker.calc_type, protocol, pseudos, charge=maker.charge,
        defect=maker.defect, overrides=maker.input_set_overrides, spin=maker.spin, soc=soc,
        xc=maker.xc, hybrid={"nqx": maker.nqx, "ecutfock_eV": maker.ecutfock_eV},
    )  # fmt: skip
    params["_exx_restart"] = maker.exx_restart
    if maker.projwfc:  # projected empty states as converged as the occupied ones (user wins)
        params["input_data"]["electrons"].setdefault("diago_full_acc", True)
    if getattr(maker, "relax_cell", False):
        from perovflow.engines.qe.inputs import cell_relax_settings

        params = cell_relax_settings(params, protocol, maker.input_set_overrides)
    params, restart, labels = _prepare_inputs(maker, atoms, params, prev_dir, directory, hybrid)
    from perovflow.engines.fingerprint import task_hash

    identity = task_hash("qe", atoms, params, maker.calc_type, protocol)
    outcome = run_pw(
        atoms, params, directory, pseudo_dir_for(pseudos),
        max_attempts=maker.max_attempts, walltime_s=maker.walltime_s,
    )  # fmt: skip
    if restart is not None:
        outcome.recovery.insert(0, restart)
    extra: dict[str, Any] = {}
    if maker.calc_type == "dos" or maker.projwfc:
        from perovflow.engines.qe.dos import run_projwfc

        extra = run_projwfc(directory, outcome.params, getattr(maker, "delta_e_eV", 0.02))
    from perovflow.engines.qe.document import build_task_document

    doc = build_task_document(
        maker, atoms, outcome, directory, protocol, pseudos, prev_dir, labels, extra
    )
    doc.calc_hash = identity
    if maker.write_potential and maker.calc_type in ("static", "relax"):
        _add_potential(doc, directory, outcome.params)
    return doc


def _add_potential(doc: TaskDocument, directory: Path, params: dict[str, Any]) -> None:
    """pp.x plot_num=11 on the finished scf: the cube file and its averages in ``doc``."""
    from pymatgen.core import Structure

    from perovflow.engines.qe.potential import run_pp_potential

    fields = run_pp_potential(directory, params, Structure.from_dict(doc.structure))
    doc.potential = fields["potential"]
    doc.files.update(fields["files"])


def _prepare_inputs(
    maker: BaseQEMaker,
    atoms: Any,
    params: dict[str, Any],
    prev_dir: str | None,
    directory: Path,
    hybrid_bands: bool,
) -> tuple[dict[str, Any], dict[str, Any] | None, dict[int, str]]:
    """Restart files and k-points: (params, restart record or None, band-path labels).

    Static/relax (and a hybrid bands step, run as an scf) restart from ``prev_dir``; a
    semilocal bands/DOS step reads its charge density; bands get the path's k-points.
    """
    labels: dict[int, str] = {}
    restart = None
    if maker.calc_type in ("static", "relax") or hybrid_bands:
        from perovflow.engines.qe.restart import prepare_restart

        params, restart = prepare_restart(prev_dir, directory, atoms, params)
    elif maker.calc_type in ("bands", "dos"):
        link_charge_density(prev_dir, directory, params["input_data"]["control"]["prefix"])
    if hybrid_bands:
        return params, restart, labels
    if maker.calc_type == "bands" and "kpts" not in (maker.input_set_overrides or {}):
        params["kpts"], labels = band_path(atoms, maker.line_density, protocol=protocol_of(maker))
    return params, restart, labels


def protocol_of(maker: BaseQEMaker) -> str:
    """The maker's protocol, or the settings' default."""
    from perovflow.settings import get_settings

    return maker.protocol or get_settings().protocol


def _hybrid_bands(maker: BaseQEMaker, protocol: str) -> bool:
    """A bands step with a hybrid functional: pw.x 6.7 refuses non-scf hybrids ("hybrid XC
    not allowed in non-scf calculations"), so it runs as a hybrid scf on the uniform k grid,
    restarted from ``prev_dir``; its eigenvalues are those of the grid, not of a path."""
    from perovflow.engines.protocols import get_protocol
    from perovflow.engines.qe.hybrid import is_hybrid, resolve_xc
    from perovflow.engines.qe.inputs import nest_overrides

    if maker.calc_type != "bands":
        return False
    proto = get_protocol(protocol, "qe")
    return is_hybrid(resolve_xc(maker.xc, proto, nest_overrides(maker.input_set_overrides)))


def _soc(maker: BaseQEMaker, protocol: str) -> bool:
    """The maker's spin–orbit switch resolved against the protocol and the user's overrides."""
    from perovflow.engines.qe.soc import maker_soc

    return maker_soc(maker, protocol)


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
