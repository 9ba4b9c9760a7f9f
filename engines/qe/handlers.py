"""Error handlers for pw.x, in custodian's spirit (custodian ships none for Quantum ESPRESSO).

Each handler has ``check(directory) -> bool`` and ``correct(directory, params) -> dict``
returning ``{"errors": [...], "actions": [...]}`` with custodian Modder actions on the
parameter dict (see :mod:`perovflow.engines.runner`). Handlers never edit files they did
not write; a restart geometry is written to ``restart_geometry.json`` and named in
``params["_restart_structure"]``.

Handled: SCF not converged, too few bands, diagonalization failure (also when pw.x's message
was lost: see :mod:`perovflow.engines.qe.failures`), wall time reached, BFGS failure, a relaxation out of ionic steps, a
vc-relax cell that outgrew its plane-wave basis, a wavefunction restart pw.x cannot read
(another band count or pseudopotential family than the run that wrote ``wfc*.dat``). A crashed executable that no handler
recognises ends the loop with an
:class:`~perovflow.errors.EngineError` carrying the output tail (see ``run_with_recovery``).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from perovflow.engines.qe.failures import CRASH_FILE, PW_ERR, PW_OUT, diagnose, read_or_empty
from perovflow.engines.runner import ErrorHandler

TIMEOUT_MARKER = ".perovflow_timed_out"
RESTART_FILE = "restart_geometry.json"
DIAGONALIZATIONS = ("david", "cg", "ppcg", "paro")


def read_output(directory: Path) -> str:
    """Text of the pw.x output in ``directory`` ('' if missing)."""
    return read_or_empty(Path(directory) / PW_OUT)


def _get(params: dict[str, Any], section: str, key: str, default: Any) -> Any:
    return params.get("input_data", {}).get(section, {}).get(key, default)


def _set(**values: Any) -> dict[str, Any]:
    """A custodian dict action setting ``input_data->section->key`` values."""
    return {
        "dict": "params",
        "action": {"_set": {f"input_data->{k.replace('__', '->')}": v for k, v in values.items()}},
    }


def write_restart_geometry(directory: Path) -> dict[str, Any] | None:
    """Save the last geometry printed in the output; return the action that uses it."""
    from ase.io import read

    try:
        atoms = read(Path(directory) / PW_OUT, format="espresso-out", index=-1)
    except Exception:  # no complete ionic step in the output
        return None
    return save_geometry(atoms, directory)


def save_geometry(atoms: Any, directory: Path) -> dict[str, Any]:
    """Write ``atoms`` to ``restart_geometry.json`` (atomically); return the action using it."""
    data = {
        "symbols": atoms.get_chemical_symbols(),
        "positions": atoms.positions.tolist(),
        "cell": atoms.cell[:].tolist(),
        "pbc": atoms.pbc.tolist(),
    }
    Path(directory).mkdir(parents=True, exist_ok=True)
    tmp = Path(directory) / f".{RESTART_FILE}.tmp"
    tmp.write_text(json.dumps(data))
    os.replace(tmp, Path(directory) / RESTART_FILE)
    return {"dict": "params", "action": {"_set": {"_restart_structure": RESTART_FILE}}}


def _charge_density_restart(directory: Path, params: dict[str, Any]) -> list[dict[str, Any]]:
    prefix = _get(params, "control", "prefix", "pwscf")
    outdir = _get(params, "control", "outdir", "./")
    density = Path(directory) / outdir / f"{prefix}.save" / "charge-density.dat"
    return [_set(electrons__startingpot="file")] if density.is_file() else []


class SCFConvergenceHandler(ErrorHandler):
    """SCF not converged: halve mixing_beta, double electron_maxstep, restart from the density."""

    error = "SCF not converged"

    def check(self, directory: Path) -> bool:
        return "convergence NOT achieved" in read_output(directory)

    def correct(self, directory: Path, params: dict[str, Any]) -> dict[str, Any]:
        beta = float(_get(params, "electrons", "mixing_beta", 0.7))
        steps = int(_get(params, "electrons", "electron_maxstep", 100))
        actions = [
            _set(
                electrons__mixing_beta=round(max(beta / 2, 0.05), 4),
                electrons__electron_maxstep=max(2 * steps, 100),
            )
        ]
        if _get(params, "control", "calculation", "scf") in ("relax", "vc-relax", "md"):
            geometry = write_restart_geometry(directory)
            actions += [geometry] if geometry else []
        else:
            actions += _charge_density_restart(directory, params)
        return {"errors": [self.error], "actions": actions}


class TooFewBandsHandler(ErrorHandler):
    """Too few bands for the electrons (or to bracket the Fermi level): raise nbnd by 50 %."""

    error = "too few bands"
    markers = ("too few bands", "cannot bracket Ef", "too many electrons")

    def check(self, directory: Path) -> bool:
        text = read_output(directory)
        return any(m in text for m in self.markers)

    def correct(self, directory: Path, params: dict[str, Any]) -> dict[str, Any]:
        nelect = float(params.get("_nelect", 0.0))
        current = int(_get(params, "system", "nbnd", 0) or 0)
        new = max(int(1.5 * current) + 1, int(nelect / 2 * 1.2) + 4, current + 4)
        return {"errors": [self.error], "actions": [_set(system__nbnd=new)]}


class DiagonalizationHandler(ErrorHandler):
    """Davidson/Cholesky failures: switch diagonalization david -> cg -> ppcg -> paro.

    Fires on pw.x's messages (output, ``CRASH`` or stderr) and also when the message is lost:
    a run that exits non-zero on its own (no signal, disk not full, no text) inside an SCF
    iteration or the band-structure step. That is where pw.x's LAXlib aborts
    (``cdiaghg``/``rdiaghg``) without flushing its output under an MPI singleton; errors
    raised elsewhere in those steps go through ``errore``, which does print. SCF runs restart
    from the saved charge density when there is one; nscf/bands runs read the scf's anyway.
    """

    error = "diagonalization failed"
    max_num_corrections = len(DIAGONALIZATIONS) - 1
    markers = (  # error messages only: routine names also appear in the timing report
        "S matrix not positive definite",
        "problems computing cholesky",
        "Error in routine cdiaghg",
        "Error in routine rdiaghg",
        "Error in routine cegterg",
        "Error in routine regterg",
        "eigenvectors failed to converge",
    )

    def _reason(self, directory: Path) -> str | None:
        texts = [read_output(directory)]
        texts += [read_or_empty(Path(directory) / name) for name in (CRASH_FILE, PW_ERR)]
        if any(m in text for text in texts for m in self.markers):
            return self.error
        found = diagnose(directory)
        if found.lost_message and found.stage in ("scf", "bands"):
            return f"{self.error} (message lost: {found.summary()})"
        return None

    def check(self, directory: Path) -> bool:
        return self._reason(directory) is not None

    def correct(self, directory: Path, params: dict[str, Any]) -> dict[str, Any]:
        reason = self._reason(directory) or self.error
        current = _get(params, "electrons", "diagonalization", "david")
        idx = DIAGONALIZATIONS.index(current) if current in DIAGONALIZATIONS else 0
        new = DIAGONALIZATIONS[min(idx + 1, len(DIAGONALIZATIONS) - 1)]
        actions = [_set(electrons__diagonalization=new)]
        if _get(params, "control", "calculation", "scf") == "scf":
            actions += _charge_density_restart(directory, params)
        (Path(directory) / CRASH_FILE).unlink(missing_ok=True)  # the next run writes its own
        return {"errors": [reason], "actions": actions}


def _continuation(directory: Path, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Actions that go on from where a run stopped: its last geometry (relaxations) and its
    saved charge density."""
    actions = []
    geometry = write_restart_geometry(directory)
    if geometry and _get(params, "control", "calculation", "scf") != "scf":
        actions.append(geometry)
    return actions + _charge_density_restart(directory, params)


