"""The FireWorks LaunchPad, on MongoDB or on the embedded store.

``get_launchpad(settings=None) -> fireworks.LaunchPad``
    MongoDB when ``settings.store.uri`` is set (FireWorks' own ``LaunchPad`` with its
    client arguments; database ``<store.database>_fw``), else an
    :class:`~perovflow.hpc.embedded_lp.EmbeddedLaunchPad` on ``<project_dir>/store`` (same
    folder and lock as the results store; every collection operation is atomic across
    processes, so several SLURM jobs can check out and complete fireworks at once). A new
    database is initialised (id counter by one atomic upsert, then indexes); an existing
    one is never reset.
``write_private(path, text) -> Path``
    Write a file that may hold credentials: mode 0600, written to a temp file and renamed.
``job_config_file(settings) -> Path``
    Snapshot of the settings for batch jobs (``<project_dir>/hpc/job-config.yaml``, 0600).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perovflow.errors import StoreError

if TYPE_CHECKING:
    from fireworks import LaunchPad

    from perovflow.settings import Settings

FW_LOGLEVEL = "ERROR"


def _initialise(lp: LaunchPad) -> None:
    """Give a new LaunchPad database its id counters and indexes, atomically.

    The counter document is created with an upsert on its fixed ``_id`` (what
    ``LaunchPad._restart_ids`` writes), so two processes starting at once never reset
    each other's ids; an existing database is never changed.
    """
    from pymongo.errors import DuplicateKeyError

    if lp.fw_id_assigner.find_one({}) is None:
        with contextlib.suppress(DuplicateKeyError):  # MongoDB: another process won the race
            lp.fw_id_assigner.update_one(
                {"_id": -1},
                {"$setOnInsert": {"next_fw_id": 1, "next_launch_id": 1}},
                upsert=True,
            )
    if "spec._perovflow.hash_1" not in lp.fireworks.index_information():
        lp.tuneup(bkground=False)
        lp.fireworks.create_index("spec._perovflow.study")
        lp.fireworks.create_index("spec._perovflow.hash")


def get_launchpad(settings: Settings | None = None) -> LaunchPad:
    """Return the LaunchPad described by ``settings`` (see the module docstring).

    Raises
    ------
    StoreError
        If MongoDB does not answer or the embedded folder is not usable.
    """
    from fireworks import LaunchPad

    from perovflow.hpc.store import SERVER_TIMEOUT_MS, redact
    from perovflow.settings import get_settings

    settings = settings or get_settings()
    logging.getLogger("launchpad").setLevel(logging.ERROR)
    if settings.store.uri:
        kwargs = {"serverSelectionTimeoutMS": SERVER_TIMEOUT_MS}
        lp = LaunchPad(
            host=settings.store.uri,
            uri_mode=True,
            name=f"{settings.store.database}_fw",
            strm_lvl=FW_LOGLEVEL,
            mongoclient_kwargs=kwargs,
        )
        where = redact(settings.store.uri)
    else:
        from perovflow.hpc.embedded_lp import EmbeddedLaunchPad

        folder = settings.resolved(Path(settings.project_dir)) / "store"
        lp = EmbeddedLaunchPad(str(folder))
        where = str(folder)
    try:
        _initialise(lp)
    except StoreError:
        raise
    except Exception as exc:
        raise StoreError(
            f"LaunchPad database at {where} does not answer ({type(exc).__name__})",
            "start MongoDB or fix store.uri; unset store.uri to use the embedded store",
        ) from None
    return lp


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` with mode 0600 (temp file + rename: never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def job_config_file(settings: Settings) -> Path:
    """Write the settings batch jobs should use; it may hold the MongoDB URI (0600)."""
    import yaml

    data: dict[str, Any] = settings.model_dump(mode="json", exclude_none=True)
    for key in ("project_dir", "scratch_dir"):
        data[key] = str(settings.resolved(Path(data[key])))
    path = settings.resolved(Path(settings.project_dir)) / "hpc" / "job-config.yaml"
    return write_private(path, yaml.safe_dump(data, sort_keys=True))
