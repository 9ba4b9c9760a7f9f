"""Submit a study (jobflow Flow) to the LaunchPad, once.

``load_flow(path) -> jobflow.Flow``: a study YAML (via ``perovflow.workflows.studies.build_flow``)
or a Flow JSON file (``Flow.as_dict()``).
``submit_flow(flow, launchpad=None, settings=None, study=None) -> SubmitReport``: converts the
flow with ``jobflow.managers.fireworks.flow_to_workflow``, tags every firework spec with
``_perovflow`` = {hash, uuid, code, study} and its SLURM resources (``_queueadapter``, see
:mod:`perovflow.hpc.queue`), and inserts it in one bulk write. The check for present
calculations and the insert run under the LaunchPad's submit lock (:func:`submit_lock`),
so two shells submitting the same study at once add it once.

A calculation is identified by a content hash of its function (maker settings included),
its inputs (structure, parameters) and, recursively, the hashes of the jobs it reads from;
an engine's ``metadata["calc_hash"]`` joins it when present. Submitting the same study twice
adds nothing; a study that shares some calculations with an earlier one adds only the new
ones, reading the earlier results (its new roots become children of those fireworks).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perovflow.errors import InputError, StoreError

if TYPE_CHECKING:
    from fireworks import LaunchPad
    from jobflow import Flow, Job

    from perovflow.settings import Settings

#: Firework states whose calculations count as present (DEFUSED ones may be submitted again).
PRESENT_STATES = ["WAITING", "READY", "RESERVED", "RUNNING", "COMPLETED", "FIZZLED", "PAUSED"]
LOCK_TIMEOUT_S = 300.0
LOCK_EXPIRE_S = 120.0


@dataclass
class SubmitReport:
    """What ``submit_flow`` did."""

    study: str
    added: int = 0
    present: int = 0
    fw_ids: list[int] = field(default_factory=list)
    linked_to: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON output."""
        return dict(self.__dict__)


def load_flow(path: str | Path) -> Flow:
    """Read a study YAML or a Flow JSON file.

    Raises
    ------
    InputError
        If the file is missing, unreadable or holds no Flow.
    """
    from jobflow import Flow, Job
    from monty.json import MontyDecoder

    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such study or flow file: {path}", "give a study YAML or a flow JSON")
    if path.suffix.lower() in {".yaml", ".yml"}:
        from perovflow.workflows.studies import build_flow

        return build_flow(path)
    try:
        obj = MontyDecoder().process_decoded(json.loads(path.read_text()))
    except (ValueError, TypeError, KeyError, ImportError) as exc:
        raise InputError(
            f"cannot read flow JSON {path}: {type(exc).__name__}: {str(exc)[:120]}",
            "write it with json.dump(flow.as_dict(), fh) using monty's MontyEncoder",
        ) from None
    if isinstance(obj, Job):
        obj = Flow([obj], name=obj.name)
    if not isinstance(obj, Flow):
        raise InputError(f"{path} holds no jobflow Flow", "write flow.as_dict() to the file")
    return obj


def job_code(job: Job) -> str:
    """Which resource class a job needs: qe, cp2k, mlip or analysis."""
    code = job.metadata.get("code") if isinstance(job.metadata, dict) else None
    if code in {"qe", "cp2k", "mlip"}:
        return code
    owner = getattr(job.function, "__self__", None)
    module = type(owner).__module__ if owner is not None else job.function.__module__
    for name in ("qe", "cp2k", "mlip"):
        if f"engines.{name}" in (module or ""):
            return name
    return "analysis"


def _replace_refs(obj: Any, hashes: dict[str, str]) -> Any:
    if isinstance(obj, dict):
        if obj.get("@class") == "OutputReference":
            return {"ref": hashes.get(obj["uuid"], obj["uuid"]), "at": obj.get("attributes")}
        return {k: _replace_refs(v, hashes) for k, v in obj.items() if k != "@version"}
    if isinstance(obj, list):
        return [_replace_refs(v, hashes) for v in obj]
    return obj


def job_hashes(flow: Flow, jobs: list[Job] | None = None) -> dict[str, str]:
    """Content hash of every job of ``flow`` (uuid -> sha1), parents before children.

    ``jobs`` may pass ``[job for job, _ in flow.iterflow()]`` when already computed.
    """
    from monty.json import jsanitize

    hashes: dict[str, str] = {}
    for job in jobs if jobs is not None else [j for j, _ in flow.iterflow()]:
        payload = jsanitize(
            {"f": job.function, "a": job.function_args, "k": job.function_kwargs},
            strict=True,
            allow_bson=False,
            enum_values=True,
        )
        meta = job.metadata if isinstance(job.metadata, dict) else {}
        blob = json.dumps(
            {"n": job.name, "p": _replace_refs(payload, hashes), "c": meta.get("calc_hash")},
            sort_keys=True,
            default=str,
        )
        hashes[job.uuid] = hashlib.sha1(blob.encode()).hexdigest()
    return hashes


def _present(lp: LaunchPad, hashes: list[str]) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for doc in lp.fireworks.find(
        {"spec._perovflow.hash": {"$in": hashes}, "state": {"$in": PRESENT_STATES}},
        {"fw_id": 1, "spec._perovflow": 1, "state": 1},
    ):
        found.setdefault(doc["spec"]["_perovflow"]["hash"], doc)
    return found


