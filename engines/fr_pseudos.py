"""Pseudopotentials for spin–orbit (SOC) runs: fully relativistic UPFs only.

:func:`perovflow.engines.pseudos.get_pseudos` hands over here when ``soc=True``:

* with ``settings.qe.pseudo_dir`` set (e.g. pslibrary's ``rel-pbe`` folder), each element's
  file is the first ``<El>[._-]*.upf`` whose UPF header says ``has_so`` (UPF v1: a
  ``PP_ADDINFO`` block); an element without one is a one-line error;
* otherwise perovflow's own family ``ld1-fr-pbe``, generated offline by ld1.x and verified
  (:mod:`perovflow.engines.qe.ld1`), cached in ``project_dir/pseudos/ld1-fr-pbe``;
* ``family="gth-pbe"`` asked explicitly is an error: the GTH family is scalar-relativistic.
"""

from __future__ import annotations

import re
from pathlib import Path

from perovflow.engines.pseudos import DEFAULT_FAMILY, Pseudo, ld1_pseudo, md5_file
from perovflow.errors import EngineError

_HAS_SO = re.compile(r'has_so\s*=\s*"\s*\.?(t|true)\.?\s*"', re.IGNORECASE)


def has_spin_orbit(path: str | Path) -> bool:
    """Whether a UPF file is fully relativistic (header ``has_so``; v1: ``PP_ADDINFO``)."""
    with open(path, errors="replace") as fh:
        head = fh.read(20000)
    if "<PP_HEADER" in head and "has_so" in head:
        return bool(_HAS_SO.search(head))
    with open(path, errors="replace") as fh:
        return "<PP_ADDINFO>" in fh.read()


def _user_fr_upf(element: str, folder: Path, family: str) -> Pseudo:
    pattern = re.compile(rf"^{re.escape(element)}([._-].*)?\.upf$", re.IGNORECASE)
    files = sorted(p for p in folder.iterdir() if p.is_file() and pattern.match(p.name))
    rel = [p for p in files if has_spin_orbit(p)]
    if not rel:
        found = f" ({', '.join(p.name for p in files)} scalar-relativistic)" if files else ""
        raise EngineError(
            f"no fully relativistic pseudopotential for {element} in {folder}{found}: "
            "spin-orbit needs a UPF with has_so",
            f"add a fully relativistic {element} UPF (e.g. pslibrary rel-pbe) to {folder}, "
            "unset qe.pseudo_dir to use perovflow's ld1-fr-pbe family, or run without soc",
        )
    path = rel[0]
    return Pseudo(element, path.name, path, md5_file(path), family)


def soc_pseudos(elements: list[str] | set[str] | tuple[str, ...], family: str | None) -> dict:
    """``{element: Pseudo}`` of fully relativistic potentials (see the module docstring)."""
    from perovflow.engines.qe.ld1 import FAMILY
    from perovflow.settings import get_settings

    if family == DEFAULT_FAMILY:
        raise EngineError(
            "the gth-pbe family is scalar-relativistic: spin-orbit needs fully relativistic "
            "potentials (UPF has_so)",
            f"use the {FAMILY} family (no family given, qe.pseudo_dir unset) or a fully "
            "relativistic qe.pseudo_dir",
        )
    settings = get_settings()
    out: dict[str, Pseudo] = {}
    if settings.qe.pseudo_dir is not None and family != FAMILY:
        folder = settings.resolved(settings.qe.pseudo_dir)
        if not folder.is_dir():
            raise EngineError(
                f"pseudopotential folder {folder} does not exist",
                "fix qe.pseudo_dir in the settings (perovflow config)",
            )
        named = settings.qe.pseudo_family
        name = family or (named if named != DEFAULT_FAMILY else folder.name)
        for el in sorted(set(elements)):
            out[el] = _user_fr_upf(el, folder, name)
        return out
    cache_dir = settings.resolved(settings.project_dir) / "pseudos" / FAMILY
    for el in sorted(set(elements)):
        out[el] = ld1_pseudo(el, cache_dir, 2)
    return out
