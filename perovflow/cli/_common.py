"""Helpers shared by the CLI command modules: JSON output, option types, progress."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress display; library output to the log.")
]
#: where a long command's library warnings and prints go (in its output or work folder)
LOG_FILE = "perovflow.log"


@contextlib.contextmanager
def watched(title: str, log_file: Path | None, quiet: bool, as_json: bool) -> Iterator[Any]:
    """Progress on a terminal and quiet libraries for one long command (perovflow.progress).

    Yields the :class:`~perovflow.progress.Progress` (a no-op without a terminal, with
    ``--quiet`` or ``--json``). Library warnings and prints go to ``log_file``; with
    ``--quiet``/``--json`` perovflow's own warnings go there too.
    """
    from perovflow.progress import Progress, quiet_libraries, show_progress

    with (
        Progress(title, show=show_progress(quiet, as_json)) as progress,
        quiet_libraries(log_file, all_warnings=quiet or as_json),
    ):
        yield progress


def _default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def to_json(data: Any) -> str:
    """Serialise ``data`` (numpy scalars/arrays, paths, pydantic models allowed)."""
    return json.dumps(data, default=_default, indent=2)


def emit(data: Any, as_json: bool, human: Callable[[Any], str] | None = None) -> None:
    """Print ``data`` as JSON or through ``human`` (default: ``key: value`` lines)."""
    if as_json:
        typer.echo(to_json(data))
        return
    if human is not None:
        typer.echo(human(data))
    elif isinstance(data, dict):
        typer.echo("\n".join(f"{k}: {v}" for k, v in data.items()))
    else:
        typer.echo(str(data))


def table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """Format ``rows`` as a fixed-width text table."""
    if not rows:
        return "(none)"
    columns = columns or list(rows[0])
    cells = [[_fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    body = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join([line, "  ".join("-" * w for w in widths), *body])


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
