"""Run pw.x through ASE's Espresso template/profile and parse what it printed.

The input file is written by ASE's ``EspressoTemplate``; how the machine launches pw.x
(binary, ``mpirun`` prefix/suffix, ``-nk`` pools) comes from :func:`get_settings` at run
time through an ``EspressoProfile``, never from the job. The run itself goes through
:func:`perovflow.engines.runner.run_with_recovery` (wall time, handlers, output tail).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from perovflow.engines.process import RunResult, run_command
from perovflow.engines.qe.failures import CRASH_FILE, PW_ERR, diagnose, write_exit
from perovflow.engines.qe.handlers import PW_OUT, TIMEOUT_MARKER, default_handlers
from perovflow.engines.qe.soc import NONCOLIN_MARKERS
from perovflow.engines.runner import (
    SLURM_MARGIN_S,
    RecoveryOutcome,
    run_with_recovery,
    slurm_stop_after_s,
)
from perovflow.errors import EngineError
from perovflow.launch import mpi_ranks

PW_IN = "espresso.pwi"
MIN_PW_SECONDS = 60.0  # below this a SLURM job is not worth starting pw.x in


def choose_npool(nranks: int, nk_irreducible: int) -> int:
    """Largest divisor of ``nranks`` not above the number of irreducible k-points."""
    return max(d for d in range(1, nranks + 1) if nranks % d == 0 and d <= max(nk_irreducible, 1))


def irreducible_kpoints(atoms: Any, kpts: Any) -> int:
    """Number of irreducible k-points of a Monkhorst–Pack grid (spglib), 1 for Gamma."""
    if kpts is None or (isinstance(kpts, str) and kpts == "gamma"):
        return 1
    if np.ndim(kpts) == 2:  # explicit list
        return len(kpts)
    import spglib

    cell = (atoms.cell[:], atoms.get_scaled_positions(), atoms.numbers)
    mapping, _ = spglib.get_ir_reciprocal_mesh(list(kpts), cell, is_shift=[0, 0, 0])
    return len(np.unique(mapping))


def pw_argv(atoms: Any, kpts: Any, binary: str | None = None) -> list[str]:
    """The pw.x launch command from the settings; pools chosen when not given."""
    from perovflow.settings import get_settings

    settings = get_settings()
    par = settings.parallel_for("qe")
    argv = par.command(binary or settings.qe.pw_cmd)
    if any(t in ("-nk", "-npool", "-npools", "-nkpools") for t in argv):
        return argv
    npool = settings.qe.npool or choose_npool(mpi_ranks(argv), irreducible_kpoints(atoms, kpts))
    return [*argv, "-nk", str(npool)] if npool > 1 else argv


def _profile(argv: list[str], pseudo_dir: Path) -> Any:
    from ase.calculators.espresso import EspressoProfile

    return EspressoProfile(command=shlex.join(argv), pseudo_dir=str(pseudo_dir))


def _atoms_for_attempt(atoms: Any, params: dict[str, Any], directory: Path) -> Any:
    restart = params.get("_restart_structure")
    if not restart:
        return atoms.copy()
    from ase import Atoms

    data = json.loads((directory / restart).read_text())
    return Atoms(data["symbols"], positions=data["positions"], cell=data["cell"], pbc=data["pbc"])


def write_pw_input(atoms: Any, params: dict[str, Any], directory: Path, pseudo_dir: Path) -> Path:
    """Write ``espresso.pwi`` with ASE's template (keys starting with '_' are perovflow's)."""
    from ase.calculators.espresso import EspressoTemplate

    template = EspressoTemplate()
    clean = {k: v for k, v in params.items() if not k.startswith("_")}
    profile = _profile(["pw.x"], pseudo_dir)
    template.write_input(profile, directory, atoms, clean, properties=["energy", "forces"])
    return directory / template.inputname


def run_pw(
    atoms: Any,
    params: dict[str, Any],
    directory: Path,
    pseudo_dir: Path,
    *,
    max_attempts: int = 5,
    walltime_s: float | None = None,
    handlers: list | None = None,
) -> RecoveryOutcome:
    """Run pw.x in ``directory`` until it finishes cleanly or recovery gives up.

    Raises
    ------
    EngineError
        Crash, missing executable, or an error still present after ``max_attempts`` runs.
    """
    from perovflow.settings import get_settings

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    omp = str(get_settings().parallel_for("qe").omp_threads)
    auto_stop = "max_seconds" not in params.get("input_data", {}).get("control", {})

    def execute(current: dict[str, Any], attempt: int) -> RunResult:
        if attempt and (directory / PW_OUT).is_file():  # keep the failed run's output
            shutil.copy2(directory / PW_OUT, directory / f"{PW_OUT}.attempt{attempt}")
        if (directory / CRASH_FILE).is_file():  # pw.x appends to CRASH: start clean
            os.replace(directory / CRASH_FILE, directory / f"{CRASH_FILE}.attempt{attempt}")
        if auto_stop:  # the user's max_seconds wins; otherwise stop before SLURM kills us
            _slurm_max_seconds(current, directory)
        geometry = _atoms_for_attempt(atoms, current, directory)
        write_pw_input(geometry, current, directory, pseudo_dir)
        argv = [*pw_argv(geometry, current.get("kpts")), "-in", PW_IN]
        result = run_command(
            argv, directory, PW_OUT, PW_ERR, walltime_s=walltime_s,
            env={"OMP_NUM_THREADS": omp},
        )  # fmt: skip
        write_exit(directory, result.returncode, result.timed_out)
        if result.timed_out:
            (directory / TIMEOUT_MARKER).touch()
        return result

    def completed(result: RunResult) -> bool:
        return result.returncode == 0 and "JOB DONE" in result.tail(40)

    return run_with_recovery(
        execute,
        params,
        default_handlers() if handlers is None else handlers,
        directory,
        completed,
        max_attempts=max_attempts,
        label="pw.x",
        describe=lambda: diagnose(directory).summary(),
    )


def _slurm_max_seconds(params: dict[str, Any], directory: Path) -> None:
    """Set ``control.max_seconds`` from the SLURM job's remaining time (if under SLURM)."""
    stop = slurm_stop_after_s()
    if stop is None:
        return
    if stop < MIN_PW_SECONDS:
        raise EngineError(
            f"SLURM job {os.environ.get('SLURM_JOB_ID')} has under {MIN_PW_SECONDS:.0f} s left "
            f"(after a safety margin of max({SLURM_MARGIN_S:.0f} s, 5 %)) to run pw.x in {directory}",
            "rerun it in a new job (perovflow rerun restarts from this folder's last geometry)",
        )
    params["input_data"].setdefault("control", {})["max_seconds"] = int(stop)


