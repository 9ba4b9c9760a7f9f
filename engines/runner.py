"""Run an external code and recover from its errors (custodian style).

Shared by every engine (QE, CP2K). Two pieces, on top of :func:`run_command` (one start of
one executable with a wall-time limit, in :mod:`perovflow.engines.process`, re-exported here):

* :class:`ErrorHandler` is custodian's ``ErrorHandler`` contract: ``check(directory)`` says
  whether the error is present, ``correct(directory, params)`` returns
  ``{"errors": [...], "actions": [...]}`` where each action is a custodian ``Modder`` action on
  the parameter dict (``{"dict": "params", "action": {"_set": {"a->b": 1}}}``) or on a file
  (``{"file": "x", "action": {"_file_copy": {"dest": "y"}}}``).
* :func:`run_with_recovery` is the bounded loop: run, check handlers, apply the first
  correction, rerun; after ``max_attempts`` (or an error no handler knows) it raises
  :class:`~perovflow.errors.EngineError` with the tail of the output.

Under SLURM, :func:`slurm_remaining_s` tells how long the batch job has left
(``SLURM_JOB_END_TIME`` or ``squeue -o %L``) so a code can be told to stop cleanly in time
(defined in :mod:`perovflow.engines.slurm_time`, importable from here).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perovflow.engines.process import (  # noqa: F401  (re-exported: engines import them here)
    TAIL_LINES,
    RunResult,
    output_tail,
    run_command,
)
from perovflow.engines.slurm_time import (  # noqa: F401  (re-exported: engines import them here)
    SLURM_MARGIN_FRACTION,
    SLURM_MARGIN_S,
    parse_slurm_time,
    slurm_remaining_s,
    slurm_stop_after_s,
)
from perovflow.errors import EngineError


class ErrorHandler:
    """Base class of error handlers (custodian's contract, for codes custodian lacks).

    Subclasses set :attr:`error` (a short description) and implement :meth:`check` and
    :meth:`correct`. ``max_num_corrections`` bounds how often one handler may act.
    """

    error: str = "error"
    max_num_corrections: int = 3

    def check(self, directory: Path) -> bool:
        """Return True if this handler's error is present in ``directory``."""
        raise NotImplementedError

    def correct(self, directory: Path, params: dict[str, Any]) -> dict[str, Any]:
        """Return ``{"errors": [...], "actions": [...]}`` (custodian Modder actions).

        ``params`` is the parameter dict of the failed run; it must not be modified.
        """
        raise NotImplementedError

    @property
    def name(self) -> str:
        """Class name, recorded in the task document."""
        return type(self).__name__


def apply_actions(
    params: dict[str, Any], actions: Sequence[Mapping[str, Any]], directory: Path
) -> dict[str, Any]:
    """Return a copy of ``params`` with the dict actions applied; run the file actions.

    Actions use custodian's Modder language: ``{"dict": ..., "action": {"_set": {"a->b": v}}}``
    changes ``params["a"]["b"]``; ``{"file": name, "action": {"_file_copy": {...}}}`` acts on
    ``directory / name``.
    """
    from custodian.ansible.actions import DictActions, FileActions
    from custodian.ansible.interpreter import Modder

    new = copy.deepcopy(params)
    dict_modder = Modder(actions=[DictActions])
    file_modder = Modder(actions=[FileActions], directory=str(directory))
    for act in actions:
        if "dict" in act:
            dict_modder.modify(act["action"], new)
        elif "file" in act:
            file_modder.modify(act["action"], str(act["file"]))  # Modder joins directory
    return new


@dataclass
class RecoveryOutcome:
    """Result of :func:`run_with_recovery`."""

    params: dict[str, Any]
    result: RunResult
    walltime_s: float
    attempts: int
    recovery: list[dict[str, Any]] = field(default_factory=list)


def run_with_recovery(
    execute: Callable[[dict[str, Any], int], RunResult],
    params: dict[str, Any],
    handlers: Sequence[ErrorHandler],
    directory: Path,
    completed: Callable[[RunResult], bool],
    *,
    max_attempts: int = 5,
    label: str = "calculation",
    describe: Callable[[], str] | None = None,
) -> RecoveryOutcome:
    """Run ``execute(params, attempt)`` until ``completed`` or no handler can help.

    Parameters
    ----------
    execute
        Writes the inputs for ``params`` and runs the code once (attempt 0, 1, ...).
    params
        Parameters of the first attempt (not modified).
    handlers
        Checked in order after each run, also after a run that completed (a finished
        but unconverged SCF is still an error); the first that fires corrects ``params``.
    completed
        Whether the run ended normally (exit status 0 and the code's end marker).
    max_attempts
        Total number of runs allowed.
    describe
        Says in one line how and where the last run ended (e.g. the stage reached when the
        code's own message is missing); added to the error raised.

    Returns
    -------
    RecoveryOutcome
        Final parameters, last run, summed wall time and the list of recovery records
        (dicts with the fields of :class:`perovflow.engines.schemas.RecoveryAction`).

    Raises
    ------
    EngineError
        When the code failed in a way no handler fixes, or still fails after
        ``max_attempts`` runs; the message carries the tail of the output.
    """
    params = copy.deepcopy(params)
    counts: dict[str, int] = {}
    recovery: list[dict[str, Any]] = []
    total = 0.0
    for attempt in range(max_attempts):
        result = execute(params, attempt)
        total += result.walltime_s
        handler = _first_firing(handlers, directory, counts)
        if handler is None and completed(result):
            return RecoveryOutcome(params, result, total, attempt + 1, recovery)
        if handler is None:
            raise _crash_error(label, result, recovery, describe)
        fix = handler.correct(directory, params)
        counts[handler.name] = counts.get(handler.name, 0) + 1
        recovery.append(_recovery_record(handler, fix, attempt))
        params = apply_actions(params, fix.get("actions", []), directory)
    raise _exhausted_error(label, directory, max_attempts, recovery, result, describe)


def _recovery_record(handler: ErrorHandler, fix: Mapping[str, Any], attempt: int) -> dict:
    """One recovery record (the fields of a ``RecoveryAction``) of the correction ``fix``."""
    return {
        "handler": handler.name,
        "error": "; ".join(fix.get("errors", [handler.error])),
        "actions": list(fix.get("actions", [])),
        "attempt": attempt + 1,
    }


def _exhausted_error(
    label: str,
    directory: Path,
    max_attempts: int,
    recovery: list[dict[str, Any]],
    result: RunResult,
    describe: Callable[[], str] | None,
) -> EngineError:
    """The error of a run still failing after ``max_attempts``, with the handlers that acted."""
    found = f" ({describe()})" if describe is not None else ""
    return EngineError(
        f"{label} in {directory} still failing after {max_attempts} attempts "
        f"({', '.join(r['handler'] for r in recovery)}){found}; last output:\n{result.tail(8)}",
        "inspect the output file, fix the input by hand (--set key=value) and rerun",
    )


def _first_firing(
    handlers: Sequence[ErrorHandler], directory: Path, counts: Mapping[str, int]
) -> ErrorHandler | None:
    for handler in handlers:
        if counts.get(handler.name, 0) >= handler.max_num_corrections:
            continue
        if handler.check(directory):
            return handler
    return None


def _crash_error(
    label: str,
    result: RunResult,
    recovery: list[dict[str, Any]],
    describe: Callable[[], str] | None = None,
) -> EngineError:
    how = "timed out" if result.timed_out else f"exited with status {result.returncode}"
    if result.returncode == 0 and not result.timed_out:
        how = "stopped without its end-of-job marker"
    done = f" after {len(recovery)} recovery action(s)" if recovery else ""
    found = f" ({describe()})" if describe is not None else ""
    return EngineError(
        f"{label} ({' '.join(result.argv)}) {how}{done}{found}; last output:\n{result.tail(8)}",
        f"read {result.stdout_path} and fix the input or the executable settings",
    )
