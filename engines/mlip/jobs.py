"""jobflow Makers for pretrained ML potentials: static and relaxation (ASE optimizers).

Used for cheap pre-relaxations and NEB pre-convergence before DFT. ``make(structure,
prev_dir=None)`` returns a :class:`~perovflow.engines.schemas.TaskDocument` with
``code="mlip"``; the calculator itself is :func:`perovflow.engines.mlip.calculator.get_mlip_calculator`.

Steps of ``make``: atoms (a cluster is put in a padded periodic box, since the graph models
need a cell) -> calculator (cached model) -> (relax) ASE FIRE/BFGS, optionally on a
FrechetCellFilter for the cell -> energy, forces, stress, trajectory -> task document.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from jobflow import Maker, job

from perovflow.engines.schemas import BIG_FIELDS, TaskDocument
from perovflow.errors import InputError

CLUSTER_PADDING_A = 12.0  # vacuum around a cluster: twice the 6 Å graph cutoff


@dataclass
class BaseMLIPMaker(Maker):
    """Common fields of the ML-potential makers.

    Attributes
    ----------
    name
        Job name.
    model
        ``chgnet`` or ``sevenn``; None uses ``settings.mlip.model``.
    device
        torch device; None uses ``settings.mlip.device``.
    protocol
        Protocol for the force threshold and step limit; None uses ``settings.protocol``.
    fmax
        Force threshold (eV/Å); None: the protocol's ``fmax_bulk`` (``fmax_defect`` if
        ``defect``).
    steps
        Maximum optimizer steps; None: the protocol's ``max_steps``.
    relax_cell
        Also relax the cell (FrechetCellFilter).
    optimizer
        ``FIRE`` or ``BFGS``.
    input_set_overrides
        The same settings by name (``{"fmax": 0.05, "relax_cell": True}``, as
        ``perovflow calc --set`` passes them); they win over the fields above.
    defect, labels
        As for the DFT makers.
    """

    name: str = "mlip static"
    model: str | None = None
    device: str | None = None
    protocol: str | None = None
    fmax: float | None = None
    steps: int | None = None
    relax_cell: bool = False
    optimizer: str = "FIRE"
    input_set_overrides: dict[str, Any] = field(default_factory=dict)
    defect: bool = False
    labels: dict[str, Any] = field(default_factory=dict)
    calc_type = "static"

    @job(data=BIG_FIELDS)
    def make(self, structure: Any, prev_dir: str | None = None) -> TaskDocument:
        """Evaluate (or relax) ``structure`` (Structure, Molecule, ASE Atoms or their dicts)."""
        return run_mlip_task(self, structure, Path.cwd())


@dataclass
class MLIPStaticMaker(BaseMLIPMaker):
    """Energy, forces and stress from the ML potential."""

    name: str = "mlip static"
    calc_type = "static"


@dataclass
class MLIPRelaxMaker(BaseMLIPMaker):
    """Relaxation of positions (and the cell with ``relax_cell``) with an ASE optimizer."""

    name: str = "mlip relax"
    calc_type = "relax"


def _prepare(structure: Any) -> tuple[Any, bool]:
    """ASE Atoms ready for a graph model, and whether the input was a cluster."""
    from perovflow.structures.io import to_atoms

    atoms = to_atoms(structure)
    if atoms.pbc.all():
        return atoms, False
    if atoms.pbc.any():
        raise InputError(
            f"mixed periodicity {atoms.pbc.tolist()} is not supported",
            "use a periodic cell with vacuum, or a Molecule",
        )
    atoms.center(vacuum=CLUSTER_PADDING_A)
    atoms.pbc = True
    return atoms, True


OVERRIDABLE = ("model", "device", "fmax", "steps", "relax_cell", "optimizer")


def _settings(maker: BaseMLIPMaker) -> dict[str, Any]:
    """Maker fields with ``input_set_overrides`` laid over them (unknown keys are errors)."""
    unknown = sorted(set(maker.input_set_overrides) - set(OVERRIDABLE))
    if unknown:
        raise InputError(
            f"unknown ML-potential setting(s): {', '.join(unknown)}",
            f"use {', '.join(OVERRIDABLE)}",
        )
    return {**{k: getattr(maker, k) for k in OVERRIDABLE}, **maker.input_set_overrides}


def _relax(atoms: Any, opts: dict[str, Any], fmax: float, steps: int) -> tuple[list, bool]:
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS, FIRE

    optimizers = {"FIRE": FIRE, "BFGS": BFGS}
    name = str(opts["optimizer"]).upper()
    if name not in optimizers:
        raise InputError(f"unknown optimizer '{opts['optimizer']}'", "use FIRE or BFGS")
    target = FrechetCellFilter(atoms) if opts["relax_cell"] else atoms
    opt = optimizers[name](target, logfile=None)
    frames: list[dict[str, Any]] = []

    def record() -> None:
        frames.append(
            {"positions": atoms.positions.tolist(), "cell": atoms.cell[:].tolist(),
             "energy_eV": float(atoms.get_potential_energy())}
        )  # fmt: skip

    opt.attach(record, interval=1)
    converged = bool(opt.run(fmax=fmax, steps=steps))
    return frames, converged


def run_mlip_task(maker: BaseMLIPMaker, structure: Any, directory: Path) -> TaskDocument:
    """Everything ``make`` does (see the module docstring for the steps)."""
    from ase.units import GPa
    from pymatgen.io.ase import AseAtomsAdaptor

    from perovflow.engines.mlip.calculator import get_mlip_calculator, model_version
    from perovflow.engines.protocols import get_protocol
    from perovflow.settings import get_settings

    opts = _settings(maker)
    protocol = maker.protocol or get_settings().protocol
    proto = get_protocol(protocol, "mlip")
    fmax = opts["fmax"] or proto["fmax_defect" if maker.defect else "fmax_bulk"]
    steps = opts["steps"] or int(proto["max_steps"])
    atoms, cluster = _prepare(structure)
    input_structure = AseAtomsAdaptor.get_structure(atoms).as_dict()
    atoms.calc = get_mlip_calculator(opts["model"], opts["device"])
    start = time.monotonic()
    frames, converged = [], True
    if maker.calc_type == "relax":
        frames, converged = _relax(atoms, opts, fmax, steps)
    energy = float(atoms.get_potential_energy())
    forces = np.asarray(atoms.get_forces())
    stress = None if cluster else (atoms.get_stress(voigt=False) / GPa).tolist()
    walltime = time.monotonic() - start
    structure_out = AseAtomsAdaptor.get_structure(atoms)
    params = {
        "model": opts["model"] or get_settings().mlip.model, "fmax": fmax, "steps": steps,
        "relax_cell": opts["relax_cell"], "optimizer": opts["optimizer"], "cluster_box": cluster,
    }  # fmt: skip
    from perovflow.engines.schemas import calc_hash

    return TaskDocument(
        task_label=maker.name, code="mlip", code_version=model_version(opts["model"]),
        calc_type=maker.calc_type, protocol=protocol, dir_name=str(Path(directory).resolve()),
        formula=structure_out.composition.reduced_formula, natoms=len(atoms),
        structure=structure_out.as_dict(), input_structure=input_structure,
        input_parameters=params, calc_hash=calc_hash(input_structure, params, "mlip", maker.calc_type),
        labels=dict(maker.labels), energy_eV=energy, energy_per_atom_eV=energy / len(atoms),
        forces_eV_per_A=forces.tolist(),
        max_force_eV_per_A=float(np.linalg.norm(forces, axis=1).max()),
        stress_GPa=stress, converged=converged, walltime_s=walltime, trajectory=frames or None,
    )  # fmt: skip
