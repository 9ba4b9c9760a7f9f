"""What a perovflow batch job runs: ``python -m perovflow.hpc.rocket [--config F] singleshot [--fw_id N]``.

The equivalent of FireWorks' ``rlaunch singleshot`` for perovflow: it builds the LaunchPad
and the JobStore from perovflow settings (MongoDB or the embedded store, so no
``my_launchpad.yaml`` with credentials is needed), installs the store as jobflow's default
and runs one firework in the current directory.

If the results store fails while a job saves its outputs, the outputs are spooled to
``perovflow-spool.json`` in the job directory (see :class:`SpoolingJobStore`);
``perovflow ingest DIR`` stores them later, so a finished calculation is never lost.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
from pathlib import Path
from typing import Any

from jobflow import JobStore

from perovflow.errors import PerovflowError, StoreError

SPOOL_NAME = "perovflow-spool.json"


class SpoolingJobStore(JobStore):
    """A JobStore that writes a job's outputs to the job folder when the store fails."""

    def update(self, docs: Any, key: Any = "uuid", save: Any = None) -> None:
        """Store ``docs``; on failure spool them to ``perovflow-spool.json`` and re-raise."""
        try:
            super().update(docs, key=key, save=save)
        except Exception as exc:
            spool(docs, key, save)
            if isinstance(exc, PerovflowError):
                raise
            raise StoreError(
                f"results store failed while saving ({type(exc).__name__}); outputs spooled "
                f"to {Path.cwd() / SPOOL_NAME}",
                "restore the store, then run: perovflow ingest <dir>",
            ) from None


def spool(docs: Any, key: Any, save: Any) -> Path:
    """Append ``docs`` to the spool file of the current folder (temp file + rename)."""
    from monty.json import jsanitize

    from perovflow.hpc.launchpad import write_private

    path = Path.cwd() / SPOOL_NAME
    entries = json.loads(path.read_text()) if path.is_file() else []
    try:  # JobStoreDocument (pydantic) and MSONable outputs need the strict mode
        plain = jsanitize(docs, strict=True, enum_values=True)
    except (AttributeError, TypeError):
        plain = jsanitize(docs, strict=False, enum_values=True)
    entries.append({"docs": plain, "key": key, "save": save})
    return write_private(path, json.dumps(entries))


def spooling_store(settings: Any = None) -> SpoolingJobStore:
    """The configured JobStore, with spooling; installed as jobflow's default store."""
    import jobflow

    from perovflow.hpc.store import get_job_store

    base = get_job_store(settings)
    store = SpoolingJobStore(base.docs_store, additional_stores=base.additional_stores)
    jobflow.SETTINGS.JOB_STORE = store
    return store


def main(argv: list[str] | None = None) -> int:
    """Run one firework (the one reserved for this batch job when ``--fw_id`` is given)."""
    from fireworks import FWorker
    from fireworks.core.rocket_launcher import launch_rocket

    from perovflow.hpc.launchpad import get_launchpad
    from perovflow.settings import get_settings

    parser = argparse.ArgumentParser(prog="perovflow.hpc.rocket")
    parser.add_argument("--config", help="settings YAML written by perovflow launch")
    parser.add_argument("mode", choices=["singleshot"])
    parser.add_argument("--fw_id", type=int, default=None)
    args = parser.parse_args(argv)
    if args.config:
        os.environ["PEROVFLOW_CONFIG_FILE"] = args.config
    try:
        settings = get_settings()
        spooling_store(settings)
        lp = get_launchpad(settings)
    except PerovflowError as exc:
        print(f"error: {exc.one_line()}", flush=True)
        return 2
    ok = launch_rocket(lp, FWorker(name=socket.gethostname()), fw_id=args.fw_id, strm_lvl="INFO")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
