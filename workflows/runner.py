"""Run a study's flow locally and resume it: finished jobs are reused, not rerun.

Every job gets a *resume key*: a hash of its function (the maker and all its settings), its
arguments, and - for arguments that are outputs of other jobs - the keys of those jobs
(a Merkle hash over the job graph). The key is stored in the job's metadata, so the store
knows it. On a rerun, a job whose key already has a completed output in the store is not
run again: it returns a reference to that output. Changing any setting of a job changes
its key and the keys of everything downstream, so only that part reruns.

Engine jobs (QE, CP2K, ML potential) also get ``metadata["calc_hash"]``
(:func:`assign_calc_hashes`): what changes their result but is not among the maker's fields
- code and version, the protocol's current values, pseudopotential and basis checksums
(:func:`perovflow.engines.fingerprint.environment`) - and none of what does not (job name,
labels, attempt and wall-time limits, parallel layout, paths). It enters the resume key, and
``perovflow submit`` hashes it too, so switching ``qe.pseudo_dir`` or upgrading pw.x reruns
the calculations instead of reusing old results.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from jobflow import Flow, Job, Response, job

KEY = "resume_key"
CALC_HASH = "calc_hash"
#: maker fields that do not change a calculation's result
NOT_RESULT = ("name", "labels", "max_attempts", "walltime_s", "write_additional_data")


def _sanitize(obj: Any, keys: dict[str, str]) -> Any:
    """JSON form of job arguments with references replaced by their job's key."""
    from monty.json import jsanitize

    data = jsanitize(obj, strict=True, allow_bson=False, enum_values=True)

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if node.get("@class") == "OutputReference":
                return {
                    "ref": keys.get(node["uuid"], node["uuid"]),
                    "attrs": node.get("attributes"),
                }
            return {k: walk(v) for k, v in node.items() if k not in ("@version", "uuid")}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(data)


def _elements(node: Any, found: set[str]) -> set[str]:
    """Element symbols of every structure/molecule dict in a sanitized argument tree."""
    if isinstance(node, dict):
        if node.get("@class") in ("Structure", "Molecule"):
            for site in node.get("sites", []):
                found |= {sp["element"] for sp in site.get("species", []) if "element" in sp}
        for value in node.values():
            _elements(value, found)
    elif isinstance(node, list):
        for value in node:
            _elements(value, found)
    return found


def _engine_maker(job_: Job) -> tuple[Any, str] | None:
    """(maker, code) of a job that runs QE, CP2K or the ML potential, else None."""
    from perovflow.workflows.common import maker_code

    owner = getattr(job_.function, "__self__", None)
    if owner is None or not type(owner).__module__.startswith("perovflow.engines."):
        return None
    code = maker_code(owner)
    return (owner, code) if code in ("qe", "cp2k", "mlip") else None


def assign_calc_hashes(flow: Flow | Job) -> dict[str, str]:
    """Set ``metadata["calc_hash"]`` on every engine job of ``flow``; uuid -> hash.

    The elements of a job's structure are those of the structures among its arguments and,
    for an output of another job, that job's elements (a vacancy cell inherits its host's).
    """
    from monty.json import jsanitize

    from perovflow.engines.fingerprint import digest, environment
    from perovflow.engines.qe.soc import maker_soc

    flow = flow if isinstance(flow, Flow) else Flow([flow])
    elements: dict[str, set[str]] = {}
    out: dict[str, str] = {}
    for job_, _parents in flow.iterflow():
        args = jsanitize([job_.function_args, job_.function_kwargs], strict=True, allow_bson=False)
        found = _elements(args, set())
        for ref in job_.input_references:
            found |= elements.get(ref.uuid, set())
        elements[job_.uuid] = found
        engine = _engine_maker(job_)
        if engine is None:
            continue
        maker, code = engine
        fields = jsanitize(maker, strict=True, allow_bson=False, enum_values=True)
        fields = {k: v for k, v in fields.items() if k not in NOT_RESULT and k != "@version"}
        protocol = getattr(maker, "protocol", None)
        env = environment(code, found, protocol, code == "qe" and maker_soc(maker, protocol))
        out[job_.uuid] = digest({"maker": fields, "environment": env})
        job_.metadata = {**(job_.metadata or {}), CALC_HASH: out[job_.uuid]}
    return out


