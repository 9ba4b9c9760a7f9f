"""Turn atomate2's ``AseResult`` of an ML-potential job into perovflow's task document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from perovflow.engines.schemas import TaskDocument, calc_hash


def _frames(trajectory: Any) -> list[dict[str, Any]]:
    """Positions, cell and energy of every frame of a pymatgen ``Trajectory``."""
    frames = []
    for index, props in enumerate(trajectory.frame_properties):
        structure = trajectory[index]
        frames.append(
            {"positions": structure.cart_coords.tolist(), "cell": structure.lattice.matrix.tolist(),
             "energy_eV": float(props["energy"])}
        )  # fmt: skip
    return frames


def _stress_gpa(props: dict[str, Any]) -> list[list[float]] | None:
    """3x3 stress (GPa, ASE sign) from a frame's stress in eV/Å³ (Voigt or 3x3)."""
    from ase.units import GPa

    stress = props.get("stress")
    if stress is None:
        return None
    stress = np.asarray(stress, dtype=float)
    if stress.shape == (6,):
        xx, yy, zz, yz, xz, xy = stress
        stress = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    return (stress / GPa).tolist()


def build_mlip_document(
    runner: Any, opts: dict[str, Any], prepared: Any, result: Any, cluster: bool, directory: Path
) -> TaskDocument:
    """Energy, forces, stress, trajectory and settings of one ML-potential job."""
    from perovflow.engines.mlip.calculator import model_version

    traj = result.trajectory
    last = traj.frame_properties[-1]
    forces = np.asarray(last["forces"], dtype=float)
    energy = float(last["energy"])
    structure = result.final_mol_or_struct
    relax = runner.calc_type == "relax"
    params = {
        "model": opts["model"], "fmax": opts["fmax"], "steps": opts["steps"],
        "relax_cell": bool(opts["relax_cell"]), "optimizer": opts["optimizer"],
        "cluster_box": cluster, "force_field": str(runner.force_field_name),
    }  # fmt: skip
    input_structure = prepared.as_dict()
    return TaskDocument(
        task_label=runner.name, code="mlip", code_version=model_version(opts["model"]),
        calc_type=runner.calc_type, protocol=opts["protocol"],
        dir_name=str(Path(directory).resolve()), formula=structure.composition.reduced_formula,
        natoms=len(structure), structure=structure.as_dict(), input_structure=input_structure,
        input_parameters=params,
        calc_hash=calc_hash(input_structure, params, "mlip", runner.calc_type),
        labels=dict(runner.labels), energy_eV=energy, energy_per_atom_eV=energy / len(structure),
        forces_eV_per_A=forces.tolist(),
        max_force_eV_per_A=float(np.linalg.norm(forces, axis=1).max()),
        stress_GPa=None if cluster else _stress_gpa(last),
        converged=bool(result.converged) if relax else True,
        walltime_s=result.elapsed_time, trajectory=_frames(traj) if relax else None,
    )  # fmt: skip
