"""Turn a finished CP2K run into a :class:`~perovflow.engines.schemas.TaskDocument`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from perovflow.engines.cp2k.inputs import COORD_FILE, INPUT_FILE, OUTPUT_FILE
from perovflow.engines.cp2k.jobs import CELL_TRAJ, TRAJ
from perovflow.engines.cp2k.parsers import (
    band_edges,
    parse_output,
    read_cells,
    read_kpoints,
    read_projections,
    read_stress_GPa,
    read_trajectory,
)
from perovflow.engines.schemas import ElectronicSummary, RecoveryAction, TaskDocument, calc_hash


def _structure_dict(atoms: Any) -> dict[str, Any]:
    from pymatgen.io.ase import AseAtomsAdaptor

    return AseAtomsAdaptor.get_structure(atoms).as_dict()


def structure_formula(atoms: Any) -> str:
    """Reduced formula in pymatgen's order (CsPbBr3, not PbCsBr3)."""
    from pymatgen.core import Composition

    return Composition("".join(atoms.get_chemical_symbols())).reduced_formula


def _projections(directory: Path, params: dict[str, Any], atoms: Any, fermi: float | None):
    ldos = params["FORCE_EVAL"]["DFT"]["PRINT"].get("PDOS", {}) or {}
    lists = [item["LIST"] for item in ldos.get("LDOS", []) or []]
    if not lists:
        return None
    return read_projections(directory, atoms.get_chemical_symbols(), lists, fermi)


def _edges_source(res: Any, proj: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Eigenvalues/occupations for the edges; OT runs print LUMOs only in the PDOS files."""
    eig, occ = res.eigenvalues, res.occupations
    full = 1.0 if eig is not None and eig.shape[0] == 2 else 2.0
    only_occupied = occ is not None and bool((occ > 0.5 * full).all())
    if (eig is None or only_occupied) and proj is not None:
        nspin = int(proj.spins.max()) + 1
        scale = 1.0 if nspin == 2 else 2.0
        eig = np.stack([proj.energies[proj.spins == s] for s in range(nspin)])[:, None, :]
        occ = np.stack([proj.occupations[proj.spins == s] for s in range(nspin)])[:, None, :]
        occ = occ * scale
    return eig, occ


def build_task_document(
    maker: Any,
    input_atoms: Any,
    placed: Any,
    outcome: Any,
    directory: Path,
    protocol: str,
    potentials: dict[str, Any],
    info: dict[str, Any],
    frames: list[dict[str, Any]],
) -> TaskDocument:
    """Collect energy, forces, MOs, projections, geometry and recovery of one CP2K job."""
    res = parse_output(directory / OUTPUT_FILE, natoms=len(placed))
    params = outcome.params
    atoms, frames = _final_geometry(maker.calc_type, placed, frames, directory)
    proj = _projections(directory, params, atoms, res.fermi_eV)
    eig, occ = _edges_source(res, proj)
    electronic = _electronic(res, eig, occ, info["nelect"])
    structure = _structure_dict(atoms)
    input_structure = _structure_dict(placed)
    return TaskDocument(
        task_label=maker.name,
        code="cp2k",
        code_version=res.version,
        calc_type=maker.calc_type,
        protocol=protocol,
        dir_name=str(Path(directory).resolve()),
        formula=structure_formula(atoms),
        natoms=len(atoms),
        structure=structure,
        input_structure=input_structure,
        input_parameters=params,
        pseudopotentials=[p.info() for p in potentials.values()],
        calc_hash=calc_hash(input_structure, params, "cp2k", maker.calc_type),
        labels=dict(maker.labels),
        charge=maker.charge,
        **_mechanics(res, len(atoms), directory),
        electronic=electronic,
        converged=res.scf_converged and res.geo_converged is not False,
        walltime_s=outcome.walltime_s,
        recovery=[RecoveryAction(**r) for r in outcome.recovery],
        files={
            "input": str(directory / INPUT_FILE),
            "output": str(directory / OUTPUT_FILE),
            "coordinates": str(directory / COORD_FILE),
        },
        eigenvalues=None if res.eigenvalues is None else res.eigenvalues.tolist(),
        occupations=None if res.occupations is None else res.occupations.tolist(),
        kpoints=read_kpoints(params) or {"kpoints": [[0.0, 0.0, 0.0]], "weights": [1.0]},
        projections=None if proj is None else proj.to_dict(),
        trajectory=[{"positions": f["positions"], "energy_eV": f["energy_eV"]} for f in frames]
        or None,
    )


def _final_geometry(
    calc_type: str, placed: Any, frames: list[dict[str, Any]], directory: Path
) -> tuple[Any, list[dict[str, Any]]]:
    """The atoms at the end of the run and all relaxation frames (earlier attempts first).

    A relax reads its trajectory (and, for CELL_OPT, the last cell: the positions are
    Cartesian in it); a static run keeps the atoms it was given.
    """
    atoms = placed.copy()
    if calc_type == "relax":
        frames = frames + read_trajectory(directory / TRAJ)
        if frames:
            atoms.positions = frames[-1]["positions"]
        cells = read_cells(directory / CELL_TRAJ)
        if len(cells):
            atoms.set_cell(cells[-1])
    return atoms, frames


def _electronic(res: Any, eig: Any, occ: Any, nelect: float) -> ElectronicSummary:
    """Fermi level, electrons, MOs, spin and magnetisation (alpha - beta), band edges."""
    edges = band_edges(eig, occ) if eig is not None else {}
    return ElectronicSummary(
        fermi_eV=res.fermi_eV,
        nelect=nelect,
        nbands=None if eig is None else int(eig.shape[2]),
        spin_polarized=eig is not None and eig.shape[0] == 2,
        total_magnetization=float(occ[0].sum() - occ[1].sum())
        if occ is not None and occ.shape[0] == 2
        else None,
        **edges,
    )


def _mechanics(res: Any, natoms: int, directory: Path) -> dict[str, Any]:
    """Energy, forces and stress fields (stress in ASE's sign, as for QE)."""
    forces = res.forces
    stress = read_stress_GPa((directory / OUTPUT_FILE).read_text(errors="replace"))
    return {
        "energy_eV": res.energy_eV,
        "energy_per_atom_eV": res.energy_eV / natoms,
        "forces_eV_per_A": None if forces is None else forces.tolist(),
        "max_force_eV_per_A": None
        if forces is None
        else float(np.linalg.norm(forces, axis=1).max()),
        "stress_GPa": None if stress is None else (-stress).tolist(),
    }
