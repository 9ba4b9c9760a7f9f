"""Progress line and quiet libraries (perovflow.progress) on real outputs and a real run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perovflow.progress import Progress, quiet_libraries, show_progress, step_from_output

DATA = Path(__file__).parents[1] / "data" / "engines" / "qe" / "cspbbr2_lsda"


def test_step_from_real_pw_outputs():
    text = (DATA / "espresso.pwo").read_text()
    lines = text.splitlines()
    # read by hand from the stored pw.x 6.7 scf: up to line 201, iteration 3 had the
    # accuracy 0.01362024 Ry; the run ends at iteration 30 with 0.00000004 Ry
    assert step_from_output("\n".join(lines[:201])) == "SCF iteration 3, accuracy 0.01362024 Ry"
    assert step_from_output(text[-6000:]) == "SCF iteration 30, accuracy 0.00000004 Ry"
    # the stored nscf computes 2 k-points ("Computing kpt #: 2 of 2" is its last)
    nscf = (DATA / "dos" / "espresso.pwo").read_text()
    assert step_from_output(nscf) == "bands: k-point 2 of 2"
    assert step_from_output("nothing known here") == ""


def test_step_from_real_cp2k_output():
    import gzip

    path = Path(__file__).parents[1] / "data" / "engines" / "cp2k" / "cs4pbbr6_cluster"
    with gzip.open(path / "cp2k.out.gz", "rt") as handle:
        lines = handle.read().splitlines()
    # read by hand: SCF line 892 of the stored CP2K run is step 19, convergence 0.00001002
    assert step_from_output("\n".join(lines[:892])) == "SCF step 19, convergence 0.00001002"


def test_progress_counts_real_jobflow_jobs(tmp_path, monkeypatch):
    from jobflow import Flow, job, run_locally
    from jobflow.core.store import JobStore
    from maggma.stores import MemoryStore

    @job
    def add(a: int, b: int) -> int:
        return a + b

    first = add(1, 2)
    flow = Flow([first, add(first.output, 3)])  # two jobs
    monkeypatch.chdir(tmp_path)
    with Progress("test", show=False) as progress:
        progress.total = 2
        run_locally(flow, store=JobStore(MemoryStore()), create_folders=True)
    assert progress.done == 2
    assert progress.line().startswith("test: 2/2 jobs · ") and progress.current.endswith("add")


def test_no_progress_without_terminal(capsys):
    # pytest captures stderr: not a TTY, so never a spinner; --quiet/--json never either
    assert not show_progress()
    assert not show_progress(quiet=True) and not show_progress(as_json=True)


def test_quiet_libraries_sends_library_warnings_to_the_log(tmp_path, capsys):
    import os
    import warnings

    from monty.os import cd  # monty's deprecated cd: the FutureWarning jobflow triggers

    log = tmp_path / "perovflow.log"
    with quiet_libraries(log):
        with cd(tmp_path):
            assert os.getcwd() == os.path.realpath(tmp_path)
        print("CHGNet-like banner")
        warnings.warn("perovflow's own warning", UserWarning, stacklevel=1)  # from this test file
    err = capsys.readouterr()
    text = log.read_text()
    assert "cd is deprecated" in text and "CHGNet-like banner" in text
    assert "cd is deprecated" not in err.err and err.out == ""
    assert "perovflow's own warning" in text  # a test file is not perovflow code


@pytest.mark.mlip
def test_run_json_is_pure_json_and_stderr_has_no_library_warnings(tmp_path, cli):
    study = tmp_path / "tiny.yaml"
    study.write_text(
        "study: migration\nname: tiny-br-hop\nprotocol: fast\ncode: mlip\nprerelax: null\n"
        "structure: {prototype: CsPbBr3-cubic, cell: primitive}\n"
        "migration: {vacancy_element: Br, relax_bulk: false,\n"
        "  neb: {nimages: 1, fmax: 0.5, method: plain}}\n"
    )
    code, out, err = cli("run", study, "-w", tmp_path / "work", "--json")
    assert code == 0, err
    data = json.loads(out)  # the whole of stdout is one JSON document
    assert data["failed"] == [] and data["jobs"] >= 2
    assert "Warning" not in err and "CHGNet" not in err
    log = (tmp_path / "work" / "perovflow.log").read_text()
    assert "FutureWarning" in log  # jobflow's per-job warning went to the study's log
