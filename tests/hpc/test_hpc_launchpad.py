"""LaunchPad, submission (dedup, links, resources), status/query, rerun/ingest: no SLURM."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from hpc_workers import checkpoint_task, corrupt_output_task, crash_task, tiny_task
from jobflow import Flow

from perovflow.errors import InputError
from perovflow.hpc.launchpad import get_launchpad, job_config_file
from perovflow.hpc.queue import load_queue_config, make_qadapter, queue_spec
from perovflow.hpc.rerun import error_text, ingest, rerun_failed
from perovflow.hpc.submit import submit_flow
from perovflow.settings import get_settings


def run_here(tmp_path: Path) -> None:
    """What a batch job does (perovflow.hpc.rocket), for every ready firework, in-process."""
    from fireworks import FWorker
    from fireworks.core.rocket_launcher import rapidfire

    from perovflow.hpc.rocket import spooling_store

    spooling_store()
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    cwd = os.getcwd()
    try:
        os.chdir(run_dir)
        rapidfire(get_launchpad(), FWorker(), strm_lvl="ERROR")
    finally:
        os.chdir(cwd)


def states(study: str) -> list[str]:
    lp = get_launchpad()
    return sorted(d["state"] for d in lp.fireworks.find({"spec._perovflow.study": study}))


def test_same_study_twice_adds_nothing_and_results_are_queryable(tmp_path, cli, capsys) -> None:
    flow = Flow([tiny_task(i, study="s1") for i in range(4)], name="s1")
    first = submit_flow(flow)
    again = submit_flow(Flow([tiny_task(i, study="s1") for i in range(4)], name="s1"))
    assert (first.added, first.present) == (4, 0)
    assert (again.added, again.present) == (0, 4)
    run_here(tmp_path)
    assert states("s1") == ["COMPLETED"] * 4
    capsys.readouterr()  # drop the job logs
    code, out, _ = cli("query", "--study", "s1", "--where", "band_gap_eV>1.15", "--format", "json")
    assert code == 0
    gaps = sorted(r["band_gap_eV"] for r in json.loads(out))
    assert gaps == pytest.approx([1.2, 1.3])  # 1.0 + 0.1 n for n = 2, 3
    code, out, _ = cli("query", "--formula", "CsPbBr3", "--format", "csv", "--fields", "labels.n")
    assert out.splitlines()[0] == "labels.n" and sorted(out.splitlines()[1:]) == ["1", "3"]
    code, out, _ = cli("status", "--study", "s1", "--json")
    data = json.loads(out)
    assert data["counts"]["COMPLETED"] == 4 and len(data["jobs"]) == 4


def test_overlapping_study_adds_only_new_jobs_linked_to_present_ones(tmp_path) -> None:
    parent = tiny_task(1, study="ov")
    submit_flow(Flow([parent], name="ov"))
    parent2 = tiny_task(1, study="ov")  # same calculation, new uuid
    child = tiny_task(parent2.output["labels"]["n"], study="ov-child")
    report = submit_flow(Flow([parent2, child], name="ov"))
    assert (report.added, report.present) == (1, 1) and len(report.linked_to) == 1
    run_here(tmp_path)
    assert states("ov") == ["COMPLETED", "COMPLETED"]
    from perovflow.hpc.query import query

    rows = query(study="ov-child", fields=["labels.n"])
    assert rows == [{"labels.n": 1}]  # the child read the parent's output


def test_resources_per_code_and_unsafe_values_rejected(isolated_settings) -> None:
    settings = get_settings()
    qfile = Path(settings.project_dir).expanduser() / "queue.yaml"
    qfile.parent.mkdir(parents=True, exist_ok=True)
    qfile.write_text(
        "codes:\n  qe: {ntasks: 4, walltime: '03:00:00', mpi_prefix: srun, modules: [qe/7.2],"
        " env: {MY_VAR: 'a b;c'}}\n"
    )
    config = load_queue_config(get_settings())
    qe, ana = queue_spec(config, "qe"), queue_spec(config, "analysis")
    assert (qe["ntasks"], qe["walltime"], ana["ntasks"]) == (4, "03:00:00", 1)
    assert "export PEROVFLOW_QE__PARALLEL__MPI_PREFIX=srun" in qe["pre_rocket"]
    assert "export MY_VAR='a b;c'" in qe["pre_rocket"]  # quoted, never executed
    for bad in ["debug;rm -rf /", "$(touch /tmp/x)", "a\nb", "x y", "'q'"]:
        qfile.write_text(json.dumps({"adapter": {"queue": bad}}))
        with pytest.raises(InputError):
            load_queue_config(get_settings())


def test_hostile_names_never_reach_the_script_unquoted(tmp_path, monkeypatch) -> None:
    weird = tmp_path / "dir with 'quotes' $(touch pwned) ; x"
    monkeypatch.setenv("PEROVFLOW_PROJECT_DIR", str(weird / "project"))
    qa = make_qadapter(get_settings())
    qa.update({"job_name": "a;b $(c)", "pre_rocket": ""})
    from fireworks.utilities.fw_utilities import get_slug

    qa["job_name"] = get_slug(qa["job_name"])
    script = qa.get_script_str(str(weird))
    assert 'cd -- "$SLURM_SUBMIT_DIR"' in script
    launch_line = next(line for line in script.splitlines() if "perovflow.hpc.rocket" in line)
    assert all(str(weird) not in line for line in script.splitlines() if line != launch_line)
    # let bash itself parse the launch line (the python binary replaced by an echo)
    import subprocess
    import sys

    rest = launch_line.split(" ", 1)[1]
    assert launch_line.split(" ", 1)[0].strip("'") == sys.executable
    out = subprocess.run(
        ["bash", "-c", "show() { printf '%s\\n' \"$@\"; }; show " + rest],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert out[out.index("--config") + 1] == str(weird / "project" / "hpc" / "job-config.yaml")
    assert not (tmp_path / "pwned").exists()


def test_job_config_with_credentials_is_private(monkeypatch) -> None:
    monkeypatch.setenv("PEROVFLOW_STORE__URI", "mongodb://u:secret@127.0.0.1:1/x")
    path = job_config_file(get_settings())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "secret" in path.read_text()  # jobs need it; hence 0600


def test_corrupt_output_fizzles_with_error_and_launcher_survives(tmp_path) -> None:
    submit_flow(Flow([corrupt_output_task("bad"), tiny_task(5, study="bad")], name="bad"))
    run_here(tmp_path)  # must not raise
    assert states("bad") == ["COMPLETED", "FIZZLED"]
    lp = get_launchpad()
    fw = lp.fireworks.find_one({"state": "FIZZLED"})
    launch = lp.launches.find_one({"fw_id": fw["fw_id"]})
    assert "parse_pw_output" in error_text(launch)


def test_failed_job_rerun_with_prev_dir_and_error_filter(tmp_path) -> None:
    """A crashed calculator: FIZZLED; --error-matches filters; the rerun gets prev_dir."""
    import threading
    import time

    submit_flow(Flow([crash_task("crash")], name="crash"))

    def kill_child() -> None:
        for _ in range(200):
            pids = list((tmp_path / "run").rglob("child.pid"))
            if pids:
                time.sleep(0.2)
                os.kill(int(pids[0].read_text()), 9)
                return
            time.sleep(0.1)

    threading.Thread(target=kill_child, daemon=True).start()
    run_here(tmp_path)
    assert states("crash") == ["FIZZLED"]
    assert rerun_failed(error_matches="no such error") == []
    done = rerun_failed(study="crash", error_matches=r"killed by signal 9")
    assert len(done) == 1 and done[0]["restart_from_prev_dir"]
    run_here(tmp_path)
    assert states("crash") == ["COMPLETED"]
    from perovflow.hpc.query import query

    assert query(study="crash", fields=["labels.rerun"]) == [{"labels.rerun": True}]


def test_store_down_while_job_runs_spools_then_ingest(tmp_path, monkeypatch) -> None:
    from pymongo.errors import ServerSelectionTimeoutError

    from perovflow.hpc.sqlstore import SQLiteDocStore as DocStore

    submit_flow(Flow([tiny_task(9, study="down")], name="down"))
    real = DocStore.update

    def dead(self, docs, key=None):
        raise ServerSelectionTimeoutError("127.0.0.1:1: connection refused")

    monkeypatch.setattr(DocStore, "update", dead)  # the server dies while the job runs
    run_here(tmp_path)
    assert states("down") == ["FIZZLED"]
    spools = list((tmp_path / "run").rglob("perovflow-spool.json"))
    assert len(spools) == 1
    monkeypatch.setattr(DocStore, "update", real)
    done = ingest(tmp_path / "run")
    assert [d["action"] for d in done] == ["ingested"]
    assert states("down") == ["COMPLETED"]
    from perovflow.hpc.query import query

    assert query(study="down", fields=["labels.n"]) == [{"labels.n": 9}]


def test_restartable_job_gets_previous_folder(tmp_path) -> None:
    """rerun of a job whose function takes prev_dir resumes from the saved progress."""
    submit_flow(Flow([checkpoint_task(4, study="ck")], name="ck"))
    run_here(tmp_path)
    lp = get_launchpad()
    fw = lp.fireworks.find_one({"spec._perovflow.study": "ck"})
    launch = lp.launches.find_one({"fw_id": fw["fw_id"]})
    (Path(launch["launch_dir"]) / "progress.txt").write_text("3")
    lp.mark_fizzled(launch["launch_id"])  # as if it had been killed at step 3
    done = rerun_failed(study="ck")
    assert done[0]["prev_dir"] == launch["launch_dir"]
    run_here(tmp_path)
    from perovflow.hpc.query import query

    assert query(study="ck", fields=["labels.resumed_at"])[-1] == {"labels.resumed_at": 3}


def test_unknown_study_or_firework_is_one_line_error_and_changes_nothing(cli) -> None:
    submit_flow(Flow([tiny_task(1, study="known")], name="known"))
    before = get_launchpad().fireworks.find_one({})
    for args in (
        ["status", "--study", "nope"],
        ["rerun", "--lost", "--study", "nope"],
        ["rerun", "--failed", "--study", "nope"],
        ["cancel", "--study", "nope"],
        ["cancel", "--fw-id", "999"],
    ):
        code, out, err = cli(*args)
        assert code == 2 and out == "" and err.count("\n") == 1, args
        assert err.startswith("error: no ") and "(fix: " in err, err
    assert "known" in cli("status", "--study", "nope")[2]  # the fix names the known study
    assert get_launchpad().fireworks.find_one({}) == before


def test_fireworks_files_let_fireworks_load_the_project_settings(monkeypatch) -> None:
    """With store.uri set, FireWorks' own loaders read the files perovflow writes."""
    from fireworks import FWorker, LaunchPad
    from fireworks.utilities.fw_serializers import load_object_from_file

    from perovflow.hpc.fwfiles import write_fireworks_files

    uri = "mongodb://alice:s3cret@127.0.0.1:1/x"
    monkeypatch.setenv("PEROVFLOW_STORE__URI", uri)
    folder = write_fireworks_files(get_settings())
    lp_file = folder / "my_launchpad.yaml"
    assert stat.S_IMODE(lp_file.stat().st_mode) == 0o600  # it holds the password
    lp = LaunchPad.from_file(str(lp_file))  # FireWorks' own constructor, no server needed yet
    assert (lp.host, lp.uri_mode, lp.name) == (uri, True, "perovflow_fw")
    qa = load_object_from_file(str(folder / "my_qadapter.yaml"))
    assert qa.q_type == "SLURM" and "perovflow.hpc.rocket" in qa["rocket_launch"]
    assert FWorker.from_file(str(folder / "my_fworker.yaml")).name == "perovflow"
    import yaml

    fw_config = yaml.safe_load((folder / "FW_config.yaml").read_text())
    assert fw_config["CONFIG_FILE_DIR"] == str(folder)


