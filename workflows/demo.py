"""The main job (``perovflow demo``): a Br vacancy in Cs4PbBr6, end to end at the fast protocol.

Steps: Cs4PbBr6 rhombohedral primitive cell (22 atoms, prototype) -> remove the one
symmetry-distinct Br (21 atoms) -> ML pre-relax (packaged CHGNet) -> QE scf at Γ with
projwfc.x on its own states (PDOS) -> QE bands along the high-symmetry path on the scf
density -> IPR of every state -> report (gap, band-structure, PDOS and IPR PNGs; task documents in the
embedded store). Reruns reuse finished jobs (resume).

The 21-atom cell has an odd electron count, so every QE run is spin-polarised with one
unpaired electron (:func:`perovflow.engines.qe.inputs.spin_settings`). The summary names
each gap for what it is: ``host_gap_eV`` (host VBM to host CBM, the defect levels left
out), ``defect_cell_gap_eV`` (the defect cell's highest occupied to lowest empty state,
both spins: the occupied level to its empty partner when that lies in the gap) and the
level's position ``level_above_vbm_eV`` / ``level_below_cbm_eV`` (see
:func:`perovflow.workflows.vacancy.defect_level`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jobflow import Flow, job

from perovflow.workflows.common import engine_maker, remove_site_job, run_maker

#: fast-protocol settings that keep the demo within minutes on 2 cores (user-visible). The
#: scf is Γ only, so it runs with Γ tricks (real wavefunctions, half the work) and its own
#: states are projected (projwfc.x on the scf, no nscf: a uniform nscf on the same Γ point
#: would repeat it); 84 bands hold the 79 occupied spin-up states, the empty spin-down
#: partner and the host conduction band edge. The bands run converges each state to
#: 0.1 * conv_thr / nelec Ry (pw.x's nscf rule: 6e-5 Ry, below 1 meV).
DEMO_SETTINGS: dict[str, dict[str, Any]] = {
    "static": {"kpts": "gamma", "nbnd": 84, "control": {"tstress": False}},
    "bands": {"nbnd": 84, "electrons": {"diago_full_acc": False, "conv_thr": 1e-1}},
}
#: the demo's band path: the trigonal axis (Z-Γ) and Γ-L of the Setyawan–Curtarolo RHL1 path
DEMO_SEGMENTS = [["Z", "\\Gamma", "L"]]


def short_band_path(
    structure: Any, segments: list[list[str]] | None = None, protocol: str = "fast"
) -> tuple[Any, dict[str, str]]:
    """k-points of ``segments`` (default :data:`DEMO_SEGMENTS`) and their labels.

    The points are the structure's own high-symmetry points in its reciprocal basis, at the
    protocol's line density (:func:`perovflow.engines.qe.jobs.band_path`). Returns an
    (n, 4) array (fractional k, weight; ASE's pw.x writer reads an array as explicit
    k-points) and {k index (str): label}.
    """
    from perovflow.engines.qe.jobs import band_path

    kpts, labels = band_path(structure, protocol=protocol, segments=segments or DEMO_SEGMENTS)
    return kpts, {str(i): name for i, name in labels.items()}


def demo_flow(out_dir: str | Path, protocol: str = "fast") -> Flow:
    """The demo flow (see the module docstring for the steps)."""
    from perovflow.engines.qe.jobs import QEStaticPdosMaker
    from perovflow.structures.defects import enumerate_vacancies
    from perovflow.structures.prototypes import build_prototype

    host = build_prototype("Cs4PbBr6", cell="primitive")
    site = enumerate_vacancies(host, "Br")[0]
    labels = {"study": "demo", "defect": site.label, "charge": 0}
    cut = remove_site_job(host, site.index)
    cut.name = f"{site.label} build"
    pre = run_maker(
        engine_maker("mlip", "relax", protocol), cut.output, f"{site.label} ml-prerelax", labels
    )
    scf = run_maker(
        QEStaticPdosMaker(protocol=protocol, defect=True,
                          input_set_overrides=dict(DEMO_SETTINGS["static"])),
        pre.output.structure, f"{site.label} qe scf+pdos", labels,
    )  # fmt: skip
    path_kpts, path_labels = short_band_path(host, protocol=protocol)
    band_settings = {**DEMO_SETTINGS["bands"], "kpts": path_kpts}
    bands = run_maker(
        engine_maker("qe", "bands", protocol, band_settings, defect=True),
        scf.output.structure, f"{site.label} qe bands", labels, prev_dir=scf.output.dir_name,
    )  # fmt: skip
    report = demo_report(
        scf.output, bands.output, scf.output, str(Path(out_dir).resolve()), site.label,
        path_labels,
    )  # fmt: skip
    report.name = "demo report"
    return Flow([cut, pre, scf, bands, report], output=report.output, name="demo")


def _plain(doc: Any) -> dict[str, Any]:
    return doc.model_dump() if hasattr(doc, "model_dump") else dict(doc)


def _band_figure(
    band_source: str, path: Path, labels: Any, pdos: Any, states: list, level: dict, name: str
) -> Path:
    """Bands + PDOS side by side, zero at the host VBM, the defect level marked.

    The PDOS is the scf's own and the bands run is non-self-consistent on the scf density,
    so their absolute energies agree; with a mid-gap level the zero is the host VBM below it.
    """
    from perovflow.analysis.bands import plot_bands

    zero, marks = pdos.reference_eV, []
    if level.get("midgap_level"):
        occupied = [s["energy_eV"] for s in states if (s.get("occupation") or 0) > 0]
        top = max(occupied)
        head, _, sub = name.partition("_")
        tex = f"$\\mathrm{{{head}}}_\\mathrm{{{sub}}}$" if sub else name  # V_Br -> V with Br below
        zero, marks = top - level["level_above_vbm_eV"], [(top, f"{tex} level")]
    return plot_bands(band_source, path, labels=labels, dos=pdos, levels=marks, vbm_eV=zero)


def _answer(summary: dict[str, Any], name: str) -> str:
    """The study's answer in one sentence, with its key numbers."""
    if summary.get("midgap_level") is None:
        return f"{name} in Cs4PbBr6: no level could be told apart from the bands (see below)."
    where = "a localized level deep in the gap" if summary["midgap_level"] else "no mid-gap level"
    atoms = ", ".join(a.split()[0] for a in summary.get("level_atoms") or [])
    return (
        f"The neutral {name} in Cs4PbBr6 leaves {where}: "
        f"{summary['level_above_vbm_eV']:.2f} eV above the VBM and "
        f"{summary['level_below_cbm_eV']:.2f} eV below the CBM, IPR {summary['level_ipr']:.2f}"
        f"{' on ' + atoms if atoms else ''} (fast protocol: PBE, no SOC, Γ only)."
    )


