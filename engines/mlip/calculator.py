"""Pretrained ML interatomic potentials as ASE calculators (CHGNet default, SevenNet optional).

Only weights shipped inside the installed wheels are used (CHGNet 0.3.0 in
``chgnet/pretrained``, SevenNet-0 in ``sevenn/pretrained_potentials``); nothing is downloaded.
Loading a model takes seconds, so each (model, device) is loaded once per process and every
:func:`get_mlip_calculator` call wraps the cached model in a fresh calculator (calculators
keep per-structure state and are not shared).
"""

from __future__ import annotations

import contextlib
import sys
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from perovflow.errors import EngineError, InputError

MODELS = {"chgnet": "0.3.0", "sevenn": "7net-0"}
INSTALL_FIX = "pip install 'perovflow[mlip]' (or run scripts/setup.sh --with-mlip)"


def _resolve(model: str | None, device: str | None) -> tuple[str, str]:
    from perovflow.settings import get_settings

    settings = get_settings().mlip
    name = (model or settings.model).lower()
    if name not in MODELS:
        raise InputError(f"unknown ML potential '{model}'", f"use one of: {', '.join(MODELS)}")
    return name, device or settings.device


def _import(package: str) -> Any:
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise EngineError(
            f"the ML potential package '{package}' is not installed ({exc.msg})", INSTALL_FIX
        ) from None


@cache
def _load(name: str, device: str) -> Any:
    """Load the packaged weights once per process (the slow step); chatter goes to stderr."""
    with contextlib.redirect_stdout(sys.stderr):
        return _load_quietly(name, device)


def _load_quietly(name: str, device: str) -> Any:
    if name == "chgnet":
        _import("chgnet")
        from chgnet.model import CHGNet

        return CHGNet.load(model_name=MODELS[name], use_device=device, verbose=False)
    _import("sevenn")
    from sevenn import _const
    from sevenn.calculator import SevenNetCalculator

    path = Path(_const.SEVENNET_0_11Jul2024)
    if not path.is_file():  # never let sevenn download it
        raise EngineError(
            f"SevenNet-0 weights are missing from the sevenn wheel ({path})", INSTALL_FIX
        )
    return SevenNetCalculator(model=str(path), device=device).model


def get_mlip_calculator(model: str | None = None, device: str | None = None) -> Any:
    """A new ASE calculator around the cached pretrained model.

    Parameters
    ----------
    model
        ``chgnet`` or ``sevenn``; None uses ``settings.mlip.model``.
    device
        torch device (``cpu``, ``cuda``); None uses ``settings.mlip.device``.

    Raises
    ------
    EngineError
        If the package is not installed or its packaged weights are missing.
    """
    name, device = _resolve(model, device)
    loaded = _load(name, device)
    with contextlib.redirect_stdout(sys.stderr):  # keep stdout clean for --json
        if name == "chgnet":
            from chgnet.model.dynamics import CHGNetCalculator

            return CHGNetCalculator(model=loaded, use_device=device, on_isolated_atoms="ignore")
        from sevenn.calculator import SevenNetCalculator

        return SevenNetCalculator(model=loaded, file_type="model_instance", device=device)


def model_version(model: str | None = None) -> str:
    """``'<package> <version> (model <name>)'`` for the task document."""
    name, _ = _resolve(model, None)
    try:
        version = metadata.version(name)
    except metadata.PackageNotFoundError:
        version = "not installed"
    return f"{name} {version} (model {MODELS[name]})"