@dataclass
class PWResults:
    """What one pw.x run printed, in eV / Å units."""

    atoms: Any
    energy_eV: float | None
    forces: np.ndarray | None
    stress_GPa: np.ndarray | None
    eigenvalues: np.ndarray | None  # [spin][k][band]
    kpoints: np.ndarray | None
    kweights: np.ndarray | None
    fermi_eV: float | None
    nelect: float | None
    version: str | None
    occupations: np.ndarray | None = None  # [spin][k][band], fractions 0..1 per channel
    fermi_levels_eV: list[float] | None = None  # [up, down] when pw.x prints two
    total_magnetization: float | None = None  # Bohr magnetons per cell
    absolute_magnetization: float | None = None
    scf_converged: bool = True
    relax_converged: bool | None = None
    trajectory: list[dict[str, Any]] = field(default_factory=list)


def parse_pw_output(directory: Path, calculation: str = "scf") -> PWResults:
    """Parse ``espresso.pwo`` with ASE's reader plus a few regular expressions.

    Raises
    ------
    EngineError
        The output is missing, or truncated/corrupt (no complete SCF step can be read).
    """
    path = Path(directory) / PW_OUT
    text, images = _read_images(path)
    last = images[-1]
    calc = last.calc
    eig = _eigenvalues(calc)
    m_ver = re.search(r"Program PWSCF v\.(\S+)", text)
    m_nel = re.search(r"number of electrons\s*=\s*([-0-9.]+)", text)
    relax_ok = None
    if calculation in ("relax", "vc-relax"):
        relax_ok = "End of BFGS Geometry Optimization" in text and "bfgs converged" in text
    traj = [
        {"positions": im.positions.tolist(), "energy_eV": _safe(im.get_potential_energy)}
        for im in images
    ]
    stress = _safe(lambda: last.get_stress(voigt=False))
    nelect = float(m_nel.group(1)) if m_nel else None
    spin = _spin_info(text, Path(directory))
    fermi = _safe(calc.get_fermi_level) if calc is not None else None
    smeared = "the Fermi energy is" in text  # fixed occupations print only HOMO/LUMO
    level = spin["fermi_levels_eV"] or (fermi if smeared else None)
    noncolin = any(marker in text for marker in NONCOLIN_MARKERS)
    occ = (
        None
        if eig is None
        else occupations(eig, nelect, level, spin["fixed_magnetization"], noncolin)
    )
    return PWResults(
        atoms=last,
        energy_eV=_safe(last.get_potential_energy),
        forces=_safe(last.get_forces),
        stress_GPa=None if stress is None else np.asarray(stress) / 1e9 * 1.602176634e-19 * 1e30,
        eigenvalues=eig,
        kpoints=None
        if calc is None or calc.get_ibz_k_points() is None
        else calc.get_ibz_k_points(),
        kweights=_safe(lambda: np.array([k.weight for k in calc.kpts if k.s == 0])),
        fermi_eV=fermi if fermi is not None else _upper(spin["fermi_levels_eV"]),
        nelect=nelect,
        version=m_ver.group(1) if m_ver else None,
        occupations=occ,
        fermi_levels_eV=spin["fermi_levels_eV"],
        total_magnetization=spin["total_magnetization"],
        absolute_magnetization=spin["absolute_magnetization"],
        scf_converged="convergence NOT achieved" not in text,
        relax_converged=relax_ok,
        trajectory=traj,
    )


