"""CLI: ``perovflow submit | launch | status | query | rerun | cancel | ingest | lpad``
(FireWorks + SLURM)."""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from perovflow.cli._common import LOG_FILE, JsonOpt, QuietOpt, emit, table, to_json
from perovflow.errors import InputError
from perovflow.progress import show_progress

StudyOpt = Annotated[str | None, typer.Option("--study", help="Only this study (name).")]


@contextlib.contextmanager
def _quiet_libraries(all_warnings: bool = False, capture_output: bool = True) -> Iterator[None]:
    """Library warnings, prints and FireWorks' INFO logs to ``project_dir/perovflow.log``."""
    from perovflow.progress import quiet_libraries
    from perovflow.settings import get_settings

    settings = get_settings()
    log = settings.resolved(Path(settings.project_dir)) / LOG_FILE
    with quiet_libraries(log, all_warnings=all_warnings, capture_output=capture_output):
        yield


@contextlib.contextmanager
def _progress(show: bool, what: str, counts: bool = False) -> Iterator[Any]:
    """A progress line on stderr (``update(n, text)``); nothing when ``show`` is False.

    With ``counts`` the line also shows the LaunchPad's fireworks done (COMPLETED, FIZZLED)
    of all, and how many run or wait in the queue.
    """
    from perovflow.progress import Progress

    with Progress(what, show=show) as bar:

        def update(n: int, text: str) -> None:
            bar.job(f"{n} {text}")
            if counts:
                from perovflow.hpc.query import status as do_status

                c = do_status()["counts"]
                bar.total, bar.done = sum(c.values()), c.get("COMPLETED", 0) + c.get("FIZZLED", 0)
                bar.step(f"{c.get('RUNNING', 0)} running, {c.get('RESERVED', 0)} queued")

        yield update if show else None


