"""Spin–orbit coupling for pw.x: the ``soc`` switch, its namelist keys and output checks.

``soc`` comes from (highest first) the user's ``system.lspinorb`` override, the maker field
``soc``, the protocol's ``soc`` (common block of ``protocols.yaml``, default false). With
SOC on, pw.x runs non-collinear (``noncolin``) with ``lspinorb`` and fully relativistic
pseudopotentials (:mod:`perovflow.engines.fr_pseudos`). Without a starting magnetisation the
run keeps time-reversal symmetry (no magnetisation is computed). Every band then holds one
electron, so the band count doubles (``nbnd`` from ``nelect``, not ``nelect/2``) and band
edges are read with ``noncolin=True`` (:func:`perovflow.engines.qe.run.band_edges`).
User ``input_set_overrides`` are laid over these keys afterwards, so they win.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

# pw.x 6.x summary lines: "Noncollinear calculation with(out) ...", or for SOC without
# magnetisation "Non magnetic calculation with spin-orbit"
NONCOLIN_MARKERS = ("Noncollinear calculation", "calculation with spin-orbit")


def resolve_soc(maker_soc: bool | None, proto: dict[str, Any], user: dict[str, Any]) -> bool:
    """Whether the run is spin–orbit: user ``lspinorb`` > maker ``soc`` > protocol ``soc``.

    ``user`` is the nested override dict (:func:`perovflow.engines.qe.inputs.nest_overrides`).
    """
    system = user.get("input_data", {}).get("system", {})
    if "lspinorb" in system:
        return bool(system["lspinorb"])
    if maker_soc is not None:
        return bool(maker_soc)
    return bool(proto.get("soc", False))


def maker_soc(maker: Any, protocol: str | None = None) -> bool:
    """Whether a QE maker runs with spin–orbit (:func:`resolve_soc` on its own fields).

    ``protocol``: the protocol name the run uses; None takes the maker's, else the settings'.
    """
    from perovflow.engines.protocols import get_protocol
    from perovflow.engines.qe.inputs import nest_overrides
    from perovflow.settings import get_settings

    name = protocol or getattr(maker, "protocol", None) or get_settings().protocol
    user = nest_overrides(getattr(maker, "input_set_overrides", None))
    return resolve_soc(getattr(maker, "soc", None), get_protocol(name, "qe"), user)


def soc_bands(nelect: float) -> int:
    """Bands for a non-collinear run: one electron each, 20 % + 8 empty (cf. nelect/2 SR)."""
    return math.ceil(nelect * 1.2) + 8


def apply_soc(input_data: dict[str, Any], soc: bool, nelect: float) -> dict[str, Any]:
    """Return ``input_data`` with the SOC keys set when ``soc`` (a new dict; input unchanged)."""
    if not soc:
        return input_data
    system = {**input_data["system"], "noncolin": True, "lspinorb": True}
    system["nbnd"] = soc_bands(nelect)
    return {**input_data, "system": system}


def output_is_noncolin(path: str | Path) -> bool:
    """Whether a pw.x output (``espresso.pwo``) comes from a non-collinear run."""
    path = Path(path)
    if not path.is_file():
        return False
    with open(path, errors="replace") as fh:
        head = fh.read(200000)
    return any(marker in head for marker in NONCOLIN_MARKERS)
