"""Restart a pw.x calculation from an earlier run of the same calculation (``prev_dir``).

A relax or static job given ``prev_dir`` (``perovflow rerun`` passes the folder of the
killed, timed-out or fizzled launch) starts where that run stopped:

1. the newest pw.x output of ``prev_dir`` (``espresso.pwo``, then ``espresso.pwo.attemptN``,
   highest N first) that holds a complete configuration is read with ASE's reader, without
   requiring results, so the last ``ATOMIC_POSITIONS`` / ``CELL_PARAMETERS`` block counts even
   when the SCF that followed it never ended; a block cut short by the kill is dropped (an
   output with nothing readable is skipped for the next older one);
2. relaxations start from that geometry (``restart_geometry.json`` +
   ``params["_restart_structure"]``, as the in-job handlers do);
3. where ``<outdir>/<prefix>.save/charge-density.dat`` exists, it is copied and pw.x starts
   from it (``startingpot='file'``, unless the user chose ``startingpot``);
4. a hybrid run (:mod:`perovflow.engines.qe.hybrid`) also copies the wavefunctions
   (``wfc*.dat``) and starts from them (``startingwfc='file'``), unless ``params["_exx_restart"]``
   is False or the user chose ``startingwfc``: the way a hybrid static starts from the PBE
   static of the same cell. A previous run with the other spinor layout (SOC on/off) is not
   used at all (pw.x cannot read its files).

What was done is returned as one recovery record (handler ``PrevDirRestart``, attempt 0:
before this job's first run) for the task document.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from perovflow.engines.qe.handlers import PW_OUT, save_geometry
from perovflow.errors import InputError

SAVE_FILES = ("charge-density.dat", "data-file-schema.xml")
HANDLER = "PrevDirRestart"
logger = logging.getLogger(__name__)


def previous_outputs(prev_dir: str | Path) -> list[Path]:
    """pw.x outputs in ``prev_dir``, newest first (``espresso.pwo``, then attempts N..1)."""
    folder = Path(prev_dir)
    attempts = []
    for path in folder.glob(f"{PW_OUT}.attempt*"):
        m = re.fullmatch(rf"{re.escape(PW_OUT)}\.attempt(\d+)", path.name)
        if m:
            attempts.append((int(m.group(1)), path))
    main = [folder / PW_OUT] if (folder / PW_OUT).is_file() else []
    return main + [p for _, p in sorted(attempts, reverse=True)]


def drop_cut_block(text: str) -> str:
    """Remove a trailing ``ATOMIC_POSITIONS`` block whose lines were not all written (a kill
    mid-write leaves it short or ends it mid-number), and a ``CELL_PARAMETERS`` block left
    without its positions."""
    m = re.search(r"number of atoms/cell\s*=\s*(\d+)", text)
    natoms = int(m.group(1)) if m else 0
    atomic = text.rfind("ATOMIC_POSITIONS")
    if atomic >= 0 and text[atomic:].count("\n") <= natoms:  # header + natoms full lines
        text = text[:atomic]
    cell = text.rfind("CELL_PARAMETERS")
    if cell > text.rfind("ATOMIC_POSITIONS"):
        text = text[:cell]
    return text


def last_geometry(text: str) -> tuple[Any, Any, int] | None:
    """(first, last configuration, geometry updates) printed in a pw.x output, or None.

    Read with ASE's reader without requiring results, so the last ``ATOMIC_POSITIONS``
    block counts even if the SCF that followed it never ended.
    """
    from ase.io.espresso import read_espresso_out

    text = drop_cut_block(text)
    try:
        images = list(
            read_espresso_out(io.StringIO(text), index=slice(None), results_required=False)
        )
    except Exception:  # header cut short or corrupt lines: nothing safe to restart from
        return None
    if not images:
        return None
    return images[0], images[-1], text.count("ATOMIC_POSITIONS")


def run_state(text: str) -> str:
    """How a pw.x run ended, in words."""
    if "Maximum CPU time exceeded" in text:
        return "stopped at max_seconds"
    if "maximum number of steps has been reached" in text:
        return "reached the maximum number of ionic steps"
    if "JOB DONE" in text:
        return "finished"
    return "was killed or crashed (no 'JOB DONE')"


def _check_same(atoms: Any, first: Any, source: Path) -> None:
    same = first.get_chemical_symbols() == atoms.get_chemical_symbols() and np.allclose(
        first.cell[:], atoms.cell[:], atol=1e-3
    )
    if not same:
        raise InputError(
            f"{source} is a run of {first.get_chemical_formula()} in another cell, not of this "
            f"{atoms.get_chemical_formula()} calculation",
            "pass as prev_dir the folder of an earlier run of the same calculation, or none",
        )


def _density_actions(prev_dir: Path, directory: Path, params: dict[str, Any]) -> list[dict]:
    control = params["input_data"].get("control", {})
    sub = Path(control.get("outdir", "./")) / f"{control.get('prefix', 'pwscf')}.save"
    src, dst = prev_dir / sub, Path(directory) / sub
    density = src / SAVE_FILES[0]
    if not density.is_file() or density.stat().st_size == 0:
        return []
    actions: list[dict[str, Any]] = []
    if src.resolve() != dst.resolve():
        dst.mkdir(parents=True, exist_ok=True)
        actions = [
            {
                "file": str((src / f).resolve()),
                "action": {"_file_copy": {"dest": str((dst / f).resolve())}},
            }
            for f in SAVE_FILES
            if (src / f).is_file()
        ]
    if "startingpot" not in params["input_data"].get("electrons", {}):
        actions.append(
            {"dict": "params", "action": {"_set": {"input_data->electrons->startingpot": "file"}}}
        )
    return actions + _wavefunction_actions(src, dst, params)


def _wavefunction_actions(src: Path, dst: Path, params: dict[str, Any]) -> list[dict]:
    """Hybrid runs also start from the previous wavefunctions (``wfc*.dat``,
    ``startingwfc='file'``): the first Fock operator is then built from converged orbitals.
    Skipped when ``params["_exx_restart"]`` is False or the user chose ``startingwfc``."""
    from perovflow.engines.qe.hybrid import is_hybrid

    system = params["input_data"].get("system", {})
    if not is_hybrid(str(system.get("input_dft", "pbe")).lower()):
        return []
    if params.get("_exx_restart") is False:
        return []
    files = sorted(src.glob("wfc*.dat"))
    if not files:
        return []
    actions: list[dict[str, Any]] = []
    if src.resolve() != dst.resolve():
        actions = [
            {"file": str(f.resolve()), "action": {"_file_copy": {"dest": str((dst / f.name).resolve())}}}
            for f in files
        ]  # fmt: skip
    if "startingwfc" not in params["input_data"].get("electrons", {}):
        actions.append(
            {"dict": "params", "action": {"_set": {"input_data->electrons->startingwfc": "file"}}}
        )
    return actions


def _spinor_mismatch(path: Path, params: dict[str, Any]) -> bool:
    """Whether the previous run and this one differ in non-collinearity (files unreadable)."""
    from perovflow.engines.qe.soc import output_is_noncolin

    return output_is_noncolin(path) != bool(params["input_data"].get("system", {}).get("noncolin"))


def prepare_restart(
    prev_dir: str | Path | None, directory: Path, atoms: Any, params: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Parameters that restart from ``prev_dir``'s last geometry and charge density.

    Returns the new parameters (``params`` is not modified) and the recovery record, or
    ``(params, None)`` when ``prev_dir`` is None or holds no usable pw.x output.

    Raises
    ------
    InputError
        ``prev_dir`` holds a run of another structure or cell.
    """
    from perovflow.engines.runner import apply_actions

    if prev_dir is None:
        return params, None
    prev = Path(prev_dir)
    if not prev.is_dir():  # e.g. node-local scratch of a lost job: start afresh, never loop
        logger.warning("prev_dir %s is not a folder: starting %s from scratch", prev, directory)
        return params, None
    found = None
    for path in previous_outputs(prev):
        text = path.read_text(errors="replace")
        found = last_geometry(text)
        if found:
            break
    if not found:
        return params, None
    first, last, steps = found
    _check_same(atoms, first, path)
    if _spinor_mismatch(path, params):
        logger.warning("%s: other spinor setting (SOC) than this run, starting afresh", path)
        return params, None
    actions = []
    relax = params["input_data"]["control"].get("calculation") in ("relax", "vc-relax")
    if relax and steps:
        actions.append(save_geometry(last, directory))
    actions += _density_actions(prev, directory, params)
    if not actions:
        return params, None
    record = {
        "handler": HANDLER,
        "error": f"previous run {path} {run_state(text)} ({steps} geometry update(s) printed)",
        "actions": actions,
        "attempt": 0,
    }
    return apply_actions(params, actions, Path(directory)), record
