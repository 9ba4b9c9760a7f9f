"""Recovery: rerun failed or lost fireworks, cancel a study, ingest spooled outputs.

``rerun_failed(settings=None, study=None, error_matches=None) -> list[dict]``
    FIZZLED fireworks (whose captured error text matches the regex) are rerun. Outputs
    spooled by a job whose store failed are ingested instead (no recomputation). A job
    whose function accepts ``prev_dir`` is pointed at its previous folder so it restarts
    from the last geometry/charge density; every rerun is recorded in
    ``spec._perovflow.reruns``.
``rerun_lost(settings=None, study=None) -> list[dict]``
    RUNNING/RESERVED fireworks whose SLURM job SLURM itself says is gone (a terminal
    ``sacct`` state, or "Invalid job id" from a reachable controller; see
    :mod:`perovflow.hpc.slurm`) are reset (RESERVED -> READY) or marked FIZZLED and rerun
    as above. Every job is asked about before anything changes: when SLURM cannot be
    asked, a :class:`~perovflow.errors.QueueError` is raised and nothing is changed.

A job SLURM killed for its walltime or memory is rerun with twice the walltime / memory
of its ``_queueadapter`` (``resource_fix``), by either command.
``cancel(settings=None, study=None, fw_id=None) -> list[dict]``
    ``scancel`` the SLURM jobs of the matching fireworks and defuse them.
``ingest(path, settings=None) -> list[dict]``
    Store the outputs spooled under ``path`` and mark their fireworks COMPLETED.
"""

from __future__ import annotations

import inspect
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perovflow.errors import InputError

if TYPE_CHECKING:
    from perovflow.settings import Settings


def _last_launch(lp: Any, fw_id: int) -> dict | None:
    docs = list(lp.launches.find({"fw_id": fw_id}).sort("launch_id", -1).limit(1))
    return docs[0] if docs else None


def error_text(launch: dict | None) -> str:
    """The error captured by FireWorks for a launch (stack trace), or ''."""
    if not launch:
        return ""
    exc = ((launch.get("action") or {}).get("stored_data") or {}).get("_exception") or {}
    return str(exc.get("_stacktrace") or exc.get("_details") or "")


def _match(study: str | None, states: list[str], fw_id: int | None = None) -> dict:
    q: dict[str, Any] = {"state": {"$in": states}}
    if study:
        q["spec._perovflow.study"] = study
    if fw_id is not None:
        q["fw_id"] = fw_id
    return q


def check_target(lp: Any, study: str | None = None, fw_id: int | None = None) -> None:
    """A one-line :class:`InputError` for a study or firework id not on the LaunchPad."""
    if study is not None and lp.fireworks.find_one({"spec._perovflow.study": study}) is None:
        known = sorted(s for s in lp.fireworks.distinct("spec._perovflow.study") if s)
        shown = ", ".join(known[:10]) + (" ..." if len(known) > 10 else "")
        raise InputError(
            f"no study '{study}' on the LaunchPad", f"known studies: {shown or 'none'}"
        )
    if fw_id is not None and lp.fireworks.find_one({"fw_id": fw_id}, {"fw_id": 1}) is None:
        raise InputError(
            f"no firework {fw_id} on the LaunchPad", "perovflow status --study X lists ids"
        )


def resource_fix(spec: dict[str, Any], record: dict[str, Any] | None) -> dict[str, Any]:
    """More walltime / memory for a job SLURM killed for either (empty dict otherwise)."""
    from perovflow.hpc.slurm import seconds

    how = (record or {}).get("killed_by")
    qa = spec.get("_queueadapter") or {}
    if how == "walltime":
        now = seconds(str(qa.get("walltime") or record.get("timelimit") or "")) or 3600
        s = 2 * now
        return {
            "walltime": f"{s // 86400}-{s % 86400 // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
        }
    if how == "memory":
        from perovflow.hpc.slurm import megabytes

        mem = megabytes(str(qa.get("mem") or "")) or record.get("req_mem_mb") or 1024
        return {"mem": f"{int(2 * mem)}M"}
    return {}


