"""Real SLURM (scripts/slurm-up.sh): launch, status, query, and the faults to survive."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from hpc_workers import checkpoint_task, crash_task, tiny_task
from jobflow import Flow
from monty.json import MontyEncoder
from slurm_helpers import (
    fw_doc,
    job_env,  # noqa: F401  (autouse fixture)
    launch_of,
    sacct_field,
    wait_for,
)

from perovflow.hpc.query import query, status
from perovflow.hpc.queue import launch
from perovflow.hpc.rerun import rerun_failed, rerun_lost
from perovflow.hpc.submit import submit_flow

pytestmark = pytest.mark.slurm
HERE = Path(__file__).parent


def test_study_with_hostile_name_runs_and_is_queryable(cli, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PEROVFLOW_SCRATCH_DIR", str(tmp_path / "scr 'q' $(touch pwned); x"))
    name = "st; rm -rf / $(touch pwned) 'q\""
    flow = Flow([tiny_task(i, study=name) for i in range(2)], name=name)
    path = tmp_path / "flow.json"
    path.write_text(json.dumps(flow.as_dict(), cls=MontyEncoder))
    assert cli("submit", str(path))[0] == 0
    code, out, err = cli("launch", "--sleep", "1", "--json")
    assert code == 0, err
    assert json.loads(out)["submitted"] == 2
    wait_for(lambda: status(study=name)["counts"]["COMPLETED"] == 2, what="2 jobs")
    code, out, _ = cli("status", "--study", name, "--json")
    jobs = json.loads(out)["jobs"]
    assert all(j["slurm_id"] and j["walltime_s"] is not None for j in jobs)
    rows = query(study=name, fields=["labels.n", "band_gap_eV"])
    assert sorted(r["labels.n"] for r in rows) == [0, 1]
    assert not list(tmp_path.rglob("pwned"))


def test_scancel_running_job_then_rerun_lost_resumes(monkeypatch) -> None:
    submit_flow(Flow([checkpoint_task(60, study="lost")], name="lost"))
    assert launch(sleep_s=1) == 1
    wait_for(lambda: fw_doc("lost")["state"] == "RUNNING", what="RUNNING")
    ldir = Path(launch_of("lost")["launch_dir"])
    wait_for(
        lambda: (ldir / "progress.txt").is_file() and int((ldir / "progress.txt").read_text()) >= 2,
        what="progress",
    )
    slurm_id = status(study="lost")["jobs"][0]["slurm_id"]
    subprocess.run(["scancel", slurm_id], check=True)
    done: list[dict] = []
    wait_for(lambda: bool(done.extend(rerun_lost(study="lost")) or done), what="lost run")
    assert fw_doc("lost")["state"] == "READY"
    assert sacct_field(slurm_id, "State").startswith("CANCELLED")  # SLURM's record
    assert "CANCELLED" in done[0]["reason"] and done[0]["fix"] == {}  # no resource fix
    job = status(study="lost")["jobs"][0]  # the cancelled launch, as SLURM recorded it
    assert (job["slurm_state"], job["killed_by"]) == ("CANCELLED", "scancel")
    (ldir / "progress.txt").write_text("58")  # speed up: pretend it got further
    assert launch(sleep_s=1) == 1
    wait_for(lambda: fw_doc("lost")["state"] == "COMPLETED", what="rerun")
    assert query(study="lost", fields=["labels.resumed_at"]) == [{"labels.resumed_at": 58}]


def test_killed_calculator_fizzles_then_rerun_failed_completes() -> None:
    submit_flow(Flow([crash_task("kill9")], name="kill9"))
    assert launch(sleep_s=1) == 1
    wait_for(lambda: fw_doc("kill9")["state"] == "RUNNING", what="RUNNING")
    ldir = Path(launch_of("kill9")["launch_dir"])
    wait_for(lambda: (ldir / "child.pid").is_file(), what="calculator started")
    os.kill(int((ldir / "child.pid").read_text()), 9)
    wait_for(lambda: fw_doc("kill9")["state"] == "FIZZLED", what="FIZZLED")
    done = rerun_failed(study="kill9", error_matches="killed by signal 9")
    assert [d["action"] for d in done] == ["rerun"]
    assert launch(sleep_s=1) == 1
    wait_for(lambda: fw_doc("kill9")["state"] == "COMPLETED", what="rerun")
    assert query(study="kill9", fields=["labels.rerun"]) == [{"labels.rerun": True}]


@pytest.mark.slow
def test_walltime_kill_restarts_from_last_step(isolated_settings) -> None:
    qfile = Path(os.environ["PEROVFLOW_PROJECT_DIR"]) / "queue.yaml"
    qfile.parent.mkdir(parents=True, exist_ok=True)
    qfile.write_text("codes:\n  analysis: {walltime: '00:01:00'}\n")
    # 240 steps x 0.5 s = 120 s of work under a 60 s limit: slurmctld enforces time limits on
    # a ~30 s cycle, so the task must outlast limit + check period + KillWait to be killed.
    submit_flow(Flow([checkpoint_task(240, study="wall")], name="wall"))
    assert launch(sleep_s=1) == 1
    done: list[dict] = []
    wait_for(lambda: bool(done.extend(rerun_lost(study="wall")) or done), 200, "walltime kill")
    first = status(study="wall")["jobs"][0]
    assert sacct_field(first["slurm_id"], "State") == "TIMEOUT"
    assert first["killed_by"] == "walltime" and "TIMEOUT" in done[0]["reason"]
    assert done[0]["fix"] == {"walltime": "0-00:02:00"}  # twice the 1-minute limit
    assert launch(sleep_s=1) == 1
    wait_for(lambda: fw_doc("wall")["state"] == "COMPLETED", timeout=150, what="restart")
    second = status(study="wall")["jobs"][0]["slurm_id"]
    assert sacct_field(second, "Timelimit") == "00:02:00"  # SLURM ran it with the new limit
    resumed = query(study="wall", fields=["labels.resumed_at"])[0]["labels.resumed_at"]
    # Resumed from the saved progress, not from step 0 (start-up eats part of the first minute).
    assert 40 <= resumed < 240


def _pw_pids(folder: Path) -> list[int]:
    """pw.x processes (ours) running in ``folder``."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if (
                proc.name.isdigit()
                and "pw.x" in (proc / "cmdline").read_bytes().decode()
                and Path(os.readlink(proc / "cwd")) == folder
            ):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