def submit(
    source: Annotated[Path, typer.Argument(help="Study YAML or flow JSON (Flow.as_dict()).")],
    study: Annotated[
        str | None, typer.Option("--study", help="Study name (default: flow name).")
    ] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Add a study to the LaunchPad; calculations already present are not added again."""
    from perovflow.hpc.fwfiles import write_fireworks_files
    from perovflow.hpc.submit import load_flow, submit_flow

    with _progress(show_progress(quiet, as_json), "submit"), _quiet_libraries(quiet or as_json):
        report = submit_flow(load_flow(source), study=study).as_dict()
        write_fireworks_files()  # FireWorks' lpad/qlaunch on this LaunchPad (see README)
    emit(report, as_json, lambda r: (
        f"study {r['study']}: {r['added']} fireworks added, {r['present']} already present"
        + (f" (linked to fw {r['linked_to']})" if r["linked_to"] else "")
    ))  # fmt: skip


def launch(
    max_jobs: Annotated[
        int | None,
        typer.Option(
            "--max-jobs", help="Max jobs queued at once (default: queue.yaml njobs_queue)."
        ),
    ] = None,
    nlaunches: Annotated[
        int, typer.Option("--nlaunches", help="Submit at most N jobs (0: all that are ready).")
    ] = 0,
    sleep: Annotated[
        float, typer.Option("--sleep", help="Seconds between rounds while waiting for queue space.")
    ] = 30.0,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Stop after this many seconds.")
    ] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Submit READY fireworks to SLURM (one sbatch job each, resources per code)."""
    from perovflow.hpc.queue import launch as do_launch

    show = show_progress(quiet, as_json)
    with _progress(show, "fireworks", counts=True) as update, _quiet_libraries(quiet or as_json):
        n = do_launch(
            max_jobs=max_jobs, nlaunches=nlaunches, sleep_s=sleep, timeout_s=timeout,
            progress=update,
        )  # fmt: skip
    emit({"submitted": n}, as_json, lambda r: f"submitted {r['submitted']} SLURM job(s)")


def status(study: StudyOpt = None, as_json: JsonOpt = False) -> None:
    """Firework counts by state; with --study, its jobs, SLURM ids and walltimes."""
    from perovflow.hpc.query import status as do_status

    data = do_status(study=study)

    def human(d: dict[str, Any]) -> str:
        text = "  ".join(f"{k}={v}" for k, v in d["counts"].items()) + f"  total={d['total']}"
        if d.get("jobs"):
            cols = ["fw_id", "name", "code", "state", "slurm_id", "walltime_s"]
            cols += ["slurm_state", "elapsed_s", "max_rss_mb", "exit_code", "killed_by"]
            text += "\n" + table(d["jobs"], cols)
        return text

    emit(data, as_json, human)


def query(
    formula: Annotated[
        str | None, typer.Option("--formula", help="Reduced formula, e.g. CsPbBr3.")
    ] = None,
    study: StudyOpt = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", help="key=value on labels (repeatable).")
    ] = None,
    charge: Annotated[float | None, typer.Option("--charge", help="Cell charge.")] = None,
    code: Annotated[str | None, typer.Option("--code", help="qe, cp2k or mlip.")] = None,
    protocol: Annotated[str | None, typer.Option("--protocol", help="Protocol name.")] = None,
    where: Annotated[
        list[str] | None, typer.Option("--where", help="e.g. 'band_gap_eV>2' (repeatable, ANDed).")
    ] = None,
    fields: Annotated[
        str | None, typer.Option("--fields", help="Comma-separated properties to show.")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, json or csv.")] = "table",
    limit: Annotated[int, typer.Option("--limit", help="At most N rows (0: all).")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Query task documents and derived results in the results store."""
    from perovflow.hpc.query import query as do_query

    if fmt not in {"table", "json", "csv"}:
        raise InputError(f"unknown --format '{fmt}'", "use table, json or csv")
    cols = [f.strip() for f in fields.split(",") if f.strip()] if fields else None
    rows = do_query(
        fields=cols, limit=limit, formula=formula, study=study, labels=label, charge=charge,
        code=code, protocol=protocol, where=where,
    )  # fmt: skip
    if as_json or fmt == "json":
        typer.echo(to_json(rows))
    elif fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else (cols or []))
        writer.writeheader()
        writer.writerows(rows)
        typer.echo(buf.getvalue().rstrip("\n"))
    else:
        typer.echo(table(rows))


def rerun(
    failed: Annotated[bool, typer.Option("--failed", help="Rerun FIZZLED fireworks.")] = False,
    lost: Annotated[
        bool, typer.Option("--lost", help="Rerun fireworks whose SLURM job is gone.")
    ] = False,
    study: StudyOpt = None,
    error_matches: Annotated[
        str | None,
        typer.Option("--error-matches", help="Only failures whose error text matches this regex."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Rerun failed or lost fireworks (restarting from the previous folder when possible)."""
    from perovflow.hpc.rerun import rerun_failed, rerun_lost

    if not (failed or lost):
        raise InputError("nothing to rerun", "give --failed and/or --lost")
    done = []
    with _quiet_libraries():
        if lost:
            done += rerun_lost(study=study)
        if failed:
            done += rerun_failed(study=study, error_matches=error_matches)
    emit(
        done,
        as_json,
        lambda d: table(d, ["fw_id", "action", "reason", "prev_dir"]) if d else "nothing to rerun",
    )


def cancel(
    study: StudyOpt = None,
    fw_id: Annotated[int | None, typer.Option("--fw-id", help="One firework id.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Defuse fireworks and scancel their queued/running SLURM jobs."""
    from perovflow.hpc.rerun import cancel as do_cancel

    done = do_cancel(study=study, fw_id=fw_id)
    emit(done, as_json, lambda d: table(d) if d else "nothing to cancel")


def ingest(
    path: Annotated[
        Path, typer.Argument(help="Job/launch folder (searched recursively) or spool file.")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Store outputs spooled by jobs whose results store was unreachable."""
    from perovflow.hpc.rerun import ingest as do_ingest

    with _quiet_libraries():
        done = do_ingest(path)
    emit(done, as_json, lambda d: table(d) if d else "nothing to ingest")


def lpad(ctx: typer.Context) -> None:
    """FireWorks' own lpad on the project's LaunchPad, e.g. perovflow lpad get_wflows -d less.

    Every lpad subcommand and option is passed through (perovflow lpad --help lists them);
    works for the embedded store and for MongoDB (store.uri).
    """
    from perovflow.hpc.fwfiles import run_lpad

    with _quiet_libraries(capture_output=False):  # lpad's own output is the answer
        code = run_lpad(list(ctx.args))
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Register the HPC commands on ``app``."""
    for func in (submit, launch, status, query, rerun, cancel, ingest):
        app.command(func.__name__)(func)
    passthrough = {"allow_extra_args": True, "ignore_unknown_options": True}
    app.command("lpad", context_settings=passthrough, add_help_option=False)(lpad)
