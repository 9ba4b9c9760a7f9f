"""Job functions and worker entry points used by the hpc tests (importable by subprocesses)."""

from __future__ import annotations

import os
import sys

from jobflow import job


@job(data=["eigenvalues"])
def tiny_task(n: int, study: str = "demo") -> dict:
    """A stand-in engine job: returns a small task-like document with a big array."""
    return {
        "formula": "CsPbBr3" if n % 2 else "Cs4PbBr6",
        "code": "qe",
        "calc_type": "static",
        "labels": {"study": study, "n": n},
        "electronic": {"band_gap_eV": 1.0 + 0.1 * n},
        "eigenvalues": [[float(i) for i in range(200)]],
        "pid": os.getpid(),
    }


def run_worker(worker: int, njobs: int) -> None:
    """Run ``njobs`` jobs locally against the configured store (one process)."""
    from jobflow import Flow, run_locally
    from perovflow.hpc.store import get_job_store

    store = get_job_store()
    jobs = [tiny_task(worker * 1000 + i) for i in range(njobs)]
    run_locally(Flow(jobs), store=store, log=False, ensure_success=True)
    coll = store.docs_store._collection.database["counters"]
    for _ in range(njobs):
        coll.update_one({"_id": "c"}, {"$inc": {"n": 1}}, upsert=True)


if __name__ == "__main__":
    run_worker(int(sys.argv[1]), int(sys.argv[2]))
