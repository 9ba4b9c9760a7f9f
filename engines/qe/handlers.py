"""Error handlers for pw.x, in custodian's spirit (custodian ships none for Quantum ESPRESSO).

Each handler has ``check(directory) -> bool`` and ``correct(directory, params) -> dict``
returning ``{"errors": [...], "actions": [...]}`` with custodian Modder actions on the
parameter dict (see :mod:`perovflow.engines.runner`). Handlers never edit files they did
not write; a restart geometry is written to ``restart_geometry.json`` and named in
``params["_restart_structure"]``.

Handled: SCF not converged, too few bands, diagonalization failure (also when pw.x's message
was lost: see :mod:`perovflow.engines.qe.failures`), wall time reached, BFGS failure. A crashed executable that no handler recognises ends the loop with an
:class:`~perovflow.errors.EngineError` carrying the output tail (see ``run_with_recovery``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from perovflow.engines.qe.failures import CRASH_FILE, PW_ERR, PW_OUT, diagnose
from perovflow.engines.runner import ErrorHandler

TIMEOUT_MARKER = ".perovflow_timed_out"
RESTART_FILE = "restart_geometry.json"
DIAGONALIZATIONS = ("david", "cg", "ppcg", "paro")


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def read_output(directory: Path) -> str:
    """Text of the pw.x output in ``directory`` ('' if missing)."""
    return _read(Path(directory) / PW_OUT)


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
        texts += [_read(Path(directory) / name) for name in (CRASH_FILE, PW_ERR)]
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
        actions = []
        geometry = write_restart_geometry(directory)
        if geometry and _get(params, "control", "calculation", "scf") != "scf":
            actions.append(geometry)
        actions += _charge_density_restart(directory, params)
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


def default_handlers() -> list[ErrorHandler]:
    """Handlers in the order they are checked."""
    return [
        WalltimeHandler(),
        TooFewBandsHandler(),
        DiagonalizationHandler(),
        BFGSHandler(),
        SCFConvergenceHandler(),
    ]
