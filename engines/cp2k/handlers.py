"""custodian's CP2K error handlers, wired into perovflow's recovery loop.

custodian's handlers (:mod:`custodian.cp2k.handlers`) read ``cp2k.inp``/``cp2k.out`` in the
calculation folder, decide on a correction and rewrite ``cp2k.inp`` through pymatgen. Here
the parameter dict is the source of truth (``cp2k.inp`` is rendered from it before every
run), so :class:`CustodianHandler` translates each custodian action
(``{"_set": {"FORCE_EVAL": {"DFT": {"SCF": {"OT": {"MINIMIZER": "CG"}}}}}}``) into the same
change on the parameter dict (``"FORCE_EVAL->DFT->SCF->OT->MINIMIZER": "CG"``). File actions
(copying CP2K's restart input over ``cp2k.inp``) are not needed: restart files are switched
off and a relaxation restarts from its last geometry (see :mod:`perovflow.engines.cp2k.jobs`).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from perovflow.engines.runner import ErrorHandler
from perovflow.errors import EngineError

#: custodian handler classes used, in the order they are checked.
HANDLERS = (
    "AbortHandler",
    "DivergingScfErrorHandler",
    "NumericalPrecisionHandler",
    "UnconvergedScfErrorHandler",
)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"A": {"B": 1}}`` -> ``{"A->B": 1}``; empty dicts stay as (empty-section) leaves."""
    if not isinstance(tree, dict) or not tree:
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}->{key.upper()}" if prefix else key.upper()
        out.update(_flatten(value, path))
    return out


def translate(action: dict[str, Any]) -> dict[str, Any]:
    """One custodian CP2K dict action as an action on the parameter dict."""
    mods: dict[str, Any] = {}
    items = action.items() if isinstance(action, dict) else action
    for verb, body in items:
        if verb == "_unset":
            flat = _flatten(body)
            mods.setdefault("_unset", {}).update(
                {f"{k}->{str(v).upper()}" if isinstance(v, str) else k: "" for k, v in flat.items()}
            )
        else:
            mods.setdefault(verb, {}).update(_flatten(body))
    return {"dict": "params", "action": mods}


class CustodianHandler(ErrorHandler):
    """Adapter: a custodian CP2K handler behind perovflow's ``check``/``correct`` contract.

    Parameters
    ----------
    handler
        A custodian handler instance (reads ``cp2k.inp`` and ``cp2k.out``).
    max_num_corrections
        How often this handler may act in one job.
    """

    def __init__(self, handler: Any, max_num_corrections: int = 3) -> None:
        self.handler = handler
        self.max_num_corrections = max_num_corrections
        self.error = type(handler).__name__

    @property
    def name(self) -> str:
        """custodian's class name (recorded in the task document)."""
        return type(self.handler).__name__

    def check(self, directory: Path) -> bool:
        """Run custodian's check; an unreadable output is not this handler's error."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return bool(self.handler.check(str(directory)))
        except Exception:  # crashed run with a partial output: the runner reports it
            return False

    def correct(self, directory: Path, params: dict[str, Any]) -> dict[str, Any]:
        """Let custodian decide; return its errors and the translated actions."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fix = self.handler.correct(str(directory))
        except Exception as exc:  # custodian assumes inputs it did not write (e.g. OT)
            raise EngineError(
                f"{self.name} found an error in {directory} but has no correction for this "
                f"input ({type(exc).__name__})",
                "read cp2k.out and adjust the input by hand (input_set_overrides)",
            ) from None
        actions = [translate(a["action"]) for a in fix.get("actions", []) if "dict" in a]
        for act in actions:  # unsetting an absent key is a no-op, not a KeyError
            unset = act["action"].get("_unset")
            if unset is not None:
                act["action"]["_unset"] = {k: v for k, v in unset.items() if _exists(params, k)}
        return {"errors": list(fix.get("errors", [])), "actions": actions}


def _exists(params: dict[str, Any], path: str) -> bool:
    node: Any = params
    for key in path.split("->"):
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def default_handlers() -> list[CustodianHandler]:
    """Fresh custodian handler instances (they keep state between calls)."""
    from custodian.cp2k import handlers as ch

    from perovflow.engines.cp2k.inputs import INPUT_FILE, OUTPUT_FILE

    return [
        CustodianHandler(getattr(ch, name)(input_file=INPUT_FILE, output_file=OUTPUT_FILE))
        for name in HANDLERS
    ]
