"""Status of the LaunchPad and queries over the results store.

``status(settings=None, study=None) -> dict``: firework counts by state (all eight states
always listed) and, for a study, its jobs with code, state, SLURM job id and walltime and,
for jobs SLURM ran, SLURM's own record from ``sacct`` (:data:`ACCOUNTING`: state, elapsed,
MaxRSS, exit code, ``killed_by`` walltime/memory/scancel).
``query(settings=None, formula=..., study=..., labels=..., charge=..., code=..., protocol=...,
where=[...], fields=[...], limit=0) -> list[dict]``: task documents (and derived results
documents carrying ``result_type``) as flat rows. Short property names map to document
paths (:func:`field_path`): ``band_gap_eV`` -> ``output.electronic.band_gap_eV``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from perovflow.errors import InputError

if TYPE_CHECKING:
    from perovflow.settings import Settings

STATES = ["WAITING", "READY", "RESERVED", "RUNNING", "COMPLETED", "FIZZLED", "DEFUSED", "PAUSED"]
DEFAULT_FIELDS = [
    "formula", "code", "calc_type", "protocol", "charge", "energy_eV", "band_gap_eV", "study",
    "task_label", "uuid",
]  # fmt: skip
_TOP = {"uuid", "index", "name", "completed_at", "metadata", "hosts", "output"}
_ALIASES = {"study": "output.labels.study", "label": "output.labels"}
_OPS = {">=": "$gte", "<=": "$lte", "!=": "$ne", "==": "$eq", "=": "$eq", ">": "$gt", "<": "$lt"}
_WHERE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(>=|<=|!=|==|=|>|<)\s*(.+?)\s*$")


def field_path(name: str) -> str:
    """Map a property name to its path in the stored documents."""
    from perovflow.engines.schemas import ElectronicSummary, TaskDocument

    if name in _ALIASES:
        return _ALIASES[name]
    head = name.split(".")[0]
    if head in _TOP:
        return name
    if name in ElectronicSummary.model_fields and name not in TaskDocument.model_fields:
        return f"output.electronic.{name}"
    return f"output.{name}"


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    lowered = text.lower()
    if lowered in {"true", "false"}:
        return lowered == "true"
    return None if lowered in {"none", "null"} else text.strip("'\"")


def criteria_from(
    formula: str | None = None,
    study: str | None = None,
    labels: list[str] | None = None,
    charge: float | None = None,
    code: str | None = None,
    protocol: str | None = None,
    where: list[str] | None = None,
) -> dict[str, Any]:
    """Build a MongoDB filter from the query options (see module docstring).

    Raises
    ------
    InputError
        For a malformed ``--label`` or ``--where`` expression.
    """
    crit: dict[str, Any] = {}
    for key, val in (("formula", formula), ("code", code), ("protocol", protocol)):
        if val is not None:
            crit[f"output.{key}"] = val
    if study is not None:
        crit["output.labels.study"] = study
    if charge is not None:
        crit["output.charge"] = {"$in": [charge, float(charge)]}
    for item in labels or []:
        if "=" not in item:
            raise InputError(f"bad --label '{item}'", "write --label key=value")
        key, val = item.split("=", 1)
        crit[f"output.labels.{key.strip()}"] = _value(val)
    for expr in where or []:
        m = _WHERE.match(expr)
        if not m:
            raise InputError(f"bad --where '{expr}'", "write e.g. --where 'band_gap_eV>2'")
        path, op, val = field_path(m.group(1)), _OPS[m.group(2)], _value(m.group(3))
        crit.setdefault(path, {})
        if not isinstance(crit[path], dict):
            crit[path] = {"$eq": crit[path]}
        crit[path][op] = val
    return crit


def _get(doc: dict, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(doc, dict):
            return None
        doc = doc.get(part)
    return doc


def query(
    settings: Settings | None = None,
    fields: list[str] | None = None,
    limit: int = 0,
    **filters: Any,
) -> list[dict[str, Any]]:
    """Rows of the documents matching ``filters`` (keyword arguments of :func:`criteria_from`)."""
    from perovflow.hpc.store import get_job_store

    store = get_job_store(settings)
    fields = fields or DEFAULT_FIELDS
    paths = {f: field_path(f) for f in fields}
    crit = criteria_from(**filters)
    docs = store.docs_store.query(
        criteria=crit, properties=sorted(set(paths.values())), limit=limit, sort={"completed_at": 1}
    )
    return [{f: _get(d, p) for f, p in paths.items()} for d in docs]


def status(settings: Settings | None = None, study: str | None = None) -> dict[str, Any]:
    """Firework counts by state; with ``study``, also its jobs and their walltimes."""
    from perovflow.hpc.launchpad import get_launchpad

    lp = get_launchpad(settings)
    match = {"spec._perovflow.study": study} if study else {}
    counts = dict.fromkeys(STATES, 0)
    folder = getattr(lp, "embedded_folder", None)
    if folder:  # embedded: counted in SQLite, no documents loaded
        from perovflow.hpc.embedded import state_counts

        found = state_counts(folder, lp.db.name, "fireworks", study)
    else:
        pipeline = [{"$match": match}, {"$group": {"_id": "$state", "n": {"$sum": 1}}}]
        found = {row["_id"]: row["n"] for row in lp.fireworks.aggregate(pipeline)}
    for state, n in found.items():
        counts[state] = counts.get(state, 0) + n
    out: dict[str, Any] = {"study": study, "counts": counts, "total": sum(counts.values())}
    if study:
        from perovflow.hpc.rerun import check_target

        check_target(lp, study)
        out["jobs"] = _with_accounting(_study_jobs(lp, match))
    return out


#: Columns ``status --study`` adds from SLURM's accounting (``sacct``) for finished jobs.
ACCOUNTING = ["slurm_state", "elapsed_s", "max_rss_mb", "exit_code", "killed_by"]


def _with_accounting(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add SLURM's own record of each finished job (state, elapsed, MaxRSS, exit code, and
    whether SLURM killed it); raises QueueError when SLURM cannot be asked."""
    from perovflow.hpc.slurm import accounting

    ids = [r["slurm_id"] for r in rows if r["slurm_id"]]
    records = accounting(ids) if ids else {}
    for row in rows:
        rec = records.get(row["slurm_id"] or "", {})
        for key in ACCOUNTING:
            row[key] = rec.get(key)
    return rows


