"""``plan``: what a study will run, before anything runs.

Reads the flow built by :func:`perovflow.workflows.studies.build_flow`: every job with its
parents, the expensive calculations by code and kind (jobs tagged by
:func:`perovflow.workflows.common.tag`), and what symmetry reduction saved (the flow's
``metadata["symmetry"]``: distinct items, the items they stand for, calculations per item).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from perovflow.workflows.common import CALC

#: (code, kind) -> the executables one such calculation starts (QE vc-relax: pw.x also runs
#: the final scf on the relaxed cell; dielectric: scf, ph.x at Γ, dynmat.x cross-check)
PROGRAMS: dict[tuple[str, str], tuple[str, ...]] = {
    ("qe", "static"): ("pw.x",),
    ("qe", "relax"): ("pw.x",),
    ("qe", "vc-relax"): ("pw.x",),
    ("qe", "bands"): ("pw.x",),
    ("qe", "dos"): ("pw.x", "projwfc.x"),
    ("qe", "dielectric"): ("pw.x", "ph.x", "dynmat.x"),
}  # NEB bands call the code once per image and step: counted in ``neb_images``, not here


def job_graph(flow: Any) -> list[dict[str, Any]]:
    """One row per job, in execution order: name, parents (names), calculation."""
    rows, names = [], {}
    for job_, parents in flow.iterflow():
        names[job_.uuid] = job_.name
        rows.append({
            "name": job_.name,
            "parents": [names.get(p, p) for p in parents],
            "calc": (job_.metadata or {}).get(CALC),
        })  # fmt: skip
    return rows


def count_calcs(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """code -> kind -> number of jobs (NEB counted as runs; images listed separately)."""
    counts: dict[str, Counter] = {}
    for row in rows:
        calc = row["calc"]
        if calc:
            counts.setdefault(calc.get("code", "?"), Counter())[calc.get("kind", "?")] += 1
    return {code: dict(sorted(c.items())) for code, c in sorted(counts.items())}


def count_potentials(rows: list[dict[str, Any]]) -> dict[str, int]:
    """code -> statics that also write the electrostatic potential (pp.x plot_num=11 for
    QE, the V_HARTREE cube for CP2K): the charged-defect corrections' extra cost."""
    out: Counter = Counter()
    for row in rows:
        if (row["calc"] or {}).get("potential"):
            out[row["calc"].get("code", "?")] += 1
    return dict(sorted(out.items()))


def count_programs(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Executable -> runs: from :data:`PROGRAMS` (QE) or ``code`` (CP2K: cp2k), plus any
    ``programs`` a job's tag lists itself (e.g. ``["pp.x"]`` for an electrostatic potential)."""
    counts: Counter = Counter()
    for row in rows:
        calc = row["calc"] or {}
        code, kind = calc.get("code"), calc.get("kind")
        if code == "cp2k" and kind != "neb":
            counts["cp2k"] += 1
        counts.update(PROGRAMS.get((code, kind), ()))
        counts.update(calc.get("programs", ()))
    return dict(sorted(counts.items()))


def describe(study: Any, flow: Any) -> dict[str, Any]:
    """The plan of ``study``: graph, counts, DFT totals and symmetry savings."""
    rows = job_graph(flow)
    counts = count_calcs(rows)
    dft = {code: sum(kinds.values()) for code, kinds in counts.items() if code in ("qe", "cp2k")}
    neb_images = sum(
        (r["calc"] or {}).get("images", 0) for r in rows if (r["calc"] or {}).get("kind") == "neb"
    )
    sym = dict((flow.metadata or {}).get("symmetry") or {})
    if sym:
        per = sym.get("calcs_per_item", 0)
        sym["calcs_without_symmetry"] = sym.get("items_total", 0) * per
        sym["calcs_with_symmetry"] = sym.get("items_distinct", 0) * per
        sym["calcs_saved"] = sym["calcs_without_symmetry"] - sym["calcs_with_symmetry"]
    return {
        "study": study.name,
        "kind": study.study,
        "protocol": study.protocol,
        "code": study.code,
        "jobs": len(rows),
        "calculations": counts,
        "dft_calculations": sum(dft.values()),
        "potential_post_steps": count_potentials(rows),
        "neb_images": neb_images,
        "programs": count_programs(rows),
        "symmetry": sym,
        "graph": rows,
    }


def format_plan(data: dict[str, Any]) -> str:
    """Human-readable plan: graph lines then the counts."""
    lines = [
        f"study {data['study']} ({data['kind']}, {data['code']}, protocol {data['protocol']}): {data['jobs']} jobs"
    ]
    for row in data["graph"]:
        calc = row["calc"]
        post = " + potential" if calc and calc.get("potential") else ""
        what = f"  [{calc.get('code')} {calc.get('kind')}{post}]" if calc else ""
        after = f"  <- {', '.join(row['parents'])}" if row["parents"] else ""
        lines.append(f"  {row['name']}{what}{after}")
    lines.append("calculations: " + "; ".join(
        f"{code}: " + ", ".join(f"{n} {k}" for k, n in kinds.items()) for code, kinds in data["calculations"].items()
    ))  # fmt: skip
    lines.append(
        f"DFT calculations: {data['dft_calculations']} (NEB images per band summed: {data['neb_images']})"
    )
    if data.get("potential_post_steps"):
        lines.append("electrostatic potentials (charged-defect corrections, after the scf): " + ", ".join(
            f"{n} {'pp.x plot_num=11' if code == 'qe' else 'V_HARTREE cube'}"
            for code, n in data["potential_post_steps"].items()))  # fmt: skip
    if data.get("programs"):
        lines.append(
            "runs besides NEB: " + ", ".join(f"{n} {p}" for p, n in data["programs"].items())
        )
    sym = data["symmetry"]
    if sym:
        lines.append(
            f"symmetry: {sym['items_distinct']} distinct {sym['unit']} stand for {sym['items_total']}; "
            f"{sym['calcs_with_symmetry']} calculations instead of {sym['calcs_without_symmetry']} "
            f"(saved {sym['calcs_saved']})"
        )
    return "\n".join(lines)
