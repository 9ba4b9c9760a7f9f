"""Classify a failed pw.x run from what it left behind, also when its error message is lost.

pw.x normally prints its error between ``%%%%`` lines and into a ``CRASH`` file. That text can
be missing: pw.x run as an Open MPI singleton aborts from LAXlib (``cdiaghg``: "S matrix not
positive definite") with Fortran's buffered output unwritten and Open MPI's ``show_help``
failing ("ORTE_ERROR_LOG: Data unpack would read past end of buffer"); a killed node or a full
disk loses it too. :func:`diagnose` therefore reads every trace a run leaves:

* the exit status, recorded by the QE runner in ``espresso.exit`` (JSON);
* whether ``JOB DONE`` was printed;
* the error block of the output, the ``CRASH`` file, the standard error (``MPI_ABORT ...
  errorcode N``, "No space left on device");
* the last stage the output reached: set-up, an SCF iteration (of which ionic step), the
  non-self-consistent "Band Structure Calculation", or between ionic steps.

The handlers in :mod:`perovflow.engines.qe.handlers` act on the result.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

PW_OUT = "espresso.pwo"
PW_ERR = "espresso.err"
EXIT_FILE = "espresso.exit"
CRASH_FILE = "CRASH"
MIN_FREE_BYTES = 50 * 2**20  # below this the disk counts as full

_ERROR_BLOCK = re.compile(r"%{20,}\s*\n\s*(Error in routine .*?)\n\s*%{20,}", re.S)
_KILL_CODES = {137: 9, 143: 15}  # 128 + signal, as shells and mpirun report a killed rank


@dataclass(frozen=True)
class PWDiagnosis:
    """What a pw.x run left behind.

    Attributes
    ----------
    finished
        ``JOB DONE`` was printed.
    returncode
        Exit status (None when unknown: the run was not started by perovflow's runner).
    signal
        Signal that killed the run (SIGKILL 9 for an out-of-memory kill, 15 for scancel).
    message
        pw.x's own error text, when any survived.
    message_source
        Where it was found: ``output``, ``CRASH`` or ``stderr``.
    stage
        ``launch`` (pw.x never started), ``setup``, ``scf``, ``bands``, ``ionic`` (between
        ionic steps) or ``done``.
    where
        The stage in words, e.g. "SCF iteration 3 of ionic step 2".
    disk_full
        The run folder's disk has under 50 MiB free, or stderr says so.
    """

    finished: bool
    returncode: int | None
    signal: int | None
    message: str | None
    message_source: str | None
    stage: str
    where: str
    disk_full: bool

    @property
    def failed(self) -> bool:
        """The run did not end normally."""
        return not self.finished or bool(self.returncode)

    @property
    def lost_message(self) -> bool:
        """It failed on its own (no signal, disk not full) but left no error text."""
        return (
            self.failed
            and self.message is None
            and self.signal is None
            and not self.disk_full
            and self.returncode not in (None, 0)
        )

    def summary(self) -> str:
        """One line: how and where the run ended."""
        if not self.failed:
            return "pw.x finished (JOB DONE)"
        how = f"exited with status {self.returncode}" if self.returncode else "stopped"
        if self.signal:
            how = f"was killed by signal {self.signal}"
        text = f"pw.x {how} during {self.where}"
        if self.message:
            return f"{text}: {self.message} (from {self.message_source})"
        if self.disk_full:
            return f"{text}: the disk is full"
        return f"{text}, without an error message"


def read_or_empty(path: Path) -> str:
    """Text of ``path`` ('' when it is missing or unreadable)."""
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def read_exit(directory: Path) -> dict:
    """The exit record the QE runner wrote for the last run ({} if none)."""
    try:
        return json.loads((Path(directory) / EXIT_FILE).read_text())
    except (OSError, ValueError):
        return {}


def write_exit(directory: Path, returncode: int, timed_out: bool) -> None:
    """Record the exit status of a run (atomically) for :func:`diagnose`."""
    tmp = Path(directory) / f".{EXIT_FILE}.tmp"
    tmp.write_text(json.dumps({"returncode": returncode, "timed_out": timed_out}))
    os.replace(tmp, Path(directory) / EXIT_FILE)


def error_message(output: str, crash: str, stderr: str) -> tuple[str | None, str | None]:
    """pw.x's error text and where it was found (output block, CRASH file, stderr)."""
    for text, source in ((output, "output"), (crash, "CRASH")):
        m = _ERROR_BLOCK.search(text)
        if m:
            return " ".join(m.group(1).split()), source
    for line in stderr.splitlines():
        if "Error in routine" in line or "No space left on device" in line:
            return line.strip(), "stderr"
    return None, None


def last_stage(output: str) -> tuple[str, str]:
    """The stage the output reached last, as (stage, words)."""
    if "JOB DONE" in output:
        return "done", "the end of the run"
    if "Program PWSCF" not in output:
        return "launch", "launch (pw.x never started: see the launcher's error in stderr)"
    ionic = output.count("!    total energy") + 1
    marks = {
        "bands": output.rfind("Band Structure Calculation"),
        "bands_end": output.rfind("End of band structure calculation"),
        "scf": output.rfind("iteration #"),
        "scf_end": max(
            output.rfind("End of self-consistent calculation"),
            output.rfind("convergence has been achieved"),
            output.rfind("convergence NOT achieved"),
        ),
    }
    if marks["bands"] > marks["bands_end"] and marks["bands"] > marks["scf"]:
        return "bands", "the non-self-consistent band structure calculation"
    if marks["scf"] > marks["scf_end"]:
        it = re.findall(r"iteration #\s*(\d+)", output[marks["scf"] :])
        step = f" of ionic step {ionic}" if ionic > 1 else ""
        return "scf", f"SCF iteration {it[0] if it else '?'}{step}"
    if marks["scf_end"] >= 0 or marks["bands_end"] >= 0:
        return "ionic", f"the forces/stress or geometry update after ionic step {ionic - 1 or 1}"
    return "setup", "set-up (input, pseudopotentials, memory, starting wavefunctions)"


def diagnose(directory: Path) -> PWDiagnosis:
    """Read every trace of the last pw.x run in ``directory`` (see the module docstring)."""
    directory = Path(directory)
    output = read_or_empty(directory / PW_OUT)
    stderr = read_or_empty(directory / PW_ERR)
    record = read_exit(directory)
    rc = record.get("returncode")
    message, source = error_message(output, read_or_empty(directory / CRASH_FILE), stderr)
    signal = -rc if isinstance(rc, int) and rc < 0 else _KILL_CODES.get(rc)
    stage, where = last_stage(output)
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        free = MIN_FREE_BYTES
    disk_full = free < MIN_FREE_BYTES or "No space left on device" in stderr
    return PWDiagnosis(
        finished=stage == "done",
        returncode=rc,
        signal=signal,
        message=message,
        message_source=source,
        stage=stage,
        where=where,
        disk_full=disk_full,
    )
