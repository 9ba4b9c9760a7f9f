"""Gather analyses for reports and the formation-energy command.

* :func:`study_sections`: every analysable calculation of a study (a folder of calculation
  folders, or the tasks labelled with the study in the store) -> report sections.
* :func:`run_formation_spec`: a YAML/JSON spec of bulk, defect and competing-phase
  calculations -> :class:`~perovflow.analysis.formation.FormationResult`.

Formation spec::

    bulk: {ref: calcs/bulk, potential: calcs/bulk/vpot.cube}
    defects:
      - {ref: calcs/vbr_q+1, charge: 1, potential: calcs/vbr_q+1/vpot.cube, label: V_Br}
    phases: {Cs: -1234.5, Pb: -..., Br: -..., CsBr: -..., PbBr2: -...}   # eV per formula unit
    # or phases: {CsBr: calcs/csbr}  (folders/task ids; energy and formula read from them)
    vbm_eV: 2.447        # optional: default from the bulk run's HOMO
    band_gap_eV: 3.72    # optional: default from the bulk run's HOMO/LUMO
    dielectric: 4.8      # scalar or 3x3
    correction: freysoldt   # efnv, auto (eFNV for an anisotropic tensor) or none
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from perovflow.analysis.formation import CellCalc, FormationResult, formation_energies
from perovflow.errors import InputError


def load_cell(
    ref: str | Path, charge: int | None = None, potential: Any = None, label: str = ""
) -> CellCalc:
    """A :class:`CellCalc` from a pw.x folder/output or a stored task id."""
    from perovflow.analysis.sources import is_path, load_task_output

    if not is_path(ref):
        out = load_task_output(str(ref))
        if out.get("energy_eV") is None or not out.get("structure"):
            raise InputError(
                f"task {ref} has no energy or structure", "pick a finished static task"
            )
        return CellCalc(
            out["structure"],
            float(out["energy_eV"]),
            int(out.get("charge", 0) if charge is None else charge),
            potential,
            label,
            f"task_uuid={ref}",
        )
    from ase.io import read
    from pymatgen.io.ase import AseAtomsAdaptor

    from perovflow.engines.qe.projwfc import find_pw_output

    path = Path(ref)
    pw = find_pw_output(path) if path.is_dir() else path
    if pw is None:
        raise InputError(f"no pw.x output in {path}", "give the folder of a finished pw.x run")
    try:
        atoms = read(str(pw), format="espresso-out", index=-1)
        energy = float(atoms.get_potential_energy())
    except Exception as exc:
        raise InputError(
            f"no final energy in {pw} ({type(exc).__name__})", "rerun pw.x to the end"
        ) from exc
    return CellCalc(
        AseAtomsAdaptor.get_structure(atoms),
        energy,
        int(charge or 0),
        potential,
        label,
        f"dir_name={path.resolve()}",
    )


def _phases(spec: dict[str, Any], base: Path) -> dict[str, float]:
    from pymatgen.core import Composition

    out = {}
    for name, val in (spec.get("phases") or {}).items():
        if isinstance(val, int | float):
            out[name] = float(val)
            continue
        cell = load_cell(_rel(val, base))
        comp = cell.get_structure().composition
        nfu = comp.num_atoms / Composition(name).num_atoms
        out[name] = cell.energy_eV / nfu
    if not out:
        raise InputError(
            "the formation spec has no phases", "list the elements and competing phases"
        )
    return out


def _rel(ref: Any, base: Path) -> Any:
    if isinstance(ref, str) and (base / ref).exists():
        return base / ref
    return ref


def run_formation_spec(spec_path: str | Path) -> FormationResult:
    """Formation energies from a spec file (see the module docstring)."""
    import yaml

    spec_path = Path(spec_path)
    if not spec_path.is_file():
        raise InputError(f"spec file {spec_path} does not exist", "write the YAML spec first")
    try:
        spec = yaml.safe_load(spec_path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"{spec_path} is not valid YAML/JSON", "fix its syntax") from exc
    if not isinstance(spec, dict) or "bulk" not in spec or not spec.get("defects"):
        raise InputError(
            f"{spec_path} needs 'bulk' and 'defects'", "see perovflow analyze formation --help"
        )
    base = spec_path.parent
    b = spec["bulk"]
    bulk = load_cell(_rel(b["ref"], base), 0, _rel(b.get("potential"), base), "bulk")
    defects = [
        load_cell(
            _rel(d["ref"], base),
            int(d.get("charge", 0)),
            _rel(d.get("potential"), base),
            d.get("label", ""),
        )
        for d in spec["defects"]
    ]
    vbm, gap = spec.get("vbm_eV"), spec.get("band_gap_eV")
    if vbm is None or gap is None:
        vbm, gap = _bulk_edges(_rel(b["ref"], base), vbm, gap)
    corr = spec.get("correction", "freysoldt")
    return formation_energies(
        bulk,
        defects,
        _phases(spec, base),
        float(vbm),
        float(gap),
        spec.get("dielectric"),
        None if corr in (None, "none") else corr,
    )


def _bulk_edges(ref: Any, vbm: float | None, gap: float | None) -> tuple[float, float]:
    from perovflow.analysis.sources import is_path, load_task_output
    from perovflow.engines.qe.projwfc import find_pw_output, read_pw_info

    if is_path(ref):
        path = Path(ref)
        info = read_pw_info(find_pw_output(path) if path.is_dir() else path)
        homo, lumo = info["homo_eV"], info["lumo_eV"]
    else:
        el = load_task_output(str(ref)).get("electronic") or {}
        homo, lumo = el.get("vbm_eV"), el.get("cbm_eV")
    if homo is None or lumo is None:
        raise InputError("the bulk VBM/gap are unknown", "give vbm_eV and band_gap_eV in the spec")
    return (vbm if vbm is not None else homo), (gap if gap is not None else lumo - homo)


def _projection_sections(proj: Any, name: str, prov: dict[str, Any], figdir: Path) -> list[dict]:
    from perovflow.analysis.ipr import analyze_ipr
    from perovflow.analysis.pdos import compute_pdos, plot_pdos
    from perovflow.analysis.plots import plot_ipr
    from perovflow.analysis.report import section

    out = []
    ipr = analyze_ipr(proj)
    png = plot_ipr(ipr, figdir / f"{name}_ipr.png")
    out.append(section(ipr, f"{name}: IPR", [png], prov, {"threshold": ipr.threshold}, "ipr"))
    pdos = compute_pdos(proj, by="element", sigma=0.1)
    png = plot_pdos(pdos, figdir / f"{name}_pdos.png")
    out.append(section(pdos, f"{name}: PDOS by element", [png], prov, {"sigma_eV": 0.1}, "pdos"))
    return out


def _folder_sections(folder: Path, figdir: Path) -> list[dict[str, Any]]:
    from perovflow.analysis.bands import analyze_bands, plot_bands
    from perovflow.analysis.neb import analyze_neb, plot_neb
    from perovflow.analysis.report import section
    from perovflow.engines.qe.projwfc import (
        find_projwfc_output,
        find_pw_output,
        parse_projwfc,
        read_text,
    )

    out: list[dict[str, Any]] = []
    for calc in [folder, *sorted(p for p in folder.iterdir() if p.is_dir())]:
        name = calc.name
        prov = {"dir_name": str(calc.resolve())}
        if find_projwfc_output(calc):
            out += _projection_sections(parse_projwfc(calc), name, prov, figdir)
        pw = find_pw_output(calc)
        if pw is not None and "End of band structure calculation" in read_text(pw):
            res = analyze_bands(pw)
            png = plot_bands(pw, figdir / f"{name}_bands.png")
            out.append(section(res, f"{name}: band structure", [png], prov, kind="bands"))
        if list(calc.glob("*.path")):
            res = analyze_neb(calc)
            png = plot_neb(res, figdir / f"{name}_neb.png")
            out.append(section(res, f"{name}: NEB", [png], prov, kind="neb"))
    return out


def _store_sections(study: str, figdir: Path) -> list[dict[str, Any]]:
    from perovflow.analysis.bands import analyze_bands, load_bandstructure, plot_bands
    from perovflow.analysis.report import section
    from perovflow.documents import study_documents
    from perovflow.projections import StateProjections

    docs = study_documents(study)
    out: list[dict[str, Any]] = []
    for doc in docs:
        o = doc.get("output") if isinstance(doc.get("output"), dict) else {}
        name = f"{o.get('task_label', doc.get('name', 'task'))}-{doc['uuid'][:8]}"
        prov = {"task_uuid": doc["uuid"], "dir_name": o.get("dir_name")}
        if o.get("projections"):
            proj = StateProjections.from_dict(o["projections"])
            proj.structure = proj.structure or o.get("structure")
            out += _projection_sections(proj, name, prov, figdir)
        if isinstance(o.get("formation"), dict) and o.get("vacancies") is not None:
            out += _formation_sections(o["formation"], figdir)
        if o.get("result_type") == "neb" and o.get("images"):
            from perovflow.analysis.neb import neb_section

            out.append(neb_section(o, f"{name}: NEB", prov, figdir))
        elif o.get("bandstructure"):
            bs = load_bandstructure(
                o["bandstructure"], o.get("structure"), (o.get("electronic") or {}).get("nelect")
            )
            res = analyze_bands(bs)
            png = plot_bands(bs, figdir / f"{name}_bands.png")
            out.append(section(res, f"{name}: band structure", [png], prov, kind="bands"))
        elif o.get("energy_eV") is not None:
            summary = {
                "energy_eV": o["energy_eV"],
                "formula": o.get("formula"),
                "band_gap_eV": (o.get("electronic") or {}).get("band_gap_eV"),
            }
            out.append(
                section(
                    summary,
                    f"{name}: {o.get('calc_type', 'task')}",
                    [],
                    prov,
                    kind=o.get("calc_type", "task"),
                )
            )
    return out


def _formation_sections(formation: dict[str, Any], figdir: Path) -> list[dict[str, Any]]:
    """Sections of a vacancy report's formation energies (corrections, ε and its source)."""
    from perovflow.analysis.formation_report import formation_sections

    out = []
    for label, res in formation.items():
        if isinstance(res, dict) and res.get("entries"):
            source = (res.get("dielectric") or {}).get("source", "")
            if res.get("uncorrected_reason"):
                source = f"{source} (uncorrected: {res['uncorrected_reason']})".strip()
            out += formation_sections(res, figdir, f"{label}: formation energies", source)
    return out


