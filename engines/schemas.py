"""The task document every engine job returns (QE, CP2K and ML potentials alike).

Small, queryable fields live in the document itself. Big arrays (``eigenvalues``,
``occupations``, ``kpoints``, ``bandstructure``, ``dos``, ``projections``) are listed in
:data:`BIG_FIELDS`; jobs are declared with ``@job(data=BIG_FIELDS)`` so jobflow moves them
to the JobStore's additional ``data`` store and the main document stays far below
MongoDB's 16 MB limit.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, field_validator, model_validator

BIG_FIELDS = [
    "eigenvalues",
    "occupations",
    "kpoints",
    "bandstructure",
    "dos",
    "projections",
    "trajectory",
    "potential",
]


class PseudoInfo(BaseModel):
    """One pseudopotential file used by a calculation."""

    element: str = Field(description="Chemical symbol.")
    name: str = Field(description="File name or CP2K potential name (e.g. GTH-PBE-q13).")
    md5: str | None = Field(None, description="md5 of the file actually read by the code.")
    family: str | None = Field(None, description="Family, e.g. gth-pbe, sssp-efficiency.")


class RecoveryAction(BaseModel):
    """One correction applied by an error handler before a rerun."""

    handler: str = Field(description="Handler class name.")
    error: str = Field(description="The error detected, in words.")
    actions: list[dict[str, Any]] = Field(
        default_factory=list, description="Parameter changes / file actions."
    )
    attempt: int = Field(1, description="Which attempt (1 = first rerun) this action preceded.")


class ElectronicSummary(BaseModel):
    """Band edges and gap from the eigenvalues and occupations."""

    fermi_eV: float | None = Field(None, description="Fermi level reported by the code (eV).")
    vbm_eV: float | None = Field(None, description="Highest occupied state energy (eV).")
    cbm_eV: float | None = Field(None, description="Lowest unoccupied state energy (eV).")
    band_gap_eV: float | None = Field(
        None, description="cbm - vbm (eV); None if metallic or unknown."
    )
    is_direct: bool | None = Field(None, description="Whether VBM and CBM sit at the same k-point.")
    nelect: float | None = Field(None, description="Number of valence electrons.")
    nbands: int | None = Field(None, description="Number of bands / MOs computed.")
    spin_polarized: bool = Field(
        False, description="Whether the calculation had two spin channels."
    )
    total_magnetization: float | None = Field(
        None, description="n_up - n_down (Bohr magnetons per cell), spin-polarised runs."
    )
    absolute_magnetization: float | None = Field(
        None, description="Integral of |n_up - n_down| (Bohr magnetons per cell), if printed."
    )
    spin_edges: dict[str, Any] | None = Field(
        None, description="vbm_eV/cbm_eV/band_gap_eV per spin channel ('up', 'down')."
    )


class TaskOutput(BaseModel):
    """The final results under the names of atomate2/emmet's TaskDoc ``output`` (eV, Å).

    An atomate2 flow reads ``job.output.output.energy`` / ``.structure`` / ``.bandgap`` and
    ``job.output.dir_name`` (e.g. ``ConfigurationCoordinateMaker``); a query of the store
    reads ``output.output.energy``. Filled from the perovflow fields when the document is
    built: ``energy`` = ``energy_eV``, ``energy_per_atom`` = ``energy_per_atom_eV``,
    ``structure`` = ``structure``, ``bandgap`` = ``electronic.band_gap_eV``, ``forces`` =
    ``forces_eV_per_A``, ``stress`` = ``stress_GPa`` x (-10) in kbar (atomate2's sign:
    positive when the cell is compressed).
    """

    energy: float | None = Field(None, description="Total energy (eV).")
    energy_per_atom: float | None = Field(None, description="Total energy per atom (eV).")
    structure: dict[str, Any] | None = Field(None, description="Final structure (as_dict()).")
    bandgap: float | None = Field(None, description="Band gap (eV); None if metallic/unknown.")
    forces: list[list[float]] | None = Field(None, description="Forces (eV/Å).")
    stress: list[list[float]] | None = Field(None, description="Stress (kbar, atomate2 sign).")

    @field_validator("structure", mode="before")
    @classmethod
    def _as_plain_dict(cls, value: Any) -> Any:
        return value.as_dict() if hasattr(value, "as_dict") else value


class TaskDocument(BaseModel):
    """Result of one engine job (one code run, possibly with restarts)."""

    task_label: str = Field(description="Job name, e.g. 'qe static'.")
    code: Literal["qe", "cp2k", "mlip"] = Field(description="Which engine ran.")
    code_version: str | None = Field(
        None, description="Version string printed by the code or package."
    )
    calc_type: Literal["relax", "static", "bands", "dos", "neb", "md"] = Field(
        description="Kind of calculation."
    )
    protocol: str | None = Field(None, description="Protocol name the inputs started from.")
    dir_name: str = Field(description="Absolute path of the calculation directory.")
    formula: str = Field(description="Reduced formula of the output structure.")
    natoms: int = Field(description="Number of atoms.")
    structure: dict[str, Any] = Field(
        description="Output structure (pymatgen Structure.as_dict())."
    )
    input_structure: dict[str, Any] | None = Field(None, description="Input structure (as_dict()).")
    input_parameters: dict[str, Any] = Field(
        default_factory=dict, description="Final code input parameters."
    )
    pseudopotentials: list[PseudoInfo] = Field(default_factory=list, description="Potentials used.")
    calc_hash: str | None = Field(
        None,
        description="Hash of structure, inputs, protocol, code version and pseudopotential "
        "checksums (engines.fingerprint), for de-duplication.",
    )
    labels: dict[str, Any] = Field(
        default_factory=dict,
        description="Study metadata: study, structure/defect label, charge, hop...",
    )
    charge: float = Field(0.0, description="Total charge of the cell (e).")
    energy_eV: float | None = Field(None, description="Total energy (eV).")
    energy_per_atom_eV: float | None = Field(None, description="Total energy per atom (eV).")
    forces_eV_per_A: list[list[float]] | None = Field(
        None, description="Forces (eV/Å), one row per atom."
    )
    max_force_eV_per_A: float | None = Field(None, description="Largest force norm (eV/Å).")
    stress_GPa: list[list[float]] | None = Field(
        None, description="Stress tensor (GPa), 3x3, ASE's sign (negative: the cell is compressed)."
    )
    electronic: ElectronicSummary = Field(
        default_factory=ElectronicSummary, description="Edges and gap."
    )
    converged: bool = Field(True, description="SCF and (for relax) ionic convergence reached.")
    walltime_s: float | None = Field(None, description="Wall time of all runs of this job (s).")
    recovery: list[RecoveryAction] = Field(
        default_factory=list, description="Error-recovery actions applied."
    )
    files: dict[str, str] = Field(
        default_factory=dict, description="Key output files (role -> path)."
    )
    completed_at: str = Field(
        default_factory=lambda: datetime.now(UTC).isoformat(),
        description="UTC time the job finished.",
    )
    # Big arrays: moved to the additional store (see BIG_FIELDS).
    eigenvalues: list[Any] | None = Field(None, description="Eigenvalues (eV), [spin][k][band].")
    occupations: list[Any] | None = Field(None, description="Occupations, [spin][k][band].")
    kpoints: dict[str, Any] | None = Field(None, description="k-points (fractional) and weights.")
    bandstructure: dict[str, Any] | None = Field(
        None, description="Band structure along a path (as_dict())."
    )
    dos: dict[str, Any] | None = Field(None, description="Total/projected DOS arrays.")
    potential: dict[str, Any] | None = Field(
        None,
        description="Electrostatic potential (write_potential): cube path, planar averages "
        "and site potentials (eV, electron potential energy; perovflow.grids).",
    )
    projections: dict[str, Any] | None = Field(
        None, description="Per-atom state weights for PDOS/IPR."
    )
    trajectory: list[Any] | None = Field(
        None, description="Relaxation/MD frames (positions, energies)."
    )
    output: TaskOutput | None = Field(
        None, description="The results under atomate2's TaskDoc names (see TaskOutput)."
    )

    @field_validator("structure", "input_structure", "bandstructure", "dos", mode="before")
    @classmethod
    def _as_plain_dict(cls, value: Any) -> Any:
        """Accept pymatgen objects (jobflow decodes stored dicts into them) as their dicts."""
        return value.as_dict() if hasattr(value, "as_dict") else value

    @model_validator(mode="after")
    def _atomate2_output(self) -> TaskDocument:
        """Fill ``output`` from the perovflow fields (one mapping, see :class:`TaskOutput`)."""
        if self.output is None:
            stress = None if self.stress_GPa is None else (-10.0 * np.asarray(self.stress_GPa))
            self.output = TaskOutput(
                energy=self.energy_eV, energy_per_atom=self.energy_per_atom_eV,
                structure=self.structure, bandgap=self.electronic.band_gap_eV,
                forces=self.forces_eV_per_A, stress=None if stress is None else stress.tolist(),
            )  # fmt: skip
        return self


def calc_hash(
    structure_dict: dict[str, Any],
    parameters: dict[str, Any],
    code: str,
    calc_type: str,
    environment: dict[str, Any] | None = None,
) -> str:
    """Stable sha1 of what makes a calculation: structure, inputs, kind and ``environment``.

    ``environment`` (:func:`perovflow.engines.fingerprint.environment`) carries the code's
    name and version, the protocol's values and the pseudopotential/basis checksums; the
    parameters should be the result-changing ones only
    (:func:`perovflow.engines.fingerprint.result_parameters`: no paths, no parallel layout).
    """
    payload = json.dumps(
        {"s": structure_dict, "p": parameters, "c": code, "t": calc_type, "e": environment},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha1(payload.encode()).hexdigest()
