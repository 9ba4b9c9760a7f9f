"""Progress on a terminal and quiet libraries for the long commands.

``demo``, ``run``, ``launch``, ``converge`` and the NEB benchmarks share two context managers:

``quiet_libraries(log_file=None, all_warnings=False, capture_output=True)``
    Warnings raised in third-party code (jobflow's FutureWarning per job, CHGNet's tensor
    warning, pymatgen's "path may be incorrect"), what libraries print (CHGNet's banner;
    not with ``capture_output`` False) and FireWorks' INFO logs go to ``log_file``
    (appended; dropped when None) instead of the terminal. perovflow's own warnings stay
    on stderr unless ``all_warnings`` (``--json``, ``--quiet``: nothing else is printed).
``Progress(title, show=True)``
    One live line on stderr (rich): spinner, title, current job and step, jobs done / total,
    elapsed time. Jobs come from jobflow's "Starting job" / "Finished job" log records; the
    step is read from the tail of the newest pw.x / projwfc.x / CP2K output in the working
    folder (jobflow runs each job in its own folder), so it shows the SCF iteration and its
    residual or the band-structure k-point; messages of the ``perovflow.neb`` logger (NEB
    max force) and explicit :meth:`Progress.step` calls show too. With ``show`` False (no
    terminal, ``--quiet``, ``--json``) nothing is drawn and no thread runs.

``show_progress(quiet, as_json) -> bool`` says whether to draw: only on a terminal.
``step_from_output(text) -> str`` is the tail parser.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

#: loggers whose INFO chatter is the library's, not the user's
CHATTY_LOGGERS = ("launchpad", "rocket.launcher", "queue.launcher", "maggma", "fireworks")
#: output files whose tail tells the step (newest first wins)
OUTPUT_GLOBS = ("*.pwo", "projwfc.out", "cp2k.out")
_SCF = re.compile(r"iteration #\s*(\d+)")
_ACC = re.compile(r"estimated scf accuracy\s*<\s*([0-9.Ee+-]+)\s*Ry")
_KPT_OF = re.compile(r"Computing kpt #:\s*(\d+)\s+of\s+(\d+)")
_BFGS = re.compile(r"number of bfgs steps\s*=\s*(\d+)")
_FORCE = re.compile(r"Total force =\s*([0-9.Ee+-]+)")
_CP2K_SCF = re.compile(  # step, method (1-2 words), step size, time, convergence, energy, change
    r"^\s*(\d+)\s+[A-Za-z][\w/.]*(?: [A-Za-z][\w/.]*)?\s+[0-9.E+-]+\s+[0-9.]+\s+"
    r"([0-9.]+(?:E[-+]\d+)?)\s+-?\d+\.\d+\s+-?[0-9.E+-]+\s*$",
    re.M,
)


def show_progress(quiet: bool = False, as_json: bool = False) -> bool:
    """Draw progress only on a terminal (stderr a TTY) and without ``--quiet``/``--json``."""
    return not (quiet or as_json) and sys.stderr.isatty()


def step_from_output(text: str) -> str:
    """The current step from the tail of a pw.x, projwfc.x or CP2K output ('' if unknown)."""
    if "Calling projwave" in text or "PROJWFC" in text:
        return "projwfc.x: projecting the states"
    if "Band Structure Calculation" in text:
        kpts = _KPT_OF.findall(text)
        return f"bands: k-point {kpts[-1][0]} of {kpts[-1][1]}" if kpts else "bands: starting"
    parts = []
    bfgs = _BFGS.findall(text)
    if bfgs:
        force = _FORCE.findall(text)
        parts.append(
            f"BFGS step {bfgs[-1]}" + (f", total force {force[-1]} Ry/Bohr" if force else "")
        )
    scf = _SCF.findall(text)
    if scf:
        acc = _ACC.findall(text)
        parts.append(f"SCF iteration {scf[-1]}" + (f", accuracy {acc[-1]} Ry" if acc else ""))
    else:
        steps = _CP2K_SCF.findall(text)
        if steps:
            parts.append(f"SCF step {steps[-1][0]}, convergence {steps[-1][1]}")
    return "; ".join(parts)


def _newest_output(folder: Path) -> Path | None:
    found = [p for pattern in OUTPUT_GLOBS for p in folder.glob(pattern)]
    return max(found, key=lambda p: p.stat().st_mtime, default=None)


def _tail(path: Path, size: int = 6000) -> str:
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        handle.seek(max(0, handle.tell() - size))
        return handle.read().decode(errors="replace")


class _Records(logging.Handler):
    """Job starts/finishes from jobflow and NEB messages, handed to a :class:`Progress`."""

    def __init__(self, progress: Progress) -> None:
        super().__init__(logging.INFO)
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if text.startswith("Starting job - "):
            self.progress.job(text.removeprefix("Starting job - ").rsplit(" (", 1)[0])
        elif text.startswith("Finished job - "):
            self.progress.finished()
        elif record.name.startswith("perovflow.neb"):
            self.progress.step(text)


class Progress:
    """A live progress line on stderr (see the module docstring); a no-op when not shown."""

    def __init__(self, title: str, show: bool = True, total: int | None = None) -> None:
        self.title, self.show, self.total = title, show, total
        self.done, self.current, self.detail = 0, "", ""
        self.folder: Path | None = None  # where the running code writes (None: the cwd)
        self._stop = threading.Event()
        self._loggers = [logging.getLogger(n) for n in ("jobflow.core.job", "perovflow.neb")]
        self._handler = _Records(self)
        self._saved = [(lg.level, lg.propagate) for lg in self._loggers]

    def job(self, name: str) -> None:
        """A job started."""
        self.current, self.detail = name, ""

    def finished(self) -> None:
        """A job finished."""
        self.done += 1
        self.detail = ""

    def step(self, text: str) -> None:
        """What the current job is doing now."""
        self.detail = text

    def line(self) -> str:
        """The text of the progress line (without spinner and elapsed time)."""
        jobs = f"{self.done}/{self.total} jobs" if self.total else f"{self.done} jobs done"
        now = " · ".join(p for p in (self.current, self.detail) if p)
        return f"{self.title}: {jobs}" + (f" · {now}" if now else "")

    def _watch(self, bar: Any, task: Any) -> None:
        while not self._stop.wait(1.0):
            with contextlib.suppress(OSError):
                out = _newest_output(self.folder or Path.cwd())
                if out is not None and time.time() - out.stat().st_mtime < 600:
                    self.detail = step_from_output(_tail(out)) or self.detail
            bar.update(task, description=self.line())

    def __enter__(self) -> Progress:
        for logger in self._loggers:
            logger.addHandler(self._handler)
            if logger.getEffectiveLevel() > logging.INFO:  # raised for this line only:
                logger.setLevel(logging.INFO)  # the user's handlers see no new records
                logger.propagate = False
        if self.show:
            from rich.console import Console
            from rich.progress import Progress as Bar
            from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

            columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
            self._bar = Bar(*columns, console=Console(file=sys.stderr), transient=True)
            self._bar.__enter__()
            task = self._bar.add_task(self.line())
            self._thread = threading.Thread(target=self._watch, args=(self._bar, task), daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for logger, (level, propagate) in zip(self._loggers, self._saved, strict=True):
            logger.removeHandler(self._handler)
            logger.setLevel(level)
            logger.propagate = propagate
        if self.show:
            self._stop.set()
            self._thread.join(timeout=5)
            self._bar.__exit__(None, None, None)


def _perovflow_file(filename: str) -> bool:
    """Whether ``filename`` is the source of a loaded perovflow module."""
    own = {
        getattr(module, "__file__", None)
        for name, module in list(sys.modules.items())
        if name == "perovflow" or name.startswith("perovflow.")
    }
    return filename in own


@contextlib.contextmanager
def quiet_libraries(
    log_file: str | Path | None = None, all_warnings: bool = False, capture_output: bool = True
) -> Iterator[None]:
    """Third-party warnings, prints and INFO logs go to ``log_file`` (see the module docstring)."""
    terminal = sys.stderr
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    sink: TextIO = open(log_file, "a") if log_file is not None else io.StringIO()  # noqa: SIM115

    def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
             line: Any = None) -> None:  # fmt: skip
        target = terminal if not all_warnings and _perovflow_file(filename) else sink
        target.write(warnings.formatwarning(message, category, filename, lineno, line))

    loggers = [logging.getLogger(n) for n in CHATTY_LOGGERS]
    levels = [lg.level for lg in loggers]
    try:
        with warnings.catch_warnings():
            warnings.showwarning = show
            for lg in loggers:
                lg.setLevel(logging.ERROR)
            if not capture_output:
                yield
                return
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        sink.close()
