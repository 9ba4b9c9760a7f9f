"""What SLURM itself says about a job: ``sacct`` (accounting) and ``squeue`` (controller).

``accounting(job_ids) -> dict[str, dict]``
    SLURM's record of each job from ``sacct``: ``slurm_state``, ``elapsed_s``,
    ``max_rss_mb`` (largest over the job's steps), ``exit_code``, ``req_mem_mb``,
    ``timelimit`` and ``killed_by`` (``walltime``, ``memory``, ``scancel`` or None). Empty
    when the cluster has no accounting storage. A job killed for memory is recognised by
    ``OUT_OF_MEMORY`` (cgroup clusters) or by SIGKILL with MaxRSS at its ``--mem`` request
    (``JobAcctGatherParams=OverMemoryKill``, e.g. the one-node cluster of
    ``scripts/slurm-up.sh``, where SLURM records ``FAILED``/exit ``0:9``).
``queue_state(job_id) -> str | None``
    The state ``squeue`` reports; None when the controller answers that it does not know
    the job ("Invalid job id"). Raises :class:`~perovflow.errors.QueueError` when the
    controller cannot be asked.
``scancel(job_ids)``
    Cancel jobs; raises QueueError (nothing cancelled) when the controller is down.
``is_lost(job_id, record) -> str | None``
    Why a job counts as gone - only when SLURM positively says so (a terminal ``sacct``
    state, with every step recorded, or an unknown job id from a reachable controller);
    None while it lives.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

from perovflow.errors import QueueError

ALIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING"}
ALIVE |= {"REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD"}
_FIELDS = ["JobIDRaw", "State", "Elapsed", "MaxRSS", "ExitCode", "ReqMem", "Timelimit"]
_UNITS = {"K": 1 / 1024, "M": 1.0, "G": 1024.0, "T": 1024.0**2}
_FIX = "check the controller and accounting daemons (sinfo; sacct) and retry"


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    if not shutil.which(cmd[0]):
        raise QueueError(f"{cmd[0]} is not on PATH", "run on a SLURM login node")
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise QueueError(f"cannot run {cmd[0]}: {type(exc).__name__}", _FIX) from None


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0][:200] if lines else "no output"


def seconds(text: str) -> int | None:
    """``[D-]HH:MM:SS`` / ``MM:SS`` / ``MM`` (SLURM durations) in seconds."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not m:
        return None
    days, a, b, c = (int(g) if g else None for g in m.groups())
    if b is None:  # "MM" (or "D-HH")
        return (days or 0) * 86400 + (a * 3600 if days is not None else a * 60)
    hms = (a, b, c) if c is not None else ((0, a, b) if days is None else (a, b, 0))
    return (days or 0) * 86400 + hms[0] * 3600 + hms[1] * 60 + hms[2]


def megabytes(text: str) -> float | None:
    """A SLURM memory size (``322188K``, ``50M``, ``2Gn``, ``1024Mc``) in MB."""
    m = re.fullmatch(r"([\d.]+)([KMGT]?)[nc]?", text.strip())
    if not m:
        return None
    return float(m.group(1)) * _UNITS.get(m.group(2) or "M", 1.0)


def accounting(job_ids: list[str]) -> dict[str, dict[str, Any]]:
    """SLURM's accounting records of ``job_ids`` (see the module docstring)."""
    ids = sorted({str(j) for j in job_ids if j})
    if not ids:
        return {}
    out = _run(["sacct", "-n", "-P", "-j", ",".join(ids), "-o", ",".join(_FIELDS)])
    if out.returncode != 0:
        if "accounting storage is disabled" in (out.stdout + out.stderr).lower():
            return {}
        raise QueueError(f"sacct does not answer: {_first_line(out.stderr)}", _FIX)
    steps: dict[str, list[dict[str, str]]] = {}
    for line in out.stdout.splitlines():
        parts = line.split("|")
        if len(parts) == len(_FIELDS):
            row = dict(zip(_FIELDS, parts, strict=True))
            steps.setdefault(row["JobIDRaw"].split(".")[0], []).append(row)
    return {job: _record(rows) for job, rows in steps.items() if job in ids}