def _upper(levels: list[float] | None) -> float | None:
    return None if not levels else float(max(levels))


_FLOAT = r"([-+]?\d+\.?\d*(?:[EeDd][-+]?\d+)?)"


def _last_float(pattern: str, text: str) -> float | None:
    hits = re.findall(pattern, text)
    return float(hits[-1].replace("D", "E").replace("d", "e")) if hits else None


def _spin_info(text: str, directory: Path) -> dict[str, Any]:
    """Magnetisation, the two Fermi levels of a fixed-moment run, and the input's moment."""
    two = re.findall(rf"the spin up/dw Fermi energies are\s*{_FLOAT}\s+{_FLOAT}\s*ev", text)
    pwi = directory / PW_IN
    fixed = None
    if pwi.is_file():
        fixed = _last_float(rf"tot_magnetization\s*=\s*{_FLOAT}", pwi.read_text(errors="replace"))
    total = _last_float(rf"total magnetization\s*=\s*{_FLOAT}\s*Bohr", text)
    if fixed is None and total is not None and abs(total - round(total)) < 0.02:
        fixed = float(round(total))
    return {
        "fermi_levels_eV": [float(two[-1][0]), float(two[-1][1])] if two else None,
        "total_magnetization": total,
        "absolute_magnetization": _last_float(rf"absolute magnetization\s*=\s*{_FLOAT}", text),
        "fixed_magnetization": fixed,
    }


def _read_images(path: Path) -> tuple[str, list[Any]]:
    """Text and ASE images of a pw.x output; a one-line EngineError if unreadable."""
    from ase.io import read

    fix = (
        "the run was killed or the disk filled up: rerun the calculation (perovflow rerun, or "
        "make(..., prev_dir=<this folder>) restarts from its last geometry)"
    )
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise EngineError(
            f"cannot read the pw.x output {path}: {exc.strerror or exc}", fix
        ) from None
    try:
        images = read(path, format="espresso-out", index=":")
    except Exception as exc:  # ASE raises IndexError/ValueError/... on broken files
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:120]
        raise EngineError(f"pw.x output {path} is corrupt ({reason})", fix) from None
    if not images:
        raise EngineError(
            f"pw.x output {path} is truncated: no complete SCF step (no energy, forces or bands)",
            fix,
        )
    return text, images


def _safe(fn: Any) -> Any:
    try:
        return fn()
    except Exception:
        return None


def _eigenvalues(calc: Any) -> np.ndarray | None:
    if calc is None or not getattr(calc, "kpts", None):
        return None
    nspin = 1 + max(k.s for k in calc.kpts)
    return np.array([[k.eps_n for k in calc.kpts if k.s == s] for s in range(nspin)])


def occupations(
    eigenvalues: np.ndarray,
    nelect: float | None,
    fermi_eV: Any = None,
    magnetization: float | None = None,
    noncolin: bool = False,
) -> np.ndarray | None:
    """Occupation fractions [spin][k][band] of a pw.x run, by the shared rule.

    States below the Fermi level (one per spin channel when pw.x prints two) when there is
    one (smearing); otherwise integer filling of ``n_up``/``n_down`` bands per k-point from
    the electron count and the total magnetisation (fixed occupations, 'bands' runs), one
    electron per band in a non-collinear/spin–orbit run (``noncolin``). See
    :mod:`perovflow.electronic`.
    """
    from perovflow.electronic import occupations_from_count, occupations_from_fermi

    if fermi_eV is not None:
        return occupations_from_fermi(eigenvalues, fermi_eV)
    if nelect is None:
        return None
    return occupations_from_count(eigenvalues, nelect, magnetization, noncolin=noncolin)


def band_edges(eigenvalues: np.ndarray, occ: np.ndarray | None) -> dict[str, Any]:
    """VBM, CBM, gap and directness (per spin channel too) of eigenvalues [spin][k][band].

    ``occ`` are occupation fractions (:func:`occupations`); None gives ``{}``. The rule is
    :func:`perovflow.electronic.band_edges`, the same for every code and analysis.
    """
    from perovflow.electronic import band_edges_grid

    if occ is None:
        return {}
    return band_edges_grid(eigenvalues, occ)
