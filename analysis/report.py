"""Markdown + HTML reports of analysis results, with plots, settings, versions, provenance.

Input structure (what studies pass to :func:`write_report`)
-----------------------------------------------------------
``results`` is a list of *sections*; each is a dict::

    {
      "title": "Br vacancy in Cs4PbBr6: IPR",       # required
      "kind": "ipr",                                  # free text (bands, pdos, ipr, neb...)
      "summary": {"gap_eV": 3.72, "n_localized": 1},  # name -> number/str: the results table
      "rows": [{"state": 45, "ipr": 0.93}, ...],      # optional extra table
      "plots": ["/path/ipr.png"],                     # optional PNG files (copied)
      "provenance": {"task_uuid": "...", "dir_name": "..."},  # where the numbers come from
      "provenance_by_key": {"gap_eV": {"dir_name": "..."}},   # optional per-number override
      "settings": {"threshold": 0.03},                # optional analysis settings
      "code_version": "QE 6.7",                       # optional
    }

Result objects of this package (``IPRResult``, ``PDOSResult``, ``BandsResult``,
``NEBResult``, ``AlignmentResult``, ``FormationResult``) become sections through
:func:`section`; a formation result with its corrections (terms, dielectric tensor,
alignment plots, uncorrected values beside) becomes sections through
:func:`perovflow.analysis.formation_report.formation_sections`. Output: ``report.md``, ``report.html`` (self-contained: plots inline),
``results.json`` and ``figures/`` in ``out_dir``; files are written to temporary names and
renamed (mode 0644), so a failed report leaves no half-written file.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from perovflow.analysis.report_html import (
    CSS,
    _html_section,
    _html_table,
    _prov_items,
    _summary_rows,
    _text,
    quantity_name,
)
from perovflow.errors import InputError

__all__ = ["CSS", "code_versions", "quantity_name", "render", "section", "write_report"]

PACKAGES = (
    "perovflow",
    "numpy",
    "scipy",
    "pymatgen",
    "pymatgen-analysis-defects",
    "ase",
    "jobflow",
)
_SKIP_SUMMARY = {
    "states", "localized_states", "entries", "limits", "envelope", "effective_masses", "source",
}  # fmt: skip
_KPOINT_KEYS = ("vbm_kpoint", "cbm_kpoint", "direct_gap_kpoint")


def section(
    result: Any,
    title: str,
    plots: list[str | Path] | None = None,
    provenance: dict[str, Any] | str | None = None,
    settings: dict[str, Any] | None = None,
    kind: str | None = None,
) -> dict[str, Any]:
    """A report section from a result object of this package (or a plain dict)."""
    data = result.summary() if hasattr(result, "summary") else dict(result)
    summary = {k: v for k, v in data.items() if _scalar(v) and k not in _SKIP_SUMMARY}
    for key in ("edges_delocalized",):
        if isinstance(data.get(key), dict):
            summary.update({f"{key}.{k}": v for k, v in data[key].items() if _scalar(v)})
    for key in _KPOINT_KEYS:  # where the band edges are: the label, else the coordinates
        if isinstance(data.get(key), dict):
            k = data[key]
            summary[key] = k.get("label") or "({:.3f}, {:.3f}, {:.3f})".format(*k["frac_coords"])
    rows = _rows_for(data)
    return {
        "title": title,
        "kind": kind or type(result).__name__.replace("Result", "").lower(),
        "summary": summary,
        "rows": rows,
        "plots": [str(p) for p in plots or []],
        "provenance": provenance
        if isinstance(provenance, dict)
        else {"source": provenance or data.get("source", "")},
        "settings": settings or {},
    }


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, str | int | float | bool)


def _rows_for(data: dict[str, Any]) -> list[dict[str, Any]]:
    if data.get("localized_states"):
        return [
            {
                "energy_eV": s["energy_eV"],
                "E-VBM": s["e_minus_vbm_eV"],
                "ipr": s["ipr"],
                "top_atoms": ", ".join(
                    f"{a['element']}{a['index']}({a['fraction']:.2f})" for a in s["top_atoms"]
                ),
            }
            for s in data["localized_states"]
        ]
    for key in ("effective_masses", "entries", "transition_levels"):
        if data.get(key):
            return [{k: v for k, v in r.items() if _scalar(v)} for r in data[key]]
    if data.get("edges"):
        return [{"domain": k, **v} for k, v in data["edges"].items()]
    return []


def code_versions() -> dict[str, str]:
    """Versions of the Python packages that produced the numbers."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _check(results: list[dict[str, Any]]) -> None:
    if not results:
        raise InputError("nothing to report: the result list is empty", "analyse something first")
    for i, sec in enumerate(results):
        if not isinstance(sec, dict) or "title" not in sec:
            raise InputError(f"report section {i} has no title", "give each section a 'title'")
        for p in sec.get("plots", []):
            if not Path(p).is_file():
                raise InputError(
                    f"plot {p} of section {sec['title']!r} does not exist",
                    "write the plot before the report",
                )


def _md_table(rows: list[dict[str, Any]], names: bool = False) -> list[str]:
    if not rows:
        return []
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = [quantity_name(c) if names else c for c in cols]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(_text(r.get(c)).replace("|", "/") for c in cols) + " |" for r in rows]
    return [*out, ""]


