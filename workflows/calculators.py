"""ASE calculators for the NEB and MD steps of the studies, one per engine.

* ``mlip``: the packaged ML potential (:func:`perovflow.engines.mlip.get_mlip_calculator`;
  CHGNet or SevenNet weights ship with their wheels).
* ``qe``: :class:`~perovflow.engines.qe.ase_calculator.QECalculator` - pw.x run by the QE engine (input set from
  :func:`perovflow.engines.qe.inputs.qe_input_set`, error recovery from
  :func:`perovflow.engines.qe.run.run_pw`), one folder per NEB image; from the second call
  on, the charge density of the previous geometry is the starting guess.
* ``cp2k``: :class:`~perovflow.engines.cp2k.ase_calculator.CP2KCalculator` - one ``cp2k.psmp`` ENERGY_FORCE
  run per geometry through the CP2K engine (input set of the static maker, custodian's
  handlers, MPI prefix from the settings), one folder per NEB image; from the second call on,
  the previous geometry's wavefunction is the starting guess.

:func:`calculator_factory` returns ``index -> Calculator`` so each NEB image gets its own
folder (DFT) or the same shared model (ML potential).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from ase.calculators.calculator import Calculator

from perovflow.errors import InputError

CODES = ("mlip", "qe", "cp2k")


@cache
def mlip_calculator(model: str | None = None, device: str | None = None) -> Calculator:
    """The packaged ML potential (one instance per model, reused)."""
    from perovflow.engines.mlip.calculator import get_mlip_calculator

    kwargs = {k: v for k, v in (("model", model), ("device", device)) if v}
    return get_mlip_calculator(**kwargs)


def calculator_factory(
    code: str,
    directory: str | Path = ".",
    protocol: str = "fast",
    overrides: dict[str, Any] | None = None,
    charge: float = 0.0,
    model: str | None = None,
):
    """Return ``index -> Calculator`` for NEB image ``index`` (0 and -1 are the endpoints).

    ML potentials share one model; DFT codes get one folder per image.
    """
    if code == "mlip":
        calc = mlip_calculator(model)
        return lambda index: calc
    if code in ("qe", "cp2k"):
        if code == "qe":
            from perovflow.engines.qe.ase_calculator import QECalculator as Make
        else:
            from perovflow.engines.cp2k.ase_calculator import CP2KCalculator as Make
        cache_: dict[int, Calculator] = {}

        def per_image(index: int) -> Calculator:
            if index not in cache_:
                name = f"image_{index:02d}" if index >= 0 else "image_end"
                cache_[index] = Make(Path(directory) / name, protocol, overrides, charge)
            return cache_[index]

        return per_image
    raise InputError(f"unknown code '{code}'", f"use one of: {', '.join(CODES)}")
