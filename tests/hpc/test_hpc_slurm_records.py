"""SLURM's accounting records, replayed: ``sacct`` output stored from the one-node cluster
(scripts/slurm-up.sh) for a walltime kill (job 28, ``--time=1``), a memory kill (job 40,
400 MB held under ``--mem=250M``), a ``scancel`` (job 44) and a clean run (job 47)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from perovflow.hpc import slurm
from perovflow.hpc.rerun import resource_fix

SACCT = Path(__file__).parents[1] / "data" / "hpc" / "sacct_faults.txt"


@pytest.fixture
def records(monkeypatch) -> dict:
    def replay(cmd: list[str]) -> subprocess.CompletedProcess:
        assert cmd[0] == "sacct"
        return subprocess.CompletedProcess(cmd, 0, SACCT.read_text(), "")

    monkeypatch.setattr(slurm, "_run", replay)
    return slurm.accounting(["28", "40", "44", "47"])


def test_sacct_records_say_who_killed_each_job(records) -> None:
    assert {j: r["killed_by"] for j, r in records.items()} == {
        "28": "walltime", "40": "memory", "44": "scancel", "47": None,
    }  # fmt: skip
    # 440220K = 429.9 MB (the batch step's MaxRSS: 400 MB held + the Python process)
    assert records["40"]["max_rss_mb"] == pytest.approx(440220 / 1024, abs=0.1)
    assert records["28"]["elapsed_s"] == 86  # 00:01:26: the 60 s limit + check period
    assert records["47"]["slurm_state"] == "COMPLETED" and records["47"]["exit_code"] == "0:0"


def test_rerun_fix_doubles_the_exhausted_resource(records) -> None:
    spec = {"_queueadapter": {"walltime": "01:30:00", "mem": "2G"}}
    assert resource_fix(spec, records["28"]) == {"walltime": "0-03:00:00"}
    assert resource_fix(spec, records["40"]) == {"mem": "4096M"}
    assert resource_fix(spec, records["44"]) == {} == resource_fix(spec, records["47"])
    # no walltime in the spec: twice SLURM's own time limit (00:01:00)
    assert resource_fix({}, records["28"]) == {"walltime": "0-00:02:00"}


def test_slurm_durations_and_sizes() -> None:
    assert slurm.seconds("1-02:03:04") == 93784  # 86400 + 7200 + 180 + 4
    assert slurm.seconds("30") == 1800  # SLURM: a bare number is minutes
    assert slurm.seconds("05:30") == 330
    assert slurm.megabytes("2Gn") == 2048 and slurm.megabytes("512K") == 0.5


def test_a_memory_kill_whose_usage_is_not_recorded_yet_is_not_declared_lost(monkeypatch):
    # job 40's rows as slurmdbd can hold them for a moment: the step's state is there,
    # its MaxRSS (which tells a memory kill from any other failure) not yet
    early = "40|FAILED|00:00:05||0:9|250M|00:20:00\n40.batch|CANCELLED by 0|00:00:05||0:9||\n"
    ended = {"ago": 5.0}

    def replay(cmd: list[str]) -> subprocess.CompletedProcess:
        if cmd[-1] == "End":
            end = "Unknown" if ended["ago"] is None else _iso_ago(ended["ago"])
            return subprocess.CompletedProcess(cmd, 0, end + "\n", "")
        return subprocess.CompletedProcess(cmd, 0, early, "")

    monkeypatch.setattr(slurm, "_run", replay)
    rec = slurm.accounting(["40"])["40"]
    assert rec["usage_missing"] and rec["killed_by"] is None
    assert slurm.is_lost("40", rec) is None  # 5 s after its end: ask again later
    ended["ago"] = None  # its end is not in the database yet either
    assert slurm.is_lost("40", rec) is None
    ended["ago"] = 120.0  # a cluster that never records usage: decided after a minute
    assert slurm.is_lost("40", rec) == "SLURM job 40 FAILED"


def _iso_ago(seconds: float) -> str:
    import datetime as dt

    return (dt.datetime.now() - dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")


def test_a_job_accounting_still_shows_running_is_not_lost(monkeypatch):
    # the order seen on the one-node cluster: the batch step's record is final while the
    # job's own row still says RUNNING, and squeue no longer lists the job
    rows = (
        "50|RUNNING|00:00:02||0:0|250M|00:20:00\n50.batch|CANCELLED by 0|00:00:02|426020K|0:9||\n"
    )
    monkeypatch.setattr(slurm, "_run", lambda cmd: subprocess.CompletedProcess(cmd, 0, rows, ""))
    monkeypatch.setattr(slurm, "queue_state", lambda job_id: None)  # squeue: not queued
    rec = slurm.accounting(["50"])["50"]
    assert rec["slurm_state"] == "RUNNING" and slurm.is_lost("50", rec) is None


def test_a_partial_record_is_not_settled(monkeypatch):
    # seen for a moment after a job ends: the memory request as '16?', no unit known yet
    rows = "60|FAILED|00:00:02||0:9|16?|00:20:00\n60.batch|CANCELLED by 0|00:00:02|508348K|0:9||\n"
    monkeypatch.setattr(slurm, "_run", lambda cmd: subprocess.CompletedProcess(cmd, 0, rows, ""))
    rec = slurm.accounting(["60"])["60"]
    assert not rec["settled"] and slurm.is_lost("60", rec) is None
