"""Start one external code in a folder and wait for it: wall-time limit, output files, clean stop.

:func:`run_command` starts one executable in its own session, writes its stdout/stderr to
files, kills its whole process group when the wall time is over (SIGTERM, then SIGKILL), and
returns a :class:`RunResult` with the tail of its output. perovflow stopped while it waits
(SIGINT, or SIGTERM from ``kill`` or a batch system) stops the code's group first, so no code
outlives its driver. The recovery loop around it is :mod:`perovflow.engines.runner`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