def _restart_from(
    lp: Any, fw_id: int, launch: dict | None, reason: str, record: dict | None = None
) -> dict[str, Any]:
    """Record the rerun and, if the job accepts ``prev_dir``, point it at the old folder;
    a job SLURM killed for walltime or memory gets more (:func:`resource_fix`)."""
    from monty.json import MontyDecoder

    fw = lp.fireworks.find_one({"fw_id": fw_id}, {"spec": 1})
    spec = fw["spec"]
    fix = resource_fix(spec, record)
    prev_dir = (launch or {}).get("launch_dir")
    used_prev = False
    task = spec["_tasks"][0]
    if prev_dir and "job" in task:
        job = MontyDecoder().process_decoded(task["job"])
        try:
            names = list(inspect.signature(job.function).parameters)
        except (TypeError, ValueError):
            names = []
        kwargs = task["job"]["function_kwargs"]
        positional = (
            names.index("prev_dir") < len(job.function_args) if "prev_dir" in names else True
        )
        # never replace a prev_dir the study set (e.g. the scf folder of a bands job)
        if "prev_dir" in names and kwargs.get("prev_dir") is None and not positional:
            task["job"]["function_kwargs"]["prev_dir"] = prev_dir
            used_prev = True
    entry = {
        "time": datetime.now(UTC).isoformat(),
        "reason": reason[:500],
        "prev_dir": prev_dir,
        "restart_from_prev_dir": used_prev,
        "fix": fix,
    }
    reruns = [*spec.get("_perovflow", {}).get("reruns", []), entry]
    update = {"_tasks": spec["_tasks"], "_perovflow.reruns": reruns}
    if fix:
        update["_queueadapter"] = {**(spec.get("_queueadapter") or {}), **fix}
    lp.update_spec([fw_id], update)
    lp.rerun_fw(fw_id)
    return {"fw_id": fw_id, **entry}


def rerun_failed(
    settings: Settings | None = None, study: str | None = None, error_matches: str | None = None
) -> list[dict[str, Any]]:
    """Rerun (or ingest) FIZZLED fireworks; see the module docstring."""
    from perovflow.hpc.launchpad import get_launchpad
    from perovflow.hpc.rocket import SPOOL_NAME

    try:
        pattern = re.compile(error_matches) if error_matches else None
    except re.error as exc:
        raise InputError(f"bad --error-matches regex: {exc}", "give a Python regex") from None
    from perovflow.hpc.query import reservation_id
    from perovflow.hpc.slurm import accounting

    lp = get_launchpad(settings)
    check_target(lp, study)
    todo = []
    for fw in lp.fireworks.find(_match(study, ["FIZZLED"]), {"fw_id": 1}):
        launch = _last_launch(lp, fw["fw_id"])
        text = error_text(launch)
        if not pattern or pattern.search(text):
            todo.append((fw["fw_id"], launch, text))
    ids = [reservation_id(la or {}) for _, la, _ in todo]
    records = accounting([i for i in ids if i]) if any(ids) else {}
    done = []
    for (fw_id, launch, text), job_id in zip(todo, ids, strict=True):
        spool = Path((launch or {}).get("launch_dir") or "/nonexistent") / SPOOL_NAME
        if spool.is_file():
            done += [{**r, "action": "ingested"} for r in ingest(spool.parent, settings)]
            continue
        last = text.strip().splitlines()[-1] if text.strip() else "no error captured"
        rec = records.get(job_id or "")
        done.append({**_restart_from(lp, fw_id, launch, last, rec), "action": "rerun"})
    return done


