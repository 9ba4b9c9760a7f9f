"""The ``perovflow`` command line.

Each command group lives in its own module and registers itself on :data:`app`.
:func:`main` turns every :class:`~perovflow.errors.PerovflowError` into one line on
stderr and a non-zero exit code; a traceback is shown only with ``PEROVFLOW_DEBUG=1``.
"""

from __future__ import annotations

import os
import sys

import typer

from perovflow.documents import use_documents
from perovflow.errors import PerovflowError

app = typer.Typer(
    name="perovflow",
    help="DFT and atomistic workflows for halide perovskites (QE, CP2K, ML potentials).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Command groups: importing a module registers its commands on ``app``.
from perovflow.cli import analyze as _analyze  # noqa: E402
from perovflow.cli import assemblies as _assemblies  # noqa: E402
from perovflow.cli import calc as _calc  # noqa: E402
from perovflow.cli import config as _config  # noqa: E402
from perovflow.cli import converge as _converge  # noqa: E402
from perovflow.cli import hpc as _hpc  # noqa: E402
from perovflow.cli import structures as _structures  # noqa: E402
from perovflow.cli import studies as _studies  # noqa: E402

for _module in (_config, _structures, _assemblies, _calc, _converge, _analyze, _studies, _hpc):
    _module.register(app)


def _store_documents() -> object:
    """The results store as analysis's document source (imported on first use)."""
    from perovflow.hpc.store import StoreDocuments

    return StoreDocuments()


# only the command line knows every layer: it gives analysis the store's documents
use_documents(_store_documents)

EXIT_USER_ERROR = 2
EXIT_INTERNAL = 1


@app.callback()
def _root() -> None:
    """DFT and atomistic workflows for halide perovskites (QE, CP2K, ML potentials)."""


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return the exit code (0 on success)."""
    try:
        app(args=argv, prog_name="perovflow")
    except SystemExit as exc:  # typer/click finished (also --help and usage errors)
        return (
            exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USER_ERROR)
        )
    except PerovflowError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as exc:  # last resort: one line, never a bare traceback
        if os.environ.get("PEROVFLOW_DEBUG"):
            raise
        msg = str(exc).splitlines()[0] if str(exc) else ""
        print(
            f"error: unexpected {type(exc).__name__}: {msg} "
            "(fix: rerun with PEROVFLOW_DEBUG=1 to see the traceback, and report it)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    return 0