def _record(rows: list[dict[str, str]]) -> dict[str, Any]:
    job = next((r for r in rows if "." not in r["JobIDRaw"]), rows[0])
    rss = [megabytes(r["MaxRSS"]) for r in rows if r["MaxRSS"]]
    rss = [x for x in rss if x is not None]
    rec: dict[str, Any] = {
        "slurm_state": job["State"].split()[0] if job["State"] else None,
        "elapsed_s": seconds(job["Elapsed"]),
        "max_rss_mb": round(max(rss), 1) if rss else None,
        "exit_code": job["ExitCode"],
        "req_mem_mb": megabytes(job["ReqMem"]) if job["ReqMem"] else None,
        "timelimit": job["Timelimit"],
    }
    # slurmdbd records the allocation and its steps separately: until every step has a
    # terminal state too, MaxRSS and the cause of death may still be missing
    batch = any(r["JobIDRaw"].endswith(".batch") for r in rows)
    ran = bool(rec["elapsed_s"])  # a job cancelled while pending has no batch step
    rec["settled"] = (
        (batch or not ran)
        and all(r["State"].split()[0] not in ALIVE for r in rows if r["State"])
        and not job["ReqMem"].endswith("?")  # '16?': slurmdbd's partial record of a moment
    )
    # the step's state can reach slurmdbd before its usage (MaxRSS): the cause of a memory
    # kill is known only once that is there too
    rec["usage_missing"] = ran and not any(
        r["MaxRSS"] for r in rows if r["JobIDRaw"].endswith(".batch")
    )
    rec["killed_by"] = killed_by(rec)
    return rec


def killed_by(rec: dict[str, Any]) -> str | None:
    """``walltime``, ``memory`` or ``scancel`` when SLURM (or a user) ended the job."""
    state, signal = rec.get("slurm_state"), str(rec.get("exit_code") or "0:0").split(":")[-1]
    if state in {"TIMEOUT", "DEADLINE"}:
        return "walltime"
    rss, req = rec.get("max_rss_mb"), rec.get("req_mem_mb")
    at_limit = rss is not None and req is not None and rss >= 0.9 * req
    if state == "OUT_OF_MEMORY" or (
        state in {"FAILED", "CANCELLED"} and signal == "9" and at_limit
    ):
        return "memory"
    if state == "CANCELLED":
        return "scancel"
    return None


def queue_state(job_id: str) -> str | None:
    """``squeue``'s state of the job; None if the (reachable) controller does not know it."""
    out = _run(["squeue", "-h", "-t", "all", "-j", str(job_id), "-o", "%T"])
    if out.returncode == 0:
        lines = out.stdout.split()
        return lines[0].strip() if lines else None
    if "invalid job id" in out.stderr.lower():
        return None
    raise QueueError(f"the SLURM controller does not answer: {_first_line(out.stderr)}", _FIX)


USAGE_WAIT_S = 60.0  # how long after its end a job's usage record is waited for


def ended_seconds_ago(job_id: str) -> float | None:
    """Seconds since SLURM recorded the job's end (None when unknown)."""
    import datetime as dt

    out = _run(["sacct", "-n", "-P", "-X", "-j", str(job_id), "-o", "End"])
    text = _first_line(out.stdout) if out.returncode == 0 else ""
    try:
        end = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return (dt.datetime.now() - end).total_seconds()


def is_lost(job_id: str, record: dict[str, Any] | None) -> str | None:
    """Why SLURM says the job is gone, or None while it is alive (see module docstring)."""
    state = (record or {}).get("slurm_state")
    if state and state not in ALIVE and not (record or {}).get("settled", True):
        return None  # ended, but its steps are not all recorded yet: ask again later
    if state and state not in ALIVE and (record or {}).get("usage_missing"):
        ago = ended_seconds_ago(job_id)  # None: its end is not recorded yet either
        if ago is None or ago < USAGE_WAIT_S:
            return None  # its memory use is not recorded yet (clusters without it: 60 s)
    if state and state not in ALIVE:
        how = (record or {}).get("killed_by")
        return f"SLURM job {job_id} {state}" + (f" (killed: {how})" if how else "")
    live = queue_state(job_id)
    if live in ALIVE or state in ALIVE:
        # state in ALIVE: accounting still has it running while the controller is done with
        # it (slurmdbd lags slurmctld by a moment): its final record decides, later
        return None
    return f"SLURM job {job_id} " + (live or "unknown to the controller")


def scancel(job_ids: list[str]) -> None:
    """Cancel the jobs; jobs SLURM no longer knows or that already ended are fine.

    Raises
    ------
    QueueError
        When the controller cannot be reached (nothing was cancelled).
    """
    if not job_ids:
        return
    out = _run(["scancel", *[str(j) for j in job_ids]])
    benign = ("invalid job id", "already completing or completed")
    errors = [ln for ln in out.stderr.splitlines() if ln.strip()]
    if out.returncode != 0 and not all(any(b in ln.lower() for b in benign) for ln in errors):
        raise QueueError(f"scancel failed: {_first_line(out.stderr)}", _FIX)