@job
def demo_report(
    scf: Any, bands: Any, dos: Any, out_dir: str, label: str, path_labels: Any = None
) -> dict[str, Any]:
    """Gap, band structure, PDOS and IPR with their plots, written as a report in ``out_dir``."""
    from perovflow.analysis.bands import analyze_bands
    from perovflow.analysis.ipr import analyze_ipr
    from perovflow.analysis.pdos import compute_pdos, plot_pdos
    from perovflow.analysis.plots import plot_ipr
    from perovflow.analysis.report import section, write_report
    from perovflow.workflows.vacancy import _gap_states, defect_level, projections_of

    scf, bands, dos = _plain(scf), _plain(bands), _plain(dos)
    figs = Path(out_dir) / "figures"  # the report's own figure folder (no copy)
    figs.mkdir(parents=True, exist_ok=True)
    proj = projections_of(dos, scf)
    ipr = analyze_ipr(proj)
    level = defect_level(ipr.states)
    host_vbm = level.get("host_vbm_eV", "vbm")  # plots from the host VBM, not the level
    pdos = compute_pdos(proj, by="element", reference=host_vbm)
    band_source = str(Path(bands["dir_name"]) / "espresso.pwo")  # the pw.x bands output
    band_res = analyze_bands(band_source, labels=path_labels)
    plots = {
        "pdos": plot_pdos(pdos, figs / "pdos.png"),
        "ipr": plot_ipr(ipr, figs / "ipr.png", reference=host_vbm),
    }
    gap_states = _gap_states(ipr.summary())  # threshold-based (large cells); see defect_level
    summary = {
        "defect": label,
        "total_magnetization_muB": scf["electronic"].get("total_magnetization"),
        **level,
    }
    plots["bands"] = _band_figure(
        band_source, figs / "bands.png", path_labels, pdos, ipr.states, level, label
    )
    sections = [
        section(summary, f"{label} in Cs4PbBr6: summary", provenance={"dir_name": scf["dir_name"]}),
        section(band_res, "Band structure", [plots["bands"]], {"dir_name": bands["dir_name"]}),
        section(pdos, "Projected DOS", [plots["pdos"]], {"dir_name": dos["dir_name"]}),
        section(ipr, "Inverse participation ratio", [plots["ipr"]], {"dir_name": dos["dir_name"]}),
    ]
    files = write_report(
        sections, out_dir, title=f"perovflow demo: {label} in Cs4PbBr6",
        answer=_answer(summary, label),
    )  # fmt: skip
    return {**summary, "gap_states": gap_states, "files": {k: str(v) for k, v in files.items()},
            "plots": {k: str(v) for k, v in plots.items()}}  # fmt: skip


def run_demo(
    store: Any,
    out_dir: str | Path = "perovflow-demo",
    protocol: str = "fast",
    progress: Any = None,
) -> dict[str, Any]:
    """Run (or resume) the demo on ``store`` (a jobflow ``JobStore``); its report summary.

    ``progress``: see :func:`perovflow.workflows.runner.run_flow`.
    """
    from perovflow.workflows.runner import run_flow

    out = Path(out_dir).resolve()
    flow = demo_flow(out, protocol)
    info = run_flow(flow, store=store, root_dir=out / "calcs", study="demo", progress=progress)
    if info["failed"]:
        from perovflow.errors import EngineError

        raise EngineError(
            f"demo jobs failed: {', '.join(info['failed'])}",
            f"see the job folders in {out / 'calcs'}",
        )
    result = store.get_output(flow.output.uuid, load=True)
    return {
        **{k: v for k, v in result.items() if k != "gap_states"},
        "jobs": info["jobs"],
        "reused": info["reused"],
    }
