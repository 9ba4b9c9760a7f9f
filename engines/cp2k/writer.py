"""Write CP2K input text from the parameter tree, and the coordinate file.

Conventions of the tree are described in :mod:`perovflow.engines.cp2k.inputs`.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def render(params: dict[str, Any]) -> str:
    """CP2K input text of a parameter tree (see the module docstring for conventions)."""
    lines: list[str] = []
    _render_section(params, 0, lines)
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, float | np.floating):
        return f"{float(value):.10g}"
    if isinstance(value, list | tuple | np.ndarray):
        return " ".join(_fmt(v) for v in value)
    return str(value)


def _render_section(tree: dict[str, Any], depth: int, lines: list[str]) -> None:
    pad = "  " * depth
    for key, value in tree.items():
        if value is None:
            continue
        if isinstance(value, dict):
            _render_block(key, value, depth, lines)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                _render_block(key, item, depth, lines)
        elif isinstance(value, list) and value and all(isinstance(v, list) for v in value):
            lines.extend(f"{pad}{key} {_fmt(v)}" for v in value)
        else:
            lines.append(f"{pad}{key} {_fmt(value)}".rstrip())


def _render_block(key: str, body: dict[str, Any], depth: int, lines: list[str]) -> None:
    pad = "  " * depth
    lines.append(f"{pad}&{key}")
    _render_section(body, depth + 1, lines)
    lines.append(f"{pad}&END {key.split()[0]}")


def coords_text(atoms: Any) -> str:
    """XYZ text of the atoms in Å (the order CP2K's atom indices follow)."""
    rows = [
        f"{s:<3s} {x:18.10f} {y:18.10f} {z:18.10f}"
        for s, (x, y, z) in zip(atoms.get_chemical_symbols(), atoms.positions, strict=True)
    ]
    return f"{len(atoms)}\nwritten by perovflow\n" + "\n".join(rows) + "\n"