class WalltimeHandler(ErrorHandler):
    """Wall time reached (``max_seconds`` or the batch limit): restart from the last geometry.

    pw.x stops cleanly at ``max_seconds`` ("Maximum CPU time exceeded"); a killed run leaves
    the marker file written by the QE runner. The rerun starts from the last geometry
    (relaxations) or the saved charge density, with ``max_seconds`` doubled.
    """

    error = "wall time reached"
    max_num_corrections = 10  # each restart keeps the progress made (bounded by max_attempts)

    def check(self, directory: Path) -> bool:
        return (Path(directory) / TIMEOUT_MARKER).exists() or (
            "Maximum CPU time exceeded" in read_output(directory)
        )

    def correct(self, directory: Path, params: dict[str, Any]) -> dict[str, Any]:
        (Path(directory) / TIMEOUT_MARKER).unlink(missing_ok=True)
        actions = _continuation(directory, params)
        seconds = _get(params, "control", "max_seconds", None)
        if seconds:
            actions.append(_set(control__max_seconds=2 * float(seconds)))
        return {"errors": [self.error], "actions": actions}


class BFGSHandler(ErrorHandler):
    """BFGS failure: restart the relaxation from the last geometry with a fresh trust radius."""

    error = "BFGS failed"
    markers = ("bfgs history already reset", "bfgs failed", "history already reset")

    def check(self, directory: Path) -> bool:
        text = read_output(directory).lower()
        return any(m in text for m in self.markers)

    def correct(self, directory: Path, params: dict[str, Any]) -> dict[str, Any]:
        actions = [_set(ions__trust_radius_ini=0.5, ions__trust_radius_min=1e-4)]
        geometry = write_restart_geometry(directory)
        actions += [geometry] if geometry else []
        return {"errors": [self.error], "actions": actions}


