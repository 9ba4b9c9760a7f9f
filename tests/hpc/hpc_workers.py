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

    from perovflow.engines.qe.run import parse_pw_output

    Path("espresso.pwo").write_bytes(b"Program PWSCF v.6.7\n garbage \x00\x01 truncated")
    parse_pw_output(Path.cwd())
    return {"formula": "never", "labels": {"study": study}}


@job
def memory_task(megabytes: int, study: str = "demo", prev_dir: str | None = None) -> dict:
    """Holds ``megabytes`` of memory for 8 s (longer than SLURM's 2 s sampling); a rerun
    (``prev_dir`` set) holds none."""
    import time

    block = bytearray(0 if prev_dir else megabytes * 1024 * 1024)
    for i in range(0, len(block), 4096):  # touch every page: resident, not just reserved
        block[i] = 1
    time.sleep(8 if not prev_dir else 0.1)
    return {"formula": "CsPbBr3", "labels": {"study": study, "held_mb": len(block) >> 20}}


@job
def logged_task(n: int, log: str, seconds: float = 0.3, study: str = "stress") -> dict:
    """Appends ``n`` to ``log`` (one O_APPEND write per run: counts real executions)."""
    import time

    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{n} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    time.sleep(seconds)
    return {"formula": "CsPbBr3", "labels": {"study": study, "n": n}}


def stress_submit(log: str, n: int) -> None:
    """Submit the stress study (``n`` logged tasks); print the report as JSON."""
    import json

    from jobflow import Flow

    from perovflow.hpc.submit import submit_flow

    report = submit_flow(Flow([logged_task(i, log) for i in range(n)], name="stress"))
    print(json.dumps(report.as_dict()))


def stress_launch(n: int, timeout: float = 240.0) -> None:
    """Check out and run fireworks (FireWorks' rapidfire, ping thread on) until ``n`` are
    COMPLETED on the LaunchPad or ``timeout`` passes."""
    import time

    from fireworks import FWorker
    from fireworks.core.rocket_launcher import rapidfire

    from perovflow.hpc.launchpad import get_launchpad
    from perovflow.hpc.rocket import spooling_store

    spooling_store()
    lp = get_launchpad()
    end = time.time() + timeout
    while time.time() < end:
        if lp.fireworks.count_documents({"state": "COMPLETED"}) >= n:
            return
        rapidfire(lp, FWorker(), strm_lvl="ERROR")
        time.sleep(0.1)
    raise SystemExit(f"timed out: {lp.fireworks.count_documents({'state': 'COMPLETED'})} of {n}")


def stress_read(n: int, seconds: float) -> None:
    """Read status and query in a loop for ``seconds``; print reads done and the largest
    counts seen (neither may ever exceed ``n``)."""
    import json
    import time

    from perovflow.errors import InputError
    from perovflow.hpc.query import query, status

    reads, most_fws, most_rows = 0, 0, 0
    end = time.time() + seconds
    while time.time() < end:
        try:
            st = status(study="stress")
        except InputError:  # not submitted yet
            time.sleep(0.05)
            continue
        rows = query(study="stress", fields=["labels.n"])
        most_fws, most_rows = max(most_fws, st["total"]), max(most_rows, len(rows))
        assert len({r["labels.n"] for r in rows}) == len(rows), "duplicate results"
        reads += 1
    print(json.dumps({"reads": reads, "most_fws": most_fws, "most_rows": most_rows}))


if __name__ == "__main__":
    if sys.argv[1] == "submit":
        stress_submit(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "launch":
        stress_launch(int(sys.argv[2]))
    elif sys.argv[1] == "read":
        stress_read(int(sys.argv[2]), float(sys.argv[3]))
    else:
        run_worker(int(sys.argv[1]), int(sys.argv[2]))
