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
    from perovflow.engines.qe.run import band_edges, parse_pw_output

    calculation = outcome.params["input_data"]["control"]["calculation"]
    res = parse_pw_output(directory, calculation)
    atoms = res.atoms if calculation in ("relax", "vc-relax") else input_atoms
    params = _json_params({k: v for k, v in outcome.params.items() if not k.startswith("_")})
    occ, fermi = _occupations_and_fermi(maker.calc_type, res, prev_dir)
    edges = band_edges(res.eigenvalues, occ) if res.eigenvalues is not None else {}
    structure = _structure_dict(atoms)
    electronic = _electronic(res, occ, fermi, edges)
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
        **_mechanics(res, maker.calc_type, len(atoms)),
        electronic=electronic,
        converged=res.scf_converged and (res.relax_converged is not False),
        walltime_s=outcome.walltime_s,
        recovery=[RecoveryAction(**r) for r in outcome.recovery],
        files={"input": str(directory / "espresso.pwi"), "output": str(directory / "espresso.pwo")},
        **_states(res, occ),
        trajectory=res.trajectory if maker.calc_type == "relax" else None,
    )
    if maker.calc_type == "bands":
        doc.bandstructure = _bandstructure(outcome.params["kpts"], labels, doc.eigenvalues, fermi)
    _add_extra(doc, extra)
    return doc


def _occupations_and_fermi(calc_type: str, res: Any, prev_dir: str | None) -> tuple[Any, Any]:
    """Occupations and Fermi level; bands/DOS runs without them take the scf's in ``prev_dir``.

    A non-self-consistent run has no count rule for its occupations: they are filled up to
    the scf's Fermi level(s).
    """
    from perovflow.engines.qe.run import occupations

    occ, fermi = res.occupations, res.fermi_eV
    if calc_type in ("bands", "dos"):
        ref = reference_edges(prev_dir)
        fermi = fermi if fermi is not None else ref.get("fermi_eV")
        if occ is None and res.eigenvalues is not None:
            level = ref.get("fermi_levels_eV") or fermi
            occ = occupations(res.eigenvalues, None, level) if level is not None else None
    return occ, fermi


def _electronic(res: Any, occ: Any, fermi: Any, edges: dict[str, Any]) -> ElectronicSummary:
    """Fermi level, electrons, bands, spin and magnetisation, band edges (per spin too)."""
    return ElectronicSummary(
        fermi_eV=fermi,
        nelect=res.nelect,
        nbands=None if res.eigenvalues is None else int(res.eigenvalues.shape[2]),
        spin_polarized=res.eigenvalues is not None and res.eigenvalues.shape[0] == 2,
        total_magnetization=res.total_magnetization,
        absolute_magnetization=res.absolute_magnetization,
        spin_edges=edges.get("spin"),
        **{k: v for k, v in edges.items() if k in ("vbm_eV", "cbm_eV", "band_gap_eV", "is_direct")},
    )


def _mechanics(res: Any, calc_type: str, natoms: int) -> dict[str, Any]:
    """Energy (static and relax runs only), forces and stress fields of the task document."""
    forces = None if res.forces is None else np.asarray(res.forces)
    energetic = calc_type in ("static", "relax")
    return {
        "energy_eV": res.energy_eV if energetic else None,
        "energy_per_atom_eV": (res.energy_eV / natoms)
        if res.energy_eV is not None and energetic
        else None,
        "forces_eV_per_A": None if forces is None else forces.tolist(),
        "max_force_eV_per_A": None
        if forces is None
        else float(np.linalg.norm(forces, axis=1).max()),
        "stress_GPa": None if res.stress_GPa is None else np.asarray(res.stress_GPa).tolist(),
    }


def _states(res: Any, occ: Any) -> dict[str, Any]:
    """Eigenvalues, occupations and k-points (fractional, with weights) as lists."""
    return {
        "eigenvalues": None if res.eigenvalues is None else res.eigenvalues.tolist(),
        "occupations": None if occ is None else np.asarray(occ).tolist(),
        "kpoints": None
        if res.kpoints is None
        else {
            "fractional": np.asarray(res.kpoints).tolist(),
            "weights": None if res.kweights is None else np.asarray(res.kweights).tolist(),
        },
    }


def _bandstructure(
    kpts: Any, labels: dict[int, str], eigenvalues: Any, fermi: Any
) -> dict[str, Any]:
    """The ``bandstructure`` record of a bands run (k-path, its labels, eigenvalues)."""
    return {
        "kpoints_frac": np.asarray(kpts)[:, :3].tolist() if np.ndim(kpts) == 2 else None,
        "labels": {str(k): v for k, v in labels.items()},
        "eigenvalues": eigenvalues,
        "efermi_eV": fermi,
        "path_type": "setyawan_curtarolo",
    }


def _add_extra(doc: TaskDocument, extra: dict[str, Any]) -> None:
    """Lay the projwfc.x results on ``doc``: ``files`` are merged, other keys set."""
    for key, value in extra.items():
        if key == "files":
            doc.files.update(value)
        else:
            setattr(doc, key, value)
