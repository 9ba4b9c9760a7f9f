"""Real SLURM faults: controller down, memory kill; FireWorks' own lpad on a SLURM study."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from hpc_workers import checkpoint_task, corrupt_output_task, memory_task, tiny_task
from jobflow import Flow
from slurm_helpers import (
    controller_down,
    fw_doc,
    job_env,  # noqa: F401  (autouse fixture)
    sacct_field,
    wait_for,
)

from perovflow.hpc.launchpad import get_launchpad
from perovflow.hpc.query import query, status
from perovflow.hpc.queue import launch
from perovflow.hpc.rerun import rerun_lost
from perovflow.hpc.submit import submit_flow

pytestmark = pytest.mark.slurm
HERE = Path(__file__).parent


def test_controller_down_rerun_lost_and_cancel_change_nothing_and_job_completes(cli) -> None:
    submit_flow(Flow([checkpoint_task(50, study="ctld")], name="ctld"))  # 25 s of work
    assert launch(sleep_s=1) == 1
    wait_for(lambda: fw_doc("ctld")["state"] == "RUNNING", what="RUNNING")
    lp = get_launchpad()
    before = (lp.launches.count_documents({}), fw_doc("ctld")["spec"]["_perovflow"])
    with controller_down():
        code, out, err = cli("rerun", "--lost", "--study", "ctld")
        assert code == 2 and out == ""
        assert (
            err.startswith("error: the SLURM controller does not answer") and err.count("\n") == 1
        )
        assert fw_doc("ctld")["state"] == "RUNNING"  # nothing changed
        assert (lp.launches.count_documents({}), fw_doc("ctld")["spec"]["_perovflow"]) == before
        code, out, err = cli("cancel", "--study", "ctld")
        assert code == 2 and err.startswith("error: scancel failed") and err.count("\n") == 1
        # not defused; still running, or finished by the job itself (slurmd runs it on)
        assert fw_doc("ctld")["state"] in {"RUNNING", "COMPLETED"}
    wait_for(lambda: fw_doc("ctld")["state"] == "COMPLETED", timeout=120, what="completion")
    # it ran once, from step 0: never restarted
    assert query(study="ctld", fields=["labels.resumed_at"]) == [{"labels.resumed_at": 0}]
    slurm_id = status(study="ctld")["jobs"][0]["slurm_id"]
    wait_for(lambda: sacct_field(slurm_id, "State") == "COMPLETED", 60, "SLURM's record")
    assert status(study="ctld")["jobs"][0]["slurm_state"] == "COMPLETED"


def test_memory_kill_is_reported_and_rerun_gets_twice_the_memory(isolated_settings) -> None:
    qfile = Path(os.environ["PEROVFLOW_PROJECT_DIR"]) / "queue.yaml"
    qfile.parent.mkdir(parents=True, exist_ok=True)
    qfile.write_text("codes:\n  analysis: {mem: 250M}\n")
    submit_flow(Flow([memory_task(400, study="oom")], name="oom"))  # 400 MB > 250 MB
    assert launch(sleep_s=1) == 1
    done: list[dict] = []
    wait_for(lambda: bool(done.extend(rerun_lost(study="oom")) or done), 90, "memory kill")
    first = status(study="oom")["jobs"][0]
    # SLURM's own record: killed (signal 9) with MaxRSS above the 250 MB request
    assert sacct_field(first["slurm_id"], "ExitCode") == "0:9"
    assert first["max_rss_mb"] > 250 and first["killed_by"] == "memory"
    assert done[0]["fix"] == {"mem": "500M"}, (done, first)
    assert launch(sleep_s=1) == 1
    wait_for(lambda: fw_doc("oom")["state"] == "COMPLETED", timeout=90, what="rerun")
    second = status(study="oom")["jobs"][0]["slurm_id"]
    # slurmdbd can answer with a partial record ('16?') for a moment after the job ends
    wait_for(lambda: not sacct_field(second, "ReqMem").endswith("?"), 30, "sacct record")
    assert sacct_field(second, "ReqMem") == "500M"


def _lpad(cli, *args: str) -> str:
    code, out, err = cli("lpad", *args)
    assert code == 0, err
    return out


def test_fireworks_lpad_commands_on_a_study_run_through_slurm(cli) -> None:
    ok, bad, slow = tiny_task(1, study="fw"), corrupt_output_task("fw"), checkpoint_task(120, "fw")
    submit_flow(Flow([ok, bad, slow], name="fw"))
    ids = {j.name: fw_doc("fw", **{"spec._perovflow.uuid": j.uuid})["fw_id"] for j in (ok, bad)}
    slow_id = fw_doc("fw", **{"spec._perovflow.uuid": slow.uuid})["fw_id"]
    assert launch(sleep_s=1) == 3

    def state(fw_id: int) -> str:
        return get_launchpad().fireworks.find_one({"fw_id": fw_id})["state"]

    wait_for(
        lambda: (
            (state(ids["tiny_task"]), state(ids["corrupt_output_task"]), state(slow_id))
            == ("COMPLETED", "FIZZLED", "RUNNING")
        ),
        what="one done, one failed, one running",
    )
    wf = json.loads(_lpad(cli, "get_wflows", "-d", "more"))
    assert wf["name"].split("--")[0] == "fw" and len(wf["states"]) == 3
    assert json.loads(_lpad(cli, "get_fws", "-s", "COMPLETED", "-d", "ids")) == ids["tiny_task"]
    slurm_id = next(j["slurm_id"] for j in status(study="fw")["jobs"] if j["fw_id"] == slow_id)
    subprocess.run(["scancel", slurm_id], check=True)  # the running job dies without a word
    wait_for(lambda: sacct_field(slurm_id, "State").startswith("CANCELLED"), what="cancelled")
    out = _lpad(cli, "detect_lostruns", "--time", "1", "--fizzle")
    assert "Lost FireWorks: 1" in out and state(slow_id) == "FIZZLED"
    _lpad(cli, "rerun_fws", "-s", "FIZZLED")
    assert (state(ids["corrupt_output_task"]), state(slow_id)) == ("READY", "READY")
    _lpad(cli, "defuse_wflows", "-i", str(slow_id))
    # FireWorks 2.x wires defuse_wflows to its pause_wfs function: the fireworks are PAUSED
    assert (state(ids["corrupt_output_task"]), state(slow_id)) == ("PAUSED", "PAUSED")
    _lpad(cli, "defuse_fws", "-i", f"{ids['corrupt_output_task']},{slow_id}")
    assert (state(ids["corrupt_output_task"]), state(slow_id)) == ("DEFUSED", "DEFUSED")
    assert state(ids["tiny_task"]) == "COMPLETED"  # FireWorks keeps completed results
