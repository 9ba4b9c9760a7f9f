"""ASE calculators for the NEB and MD steps of the studies, one per engine.

* ``mlip``: the packaged ML potential (:func:`perovflow.engines.mlip.get_mlip_calculator`;
  CHGNet or SevenNet weights ship with their wheels).
* ``qe``: :class:`QECalculator` - pw.x run by the QE engine (input set from
  :func:`perovflow.engines.qe.inputs.qe_input_set`, error recovery from
  :func:`perovflow.engines.qe.calc.run_pw`), one folder per NEB image; from the second call
  on, the charge density of the previous geometry is the starting guess.
* ``cp2k``: :class:`~perovflow.engines.cp2k.calc.CP2KCalculator` - one ``cp2k.psmp`` ENERGY_FORCE
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

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from perovflow.errors import InputError

CODES = ("mlip", "qe", "cp2k")


@cache
def mlip_calculator(model: str | None = None, device: str | None = None) -> Calculator:
    """The packaged ML potential (one instance per model, reused)."""
    try:
        from perovflow.engines.mlip.calculator import get_mlip_calculator
    except ImportError:
        get_mlip_calculator = None
    if get_mlip_calculator is not None:
        kwargs = {k: v for k, v in (("model", model), ("device", device)) if v}
        return get_mlip_calculator(**kwargs)
    from perovflow.settings import get_settings

    mlip = get_settings().mlip
    model, device = model or mlip.model, device or mlip.device
    if model == "sevenn":
        from sevenn.calculator import SevenNetCalculator

        return SevenNetCalculator("7net-0", device=device)
    if model == "chgnet":
        from chgnet.model.dynamics import CHGNetCalculator

        return CHGNetCalculator(use_device=device)
    raise InputError(f"unknown ML potential '{model}'", "use chgnet or sevenn")


class QECalculator(Calculator):
    """pw.x single points (energy, forces) through the QE engine, in ``directory``."""

    implemented_properties = ("energy", "free_energy", "forces")

    def __init__(
        self,
        directory: str | Path,
        protocol: str = "fast",
        overrides: dict[str, Any] | None = None,
        charge: float = 0.0,
        reuse_density: bool = True,
    ) -> None:
        super().__init__(directory=str(directory))
        self.protocol = protocol
        self.overrides = dict(overrides or {})
        self.charge = charge
        self.reuse_density = reuse_density
        self.runs = 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        """Write the input, run pw.x with recovery, parse energy and forces."""
        from perovflow.engines.pseudos import get_pseudos, pseudo_dir_for
        from perovflow.engines.qe.calc import parse_pw_output, run_pw
        from perovflow.engines.qe.inputs import qe_input_set

        super().calculate(atoms, properties, system_changes)
        directory = Path(self.directory)
        pseudos = get_pseudos(sorted(set(self.atoms.get_chemical_symbols())), "qe")
        params = qe_input_set(
            self.atoms, "static", self.protocol, pseudos, charge=self.charge,
            defect=True, overrides=self.overrides,
        )  # fmt: skip
        if self.reuse_density and (directory / "pwscf.save" / "charge-density.dat").exists():
            params["input_data"]["electrons"]["startingpot"] = "file"
        run_pw(self.atoms, params, directory, pseudo_dir_for(pseudos))
        out = parse_pw_output(directory)
        if out.energy_eV is None or out.forces is None:
            from perovflow.errors import EngineError

            raise EngineError(
                f"pw.x in {directory} printed no energy or forces", "check espresso.pwo there"
            )
        self.runs += 1
        self.results = {
            "energy": float(out.energy_eV),
            "free_energy": float(out.energy_eV),
            "forces": np.asarray(out.forces),
        }


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
            make = QECalculator
        else:
            from perovflow.engines.cp2k.calc import cp2k_calculator as make
        cache_: dict[int, Calculator] = {}

        def per_image(index: int) -> Calculator:
            if index not in cache_:
                name = f"image_{index:02d}" if index >= 0 else "image_end"
                cache_[index] = make(Path(directory) / name, protocol, overrides, charge)
            return cache_[index]

        return per_image
    raise InputError(f"unknown code '{code}'", f"use one of: {', '.join(CODES)}")
