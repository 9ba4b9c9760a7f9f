"""Recovery: rerun failed or lost fireworks, cancel a study, ingest spooled outputs.

``rerun_failed(settings=None, study=None, error_matches=None) -> list[dict]``
    FIZZLED fireworks (whose captured error text matches the regex) are rerun. Outputs
    spooled by a job whose store failed are ingested instead (no recomputation). A job
    whose function accepts ``prev_dir`` is pointed at its previous folder so it restarts
    from the last geometry/charge density; every rerun is recorded in
    ``spec._perovflow.reruns``.
``rerun_lost(settings=None, study=None) -> list[dict]``
    RUNNING/RESERVED fireworks whose SLURM job is gone (``squeue``; cancelled, timed out,
    node failure) are reset (RESERVED -> READY) or marked FIZZLED and rerun as above.
``cancel(settings=None, study=None, fw_id=None) -> list[dict]``
    ``scancel`` the SLURM jobs of the matching fireworks and defuse them.
``ingest(path, settings=None) -> list[dict]``
    Store the outputs spooled under ``path`` and mark their fireworks COMPLETED.
"""

from __future__ import annotations

import inspect
import json
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perovflow.errors import InputError, QueueError

if TYPE_CHECKING:
    from perovflow.settings import Settings

ALIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING"}


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


def _restart_from(lp: Any, fw_id: int, launch: dict | None, reason: str) -> dict[str, Any]:
    """Record the rerun and, if the job accepts ``prev_dir``, point it at the old folder."""
    from monty.json import MontyDecoder

    fw = lp.fireworks.find_one({"fw_id": fw_id}, {"spec": 1})
    spec = fw["spec"]
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
    record = {
        "time": datetime.now(UTC).isoformat(),
        "reason": reason[:500],
        "prev_dir": prev_dir,
        "restart_from_prev_dir": used_prev,
    }
    reruns = [*spec.get("_perovflow", {}).get("reruns", []), record]
    lp.update_spec([fw_id], {"_tasks": spec["_tasks"], "_perovflow.reruns": reruns})
    lp.rerun_fw(fw_id)
    return {"fw_id": fw_id, **record}


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
    lp = get_launchpad(settings)
    done = []
    for fw in lp.fireworks.find(_match(study, ["FIZZLED"]), {"fw_id": 1}):
        launch = _last_launch(lp, fw["fw_id"])
        text = error_text(launch)
        if pattern and not pattern.search(text):
            continue
        spool = Path((launch or {}).get("launch_dir") or "/nonexistent") / SPOOL_NAME
        if spool.is_file():
            done += [{**r, "action": "ingested"} for r in ingest(spool.parent, settings)]
            continue
        last = text.strip().splitlines()[-1] if text.strip() else "no error captured"
        done.append({**_restart_from(lp, fw["fw_id"], launch, last), "action": "rerun"})
    return done


def slurm_state(job_id: str) -> str | None:
    """State of a SLURM job from ``squeue`` (None when SLURM no longer lists it)."""
    try:
        out = subprocess.run(
            ["squeue", "-h", "-j", str(job_id), "-o", "%T"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise QueueError(f"cannot run squeue: {exc}", "run on a SLURM login node") from None
    state = out.stdout.strip().splitlines()
    return state[0].strip() if out.returncode == 0 and state else None


def rerun_lost(settings: Settings | None = None, study: str | None = None) -> list[dict]:
    """Reset or rerun fireworks whose SLURM job has disappeared."""
    from perovflow.hpc.launchpad import get_launchpad
    from perovflow.hpc.query import reservation_id

    lp = get_launchpad(settings)
    done = []
    for fw in lp.fireworks.find(_match(study, ["RUNNING", "RESERVED"]), {"fw_id": 1, "state": 1}):
        launch = _last_launch(lp, fw["fw_id"])
        job_id = reservation_id(launch or {})
        if not launch or not job_id:
            continue
        state = slurm_state(job_id)
        if state in ALIVE:
            continue
        reason = f"SLURM job {job_id} gone ({state or 'not listed'})"
        if fw["state"] == "RESERVED":
            lp.cancel_reservation(launch["launch_id"])
            done.append({"fw_id": fw["fw_id"], "action": "unreserved", "reason": reason})
            continue
        lp.mark_fizzled(launch["launch_id"])
        done.append({**_restart_from(lp, fw["fw_id"], launch, reason), "action": "rerun"})
    return done


def cancel(
    settings: Settings | None = None, study: str | None = None, fw_id: int | None = None
) -> list[dict[str, Any]]:
    """scancel and defuse the matching fireworks that have not completed."""
    from perovflow.hpc.launchpad import get_launchpad
    from perovflow.hpc.query import reservation_id

    if study is None and fw_id is None:
        raise InputError("nothing to cancel", "give --study NAME or --fw-id N")
    lp = get_launchpad(settings)
    states = ["WAITING", "READY", "RESERVED", "RUNNING", "FIZZLED", "PAUSED"]
    done = []
    for fw in lp.fireworks.find(_match(study, states, fw_id), {"fw_id": 1, "state": 1}):
        launch = _last_launch(lp, fw["fw_id"]) if fw["state"] in {"RESERVED", "RUNNING"} else None
        job_id = reservation_id(launch or {})
        if job_id:
            subprocess.run(["scancel", str(job_id)], capture_output=True, timeout=30, check=False)
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