@pytest.mark.qe
def test_real_pw_killed_fizzles_then_rerun_completes() -> None:
    """kill -9 of a real pw.x (tiny CsPbBr3 cell) in a SLURM job: FIZZLED, then rerun."""
    from pymatgen.core import Lattice, Structure

    from perovflow.engines.qe.jobs import QEStaticMaker

    cell = Structure(
        Lattice.cubic(5.87),
        ["Cs", "Pb", "Br", "Br", "Br"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )
    tiny = {"ecutwfc": 20, "ecutrho": 80, "kpts": [2, 2, 2], "conv_thr": 1e-6}
    maker = QEStaticMaker(
        protocol="fast", input_set_overrides=tiny, max_attempts=1, labels={"study": "pw"}
    )
    submit_flow(Flow([maker.make(cell)], name="pw"))
    assert launch(sleep_s=1) == 1
    wait_for(lambda: fw_doc("pw")["state"] == "RUNNING", what="RUNNING")
    ldir = Path(launch_of("pw")["launch_dir"])
    wait_for(lambda: bool(_pw_pids(ldir)), timeout=60, what="pw.x started")
    for pid in _pw_pids(ldir):
        os.kill(pid, 9)
    wait_for(lambda: fw_doc("pw")["state"] == "FIZZLED", what="FIZZLED")
    assert rerun_failed(study="pw")[0]["action"] == "rerun"
    assert launch(sleep_s=1) == 1
    wait_for(lambda: fw_doc("pw")["state"] == "COMPLETED", timeout=180, what="pw.x rerun")
    rows = query(study="pw", code="qe", fields=["formula", "energy_eV", "natoms"])
    assert rows and rows[0]["formula"] == "CsPbBr3" and rows[0]["natoms"] == 5
    assert rows[0]["energy_eV"] < 0
