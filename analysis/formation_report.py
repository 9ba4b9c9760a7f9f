"""Formation energies in a report: the diagram, the corrections and their alignment plots.

For each defect, :func:`formation_sections` gives the report sections
(:mod:`perovflow.analysis.report`): formation energies at every chemical-potential limit and
the transition levels, corrected with the uncorrected values beside them; then, per charged
cell, the correction terms, the dielectric tensor used (and its source) and the
potential-alignment plot (:func:`perovflow.analysis.corrections.plot_alignment`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _data(result: Any) -> dict[str, Any]:
    return result.summary() if hasattr(result, "summary") else dict(result)


def plot_formation(result: Any, path: str | Path) -> Path:
    """Formation energy vs Fermi level (lower envelope) for each chemical-potential limit;
    corrected lines solid, the uncorrected ones dotted beside them."""
    from perovflow.analysis.plots import new_figure, save_figure

    data = _data(result)
    fig, ax = new_figure(5.0, 3.8)
    plain = (data.get("uncorrected") or {}).get("envelope", {})
    corrected = any(r.get("correction_eV") for r in data["entries"])
    for name, pts in data["envelope"].items():
        xs, ys = zip(*pts, strict=True)
        line = ax.plot(xs, ys, "-", label=f"{name}{' (corrected)' if corrected else ''}")[0]
        if corrected and plain.get(name):
            xs, ys = zip(*plain[name], strict=True)
            ax.plot(xs, ys, ":", color=line.get_color(), lw=1.0, label=f"{name} (uncorrected)")
    ax.axvspan(0, data["band_gap_eV"], color="0.95")
    ax.set_xlabel("E_F - VBM (eV)")
    ax.set_ylabel(f"E_f({data['defect']}) (eV)")
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def formation_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per limit and charge: E_f at the VBM corrected and uncorrected (eV)."""
    plain = {lim["name"]: lim for lim in (data.get("uncorrected") or {}).get("limits", [])}
    rows = []
    for lim in data["limits"]:
        bare = plain.get(lim["name"], {}).get("formation_at_vbm_eV", {})
        for q, e in sorted(lim["formation_at_vbm_eV"].items(), key=lambda kv: int(kv[0])):
            e0 = bare.get(q, bare.get(str(q)))
            rows.append({"limit": lim["name"], "charge": int(q), "E_f_at_VBM_eV": round(e, 4),
                         "uncorrected_eV": None if e0 is None else round(e0, 4)})  # fmt: skip
    return rows


def level_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Transition levels (eV above the VBM), corrected and uncorrected."""
    rows = [{"level": f"({t['q1']:+d}/{t['q2']:+d})", "corrected_eV": round(t["level_eV"], 4),
             "uncorrected_eV": None} for t in data.get("transition_levels", [])]  # fmt: skip
    for t in (data.get("uncorrected") or {}).get("transition_levels", []):
        name = f"({t['q1']:+d}/{t['q2']:+d})"
        row = next((r for r in rows if r["level"] == name), None)
        if row is None:
            rows.append(row := {"level": name, "corrected_eV": None})
        row["uncorrected_eV"] = round(t["level_eV"], 4)
    return rows


def correction_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per charged cell: scheme and terms of its correction (eV)."""
    rows = []
    for r in data["entries"]:
        terms = r.get("correction_terms") or {}
        if not r["charge"]:
            continue
        rows.append({
            "charge": r["charge"], "scheme": r.get("correction_scheme") or "none",
            "correction_eV": round(r.get("correction_eV") or 0.0, 4),
            "model_eV": _round(terms.get("electrostatic_eV", terms.get("point_charge_eV"))),
            "alignment_eV": _round(terms.get("potential_eV")),
        })  # fmt: skip
    return rows


def _round(v: Any) -> Any:
    return None if v is None else round(float(v), 4)


def formation_sections(
    result: Any, out_dir: str | Path, title: str | None = None, dielectric_source: str = ""
) -> list[dict[str, Any]]:
    """Report sections of one defect's formation result (with the plots written to
    ``out_dir``): the diagram and tables, then the corrections and alignment plots."""
    from perovflow.analysis.corrections import plot_alignment

    data = _data(result)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = data["defect"]
    diagram = plot_formation(data, out / f"formation_{name}.png")
    eps = (data.get("meta") or {}).get("dielectric")
    summary = {"defect": name, "band_gap_eV": data["band_gap_eV"],
               "correction": (data.get("meta") or {}).get("correction") or "none",
               "dielectric": "none" if eps is None else str(eps),
               "dielectric_source": dielectric_source or "not given"}  # fmt: skip
    rows = formation_rows(data) + level_rows(data)
    sections = [{"title": title or f"{name}: formation energies", "kind": "formation",
                 "summary": summary, "rows": rows, "plots": [str(diagram)]}]  # fmt: skip
    plots = []
    for r in data["entries"]:
        info = r.get("correction_terms") or {}
        if info.get("plot"):
            path = out / f"alignment_{name}_q{r['charge']:+d}.png"
            plots.append(str(plot_alignment(info, path, f"{name} q={r['charge']:+d}")))
    if correction_rows(data):
        sections.append({"title": f"{name}: finite-size corrections", "kind": "corrections",
                         "summary": {"dielectric": summary["dielectric"],
                                     "dielectric_source": summary["dielectric_source"]},
                         "rows": correction_rows(data), "plots": plots})  # fmt: skip
    return sections
