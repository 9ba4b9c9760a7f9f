"""Calculation protocols (``fast``, ``standard``, ``seed``) and how user settings win over them.

The presets live in ``protocols.yaml`` next to this module. :func:`get_protocol` returns a
fresh deep copy every call, so no caller can mutate a shared default, and
:func:`merge` lays user values over it (user always wins, recursively).
"""

from __future__ import annotations

import copy
from functools import cache
from importlib import resources
from typing import Any, Literal

import numpy as np
import yaml

from perovflow.errors import InputError

Code = Literal["qe", "cp2k", "mlip"]
PROTOCOLS = ("fast", "standard", "seed")


@cache
def _presets() -> dict[str, Any]:
    text = resources.files("perovflow.engines").joinpath("protocols.yaml").read_text()
    return yaml.safe_load(text)


def get_protocol(name: str, code: Code | None = None) -> dict[str, Any]:
    """Return protocol ``name`` as a new dict: the common block plus ``code``'s block.

    Parameters
    ----------
    name
        ``fast``, ``standard`` or ``seed``.
    code
        ``qe``, ``cp2k`` or ``mlip``; its block is merged over the common values.
    """
    presets = _presets()
    if name not in presets:
        raise InputError(f"unknown protocol '{name}'", f"use one of: {', '.join(PROTOCOLS)}")
    proto = copy.deepcopy(presets[name]["common"])
    if code is not None:
        proto = merge(proto, presets[name].get(code, {}))
    proto["protocol"] = name
    return proto


def merge(base: dict[str, Any], user: dict[str, Any] | None) -> dict[str, Any]:
    """Return ``base`` with ``user`` laid over it, recursively; neither input is modified."""
    out = copy.deepcopy(base)
    for key, value in (user or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def kpoint_grid(
    cell: np.ndarray, kspacing: float, pbc: tuple[bool, bool, bool] = (True,) * 3
) -> list[int]:
    """Monkhorst–Pack grid from a k-point spacing in Å⁻¹ (2π included, as ASE's ``kspacing``).

    ``n_i = max(1, ceil(|b_i| / kspacing))`` with ``b`` the reciprocal vectors (2π/a units);
    non-periodic directions get 1.
    """
    if kspacing <= 0:
        raise InputError(
            f"k-point spacing must be positive, got {kspacing}", "use e.g. kspacing 0.25 Å⁻¹"
        )
    recip = 2 * np.pi * np.linalg.inv(np.asarray(cell, dtype=float)).T
    lengths = np.linalg.norm(recip, axis=1)
    return [
        int(max(1, np.ceil(b / kspacing - 1e-8))) if p else 1
        for b, p in zip(lengths, pbc, strict=True)
    ]
