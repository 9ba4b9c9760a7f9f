"""CLI: ``perovflow converge`` (cutoff and k-spacing series on one structure)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from perovflow.cli._common import LOG_FILE, JsonOpt, QuietOpt, emit, table, watched
from perovflow.errors import InputError

COLUMNS = ["parameter", "value", "dE_meV_atom", "dF_meV_A", "dP_kbar", "dgap_eV", "walltime_s"]
#: the ``standard`` criteria of issue #12 and the ``fast`` gap criterion
STANDARD = {"dE_meV_atom": 1.0, "dF_meV_A": 5.0, "dP_kbar": 0.5}
FAST = {"dgap_eV": 0.1}


def _floats(text: str | None, what: str) -> list[float]:
    if not text:
        return []
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{what} '{text}' is not a comma-separated list of numbers",
                         f"write e.g. --{what} 25,30,40,60") from None  # fmt: skip
    if len(values) < 2:
        raise InputError(f"--{what} needs at least two values", "the last is the reference")
    return values


def register(app: typer.Typer) -> None:
    """Register ``converge`` on ``app``."""

    @app.command("converge")
    def converge(
        structure: Annotated[str, typer.Argument(help="Structure file or known name.")],
        code: Annotated[str, typer.Option(help="qe or cp2k.")] = "qe",
        protocol: Annotated[str, typer.Option(help="Protocol for everything else.")] = "fast",
        ecutwfc: Annotated[
            str | None,
            typer.Option(help="Cutoffs (Ry; QE ecutwfc, CP2K CUTOFF), e.g. 25,30,40,60,80."),
        ] = None,
        kspacing: Annotated[
            str | None, typer.Option(help="k spacings (Å⁻¹), e.g. 0.6,0.4,0.3,0.2.")
        ] = None,
        dual: Annotated[
            float, typer.Option(help="QE ecutrho/ecutwfc; CP2K CUTOFF/REL_CUTOFF.")
        ] = 4.0,
        k_cutoff: Annotated[
            float | None, typer.Option(help="ecutwfc (Ry) held fixed in the k series.")
        ] = None,
        rattle: Annotated[float, typer.Option(help="Random displacements (Å).")] = 0.03,
        directory: Annotated[Path, typer.Option("--dir", help="Folder for the runs.")] = Path(
            "converge"
        ),
        plot: Annotated[Path | None, typer.Option(help="PNG of the differences.")] = None,
        as_json: JsonOpt = False,
        quiet: QuietOpt = False,
    ) -> None:
        """Energy/atom, forces, pressure and gap of each point against the most converged one."""
        from perovflow.cli.calc import load_any_structure
        from perovflow.engines.convergence import rattled

        cuts, spacings = _floats(ecutwfc, "ecutwfc"), _floats(kspacing, "kspacing")
        if not cuts and not spacings:
            raise InputError("nothing to converge", "give --ecutwfc and/or --kspacing values")
        cell = rattled(load_any_structure(structure), rattle)
        results = {}
        with watched("converge", directory.resolve() / LOG_FILE, quiet, as_json) as progress:
            progress.total = len(cuts) + len(spacings)
            for parameter, values, fixed in (
                ("ecutwfc", cuts, {}),
                ("kspacing", spacings, _fixed_cutoff(code, k_cutoff, dual)),
            ):
                if values:
                    results[parameter] = _series(cell, code, parameter, values, directory,
                                                 protocol, dual, fixed, plot, progress)  # fmt: skip
        emit(results, as_json, _text)


def _series(
    cell: Any, code: str, parameter: str, values: list[float], directory: Path, protocol: str,
    dual: float, fixed: dict, plot: Path | None, progress: Any,
) -> dict[str, Any]:  # fmt: skip
    """One convergence series: its table, the cheapest standard/fast points, its plot."""
    from perovflow.engines.convergence import cheapest, compare, run_series

    rows = run_series(cell, code, parameter, values, directory, protocol=protocol,
                      dual=dual, fixed=fixed, progress=progress)  # fmt: skip
    tab = compare(rows)
    if plot is not None:
        from perovflow.engines.convergence import plot as draw

        draw(tab, plot.with_name(f"{plot.stem}_{parameter}{plot.suffix or '.png'}"))
    return {"table": tab, "standard": cheapest(tab, STANDARD), "fast": cheapest(tab, FAST)}


def _fixed_cutoff(code: str, cutoff: float | None, dual: float) -> dict:
    if cutoff is None:
        return {}
    from perovflow.engines.convergence import series_overrides

    return series_overrides(code, "ecutwfc", cutoff, dual)


def _text(results: dict) -> str:
    parts = []
    for parameter, res in results.items():
        parts.append(table(res["table"], COLUMNS))
        parts.append(f"{parameter}: standard (1 meV/atom, 5 meV/Å, 0.5 kbar) -> "
                     f"{res['standard']}; fast (gap within 0.1 eV) -> {res['fast']}")  # fmt: skip
    return "\n".join(parts)
