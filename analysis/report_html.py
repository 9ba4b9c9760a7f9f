"""HTML pieces of the reports (:mod:`perovflow.analysis.report`): tables, inline figures,
provenance, and the text of numbers and quantity names shared with the Markdown output."""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path
from typing import Any

#: plots are shown at 1.3x their size on paper (figures are saved at STYLE's 200 dpi)
_SCREEN_PX_PER_PNG_PX = 1.3 * 96 / 200

_ACRONYMS = {"vbm": "VBM", "cbm": "CBM", "ipr": "IPR", "neb": "NEB", "pdos": "PDOS", "kpoint": "k"}
CSS = (
    "body{font-family:system-ui,sans-serif;max-width:62em;margin:2em auto;padding:0 1em;"
    "color:#222;line-height:1.45}h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.6em;"
    "border-bottom:1px solid #ddd}.answer{font-size:1.1em;background:#f3f6fb;border-left:4px "
    "solid #3952a3;padding:.6em 1em}table{border-collapse:collapse;margin:.5em 0}td,th{border:"
    "1px solid #ccc;padding:2px 8px;text-align:left}td.num{text-align:right;font-variant-"
    "numeric:tabular-nums}figure{margin:.8em 0}img{max-width:100%}details{margin:.4em 0;"
    "color:#555;font-size:.9em}summary{cursor:pointer}code{word-break:break-all}"
)


def _text(v: Any) -> str:
    """A table cell or sentence: k labels rendered (Γ, B₁, →), floats to 4 digits."""
    from perovflow.structures.kpath import pretty_label

    if isinstance(v, bool) or v is None:
        return "" if v is None else ("yes" if v else "no")
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list | tuple):
        return ", ".join(_text(x) for x in v)
    text = str(v)
    if "/" in text or len(text) > 24:  # a path or a sentence, not a k label
        return text
    return pretty_label(text).replace("->", "→")


def quantity_name(key: str) -> str:
    """``level_above_vbm_eV`` -> ``level above VBM (eV)``."""
    unit = ""
    for suffix, name in (("_eV", "eV"), ("_A", "Å"), ("_me", "mₑ"), ("_kcal_mol", "kcal/mol")):
        if key.endswith(suffix):
            key, unit = key[: -len(suffix)], f" ({name})"
            break
    words = [_ACRONYMS.get(w, w) for w in key.replace(".", " ").split("_")]
    return " ".join(words) + unit


def _prov_items(sec: dict[str, Any]) -> list[tuple[str, str]]:
    prov = sec.get("provenance") or {}
    items = [("source", prov)] if isinstance(prov, str) else list(prov.items())
    for key, p in (sec.get("provenance_by_key") or {}).items():
        text = p if isinstance(p, str) else "; ".join(f"{k}={v}" for k, v in p.items() if v)
        items.append((f"{quantity_name(key)} from", text))
    return [(k, str(v)) for k, v in items if v]


def _html_table(rows: list[dict[str, Any]], names: bool = False) -> str:
    if not rows:
        return ""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(quantity_name(c) if names else c)}</th>" for c in cols)

    def cell(v: Any) -> str:
        num = isinstance(v, int | float) and not isinstance(v, bool)
        return f"<td{' class=num' if num else ''}>{html.escape(_text(v))}</td>"

    body = "".join("<tr>" + "".join(cell(r.get(c)) for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _summary_rows(sec: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"quantity": quantity_name(k), "value": v} for k, v in sec.get("summary", {}).items()]


def _html_provenance(sec: dict[str, Any], out: Path | None) -> str:
    items = _prov_items(sec)
    if not items:
        return ""
    lines = []
    for key, value in items:
        shown = html.escape(value)
        if key == "dir_name" and Path(value).is_absolute():
            link = os.path.relpath(value, out) if out is not None else value
            shown = f"<a href='{html.escape(link)}'><code>{shown}</code></a>"
        else:
            shown = f"<code>{shown}</code>"
        lines.append(f"<li>{html.escape(key)}: {shown}</li>")
    return f"<details><summary>Provenance</summary><ul>{''.join(lines)}</ul></details>"


def _img_tag(path: str | Path, alt: str) -> str:
    """An inline <img> (base64 PNG) shown at 1.3x its printed size."""
    data = Path(path).read_bytes()
    width = int.from_bytes(data[16:20], "big") if data[12:16] == b"IHDR" else 0
    size = f" width='{round(width * _SCREEN_PX_PER_PNG_PX)}'" if width else ""
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    return f"<figure><img src='{uri}' alt='{html.escape(alt)}'{size}></figure>"


def _html_section(sec: dict[str, Any], out: Path | None) -> list[str]:
    ht = [f"<h2>{html.escape(sec['title'])}</h2>", _html_table(_summary_rows(sec))]
    ht += [_img_tag(p, f"{sec['title']}: {Path(p).stem}") for p in sec.get("plots", [])]
    ht.append(_html_table(sec.get("rows", []), names=True))
    extra = {**sec.get("settings", {}), "code_version": sec.get("code_version")}
    rows = [{"setting": k, "value": v} for k, v in extra.items() if v]
    if rows:
        ht.append(f"<details><summary>Settings</summary>{_html_table(rows)}</details>")
    ht.append(_html_provenance(sec, out))
    return ht
