"""Benchmark: corrected formation energies of V_Br in CsBr (B2) at ``fast``, QE end to end.

The vacancy flow of a study (``perovflow.workflows.vacancy``): vc-relax of the CsBr cell,
its 2x2x2 supercell (16 atoms, L = 2a), V_Br in charges 0 and +1 (positions relaxed), scf
with pp.x ``plot_num=11`` for the bulk supercell and the charged cell, Cs and Br2 as the
competing phases (relaxed); then the Freysoldt / eFNV correction of V_Br⁺ (``auto``: CsBr is
cubic, so Freysoldt) with the measured ε0 = 6.5 of CsBr (the ions relax), and the
formation-energy diagram, corrected and uncorrected.

``--unrelaxed``: nothing relaxes (measured prototype lattices, the vacancies cut from the
perfect supercell), so only the electrons screen and ε∞ = 2.88 (n_D² of CsBr) is used;
about a third of the cost.

Settings: protocol ``fast`` (25/100 Ry, GTH-PBE Cs q9 / Br q7) with ``kspacing`` 0.8 Å⁻¹
(Γ only in the supercell, 2x2x2 in the unit cell) and 0.4 Å⁻¹ for the phases; no ML
pre-relaxation, no PDOS. Resumable: finished jobs are reused from the store in
``--workdir``. Results go to ``benchmarks/results/defect_corrections/{relaxed,unrelaxed}/``:
``results.json`` (the vacancy report: formation energies corrected and uncorrected, the
terms, ε and its source) and ``report/`` (``report.md``/``report.html``,
``figures/formation_V_Br.png`` and the alignment plots); a summary on stdout.

Run: ``OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_defect_corrections.py
[--unrelaxed]`` (``--np 2`` MPI ranks at most on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

HERE = Path(__file__).parent
OUT = HERE / "results" / "defect_corrections"
EPS = {
    "relaxed": (6.5, "measured static dielectric constant ε0 of CsBr, 6.5 (Lowndes & Martin, "
                "Proc. R. Soc. A 308, 473 (1969)); the ions relax, so ε0"),
    "unrelaxed": (2.88, "ε∞ of CsBr from its measured refractive index n_D = 1.698 (ε∞ ≈ n²); "
                  "no ion relaxes, so only the electrons screen"),
}  # fmt: skip
STUDY = """
study: vacancy
name: bench-csbr-vbr{tag}
protocol: fast
code: qe
prerelax: null
relax: {relax}
structure: {{prototype: CsBr}}
settings:
  relax: {{kspacing: 0.8}}
  static: {{kspacing: 0.8}}
vacancy:
  elements: [Br]
  supercell: 2x2x2
  charge_states: {{Br: [0, 1]}}
  competing_phases: [Cs, Br2]
  phase_settings: {{relax: {{kspacing: 0.4}}, static: {{kspacing: 0.4}}}}
  dielectric: {{tensor: {eps}, source: "{source}"}}
  correction: auto
"""


def study_text(unrelaxed: bool) -> str:
    """The study file: relaxed (vc-relax of the bulk and phases, defect positions) or not
    (measured prototype lattices, vacancies cut from the perfect supercell)."""
    eps, source = EPS["unrelaxed" if unrelaxed else "relaxed"]
    return STUDY.format(tag="-unrelaxed" if unrelaxed else "", relax=str(not unrelaxed).lower(),
                        eps=eps, source=source)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/perovflow-bench-defects")
    parser.add_argument("--np", type=int, default=2, help="MPI ranks of pw.x/pp.x")
    parser.add_argument("--unrelaxed", action="store_true", help="no relaxation at all (ε∞)")
    args = parser.parse_args()
    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PEROVFLOW_PROJECT_DIR", str(work / "project"))
    os.environ.setdefault("PEROVFLOW_SCRATCH_DIR", str(work / "scratch"))
    os.environ.setdefault("PEROVFLOW_PARALLEL__RANKS", str(args.np))
    from perovflow.hpc.store import get_job_store
    from perovflow.workflows.runner import run_flow
    from perovflow.workflows.studies import load_study, makers, structure_of
    from perovflow.workflows.vacancy import flow_from_study

    path = work / "study.yaml"
    path.write_text(study_text(args.unrelaxed))
    study = load_study(path)
    steps = {**makers(study), "dos": None}
    flow = flow_from_study(study, steps, structure_of(study))
    store = get_job_store()
    start = time.time()
    info = run_flow(flow, store=store, root_dir=work / "run", study=study.name)
    if info["failed"]:
        raise SystemExit(f"failed jobs: {info['failed']} {info['errors']}")
    report = store.get_output(flow.output.uuid, load=True)
    write_results(
        report, time.time() - start, info, OUT / ("unrelaxed" if args.unrelaxed else "relaxed")
    )


def write_results(report: dict, wall_s: float, info: dict, out: Path) -> None:
    """results.json, the figures and report.md/html under ``out``; a summary on stdout."""
    from perovflow.analysis.formation_report import formation_sections
    from perovflow.analysis.report import write_report

    out.mkdir(parents=True, exist_ok=True)
    res = report["formation"]["V_Br"]
    if "entries" not in res:
        raise SystemExit(f"no formation energies: {res}")
    payload = {"wall_s": round(wall_s, 1), "jobs_ran": info["ran"], "jobs_reused": info["reused"],
               "bulk": report["bulk"], "formation": report["formation"]}  # fmt: skip
    (out / "results.json").write_text(json.dumps(payload, indent=1, default=str))
    sections = formation_sections(res, out / "report" / "figures", "V_Br in CsBr (fast)",
                                  res["dielectric"]["source"])  # fmt: skip
    write_report(sections, out / "report", title="V_Br in CsBr: corrected formation energies")
    for lim, plain in zip(res["limits"], res["uncorrected"]["limits"], strict=True):
        print(lim["name"], "corrected", lim["formation_at_vbm_eV"],
              "uncorrected", plain["formation_at_vbm_eV"])  # fmt: skip
    for e in res["entries"]:
        print("q", e["charge"], e["correction_scheme"], e["correction_eV"])
    print(
        "levels", res["transition_levels"], "uncorrected", res["uncorrected"]["transition_levels"]
    )


if __name__ == "__main__":
    main()
