"""Helpers for the tests against the real one-node SLURM (scripts/slurm-up.sh)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from perovflow.hpc.launchpad import get_launchpad
from perovflow.hpc.query import status

HERE = Path(__file__).parent
CTLD_PID = Path("/run/slurmctld.pid")


@pytest.fixture(autouse=True)
def job_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Batch jobs inherit this environment (sbatch --export=ALL): test job module on the path.

    Autouse in every module that imports it.
    """
    monkeypatch.setenv("PYTHONPATH", f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.chdir(tmp_path)


def wait_for(check: Callable[[], bool], timeout: float = 120, what: str = "") -> None:
    end = time.time() + timeout
    while time.time() < end:
        if check():
            return
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}: {status()['counts']}")


def fw_doc(study: str, **match: object) -> dict:
    return get_launchpad().fireworks.find_one({"spec._perovflow.study": study, **match})


def launch_of(study: str) -> dict:
    lp = get_launchpad()
    docs = list(lp.launches.find({"fw_id": fw_doc(study)["fw_id"]}).sort("launch_id", -1))
    return docs[0]


def sacct_field(job_id: str, field: str) -> str:
    """One field of SLURM's accounting record of the job allocation (not via perovflow)."""
    out = subprocess.run(
        ["sacct", "-n", "-P", "-X", "-j", job_id, "-o", field],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.strip()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _node_up() -> bool:
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True)
    return out.returncode == 0 and out.stdout.strip().rstrip("*~#") in {
        "idle", "mixed", "allocated", "completing",
    }  # fmt: skip


@contextlib.contextmanager
def controller_down() -> Iterator[None]:
    """Stop slurmctld for the block; always start it again and wait for the node."""
    pid = int(CTLD_PID.read_text())
    os.kill(pid, signal.SIGTERM)
    try:
        for _ in range(60):
            if not _alive(pid):
                break
            time.sleep(0.5)
        assert not _alive(pid), "slurmctld did not stop"
        yield
    finally:
        if not (CTLD_PID.is_file() and _alive(int(CTLD_PID.read_text()))):
            subprocess.run(["slurmctld"], check=False)
        end = time.time() + 90
        while time.time() < end and not _node_up():
            time.sleep(1)