class MaxStepsHandler(ErrorHandler):
    """A relaxation that used all its ionic steps (``nstep``): continue from the last geometry.

    pw.x prints "The maximum number of steps has been reached." and exits with status 3;
    the step budget is the protocol's ``max_steps`` per attempt. The rerun starts from the
    last geometry and charge density with a fresh BFGS history, at most twice (three times
    ``max_steps`` in all); after that the run ends with the runner's error, which lists
    the handlers that acted (raise ``nstep``/``max_steps`` to go further).
    """

    error = "maximum number of ionic steps reached"
    max_num_corrections = 2

    def check(self, directory: Path) -> bool:
        return "The maximum number of steps has been reached" in read_output(directory)

    def correct(self, directory: Path, params: dict[str, Any]) -> dict[str, Any]:
        return {"errors": [self.error], "actions": _continuation(directory, params)}


FINAL_SCF = re.compile(r"final scf calculation at the relaxed structure", re.I)  # 6.7: "Final scf"
MAX_VOLUME_CHANGE = 0.05  # relative; beyond it the plane-wave basis of the start cell is stale
_STRESS_BLOCK = re.compile(
    r"total\s+stress\s+\(Ry/bohr\*\*3\)\s+\(kbar\)\s+P=\s*([-0-9.]+)\s*\n"
    r"((?:\s*[-0-9.]+\s+[-0-9.]+\s+[-0-9.]+\s+[-0-9.]+\s+[-0-9.]+\s+[-0-9.]+\s*\n){3})"
)
_VOLUME = re.compile(r"unit-cell volume\s*=\s*([0-9.]+)")


def final_stress_kbar(text: str) -> np.ndarray | None:
    """The last stress tensor a pw.x output printed, in kbar (pw.x's sign: P > 0 compressed)."""
    blocks = _STRESS_BLOCK.findall(text)
    if not blocks:
        return None
    rows = [line.split()[3:6] for line in blocks[-1][1].strip().splitlines()]
    return np.array(rows, dtype=float)


def _input_value(directory: Path, key: str, default: float) -> float:
    """A numeric keyword of the pw.x input written in ``directory`` (``default`` if absent)."""
    try:
        text = (Path(directory) / "espresso.pwi").read_text(errors="replace")
    except OSError:
        return default
    m = re.search(rf"^\s*{key}\s*=\s*([-+0-9.eEdD]+)", text, re.M | re.I)
    return float(m.group(1).lower().replace("d", "e")) if m else default


