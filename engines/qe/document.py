"""Turn a finished pw.x run into a :class:`~perovflow.engines.schemas.TaskDocument`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from perovflow.engines.schemas import (
    ElectronicSummary,
    RecoveryAction,
    TaskDocument,
    calc_hash,
)


def _structure_dict(atoms: Any) -> dict[str, Any]:
    from pymatgen.io.ase import AseAtomsAdaptor

    return AseAtomsAdaptor.get_structure(atoms).as_dict()


def _json_params(params: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in params.items():
        if isinstance(value, np.ndarray):
            value = value.tolist()
        out[key] = value
    return out


def reference_edges(prev_dir: str | Path | None) -> dict[str, Any]:
    """Fermi level and band edges of the scf in ``prev_dir`` (for bands/DOS references)."""
    from perovflow.engines.qe.run import band_edges, parse_pw_output

    if prev_dir is None or not (Path(prev_dir) / "espresso.pwo").is_file():
        return {}
    try:
        res = parse_pw_output(Path(prev_dir))
    except Exception:
        return {}
    edges = band_edges(res.eigenvalues, res.occupations) if res.eigenvalues is not None else {}
    return {"fermi_eV": res.fermi_eV, "fermi_levels_eV": res.fermi_levels_eV, **edges}


def build_task_document(
    maker: Any,
    input_atoms: Any,
    outcome: Any,
    directory: Path,
    protocol: str,
    pseudos: dict[str, Any],
    prev_dir: str | None,
    labels: dict[int, str],
    extra: dict[str, Any],
) -> TaskDocument:
    """Collect energies, forces, eigenvalues, edges, recovery and files of one QE job."""
    from perovflow.engines.qe.run import band_edges, occupations, parse_pw_output

    calculation = outcome.params["input_data"]["control"]["calculation"]
    res = parse_pw_output(directory, calculation)
    atoms = res.atoms if calculation in ("relax", "vc-relax") else input_atoms
    params = _json_params({k: v for k, v in outcome.params.items() if not k.startswith("_")})
    occ, fermi = res.occupations, res.fermi_eV
    if maker.calc_type in ("bands", "dos"):
        ref = reference_edges(prev_dir)
        fermi = fermi if fermi is not None else ref.get("fermi_eV")
        if occ is None and res.eigenvalues is not None:  # no count rule: the scf's Fermi level
            level = ref.get("fermi_levels_eV") or fermi
            occ = occupations(res.eigenvalues, None, level) if level is not None else None
    edges = band_edges(res.eigenvalues, occ) if res.eigenvalues is not None else {}
    forces = None if res.forces is None else np.asarray(res.forces)
    structure = _structure_dict(atoms)
    electronic = ElectronicSummary(
        fermi_eV=fermi,
        nelect=res.nelect,
        nbands=None if res.eigenvalues is None else int(res.eigenvalues.shape[2]),
        spin_polarized=res.eigenvalues is not None and res.eigenvalues.shape[0] == 2,
        total_magnetization=res.total_magnetization,
        absolute_magnetization=res.absolute_magnetization,
        spin_edges=edges.get("spin"),
        **{k: v for k, v in edges.items() if k in ("vbm_eV", "cbm_eV", "band_gap_eV", "is_direct")},
    )
    converged = res.scf_converged and (res.relax_converged is not False)
    doc = TaskDocument(
        task_label=maker.name,
        code="qe",
        code_version=res.version,
        calc_type=maker.calc_type,
        protocol=protocol,
        dir_name=str(Path(directory).resolve()),
        formula=atoms.get_chemical_formula(mode="reduce"),
        natoms=len(atoms),
        structure=structure,
        input_structure=_structure_dict(input_atoms),
        input_parameters=params,
        pseudopotentials=[p.info() for p in pseudos.values()],
        calc_hash=calc_hash(_structure_dict(input_atoms), params, "qe", maker.calc_type),
        labels=dict(maker.labels),
        charge=maker.charge,
        energy_eV=res.energy_eV if maker.calc_type in ("static", "relax") else None,
        energy_per_atom_eV=(res.energy_eV / len(atoms))
        if res.energy_eV is not None and maker.calc_type in ("static", "relax")
        else None,
        forces_eV_per_A=None if forces is None else forces.tolist(),
        max_force_eV_per_A=None if forces is None else float(np.linalg.norm(forces, axis=1).max()),
        stress_GPa=None if res.stress_GPa is None else np.asarray(res.stress_GPa).tolist(),
        electronic=electronic,
        converged=converged,
        walltime_s=outcome.walltime_s,
        recovery=[RecoveryAction(**r) for r in outcome.recovery],
        files={"input": str(directory / "espresso.pwi"), "output": str(directory / "espresso.pwo")},
        eigenvalues=None if res.eigenvalues is None else res.eigenvalues.tolist(),
        occupations=None if occ is None else np.asarray(occ).tolist(),
        kpoints=None
        if res.kpoints is None
        else {
            "fractional": np.asarray(res.kpoints).tolist(),
            "weights": None if res.kweights is None else np.asarray(res.kweights).tolist(),
        },
        trajectory=res.trajectory if maker.calc_type == "relax" else None,
    )
    if maker.calc_type == "bands":
        doc.bandstructure = {
            "kpoints_frac": np.asarray(outcome.params["kpts"])[:, :3].tolist()
            if np.ndim(outcome.params["kpts"]) == 2
            else None,
            "labels": {str(k): v for k, v in labels.items()},
            "eigenvalues": doc.eigenvalues,
            "efermi_eV": fermi,
            "path_type": "setyawan_curtarolo",
        }
    for key, value in extra.items():
        if key == "files":
            doc.files.update(value)
        else:
            setattr(doc, key, value)
    return doc
