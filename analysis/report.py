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
:func:`section`. Output: ``report.md``, ``report.html``, ``results.json`` and ``figures/``
in ``out_dir``; files are written to temporary names and renamed, so a failed report
leaves no half-written file.
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

from perovflow.errors import InputError

PACKAGES = (
    "perovflow",
    "numpy",
    "scipy",
    "pymatgen",
    "pymatgen-analysis-defects",
    "ase",
    "jobflow",
)
_SKIP_SUMMARY = {"states", "localized_states", "entries", "limits", "envelope", "effective_masses"}


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


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def _prov_text(sec: dict[str, Any], key: str | None = None) -> str:
    prov = (sec.get("provenance_by_key") or {}).get(key) or sec.get("provenance") or {}
    if isinstance(prov, str):
        return prov
    return "; ".join(f"{k}={v}" for k, v in prov.items() if v)


def _md_table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    cols = list(dict.fromkeys(k for r in rows for k in r))
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(_fmt(r.get(c)).replace("|", "/") for c in cols) + " |" for r in rows]
    return [*out, ""]


def _html_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in cols) + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _summary_rows(sec: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"quantity": k, "value": v, "provenance": _prov_text(sec, k)}
        for k, v in sec.get("summary", {}).items()
    ]


def render(
    results: list[dict[str, Any]], title: str, settings: dict[str, Any], figs: dict[str, str]
):
    """Markdown and HTML text of the report (figures referenced by relative path)."""
    when = datetime.now(UTC).isoformat(timespec="seconds")
    versions = code_versions()
    md = [f"# {title}", "", f"Generated {when} by perovflow.", ""]
    ht = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:auto}table{border-collapse:"
        "collapse}td,th{border:1px solid #bbb;padding:2px 6px}img{max-width:100%}</style>",
        f"</head><body><h1>{html.escape(title)}</h1><p>Generated {when} by perovflow.</p>",
    ]
    for sec in results:
        md += [f"## {sec['title']}", "", f"Kind: {sec.get('kind', '')}", ""]
        md += _md_table(_summary_rows(sec)) + _md_table(sec.get("rows", []))
        ht += [
            f"<h2>{html.escape(sec['title'])}</h2>",
            _html_table(_summary_rows(sec)),
            _html_table(sec.get("rows", [])),
        ]
        for p in sec.get("plots", []):
            md += [f"![{Path(p).stem}]({figs[p]})", ""]
            ht.append(
                f"<p><img src='{html.escape(figs[p])}' alt='{html.escape(Path(p).stem)}'></p>"
            )
        extra = {
            **sec.get("settings", {}),
            **({"code_version": sec["code_version"]} if sec.get("code_version") else {}),
        }
        if extra:
            rows = [{"setting": k, "value": v} for k, v in extra.items()]
            md += ["Settings:", "", *_md_table(rows)]
            ht += ["<p>Settings:</p>", _html_table(rows)]
    rows = [{"setting": k, "value": v} for k, v in settings.items()]
    vrows = [{"package": k, "version": v} for k, v in versions.items()]
    md += ["## Settings and code versions", "", *_md_table(rows), *_md_table(vrows)]
    ht += [
        "<h2>Settings and code versions</h2>",
        _html_table(rows),
        _html_table(vrows),
        "</body></html>",
    ]
    return "\n".join(md) + "\n", "\n".join(ht) + "\n", versions


def write_report(
    results: list[dict[str, Any]],
    out_dir: str | Path,
    title: str = "perovflow report",
    settings: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Write ``report.md``, ``report.html``, ``results.json`` and ``figures/`` to ``out_dir``.

    Parameters
    ----------
    results
        Sections (see the module docstring), e.g. from :func:`section`.
    out_dir
        Output folder (created).
    title
        Report title.
    settings
        Global settings to list (protocol, thresholds...).

    Returns
    -------
    dict
        Paths of the written files (``markdown``, ``html``, ``json``, ``figures``).
    """
    _check(results)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figdir = out / "figures"
    figs: dict[str, str] = {}
    used: set[str] = set()
    for sec in results:
        for p in sec.get("plots", []):
            name = Path(p).name
            while name in used:
                name = f"{len(used)}_{name}"
            used.add(name)
            figs[p] = f"figures/{name}"
    md, ht, versions = render(results, title, settings or {}, figs)
    payload = {
        "title": title,
        "settings": settings or {},
        "versions": versions,
        "sections": results,
    }
    figdir.mkdir(exist_ok=True)
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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _atomic_copy(src: Path, dst: Path) -> None:
    if src.resolve() == dst.resolve():
        return
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.")
    os.close(fd)
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
