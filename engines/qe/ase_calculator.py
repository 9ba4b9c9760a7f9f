"""pw.x as an ASE calculator (energy, forces) for the NEB and MD steps of the studies.

One pw.x ``scf`` per geometry in the calculator's folder, with the QE engine's input set
(:func:`~perovflow.engines.qe.inputs.qe_input_set`, user overrides winning), error recovery
(:func:`~perovflow.engines.qe.run.run_pw`) and the launch command from settings. From the
second geometry on, the previous charge density in the same folder is the starting guess.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from ase.calculators.calculator import Calculator, all_changes


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
        from perovflow.engines.qe.inputs import qe_input_set
        from perovflow.engines.qe.run import parse_pw_output, run_pw

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
