"""jobflow Makers for pretrained ML potentials, built on atomate2's force-field makers.

:class:`MLIPStaticMaker` and :class:`MLIPRelaxMaker` *are* atomate2
``ForceFieldStaticMaker``/``ForceFieldRelaxMaker`` (CHGNet default, SevenNet): the relaxation
is atomate2's ``AseRelaxer`` (FIRE/BFGS, ``FrechetCellFilter`` for the cell), so they run in
any atomate2 flow. What perovflow adds on top:

* the calculator is :func:`perovflow.engines.mlip.calculator.get_mlip_calculator`: the
  packaged weights only (nothing downloaded), loaded once per process;
* ``fmax``/``steps`` come from the protocol at run time (``fmax_defect`` for ``defect``);
  ``input_set_overrides`` (as ``perovflow calc --set`` passes them) win over the fields;
* a cluster (Molecule, non-periodic Atoms) is put in a padded periodic box;
* the result is perovflow's :class:`~perovflow.engines.schemas.TaskDocument` (``code="mlip"``),
  whose ``output`` block carries atomate2's names (``output.energy``, ``output.structure``).

The charge of the cell is not an input of these models: a charged structure is evaluated as
if it were neutral.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atomate2.forcefields.jobs import ForceFieldRelaxMaker, ForceFieldStaticMaker
from atomate2.forcefields.utils import MLFF
from jobflow import job

from perovflow.engines.schemas import BIG_FIELDS, TaskDocument
from perovflow.errors import InputError

CLUSTER_PADDING_A = 12.0  # vacuum around a cluster: twice the 6 Å graph cutoff
#: perovflow model name -> atomate2 force field
FORCE_FIELDS = {"chgnet": MLFF.CHGNet, "sevenn": MLFF.SevenNet}
OVERRIDABLE = ("model", "device", "fmax", "steps", "relax_cell", "optimizer")


@dataclass
class _PerovflowFields:
    """perovflow's fields of the ML makers (atomate2's own fields stay as they are).

    Attributes
    ----------
    model
        ``chgnet`` or ``sevenn``; None uses ``settings.mlip.model``.
    device
        torch device; None uses ``settings.mlip.device``.
    protocol
        Protocol for the force threshold and step limit; None uses ``settings.protocol``.
    fmax
        Force threshold (eV/Å); None: the protocol's ``fmax_bulk`` (``fmax_defect`` if
        ``defect``).
    optimizer
        ``FIRE`` or ``BFGS``.
    input_set_overrides
        The same settings by name (``{"fmax": 0.05, "relax_cell": True}``); they win.
    defect, labels
        As for the DFT makers.
    write_additional_data
        Files written into the job folder (``{"info:json": {...}}``, as atomate2 flows set).
    """

    model: str | None = None
    device: str | None = None
    protocol: str | None = None
    fmax: float | None = None
    optimizer: str = "FIRE"
    input_set_overrides: dict[str, Any] = field(default_factory=dict)
    defect: bool = False
    labels: dict[str, Any] = field(default_factory=dict)
    write_additional_data: dict[str, Any] = field(default_factory=dict)


class _PerovflowMLIP:
    """The run-time logic shared by both makers (mixed into atomate2's classes)."""

    code = "mlip"

    def __post_init__(self) -> None:
        """atomate2's ``force_field_name`` follows ``model`` when one is given."""
        name = (self.model or "").lower()
        if name in FORCE_FIELDS:
            self.force_field_name, self.calculator_meta = FORCE_FIELDS[name], None
        super().__post_init__()

    def _get_calculator(self) -> Any:
        """perovflow's cached calculator around the packaged weights (never a download)."""
        from perovflow.engines.mlip.calculator import get_mlip_calculator

        return get_mlip_calculator(self.model, self.device)

    @job(data=BIG_FIELDS)
    def make(self, structure: Any, prev_dir: str | None = None) -> TaskDocument:
        """Evaluate (or relax) ``structure`` (Structure, Molecule, ASE Atoms or their dicts)."""
        return run_mlip_task(self, structure, Path.cwd())


@dataclass
class MLIPStaticMaker(_PerovflowMLIP, _PerovflowFields, ForceFieldStaticMaker):
    """Energy, forces and stress from the ML potential (atomate2 ``ForceFieldStaticMaker``)."""

    name: str = "mlip static"
    force_field_name: str | MLFF | dict = MLFF.CHGNet
    steps: int | None = None
    calc_type = "static"


@dataclass
class MLIPRelaxMaker(_PerovflowMLIP, _PerovflowFields, ForceFieldRelaxMaker):
    """Relaxation of positions (and the cell with ``relax_cell``): atomate2's ``AseRelaxer``.

    ``relax_cell`` defaults to False here (atomate2's default is True): perovflow relaxes
    the cell only where a flow asks for it.
    """

    name: str = "mlip relax"
    force_field_name: str | MLFF | dict = MLFF.CHGNet
    relax_cell: bool = False
    steps: int | None = None
    calc_type = "relax"


def _prepare(structure: Any) -> tuple[Any, bool]:
    """pymatgen Structure ready for a graph model, and whether the input was a cluster."""
    from pymatgen.io.ase import AseAtomsAdaptor

    from perovflow.structures.io import to_atoms

    atoms = to_atoms(structure)
    cluster = not atoms.pbc.all()
    if cluster and atoms.pbc.any():
        raise InputError(
            f"mixed periodicity {atoms.pbc.tolist()} is not supported",
            "use a periodic cell with vacuum, or a Molecule",
        )
    if cluster:
        atoms.center(vacuum=CLUSTER_PADDING_A)
        atoms.pbc = True
    return AseAtomsAdaptor.get_structure(atoms), cluster


def resolved_settings(maker: Any) -> dict[str, Any]:
    """Model, thresholds and switches at run time: fields < protocol defaults < overrides."""
    from perovflow.engines.protocols import get_protocol
    from perovflow.settings import get_settings

    unknown = sorted(set(maker.input_set_overrides) - set(OVERRIDABLE))
    if unknown:
        raise InputError(
            f"unknown ML-potential setting(s): {', '.join(unknown)}",
            f"use {', '.join(OVERRIDABLE)}",
        )
    opts = {**{k: getattr(maker, k) for k in OVERRIDABLE}, **maker.input_set_overrides}
    opts["protocol"] = maker.protocol or get_settings().protocol
    proto = get_protocol(opts["protocol"], "mlip")
    opts["fmax"] = opts["fmax"] or proto["fmax_defect" if maker.defect else "fmax_bulk"]
    opts["steps"] = opts["steps"] or int(proto["max_steps"])
    opts["model"] = (opts["model"] or get_settings().mlip.model).lower()
    if opts["model"] not in FORCE_FIELDS:
        raise InputError(
            f"unknown ML potential '{opts['model']}'", f"use one of: {', '.join(FORCE_FIELDS)}"
        )
    opts["optimizer"] = str(opts["optimizer"]).upper()
    if opts["optimizer"] not in ("FIRE", "BFGS"):
        raise InputError(f"unknown optimizer '{opts['optimizer']}'", "use FIRE or BFGS")
    return opts


def _atomate2_copy(maker: Any, opts: dict[str, Any], directory: Path) -> Any:
    """A copy of ``maker`` with the resolved settings in atomate2's fields (never ``maker``).

    The relaxer's final-frame file goes into ``directory``, and its trajectory is a pymatgen
    ``Trajectory`` (what :mod:`perovflow.engines.mlip.document` reads).
    """
    relax = maker.calc_type == "relax"
    extxyz = str(Path(directory) / "final_atoms_object.xyz")
    return dataclasses.replace(
        maker,
        model=opts["model"], force_field_name=FORCE_FIELDS[opts["model"]], calculator_meta=None,
        steps=opts["steps"] if relax else 1, relax_cell=bool(opts["relax_cell"]) and relax,
        relax_kwargs={**maker.relax_kwargs, "fmax": opts["fmax"], "use_emmet_models": False,
                      "final_atoms_object_file": extxyz},
        optimizer_kwargs={**maker.optimizer_kwargs, "optimizer": opts["optimizer"]},
    )  # fmt: skip


def run_mlip_task(maker: Any, structure: Any, directory: Path) -> TaskDocument:
    """Everything ``make`` does: resolve settings, atomate2's ``run_ase``, task document."""
    from perovflow.engines.base import write_additional_data
    from perovflow.engines.mlip.document import build_mlip_document

    opts = resolved_settings(maker)
    prepared, cluster = _prepare(structure)
    runner = _atomate2_copy(maker, opts, directory)
    write_additional_data(maker.write_additional_data, directory)
    result = runner._run_ase_safe(prepared)
    return build_mlip_document(runner, opts, prepared, result, cluster, directory)
