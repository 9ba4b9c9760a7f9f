"""One exception type for every user-facing failure.

Every error names the problem *and* the fix, so that the CLI can print a single line
(``error: <problem> (fix: <fix>)``) and exit non-zero instead of a traceback.
"""

from __future__ import annotations


class PerovflowError(Exception):
    """A problem the user can act on.

    Parameters
    ----------
    problem
        What is wrong, in one sentence (no trailing period needed).
    fix
        What the user should do about it.
    """

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem.strip().rstrip(".")
        self.fix = fix.strip().rstrip(".")
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """Return the single-line message printed by the CLI."""
        text = self.problem.replace("\n", " ")
        if self.fix:
            text += f" (fix: {self.fix.replace(chr(10), ' ')})"
        return text


class InputError(PerovflowError):
    """Bad user input: a structure, a name, a number or a file."""


class EngineError(PerovflowError):
    """An external code (pw.x, cp2k, ...) failed or is missing."""


class StoreError(PerovflowError):
    """The results store is unreachable or inconsistent."""


class QueueError(PerovflowError):
    """The batch system (SLURM) or the LaunchPad refused an action."""