def rerun_lost(settings: Settings | None = None, study: str | None = None) -> list[dict]:
    """Reset or rerun fireworks whose SLURM job SLURM says is gone (module docstring)."""
    from perovflow.hpc.launchpad import get_launchpad
    from perovflow.hpc.query import reservation_id
    from perovflow.hpc.slurm import accounting, is_lost

    lp = get_launchpad(settings)
    check_target(lp, study)
    todo = []
    for fw in lp.fireworks.find(_match(study, ["RUNNING", "RESERVED"]), {"fw_id": 1, "state": 1}):
        launch = _last_launch(lp, fw["fw_id"])
        job_id = reservation_id(launch or {})
        if launch and job_id:
            todo.append((fw, launch, job_id))
    records = accounting([j for _, _, j in todo]) if todo else {}
    # ask SLURM about every job first: if it cannot answer, nothing has been changed
    verdicts = [is_lost(job_id, records.get(job_id)) for _, _, job_id in todo]
    done = []
    for (fw, launch, job_id), reason in zip(todo, verdicts, strict=True):
        if reason is None:
            continue
        if fw["state"] == "RESERVED":
            lp.cancel_reservation(launch["launch_id"])
            done.append({"fw_id": fw["fw_id"], "action": "unreserved", "reason": reason})
            continue
        lp.mark_fizzled(launch["launch_id"])
        rerun = _restart_from(lp, fw["fw_id"], launch, reason, records.get(job_id))
        done.append({**rerun, "action": "rerun"})
    return done


def cancel(
    settings: Settings | None = None, study: str | None = None, fw_id: int | None = None
) -> list[dict[str, Any]]:
    """scancel and defuse the matching fireworks that have not completed. The SLURM jobs
    are cancelled first: if ``scancel`` fails (controller down), nothing is changed."""
    from perovflow.hpc.launchpad import get_launchpad
    from perovflow.hpc.query import reservation_id
    from perovflow.hpc.slurm import scancel

    if study is None and fw_id is None:
        raise InputError("nothing to cancel", "give --study NAME or --fw-id N")
    lp = get_launchpad(settings)
    check_target(lp, study, fw_id)
    states = ["WAITING", "READY", "RESERVED", "RUNNING", "FIZZLED", "PAUSED"]
    todo = []
    for fw in lp.fireworks.find(_match(study, states, fw_id), {"fw_id": 1, "state": 1}):
        launch = _last_launch(lp, fw["fw_id"]) if fw["state"] in {"RESERVED", "RUNNING"} else None
        todo.append((fw, launch, reservation_id(launch or {})))
    scancel([job_id for _, _, job_id in todo if job_id])
    done = []
    for fw, launch, job_id in todo:
        if fw["state"] == "RESERVED":
            lp.cancel_reservation(launch["launch_id"])
        elif fw["state"] == "RUNNING":
            lp.mark_fizzled(launch["launch_id"])
        lp.defuse_fw(fw["fw_id"])
        done.append({"fw_id": fw["fw_id"], "was": fw["state"], "slurm_id": job_id})
    return done


def ingest(path: str | Path, settings: Settings | None = None) -> list[dict[str, Any]]:
    """Store spooled outputs found under ``path`` and complete their fireworks."""
    from fireworks import FWAction

    from perovflow.hpc.launchpad import get_launchpad
    from perovflow.hpc.rocket import SPOOL_NAME
    from perovflow.hpc.store import get_job_store

    root = Path(path)
    if not root.exists():
        raise InputError(f"no such folder: {root}", "give a job or launch folder")
    files = [root] if root.is_file() else sorted(root.rglob(SPOOL_NAME))
    store, lp = get_job_store(settings), get_launchpad(settings)
    store.connect()
    done = []
    for spool in files:
        for entry in json.loads(spool.read_text()):
            store.update(entry["docs"], key=entry["key"], save=entry["save"])
            docs = entry["docs"] if isinstance(entry["docs"], list) else [entry["docs"]]
            for doc in docs:
                done.append(_complete(lp, doc["uuid"], spool, FWAction))
        spool.rename(spool.with_name(SPOOL_NAME + ".ingested"))
    return done


def _complete(lp: Any, uuid: str, spool: Path, fwaction: Any) -> dict[str, Any]:
    fw = lp.fireworks.find_one({"spec._perovflow.uuid": uuid}, {"fw_id": 1, "state": 1})
    if fw is None:
        return {"uuid": uuid, "fw_id": None, "action": "stored (no firework)"}
    if fw["state"] != "COMPLETED":
        launch = _last_launch(lp, fw["fw_id"])
        if launch is not None:
            action = fwaction(stored_data={"ingested_from": str(spool)})
            lp.complete_launch(launch["launch_id"], action, "COMPLETED")
    return {"uuid": uuid, "fw_id": fw["fw_id"], "action": "ingested"}