def _relink(job: Job, uuid_map: dict[str, str]) -> None:
    """Point references to already-present jobs at those jobs' uuids."""
    from jobflow import OutputReference

    def walk(obj: Any) -> Any:
        if isinstance(obj, OutputReference) and obj.uuid in uuid_map:
            return OutputReference(uuid_map[obj.uuid], obj.attributes, obj.output_schema)
        if isinstance(obj, dict):
            return {k: walk(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return type(obj)(walk(v) for v in obj)
        return obj

    job.function_args = walk(job.function_args)
    job.function_kwargs = walk(job.function_kwargs)


@contextlib.contextmanager
def submit_lock(lp: LaunchPad, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the LaunchPad's submit lock: one document ``{_id: "submit"}`` in collection
    ``perovflow_locks``, inserted atomically (the unique ``_id`` index decides who wins),
    so that the check for present calculations and the insert of the new ones are one
    step for every concurrent ``submit``. A lock left by a crashed process expires after
    ``LOCK_EXPIRE_S``.
    """
    from pymongo.errors import DuplicateKeyError

    coll, token = lp.db["perovflow_locks"], uuidlib.uuid4().hex
    end = time.monotonic() + timeout_s
    while True:
        now = datetime.now(UTC).replace(tzinfo=None)
        coll.delete_one({"_id": "submit", "expires": {"$lt": now}})
        try:
            expires = now + timedelta(seconds=LOCK_EXPIRE_S)
            coll.insert_one({"_id": "submit", "token": token, "expires": expires})
            break
        except DuplicateKeyError:
            if time.monotonic() > end:
                raise StoreError(
                    f"another submit holds the LaunchPad lock for more than {timeout_s:.0f} s",
                    "wait for it to finish, then submit again",
                ) from None
            time.sleep(0.1)
    try:
        yield
    finally:
        coll.delete_one({"_id": "submit", "token": token})


def _atomic(lp: LaunchPad) -> contextlib.AbstractContextManager[None]:
    """On the embedded store, one transaction (workflow and fireworks appear together)."""
    if getattr(lp, "embedded_folder", None):
        from perovflow.hpc.embedded import transaction

        return transaction(lp.fireworks)
    return contextlib.nullcontext()


def submit_flow(
    flow: Flow,
    launchpad: LaunchPad | None = None,
    settings: Settings | None = None,
    study: str | None = None,
) -> SubmitReport:
    """Add the calculations of ``flow`` that are not yet on the LaunchPad (see module doc)."""
    from perovflow.hpc.launchpad import get_launchpad
    from perovflow.hpc.queue import load_queue_config
    from perovflow.settings import get_settings

    settings = settings or get_settings()
    lp = launchpad or get_launchpad(settings)
    study = study or flow.name or "study"
    config = load_queue_config(settings)
    ordered = [job for job, _ in flow.iterflow()]
    from perovflow.workflows.runner import assign_calc_hashes

    assign_calc_hashes(flow)  # metadata["calc_hash"]: code version, protocol, pseudopotentials
    hashes = job_hashes(flow, ordered)
    with submit_lock(lp):
        return _add_new(lp, flow, study, config, ordered, hashes)


def _add_new(
    lp: LaunchPad, flow: Flow, study: str, config: dict, ordered: list, hashes: dict[str, str]
) -> SubmitReport:
    """Under the submit lock: add the jobs whose hash is not present (see submit_flow)."""
    from jobflow import Flow
    from jobflow.managers.fireworks import flow_to_workflow

    from perovflow.hpc.queue import queue_spec

    present = _present(lp, list(hashes.values()))
    report = SubmitReport(study=study, present=sum(h in present for h in hashes.values()))
    jobs = [job for job in ordered if hashes[job.uuid] not in present]
    if not jobs:
        return report
    if report.present:  # partial overlap: new jobs read the results of the present ones
        old = {u: present[h] for u, h in hashes.items() if h in present}
        uuid_map = {u: doc["spec"]["_perovflow"]["uuid"] for u, doc in old.items()}
        linked = {old[r.uuid]["fw_id"] for j in jobs for r in j.input_references if r.uuid in old}
        for job in jobs:
            _relink(job, uuid_map)
            job.hosts = []  # detach from the original flow
        wf = flow_to_workflow(Flow(jobs, name=study), allow_external_references=True)
    else:
        linked = set()
        wf = flow_to_workflow(flow, name=study)
    wf.metadata = {**(wf.metadata or {}), "study": study}
    for fw in wf.fws:
        job = fw.tasks[0]["job"]
        code = job_code(job)
        fw.spec["_perovflow"] = {
            "hash": hashes[job.uuid],
            "uuid": job.uuid,
            "code": code,
            "study": study,
        }
        fw.spec["_queueadapter"] = queue_spec(config, code)
    if linked:
        before = set(lp.get_fw_ids({"spec._perovflow.study": study}))
        lp.append_wf(wf, sorted(linked), pull_spec_mods=False)
        report.linked_to = sorted(linked)
        report.fw_ids = sorted(set(lp.get_fw_ids({"spec._perovflow.study": study})) - before)
    else:
        with _atomic(lp):
            old_new = lp.add_wf(wf)  # one insert_many of the fireworks, then the workflow
        report.fw_ids = sorted(old_new.values())
    report.added = len(wf.fws)
    return report
