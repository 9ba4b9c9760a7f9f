"""CP2K basis sets: which files to read and which basis each element gets.

The settings' ``cp2k.basis_file`` is read first, then the protocol's ``basis_files``
(``standard``: ``BASIS_MOLOPT_UCL``, which holds the short-range TZVP sets). A protocol
``basis`` is one name or a list in order of preference; for each element the first name
listed in any of the files wins, the ``-q<valence>`` variant when it exists.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

from perovflow.errors import InputError


@cache
def _basis_names(path: str, mtime: float) -> dict[str, list[list[str]]]:
    """Header lines (element -> [names...]) of a CP2K basis-set file."""
    out: dict[str, list[list[str]]] = {}
    head = re.compile(r"^\s*([A-Z][a-z]?)\s+([A-Za-z][^\s]*)(.*)$")
    for line in Path(path).read_text(errors="replace").splitlines():
        m = head.match(line)
        if m:
            out.setdefault(m.group(1), []).append([m.group(2), *m.group(3).split()])
    return out


def basis_files(proto: dict[str, Any]) -> list[str]:
    """The settings' ``cp2k.basis_file``, then the protocol's ``basis_files`` (in data_dir)."""
    extra = proto.get("basis_files") or []
    return list(dict.fromkeys([_data_path("basis_file"), *(_data_file(n) for n in extra)]))


def basis_for(
    element: str, basis: str | list[str], valence: int | None, files: list[str] | None = None
) -> str:
    """Name of ``basis`` for ``element`` in the basis files, q-specific when it exists.

    ``basis`` may be a list in order of preference (e.g. ``[TZVP-MOLOPT-SR-GTH,
    TZVP-MOLOPT-GTH]``: Cl has no short-range TZVP); the first one found wins. ``files``
    default to the settings' basis file.

    Raises
    ------
    InputError
        If no basis file has any of the names for the element.
    """
    paths = [Path(f) for f in (files or [_data_path("basis_file")])]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise InputError(
            f"CP2K basis file {', '.join(missing)} not found",
            "install cp2k-data or set cp2k.data_dir / cp2k.basis_file in the settings",
        )
    entries = [e for p in paths for e in _basis_names(str(p), p.stat().st_mtime).get(element, [])]
    for name in [basis] if isinstance(basis, str) else list(basis):
        names = {n for entry in entries if name in entry for n in entry}
        if f"{name}-q{valence}" in names:
            return f"{name}-q{valence}"
        if name in names:
            return name
    available = sorted({e[0] for e in entries}) or ["none"]
    raise InputError(
        f"no {basis} basis for {element} in {', '.join(map(str, paths))}",
        f"set input_set_overrides basis to one of: {', '.join(available)}",
    )


def _data_path(which: str) -> str:
    from perovflow.settings import get_settings

    return _data_file(getattr(get_settings().cp2k, which))


def _data_file(name: str) -> str:
    """``name`` as an absolute path: as given when absolute, else inside ``cp2k.data_dir``."""
    from perovflow.settings import get_settings

    path = Path(name).expanduser()
    return str(
        path if path.is_absolute() else Path(get_settings().cp2k.data_dir).expanduser() / path
    )
