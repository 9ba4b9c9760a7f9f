"""CP2K CELL_OPT: positions and cell relaxed to the protocol's pressure (analytical stress).

The force criteria are the GEO_OPT ones of :mod:`perovflow.engines.cp2k.inputs`; the target
pressure and its tolerance come from the protocol (``press_kbar``, ``press_conv_kbar``, in
kbar; CP2K wants bar), the free cell components from ``cell_dofree`` (pw.x's names).
"""

from __future__ import annotations

from typing import Any

from perovflow.errors import InputError

BAR_PER_KBAR = 1000.0
#: pw.x ``cell_dofree`` values and the CELL_OPT keywords doing the same in CP2K
CELL_DOFREE = {"all": {}, "xyz": {"KEEP_ANGLES": True}, "2dxy": {"CONSTRAINT": "Z"}}


def cell_motion(proto: dict, geo_motion: dict[str, Any]) -> dict[str, Any]:
    """MOTION of a CELL_OPT from the GEO_OPT MOTION ``geo_motion`` and the protocol."""
    dofree = str(proto["cell_dofree"]).lower()
    if dofree not in CELL_DOFREE:
        raise InputError(
            f"cell_dofree '{proto['cell_dofree']}' has no CP2K equivalent here",
            f"use one of {', '.join(CELL_DOFREE)}, or give MOTION/CELL_OPT yourself",
        )
    opt = {
        "TYPE": "DIRECT_CELL_OPT",
        **geo_motion["GEO_OPT"],
        "EXTERNAL_PRESSURE": float(proto["press_kbar"]) * BAR_PER_KBAR,
        "PRESSURE_TOLERANCE": float(proto["press_conv_kbar"]) * BAR_PER_KBAR,
        **CELL_DOFREE[dofree],
    }
    return {"CELL_OPT": opt, "PRINT": {**geo_motion["PRINT"], "CELL ON": {}}}


def cell_opt(params: dict[str, Any], proto: dict, geo_motion: dict, periodic: bool) -> None:
    """Make ``params`` (built for a relax) a CELL_OPT, in place."""
    if not periodic:
        raise InputError("a cluster has no cell to relax", "relax it without relax_cell (GEO_OPT)")
    params["GLOBAL"]["RUN_TYPE"] = "CELL_OPT"
    params["FORCE_EVAL"]["STRESS_TENSOR"] = "ANALYTICAL"
    params["FORCE_EVAL"]["PRINT"]["STRESS_TENSOR ON"] = {}
    params["MOTION"] = cell_motion(proto, geo_motion)