def _study_jobs(lp: Any, match: dict[str, Any]) -> list[dict[str, Any]]:
    fws = list(lp.fireworks.find(match, {"fw_id": 1, "name": 1, "state": 1, "spec._perovflow": 1}))
    launches: dict[int, dict] = {}
    for la in lp.launches.find(
        {"fw_id": {"$in": [f["fw_id"] for f in fws]}},
        {"fw_id": 1, "launch_id": 1, "runtime_secs": 1, "state_history": 1, "launch_dir": 1},
    ):
        if la["launch_id"] >= launches.get(la["fw_id"], {}).get("launch_id", -1):
            launches[la["fw_id"]] = la
    rows = []
    for fw in sorted(fws, key=lambda f: f["fw_id"]):
        la = launches.get(fw["fw_id"], {})
        meta = fw.get("spec", {}).get("_perovflow", {})
        rows.append(
            {
                "fw_id": fw["fw_id"],
                "name": fw.get("name"),
                "code": meta.get("code"),
                "dft": meta.get("code") in {"qe", "cp2k"},
                "state": fw["state"],
                "slurm_id": reservation_id(la),
                "walltime_s": la.get("runtime_secs"),
                "dir": la.get("launch_dir"),
            }
        )
    return rows


def reservation_id(launch: dict) -> str | None:
    """The SLURM job id recorded on a launch (reservation mode), if any."""
    for entry in reversed(launch.get("state_history") or []):
        if entry.get("reservation_id"):
            return str(entry["reservation_id"])
    return None
