"""CP2K as an ASE calculator (energy, forces) for the NEB and MD steps of the studies.

:class:`CP2KCalculator` runs one ``cp2k.psmp`` ENERGY_FORCE job per geometry in its folder,
through the same code path as :class:`~perovflow.engines.cp2k.jobs.CP2KStaticMaker`
(:func:`~perovflow.engines.cp2k.jobs.run_cp2k_task`). From the second geometry on, the
converged wavefunction of the previous one (``cp2k-RESTART.wfn`` in the same folder) is the
SCF starting guess.

Why one ``cp2k.psmp`` run per geometry and not ASE's ``CP2K`` calculator (``cp2k_shell``)
-------------------------------------------------------------------------------------------
* Error recovery: every run goes through custodian's CP2K handlers (unconverged or diverging
  SCF, numerical precision, aborts) and a crash is a one-line
  :class:`~perovflow.errors.EngineError`. The shell has no recovery: an SCF that stops at
  ``MAX_SCF`` unconverged still hands ASE its (wrong) forces, and a crash is a broken pipe.
* One input set: energies and forces are those of the static maker on the same geometry
  (same :func:`~perovflow.engines.cp2k.inputs.cp2k_input_set`, user settings winning), not
  of an input assembled by ASE from its keywords plus an ``inp=`` fragment.
* Launch and resources: the command is ``settings.cp2k.cmd`` under
  ``settings.parallel_for("cp2k")`` (``mpirun -np N``/``srun`` prefix, ``OMP_NUM_THREADS``),
  and nothing stays alive between calls. The shell keeps one (MPI) process per calculator
  alive, i.e. one per NEB image, all competing for the same cores.
* Cost: CP2K's start-up (about a second) and re-reading the wavefunction file per geometry;
  negligible beside the SCF of a perovskite supercell.

Units: CP2K prints Hartree and Hartree/bohr; :func:`~perovflow.engines.cp2k.parsers.parse_output`
returns eV and eV/Å. CP2K's ``ATOMIC FORCES`` are forces (minus the gradient), the sign ASE wants.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from perovflow.errors import EngineError

#: Input-set options the calculator sets unless the user does: no per-atom PDOS files.
CALCULATOR_DEFAULTS: dict[str, Any] = {"projections": False}
_SCF_DONE = re.compile(r"SCF run converged in\s+(\d+)\s+steps")


def scf_steps(text: str) -> int | None:
    """SCF iterations of a converged CP2K run (summed over outer loops); None if none converged."""
    done = [int(n) for n in _SCF_DONE.findall(text)]
    return sum(done) if done else None


class CP2KCalculator(Calculator):
    """CP2K single points (energy, free energy, forces) in ``directory``.

    Parameters
    ----------
    directory
        Folder of the runs (created when needed); one per NEB image.
    protocol
        Protocol name (``fast``, ``standard``, ``seed``).
    overrides
        ``input_set_overrides`` of :class:`~perovflow.engines.cp2k.jobs.CP2KStaticMaker`:
        protocol keys, input-set options or raw CP2K sections; they win over the protocol,
        the automatic choices and :data:`CALCULATOR_DEFAULTS`.
    charge
        Total charge (e).
    multiplicity
        Spin multiplicity; None: 1 for an even electron count, else 2.
    reuse_wavefunction
        Start each SCF from the previous geometry's wavefunction in ``directory``.
    max_attempts, walltime_s
        Recovery attempts and wall-time limit per geometry.

    Attributes
    ----------
    runs
        One dict per geometry: ``scf_steps``, ``wavefunction_restart``, ``walltime_s``,
        ``recovery`` (handler names).
    document
        The :class:`~perovflow.engines.schemas.TaskDocument` of the last geometry.
    """

    implemented_properties = ("energy", "free_energy", "forces")

    def __init__(
        self,
        directory: str | Path,
        protocol: str = "fast",
        overrides: dict[str, Any] | None = None,
        charge: float = 0.0,
        multiplicity: int | None = None,
        reuse_wavefunction: bool = True,
        max_attempts: int = 5,
        walltime_s: float | None = None,
    ) -> None:
        super().__init__(directory=str(directory))
        self.protocol = protocol
        self.overrides = copy.deepcopy(dict(overrides or {}))
        self.charge = charge
        self.multiplicity = multiplicity
        self.reuse_wavefunction = reuse_wavefunction
        self.max_attempts = max_attempts
        self.walltime_s = walltime_s
        self.runs: list[dict[str, Any]] = []
        self.document: Any = None

    def maker(self) -> Any:
        """A fresh static maker with this calculator's settings (user overrides win)."""
        from perovflow.engines.cp2k.jobs import CP2KStaticMaker
        from perovflow.engines.protocols import merge

        return CP2KStaticMaker(
            name="cp2k calculator",
            protocol=self.protocol,
            input_set_overrides=merge(CALCULATOR_DEFAULTS, copy.deepcopy(self.overrides)),
            charge=self.charge,
            multiplicity=self.multiplicity,
            defect=True,
            max_attempts=self.max_attempts,
            walltime_s=self.walltime_s,
        )

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        """Run CP2K on ``self.atoms`` (wavefunction restart, error recovery); parse the results."""
        from perovflow.engines.cp2k.inputs import OUTPUT_FILE
        from perovflow.engines.cp2k.jobs import WFN, run_cp2k_task

        super().calculate(atoms, properties, system_changes)
        directory = Path(self.directory)
        restart = self.reuse_wavefunction and (directory / WFN).is_file()
        doc = run_cp2k_task(
            self.maker(), self.atoms, str(directory) if restart else None, directory
        )
        if doc.energy_eV is None or doc.forces_eV_per_A is None or not doc.converged:
            what = "did not converge" if doc.converged is False else "printed no energy or forces"
            raise EngineError(
                f"CP2K in {directory} {what}",
                f"check {OUTPUT_FILE} there; raise max_scf or use scf: ot in the overrides",
            )
        text = (directory / OUTPUT_FILE).read_text(errors="replace")
        scf = doc.input_parameters["FORCE_EVAL"]["DFT"]["SCF"]
        self.document = doc
        self.runs.append(
            {
                "scf_steps": scf_steps(text),
                "wavefunction_restart": scf.get("SCF_GUESS") == "RESTART",
                "walltime_s": doc.walltime_s,
                "recovery": [r.handler for r in doc.recovery],
            }
        )
        self.results = {
            "energy": float(doc.energy_eV),
            "free_energy": float(doc.energy_eV),
            "forces": np.asarray(doc.forces_eV_per_A, dtype=float),
        }


def cp2k_calculator(
    directory: str | Path,
    protocol: str = "fast",
    overrides: dict[str, Any] | None = None,
    charge: float = 0.0,
    **kwargs: Any,
) -> CP2KCalculator:
    """A :class:`CP2KCalculator` in ``directory`` (``kwargs``: its other parameters)."""
    return CP2KCalculator(directory, protocol, overrides, charge, **kwargs)
