"""The system as CP2K sees it: periodicity, cell or vacuum box, Poisson solver, k-points.

Used by :func:`perovflow.engines.cp2k.inputs.cp2k_input_set`: a crystal (``pbc`` all True)
keeps its cell and gets a Γ-centred k-point grid (or Γ only); a cluster (``pbc`` all False) is
centred in a box with ``vacuum_A`` of empty space on each side and a non-periodic Poisson
solver (the wavelet solver needs a cubic box).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from perovflow.engines.protocols import kpoint_grid
from perovflow.errors import InputError


def gamma_centred_kpoints(grid: list[int]) -> list[list[float]]:
    """Γ-centred Monkhorst–Pack grid reduced by time reversal: ``[[k1, k2, k3, w], ...]``."""
    axes = [np.arange(n) / n for n in grid]
    points = np.array(np.meshgrid(*axes, indexing="ij")).reshape(3, -1).T
    points = np.where(points > 0.5 + 1e-9, points - 1, points)
    kept: dict[tuple, list] = {}
    for k in points:
        key = tuple(np.round(k % 1.0, 8) % 1.0)
        partner = tuple(np.round(-k % 1.0, 8) % 1.0)
        if partner in kept:
            kept[partner][3] += 1
        else:
            kept[key] = [*(float(x) for x in k), 1]
    return list(kept.values())


def cell_and_poisson(atoms: Any, periodic: bool, opts: dict) -> tuple[Any, dict, dict]:
    """Return (atoms placed in their cell, CELL section, POISSON section or {})."""
    atoms = atoms.copy()
    if periodic:
        cell = atoms.cell[:]
        section = {"A": list(cell[0]), "B": list(cell[1]), "C": list(cell[2]), "PERIODIC": "XYZ"}
        return atoms, section, {}
    solver = str(opts["poisson"]).upper()
    if solver not in ("WAVELET", "MT"):
        raise InputError(
            f"unknown Poisson solver '{opts['poisson']}' for a cluster", "use wavelet or mt"
        )
    pos = atoms.positions
    box = np.ptp(pos, axis=0) + 2 * float(opts["vacuum_A"])
    if solver == "WAVELET":  # CP2K's wavelet solver needs a cubic box
        box = np.full(3, box.max())
    atoms.set_cell(box)
    atoms.positions = pos - pos.min(axis=0) - np.ptp(pos, axis=0) / 2 + box / 2
    atoms.pbc = False
    section = {"ABC": [float(x) for x in box], "PERIODIC": "NONE"}
    return atoms, section, {"PERIODIC": "NONE", "PSOLVER": solver}


def integer_charge(charge: float) -> int:
    """Return ``charge`` as an integer; a fractional charge is a one-line error."""
    if abs(charge - round(charge)) > 1e-6:
        raise InputError(
            f"CP2K needs an integer total charge, got {charge}", "use a whole number of electrons"
        )
    return round(charge)


def periodicity(atoms: Any) -> bool:
    """True for a crystal (``pbc`` all True), False for a cluster; mixed ``pbc`` is an error."""
    pbc = [bool(p) for p in atoms.pbc]
    if all(pbc):
        return True
    if not any(pbc):
        return False
    raise InputError(
        f"CP2K runs need fully periodic or fully isolated systems, got pbc={pbc}",
        "use a periodic cell with vacuum for slabs, or a Molecule for clusters",
    )


def cp2k_kgrid(atoms: Any, periodic: bool, proto: dict, opts: dict) -> list[int] | None:
    """k-point grid, or None for Γ-only (clusters, 1x1x1 grids, ``kpoints: gamma``)."""
    choice = opts["kpoints"]
    if not periodic or choice == "gamma":
        return None
    if choice == "auto":
        grid = kpoint_grid(atoms.cell[:], float(proto["kspacing"]))
    elif isinstance(choice, list | tuple) and len(choice) == 3:
        grid = [int(n) for n in choice]
    else:
        raise InputError(
            f"invalid kpoints setting {choice!r}", "use 'auto', 'gamma' or a list [n1, n2, n3]"
        )
    return None if grid == [1, 1, 1] else grid