def assign_resume_keys(flow: Flow | Job, study: str = "") -> dict[str, str]:
    """Set ``metadata["resume_key"]`` (and ``metadata["study"]``) on every job; uuid -> key.

    Engine jobs' ``metadata["calc_hash"]`` (set here by :func:`assign_calc_hashes`) is part
    of the key.
    """
    flow = flow if isinstance(flow, Flow) else Flow([flow])
    calc = assign_calc_hashes(flow)
    keys: dict[str, str] = {}
    for job_, _parents in flow.iterflow():
        payload = {
            "name": job_.name,
            "function": _sanitize(job_.function, keys),
            "args": _sanitize(job_.function_args, keys),
            "kwargs": _sanitize(job_.function_kwargs, keys),
            "calc": calc.get(job_.uuid),
        }
        text = json.dumps(payload, sort_keys=True, default=str)
        keys[job_.uuid] = hashlib.sha1(text.encode()).hexdigest()
        job_.metadata = {**(job_.metadata or {}), KEY: keys[job_.uuid]}
        if study:
            job_.metadata.setdefault("study", study)
    return keys


@job
def reuse_output(uuid: str, index: int) -> Response:
    """Stand-in for a finished job: its output is the finished job's output."""
    from jobflow import OutputReference

    return Response(output=OutputReference(uuid))


def finished_jobs(store: Any, keys: list[str]) -> dict[str, tuple[str, int]]:
    """resume key -> (uuid, index) of a completed output in ``store``."""
    store.connect()
    found: dict[str, tuple[str, int]] = {}
    query = {f"metadata.{KEY}": {"$in": keys}, "metadata.reused_from": {"$exists": False}}
    for doc in store.query(query, properties=["uuid", "index", f"metadata.{KEY}"]):
        found[doc["metadata"][KEY]] = (doc["uuid"], doc["index"])
    return found


def mark_finished(flow: Flow, store: Any) -> int:
    """Turn every job whose key has a completed output into :func:`reuse_output`."""
    jobs = [j for j, _ in flow.iterflow()]
    done = finished_jobs(store, [j.metadata[KEY] for j in jobs if KEY in (j.metadata or {})])
    count = 0
    for job_ in jobs:
        hit = done.get((job_.metadata or {}).get(KEY))
        if hit is None:
            continue
        job_.function = reuse_output
        job_.function_args = hit
        job_.function_kwargs = {}
        job_.metadata["reused_from"] = hit[0]
        count += 1
    return count


def run_flow(
    flow: Flow,
    store: Any,
    root_dir: str | Path | None = None,
    study: str = "",
    resume: bool = True,
    log: bool = False,
    progress: Any = None,
) -> dict[str, Any]:
    """Run ``flow`` with jobflow's ``run_locally`` on ``store`` (a jobflow ``JobStore``).

    ``progress``: a :class:`perovflow.progress.Progress` told the number of jobs.
    Returns ``{"jobs": n, "reused": k, "ran": n - k, "failed": [...], "responses": ...}``.
    """
    from jobflow import run_locally

    assign_resume_keys(flow, study)
    reused = mark_finished(flow, store) if resume else 0
    total = len(list(flow.iterflow()))
    if progress is not None:
        progress.total = total
    root = Path(root_dir or Path.cwd())
    root.mkdir(parents=True, exist_ok=True)
    with _FailureLog() as failures:
        responses = run_locally(
            flow, store=store, create_folders=True, root_dir=root, log=log,
            allow_external_references=True,
        )  # fmt: skip
    failed = [j.name for j, _ in flow.iterflow() if j.uuid not in responses]
    return {"jobs": total, "reused": reused, "ran": total - reused - len(failed), "failed": failed,
            "errors": failures.errors, "responses": responses}  # fmt: skip


class _FailureLog(logging.Handler):
    """Collect ``job name -> last line of the exception`` from jobflow's local manager."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.errors: dict[str, str] = {}
        self._logger = logging.getLogger("jobflow.managers.local")

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if " failed with exception:" in text:
            name = text.split(" failed with exception:")[0]
            lines = [ln for ln in text.strip().splitlines() if ln.strip()]
            self.errors[name] = lines[-1].strip() if lines else "unknown error"

    def __enter__(self) -> _FailureLog:
        self._old = self._logger.level
        self._logger.addHandler(self)
        if self._logger.getEffectiveLevel() > logging.INFO:
            self._logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._old)
