"""CLI: ``perovflow plan``, ``perovflow run`` (study files) and ``perovflow demo`` (the main job)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from perovflow.cli._common import LOG_FILE, JsonOpt, QuietOpt, emit, watched

StudyArg = Annotated[Path, typer.Argument(help="Study file (studies/*.yaml).")]


def register(app: typer.Typer) -> None:
    """Register ``plan``, ``run`` and ``demo`` on ``app``."""
    _add_plan(app)
    _add_run(app)
    _add_demo(app)


def _add_plan(app: typer.Typer) -> None:
    """``plan``: the job graph of a study, nothing run."""

    @app.command("plan")
    def plan_cmd(study: StudyArg, as_json: JsonOpt = False) -> None:
        """Print the job graph and the calculations a study will run (nothing runs)."""
        from perovflow.workflows.planning import format_plan
        from perovflow.workflows.studies import plan

        emit(plan(study), as_json, format_plan)


def _add_run(app: typer.Typer) -> None:
    """``run``: a study run locally, resumed from the store."""

    @app.command("run")
    def run_cmd(
        study: StudyArg,
        workdir: Annotated[
            Path | None,
            typer.Option(
                "--workdir", "-w", help="Where calculations run (default: scratch_dir/<study>)."
            ),
        ] = None,
        fresh: Annotated[
            bool, typer.Option("--fresh", help="Rerun finished jobs too (no resume).")
        ] = False,
        as_json: JsonOpt = False,
        quiet: QuietOpt = False,
    ) -> None:
        """Run a study locally; a rerun continues from what is already in the store."""
        from perovflow.hpc.store import get_job_store
        from perovflow.settings import get_settings
        from perovflow.workflows.runner import run_flow
        from perovflow.workflows.studies import build_flow, load_study

        spec = load_study(study)
        root = workdir or get_settings().resolved(get_settings().scratch_dir) / spec.name
        store = get_job_store()
        with watched(spec.name, Path(root) / LOG_FILE, quiet, as_json) as progress:
            flow = build_flow(spec)
            info = run_flow(
                flow, store, root_dir=root, study=spec.name, resume=not fresh, progress=progress
            )
        out = {k: v for k, v in info.items() if k != "responses"}
        out["workdir"] = str(root)
        from perovflow.workflows.migration import study_barriers

        barriers = study_barriers(flow, store)
        if barriers is not None:
            out["barriers"] = barriers
        emit(out, as_json, None if barriers is None else _with_barriers)
        if info["failed"]:
            raise typer.Exit(1)


def _with_barriers(out: dict) -> str:
    """The barrier table of a migration study above the other run facts."""
    from perovflow.cli._common import table
    from perovflow.workflows.migration import BARRIER_COLUMNS

    lines = [f"{k}: {v}" for k, v in out.items() if k != "barriers"]
    return table(out["barriers"], BARRIER_COLUMNS) + "\n" + "\n".join(lines)


def _add_demo(app: typer.Typer) -> None:
    """``demo``: the main job (Cs4PbBr6 with a Br vacancy) end to end."""

    @app.command("demo")
    def demo_cmd(
        out_dir: Annotated[Path, typer.Option("--output", "-o", help="Report folder.")] = Path(
            "perovflow-demo"
        ),
        as_json: JsonOpt = False,
        quiet: QuietOpt = False,
    ) -> None:
        """Cs4PbBr6 with a Br vacancy: ML pre-relax, QE scf, bands, PDOS, IPR, report (fast protocol)."""
        from perovflow.hpc.store import get_job_store
        from perovflow.workflows.demo import run_demo

        with watched("demo", out_dir.resolve() / LOG_FILE, quiet, as_json) as progress:
            result = run_demo(get_job_store(), out_dir, progress=progress)
        emit(result, as_json)
