"""Run an external code with a wall-time limit, and recover from its errors (custodian style).

Shared by every engine (QE, CP2K). Three pieces:

* :func:`run_command` starts one executable in a folder, writes its stdout/stderr to files,
  kills its whole process group when the wall time is over (SIGTERM, then SIGKILL), and
  returns a :class:`RunResult` with the tail of its output. The code runs in its own session,
  so perovflow stopped while it waits (SIGINT, SIGTERM) stops the code's group first.
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

import contextlib
import copy
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perovflow.engines.slurm_time import (  # noqa: F401  (re-exported: engines import them here)
    SLURM_MARGIN_FRACTION,
    SLURM_MARGIN_S,
    parse_slurm_time,
    slurm_remaining_s,
    slurm_stop_after_s,
)
from perovflow.errors import EngineError

TAIL_LINES = 25


@dataclass
class RunResult:
    """What happened when an executable ran once.

    Attributes
    ----------
    argv
        The command line that was run.
    returncode
        Exit status (negative: killed by that signal).
    walltime_s
        Seconds between start and end.
    timed_out
        True when the wall-time limit killed the process.
    stdout_path, stderr_path
        Files holding the output streams.
    """

    argv: list[str]
    returncode: int
    walltime_s: float
    timed_out: bool
    stdout_path: Path
    stderr_path: Path | None = None

    def tail(self, nlines: int = TAIL_LINES) -> str:
        """Return the last lines of stdout followed by the last lines of stderr."""
        parts = [output_tail(self.stdout_path, nlines)]
        if self.stderr_path is not None:
            err = output_tail(self.stderr_path, nlines)
            if err:
                parts.append("[stderr] " + err)
        return "\n".join(p for p in parts if p)


def output_tail(path: Path, nlines: int = TAIL_LINES) -> str:
    """Return the last ``nlines`` non-empty lines of a text file ('' if it is missing)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 20000))
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    return "\n".join(lines[-nlines:])


def run_command(
    argv: Sequence[str],
    directory: Path,
    stdout: str = "run.out",
    stderr: str | None = "run.err",
    *,
    walltime_s: float | None = None,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    grace_s: float = 10.0,
) -> RunResult:
    """Run ``argv`` in ``directory`` and wait for it (or for the wall time to run out).

    Parameters
    ----------
    argv
        Command line, e.g. ``["mpirun", "-np", "2", "pw.x", "-in", "pw.in"]``.
    directory
        Working directory (created if missing).
    stdout, stderr
        File names (inside ``directory``) for the output streams.
    walltime_s
        Kill the process group after this many seconds (SIGTERM, then SIGKILL after
        ``grace_s``), as a batch system does.
    env
        Extra environment variables laid over ``os.environ``.
    stdin
        Name of a file in ``directory`` fed to standard input.

    Raises
    ------
    EngineError
        If the executable cannot be started (not found, not executable).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **(env or {})}
    out_path = directory / stdout
    err_path = directory / stderr if stderr else None
    start = time.monotonic()
    with open(out_path, "wb") as fout, _sigterm_exits():
        proc = _start(argv, directory, fout, err_path, stdin, full_env)
        timed_out = _wait(proc, walltime_s, grace_s)
    return RunResult(
        argv=list(argv),
        returncode=proc.returncode,
        walltime_s=time.monotonic() - start,
        timed_out=timed_out,
        stdout_path=out_path,
        stderr_path=err_path,
    )


def _start(
    argv: Sequence[str],
    directory: Path,
    fout: Any,
    err_path: Path | None,
    stdin: str | None,
    env: Mapping[str, str],
) -> subprocess.Popen:
    """Start ``argv`` in its own session, stdout to ``fout``, stderr to ``err_path`` (or stdout).

    The child keeps its own copies of the stderr and stdin files; ours are closed here.
    """
    ferr = open(err_path, "wb") if err_path else subprocess.STDOUT  # noqa: SIM115
    fin = open(directory / stdin, "rb") if stdin else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(
            list(argv), cwd=directory, stdout=fout, stderr=ferr, stdin=fin,
            env=env, start_new_session=True,
        )  # fmt: skip
    except OSError as exc:
        raise EngineError(
            f"cannot start '{argv[0]}': {exc.strerror or exc}",
            "install it or point the perovflow settings at the right executable "
            "(perovflow doctor lists what is missing)",
        ) from None
    finally:
        for fh in (ferr, fin):
            if hasattr(fh, "close"):
                fh.close()


def _wait(proc: subprocess.Popen, walltime_s: float | None, grace_s: float) -> bool:
    """Wait for ``proc``; past ``walltime_s`` (or interrupted: KeyboardInterrupt, SystemExit)
    stop its process group. True if it timed out."""
    try:
        proc.wait(timeout=walltime_s)
    except subprocess.TimeoutExpired:
        _stop_group(proc, grace_s)
        return True
    except BaseException:
        _stop_group(proc, grace_s)
        raise
    return False


@contextlib.contextmanager
def _sigterm_exits() -> Iterator[None]:
    """SIGTERM raises SystemExit(143) in the main thread while a code runs (Python's default
    would leave the code running), unless the program has its own SIGTERM handler."""
    import threading

    main = threading.current_thread() is threading.main_thread()
    if not main or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def _exit(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _stop_group(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM the process group, then SIGKILL it if it is still alive after ``grace_s``."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


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