def test_embedded_lpad_runs_fireworks_subcommands(cli, tmp_path) -> None:
    submit_flow(Flow([tiny_task(i, study="lp") for i in range(3)], name="lp"))
    run_here(tmp_path)
    cli("status")  # drop the job logs
    code, out, err = cli("lpad", "get_fws", "-s", "COMPLETED", "-d", "count")
    assert (code, json.loads(out)) == (0, 3), err
    code, out, _ = cli("lpad", "get_fws", "-s", "FIZZLED", "-d", "count")
    assert json.loads(out) == 0


def test_submit_json_prints_only_json_and_no_library_warnings(tmp_path) -> None:
    """A real ``perovflow`` process: jobflow warns about unconnected jobs, but --json and
    --quiet print the report only (stdout) and nothing else (stderr)."""
    import subprocess
    import sys

    from monty.json import MontyEncoder

    path = tmp_path / "flow.json"
    flow = Flow([tiny_task(i, study="js") for i in range(2)], name="js")
    path.write_text(json.dumps(flow.as_dict(), cls=MontyEncoder))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent), "PYTHONWARNINGS": "default"}
    cmd = [str(Path(sys.executable).with_name("perovflow")), "submit", str(path)]
    out = subprocess.run([*cmd, "--json"], env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["added"] == 2 and out.stderr == ""
    out = subprocess.run([*cmd, "--quiet"], env=env, capture_output=True, text=True, check=True)
    assert out.stdout == "study js: 0 fireworks added, 2 already present\n" and out.stderr == ""