class VCRelaxHandler(ErrorHandler):
    """vc-relax whose cell outgrew its plane-wave basis: rerun vc-relax from the final cell.

    pw.x keeps the plane waves of the starting cell during a vc-relax, then recomputes them
    for a final scf on the relaxed cell ("Results may differ from those at the preceding
    step"). Two signs that the relaxed cell is not the equilibrium of a proper basis, both
    corrected by starting a new vc-relax from the final cell (a fresh basis):

    * the final scf's stress is further than ``press_conv_thr`` from the target ``press``
      (the final-scf mismatch);
    * the volume changed by more than ``MAX_VOLUME_CHANGE`` (the basis no longer fits).
    """

    error = "vc-relax cell does not fit its plane-wave basis"
    max_num_corrections = 3

    def check(self, directory: Path) -> bool:
        text = read_output(directory)
        if not FINAL_SCF.search(text):
            return False
        return bool(self._problems(directory, text))

    def _problems(self, directory: Path, text: str) -> list[str]:
        out = []
        final = list(FINAL_SCF.finditer(text))
        stress = final_stress_kbar(text[final[-1].start() :]) if final else None
        press = _input_value(directory, "press", 0.0)
        thr = _input_value(directory, "press_conv_thr", 0.5)
        if stress is not None:
            worst = float(np.abs(stress - press * np.eye(3)).max())
            if worst > thr:
                out.append(f"final scf stress {worst:.2f} kbar from press (threshold {thr})")
        volumes = [float(v) for v in _VOLUME.findall(text)]
        if len(volumes) > 1 and abs(volumes[-1] / volumes[0] - 1) > MAX_VOLUME_CHANGE:
            change = 100 * (volumes[-1] / volumes[0] - 1)
            out.append(f"volume changed by {change:+.1f} % (basis of the start cell)")
        return out

    def correct(self, directory: Path, params: dict[str, Any]) -> dict[str, Any]:
        problems = self._problems(directory, read_output(directory)) or [self.error]
        geometry = write_restart_geometry(directory)
        return {"errors": problems, "actions": [geometry] if geometry else []}


_NELEC_OUT = re.compile(r"number of electrons\s*=\s*([0-9.]+)")


class WavefunctionRestartHandler(ErrorHandler):
    """``startingwfc='file'`` from a run with other bands: start from atomic+random orbitals.

    pw.x aborts in ``read_collected_wfc`` ("The number of bands for this run is N, but only
    M bands were read from file") when the ``wfc*.dat`` it restarts from (a hybrid from its
    PBE static) have fewer bands, e.g. another band count or another pseudopotential family
    (other valence). The rerun builds its orbitals afresh (``startingwfc='atomic+random'``)
    and keeps the saved density (``startingpot='file'``) only when it holds as many electrons
    as this run; otherwise the potential starts from atomic charges too.
    """

    error = "wavefunctions on file do not fit this run"
    max_num_corrections = 1
    markers = ("read_collected_wfc (", "bands were read from file")  # error lines only

    def check(self, directory: Path) -> bool:
        texts = [read_output(directory), read_or_empty(Path(directory) / CRASH_FILE)]
        return any(m in text for text in texts for m in self.markers)

    def correct(self, directory: Path, params: dict[str, Any]) -> dict[str, Any]:
        text = read_output(directory) + read_or_empty(Path(directory) / CRASH_FILE)
        found = re.search(r"this run is\s+(\d+), but only\s+(\d+) bands", text)
        error = self.error + (f" ({found[1]} bands, {found[2]} on file)" if found else "")
        m = _NELEC_OUT.search(read_output(directory))
        nelect = float(m[1]) if m else float(params.get("_nelect", 0.0))
        saved = _saved_nelec(directory, params)
        same = saved is not None and abs(saved - nelect) < 1e-6
        pot = "file" if same else "atomic"
        if saved is not None and not same:
            error += f"; density on file has {saved:g} electrons, this run {nelect:g}"
        (Path(directory) / CRASH_FILE).unlink(missing_ok=True)  # the next run writes its own
        return {
            "errors": [error],
            "actions": [_set(electrons__startingwfc="atomic+random", electrons__startingpot=pot)],
        }


def _saved_nelec(directory: Path, params: dict[str, Any]) -> float | None:
    """Electrons of the saved charge density (its ``data-file-schema.xml``), None if absent."""
    from perovflow.engines.qe.xml import read_pw_xml
    from perovflow.errors import InputError

    prefix = _get(params, "control", "prefix", "pwscf")
    save = Path(directory) / _get(params, "control", "outdir", "./") / f"{prefix}.save"
    if not (save / "charge-density.dat").is_file() or not (save / "data-file-schema.xml").is_file():
        return None
    try:
        return read_pw_xml(save / "data-file-schema.xml")["nelec"]
    except InputError:
        return None


def default_handlers() -> list[ErrorHandler]:
    """Handlers in the order they are checked."""
    return [
        WavefunctionRestartHandler(),
        WalltimeHandler(),
        TooFewBandsHandler(),
        DiagonalizationHandler(),
        BFGSHandler(),
        MaxStepsHandler(),
        SCFConvergenceHandler(),
        VCRelaxHandler(),
    ]