def _md_section(sec: dict[str, Any], figs: dict[str, str]) -> list[str]:
    md = [f"## {sec['title']}", ""]
    md += _md_table(_summary_rows(sec))
    for p in sec.get("plots", []):
        md += [f"![{Path(p).stem}]({figs[p]})", ""]
    md += _md_table(sec.get("rows", []), names=True)
    if sec.get("settings") or sec.get("code_version"):
        extra = {**sec.get("settings", {}), "code_version": sec.get("code_version")}
        md += ["Settings: " + ", ".join(f"{k}={_text(v)}" for k, v in extra.items() if v), ""]
    prov = _prov_items(sec)
    if prov:
        md += ["Provenance: " + "; ".join(f"{k}={v}" for k, v in prov), ""]
    return md


def render(
    results: list[dict[str, Any]],
    title: str,
    settings: dict[str, Any],
    figs: dict[str, str],
    answer: str | None = None,
    out_dir: str | Path | None = None,
):
    """Markdown and HTML text of the report.

    The answer (one sentence with the key numbers) comes first; the HTML carries its plots
    inline (a single file to share), the Markdown links them from ``figures/``; provenance,
    settings and code versions sit one click away (``<details>``).
    """
    when = datetime.now(UTC).isoformat(timespec="seconds")
    versions = code_versions()
    out = Path(out_dir).resolve() if out_dir is not None else None
    md = [f"# {title}", ""]
    ht = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>",
    ]
    if answer:
        md += [f"**{answer}**", ""]
        ht.append(f"<p class='answer'>{html.escape(answer)}</p>")
    for sec in results:
        md += _md_section(sec, figs)
        ht += _html_section(sec, out)
    rows = [{"setting": k, "value": v} for k, v in settings.items()]
    vrows = [{"package": k, "version": v} for k, v in versions.items()]
    md += ["## Settings and code versions", "", *_md_table(rows), *_md_table(vrows)]
    md += [f"Generated {when} by perovflow.", ""]
    ht += [
        "<details><summary>Settings and code versions</summary>",
        _html_table(rows),
        _html_table(vrows),
        f"</details><p><small>Generated {when} by perovflow.</small></p></body></html>",
    ]
    return "\n".join(md) + "\n", "\n".join(x for x in ht if x) + "\n", versions


def _figure_names(results: list[dict[str, Any]], out: Path) -> dict[str, str]:
    """Plot path -> path relative to ``out`` (``figures/NAME``; kept where it already is)."""
    figs: dict[str, str] = {}
    used: set[str] = set()
    for sec in results:
        for p in sec.get("plots", []):
            src = Path(p).resolve()
            if src.parent == (out / "figures").resolve():
                figs[p] = f"figures/{src.name}"
                used.add(src.name)
    for sec in results:
        for p in sec.get("plots", []):
            if p in figs:
                continue
            name = Path(p).name
            while name in used:
                name = f"{len(used)}_{name}"
            used.add(name)
            figs[p] = f"figures/{name}"
    return figs


def write_report(
    results: list[dict[str, Any]],
    out_dir: str | Path,
    title: str = "perovflow report",
    settings: dict[str, Any] | None = None,
    answer: str | None = None,
) -> dict[str, Path]:
    """Write ``report.md``, ``report.html``, ``results.json`` and ``figures/`` to ``out_dir``.

    Parameters
    ----------
    results
        Sections (see the module docstring), e.g. from :func:`section`.
    out_dir
        Output folder (created). Plots already in ``out_dir/figures`` stay there; others
        are copied in. Every file is readable by others (0644 less the umask).
    title
        Report title.
    settings
        Global settings to list (protocol, thresholds...).
    answer
        The study's answer in one sentence, with its key numbers; shown first.

    Returns
    -------
    dict
        Paths of the written files (``markdown``, ``html``, ``json``, ``figures``).
    """
    _check(results)
    out = Path(out_dir)
    figdir = out / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    figs = _figure_names(results, out)
    md, ht, versions = render(results, title, settings or {}, figs, answer, out)
    payload = {
        "title": title,
        "answer": answer,
        "settings": settings or {},
        "versions": versions,
        "sections": results,
    }
    for src, rel in figs.items():
        _atomic_copy(Path(src), out / rel)
    paths = {
        "markdown": out / "report.md",
        "html": out / "report.html",
        "json": out / "results.json",
    }
    _atomic_write(paths["markdown"], md)
    _atomic_write(paths["html"], ht)
    _atomic_write(paths["json"], json.dumps(payload, indent=2, default=_json_default))
    paths["figures"] = figdir
    return paths


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def _atomic_write(path: Path, text: str) -> None:
    from perovflow.analysis.plots import readable_mode

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, readable_mode())
    os.replace(tmp, path)


def _atomic_copy(src: Path, dst: Path) -> None:
    from perovflow.analysis.plots import readable_mode

    if src.resolve() == dst.resolve():
        os.chmod(dst, readable_mode())
        return
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.")
    os.close(fd)
    shutil.copyfile(src, tmp)
    os.chmod(tmp, readable_mode())
    os.replace(tmp, dst)
