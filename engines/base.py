"""The fields every DFT engine maker shares (QE, CP2K): protocol, user overrides, charge, limits."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
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
        Total charge of the cell (e). Left at 0, a pymatgen structure's own charge
        (``Structure.set_charge``, as atomate2's defect flows pass charge states) is used.
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
    write_additional_data
        Files written into the job folder before the run, as atomate2 flows set them:
        ``{"info:json": obj}`` -> ``info.json`` (provenance; never changes the result).
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
    write_additional_data: dict[str, Any] = field(default_factory=dict)
    calc_type = "static"


def write_additional_data(data: dict[str, Any], directory: Path) -> None:
    """atomate2's ``write_additional_data``: ``{"info:json": obj}`` -> ``info.json`` (atomic)."""
    from monty.serialization import dumpfn

    for key, value in data.items():
        name = Path(key.replace(":", ".")).name
        tmp = Path(directory) / f".{name}.tmp{Path(name).suffix}"
        dumpfn(value, tmp)
        os.replace(tmp, Path(directory) / name)


def with_structure_charge(maker: DFTMaker, structure: object) -> DFTMaker:
    """``maker``, or a copy charged as ``structure`` when the maker's charge is left at 0.

    A charge set on the maker always wins; ``maker`` itself is never changed.
    """
    charge = getattr(structure, "_charge", None) or 0
    if maker.charge or not charge:
        return maker
    return dataclasses.replace(maker, charge=float(charge))
