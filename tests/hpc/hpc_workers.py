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
    from perovflow.hpc.embedded import embedded_client
    from perovflow.settings import get_settings

    folder = get_settings().resolved(get_settings().project_dir) / "store"
    coll = embedded_client(folder)["perovflow"]["counters"]
    for _ in range(njobs):
        coll.update_one({"_id": "c"}, {"$inc": {"n": 1}}, upsert=True)


if __name__ == "__main__":
    run_worker(int(sys.argv[1]), int(sys.argv[2]))


@job
def checkpoint_task(total_steps: int, study: str = "demo", prev_dir: str | None = None) -> dict:
    """A restartable stand-in for a relaxation: one step per 0.5 s, progress kept on disk.

    Started with ``prev_dir`` it resumes from the progress saved there (the last geometry).
    """
    import time
    from pathlib import Path

    start = 0
    if prev_dir and (Path(prev_dir) / "progress.txt").is_file():
        start = int((Path(prev_dir) / "progress.txt").read_text())
    for step in range(start, total_steps):
        Path("progress.txt").write_text(str(step))
        time.sleep(0.5)
    Path("progress.txt").write_text(str(total_steps))
    return {"formula": "CsPbBr3", "code": "qe", "labels": {"study": study, "resumed_at": start}}


@job
def crash_task(study: str = "demo", prev_dir: str | None = None) -> dict:
    """Runs a child process (the stand-in for pw.x); if it dies from a signal, fails.

    Started with ``prev_dir`` (a rerun) the child runs briefly and the job completes.
    """
    import subprocess
    from pathlib import Path

    from perovflow.errors import EngineError

    seconds = "0.2" if prev_dir else "120"
    child = subprocess.Popen(["sleep", seconds])
    Path("child.pid").write_text(str(child.pid))
    if child.wait() != 0:
        raise EngineError(f"calculator killed by signal {-child.returncode}", "rerun it")
    return {
        "formula": "Cs4PbBr6",
        "code": "qe",
        "labels": {"study": study, "rerun": bool(prev_dir)},
    }


@job
def corrupt_output_task(study: str = "demo") -> dict:
    """Writes a truncated pw.x output and parses it with the real QE parser."""
    from pathlib import Path

    from perovflow.engines.qe.calc import parse_pw_output

    Path("espresso.pwo").write_bytes(b"Program PWSCF v.6.7\n garbage \x00\x01 truncated")
    parse_pw_output(Path.cwd())
    return {"formula": "never", "labels": {"study": study}}
