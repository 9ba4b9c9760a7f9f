"""The one NEB result type: barriers, the energy profile and (for a band perovflow ran) its record.

:func:`perovflow.analysis.neb.analyze_neb` builds it from any finished band (files, stored
images); the NEB engine (:mod:`perovflow.workflows.neb`) builds it the same way and fills in
the run record: which images were converged on the expensive surface (``refined``), whether
the convergence test held (``converged``), the end points' relaxation status and the cost.
This module imports nothing from perovflow, so every layer can use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ase.units import kcal, mol

EV_TO_KCAL_MOL = 1.0 / (kcal / mol)  # 23.0605 kcal/mol per eV (ASE's CODATA constants)


@dataclass
class NEBResult:
    """Barriers and the fitted energy profile of one NEB path, plus how it was obtained.

    Attributes
    ----------
    barrier_forward_eV, barrier_backward_eV, reaction_energy_eV
        Barriers and reaction energy (eV). For a band perovflow ran: the highest *refined*
        image (the climbing image) minus each end point; for a band read from files: the
        spline maximum (``fitted``) or the highest image.
    ts_image
        Index of the image the barrier comes from.
    image_energies_eV, path_A
        Image energies relative to the initial state and the cumulative path length (Å).
    fit_path_A, fit_energies_eV
        The force-informed spline of the profile.
    refined
        Indices of the intermediate images converged on the expensive surface; None: all
        (or unknown, for a band read from files).
    converged
        True only when every image's NEB force (climbing image on) was below ``fmax`` with the
        expensive calculator; None when unknown (a band read from files).
    endpoints_converged
        Per end point: its relaxation reached the force threshold (for end points relaxed
        elsewhere: their expensive forces are below ``fmax``; ``meta`` has those forces).
        None: unknown (a band read from files).
    """

    barrier_forward_eV: float
    barrier_backward_eV: float
    reaction_energy_eV: float
    ts_image: int
    image_energies_eV: list[float]
    path_A: list[float]
    fit_path_A: list[float]
    fit_energies_eV: list[float]
    fitted: bool
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    images: list[Any] = field(default_factory=list)
    refined: list[int] | None = None
    converged: bool | None = None
    max_force_eV_A: float | None = None
    endpoints_converged: list[bool | None] = field(default_factory=lambda: [None, None])
    procedure: str = ""
    expensive_calls: int = 0
    endpoint_calls: int = 0
    cheap_calls: int = 0
    expensive_seconds: float = 0.0
    steps: int = 0
    wall_s: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def barrier_forward_kcal_mol(self) -> float:
        """Forward barrier in kcal/mol."""
        return self.barrier_forward_eV * EV_TO_KCAL_MOL

    @property
    def barrier_backward_kcal_mol(self) -> float:
        """Backward barrier in kcal/mol."""
        return self.barrier_backward_eV * EV_TO_KCAL_MOL

    @property
    def energies(self) -> list[float]:
        """Absolute image energies (eV) of the band's images (empty if no images kept)."""
        return [float(im.get_potential_energy()) for im in self.images]

    def summary(self) -> dict[str, Any]:
        """Barriers in eV and kcal/mol, TS image and (for a run) convergence and cost."""
        out: dict[str, Any] = {
            "barrier_forward_eV": self.barrier_forward_eV,
            "barrier_backward_eV": self.barrier_backward_eV,
            "barrier_forward_kcal_mol": self.barrier_forward_kcal_mol,
            "barrier_backward_kcal_mol": self.barrier_backward_kcal_mol,
            "reaction_energy_eV": self.reaction_energy_eV,
            "ts_image": self.ts_image,
            "nimages": len(self.image_energies_eV),
            "fitted": self.fitted,
            "source": self.source,
        }
        if self.procedure:
            out.update(
                {
                    "procedure": self.procedure,
                    "converged": self.converged,
                    "max_force_eV_A": self.max_force_eV_A,
                    "refined_images": self.refined,
                    "endpoints_converged": list(self.endpoints_converged),
                    "expensive_calls": self.expensive_calls,
                    "endpoint_calls": self.endpoint_calls,
                    "cheap_calls": self.cheap_calls,
                    "steps": self.steps,
                    "wall_s": round(self.wall_s, 2),
                }
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        """Summary plus the raw and fitted profiles."""
        out = self.summary()
        out.update(
            {
                "image_energies_eV": self.image_energies_eV,
                "path_A": self.path_A,
                "fit_path_A": self.fit_path_A,
                "fit_energies_eV": self.fit_energies_eV,
            }
        )
        return out
