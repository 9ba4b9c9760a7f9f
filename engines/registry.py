"""Which Maker runs a calculation kind with a given code (imported lazily).

``get_maker("qe", "scf", protocol="fast")`` returns a ready ``QEStaticMaker``. The CP2K and
ML-potential makers are looked up by their import path, so this module never imports a
code driver that is not used (or not written yet).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from perovflow.errors import InputError

CODES = ("qe", "cp2k", "mlip")
KINDS = ("scf", "relax", "bands", "dos", "dielectric")

#: (code, kind) -> "module:ClassName"
MAKERS: dict[tuple[str, str], str] = {
    ("qe", "scf"): "perovflow.engines.qe.jobs:QEStaticMaker",
    ("qe", "relax"): "perovflow.engines.qe.jobs:QERelaxMaker",
    ("qe", "bands"): "perovflow.engines.qe.jobs:QEBandsMaker",
    ("qe", "dos"): "perovflow.engines.qe.jobs:QEDosMaker",
    ("qe", "dielectric"): "perovflow.engines.qe.dielectric:QEDielectricMaker",
    ("cp2k", "scf"): "perovflow.engines.cp2k.jobs:CP2KStaticMaker",
    ("cp2k", "relax"): "perovflow.engines.cp2k.jobs:CP2KRelaxMaker",
    ("mlip", "scf"): "perovflow.engines.mlip.jobs:MLIPStaticMaker",
    ("mlip", "relax"): "perovflow.engines.mlip.jobs:MLIPRelaxMaker",
}
ALIASES = {"static": "scf", "nscf": "dos"}


def maker_class(code: str, kind: str) -> type:
    """Import and return the Maker class for ``code`` and ``kind``.

    Raises
    ------
    InputError
        Unknown code/kind, an unsupported combination, or a driver that is not installed.
    """
    code, kind = code.lower(), ALIASES.get(kind.lower(), kind.lower())
    if code not in CODES:
        raise InputError(f"unknown code '{code}'", f"use one of: {', '.join(CODES)}")
    if kind not in KINDS:
        raise InputError(f"unknown calculation '{kind}'", f"use one of: {', '.join(KINDS)}")
    target = MAKERS.get((code, kind))
    if target is None:
        supported = sorted(k for c, k in MAKERS if c == code)
        raise InputError(
            f"{code} cannot run '{kind}' calculations",
            f"{code} supports: {', '.join(supported)}; use --code qe for {kind}",
        )
    module_name, cls_name = target.split(":")
    try:
        return getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError) as exc:
        raise InputError(
            f"the {code} {kind} maker ({module_name}.{cls_name}) is not available: {exc}",
            "install perovflow with that engine, or use another --code",
        ) from None


def get_maker(code: str, kind: str, **kwargs: Any) -> Any:
    """Instantiate the Maker for ``code``/``kind``.

    Common keywords: ``protocol``, ``charge``, ``input_set_overrides``, ``defect``. None or
    empty values are skipped; a value the maker has no field for is an error (never
    silently ignored).
    """
    cls = maker_class(code, kind)
    fields = set(inspect.signature(cls).parameters)
    given = {k: v for k, v in kwargs.items() if v is not None and v != {} and v != []}
    unknown = sorted(k for k in given if k not in fields)
    if unknown:
        raise InputError(
            f"the {code} {kind} maker does not take {', '.join(unknown)}",
            f"drop {', '.join(unknown)} or use another --code",
        )
    return cls(**given)
