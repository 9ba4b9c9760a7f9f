"""The fields every DFT engine maker shares (QE, CP2K): protocol, user overrides, charge, limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobflow import Maker


@dataclass
class DFTMaker(Maker):
    """Common fields of the DFT makers; each code documents what its overrides accept.

    Attributes
    ----------
    name
        Job name.
    protocol
        Protocol name; None uses ``settings.protocol``.
    input_set_overrides
        Code settings that win over the protocol and over automatic choices.
    charge
        Total charge of the cell (e).
    defect
        Defect cell: the protocol's defect force threshold (and, for QE, smearing).
    max_attempts
        Code runs allowed, error recovery included.
    walltime_s
        Kill the code after this many seconds (the walltime handling then restarts it).
    labels
        Study metadata copied to the task document.
    write_potential
        Also write the electrostatic potential of the scf (QE: pp.x ``plot_num=11`` cube;
        CP2K: ``V_HARTREE_CUBE``) and keep its planar averages and site potentials in the
        document (``potential``), for the finite-size corrections of charged defects.
    """

    name: str = "dft static"
    protocol: str | None = None
    input_set_overrides: dict[str, Any] = field(default_factory=dict)
    charge: float = 0.0
    defect: bool = False
    max_attempts: int = 5
    walltime_s: float | None = None
    labels: dict[str, Any] = field(default_factory=dict)
    write_potential: bool = False
    calc_type = "static"