def study_sections(study: str, figdir: str | Path) -> list[dict[str, Any]]:
    """Report sections for every analysable calculation of a study (folder or store label).

    Plots are written to ``figdir``; give the report's own ``figures/`` folder so that the
    report links them where they are (no second copy).
    """
    figdir = Path(figdir)
    figdir.mkdir(parents=True, exist_ok=True)
    path = Path(study)
    sections = _folder_sections(path, figdir) if path.is_dir() else _store_sections(study, figdir)
    if not sections:
        raise InputError(
            f"nothing to report for {study!r}: no projections, band structures, NEB paths or tasks",
            "give a folder of finished calculations or a study label present in the store",
        )
    return sections


def _one_finding(sec: dict[str, Any]) -> str | None:
    """The key number of one section, as a clause (None if it has none)."""
    from perovflow.structures.kpath import pretty_label

    s, name = sec.get("summary", {}), sec["title"].split(":")[0]
    if sec.get("kind") == "bands" and s.get("band_gap_eV") is not None:
        where = pretty_label(s.get("vbm_kpoint")) if s.get("is_direct") else "indirect"
        return f"{name} has a {s['band_gap_eV']:.2f} eV gap ({'direct at ' + where if s.get('is_direct') else where})"
    if sec.get("kind") == "ipr" and s.get("n_localized") is not None:
        return f"{name} has {s['n_localized']} localized states (IPR > {s.get('threshold', 0):.3g})"
    if sec.get("kind") == "neb" and s.get("barrier_forward_eV") is not None:
        return f"{name}: barrier {s['barrier_forward_eV']:.2f} eV"
    return None


def study_answer(sections: list[dict[str, Any]], limit: int = 4) -> str:
    """One sentence with the study's key numbers (gaps, localized states, barriers)."""
    found = [f for f in (_one_finding(sec) for sec in sections) if f]
    if not found:
        return f"{len(sections)} calculations analysed; see the sections below."
    more = f"; and {len(found) - limit} more below" if len(found) > limit else ""
    return "; ".join(found[:limit]) + more + "."
