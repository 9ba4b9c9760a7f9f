"""pw.x failures whose error message is lost, reproduced with real pw.x (seconds each).

The case: rock-salt NaCl (2 atoms, 20 Ry, one complex k-point) with 220 bands for 230
plane waves. Davidson's subspace then exceeds the basis and LAXlib's ``cdiaghg`` aborts
("S matrix not positive definite"). Run as an Open MPI singleton (bare ``pw.x``), pw.x dies
with a garbage exit status and none of its message reaches the output or a CRASH file;
under ``mpirun`` the message is printed. This is deterministic on QE 6.7 (Debian).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure

from perovflow.engines.qe.failures import diagnose, last_stage
from perovflow.engines.qe.jobs import QEDosMaker, QEStaticMaker, run_qe_task
from perovflow.errors import EngineError

pytestmark = pytest.mark.qe
TOO_MANY_BANDS = {"ecutwfc": 20, "ecutrho": 80, "kpts": [1, 1, 1], "nbnd": 220, "conv_thr": 1e-6}


def nacl() -> Structure:
    return Structure(
        Lattice.from_parameters(3.96, 3.96, 3.96, 60, 60, 60), ["Na", "Cl"], [[0] * 3, [0.5] * 3]
    )


def _run(maker, directory: Path, prev_dir=None):
    directory.mkdir()
    return run_qe_task(maker, nacl(), prev_dir, directory)


def test_lost_diagonalization_abort_is_recognised_and_recovered(tmp_path, monkeypatch):
    monkeypatch.setenv("PEROVFLOW_PARALLEL__MPI_PREFIX", "")  # a singleton, as before
    scf = _run(QEStaticMaker(protocol="fast", input_set_overrides=TOO_MANY_BANDS), tmp_path / "s")
    first = Path(scf.dir_name, "espresso.pwo.attempt1").read_text()
    # what pw.x itself left: it stopped inside the first SCF iteration, with no message at all
    assert "iteration #  1" in first and "Error in routine" not in first and "JOB DONE" not in first
    assert not list(Path(scf.dir_name).glob("CRASH*"))
    assert [r.handler for r in scf.recovery] == ["DiagonalizationHandler"]
    assert "message lost" in scf.recovery[0].error and "SCF iteration 1" in scf.recovery[0].error
    assert scf.input_parameters["input_data"]["electrons"]["diagonalization"] == "cg"
    assert scf.converged

    # the same abort in the band-structure step of an nscf run, restarted from the scf density
    nscf = _run(
        QEDosMaker(protocol="fast", input_set_overrides=TOO_MANY_BANDS),
        tmp_path / "n",
        scf.dir_name,
    )
    first = Path(nscf.dir_name, "espresso.pwo.attempt1").read_text()
    assert "Band Structure Calculation" in first and "Error in routine" not in first
    assert [r.handler for r in nscf.recovery] == ["DiagonalizationHandler"]
    assert "band structure calculation" in nscf.recovery[0].error
    assert nscf.converged


def test_mpirun_launch_prints_the_message(tmp_path, monkeypatch):
    if not shutil.which("mpirun"):
        pytest.fail("mpirun (openmpi-bin) is needed: scripts/setup.sh installs it")
    monkeypatch.setenv("PEROVFLOW_PARALLEL__RANKS", "1")  # the automatic launch, one rank
    doc = _run(QEStaticMaker(protocol="fast", input_set_overrides=TOO_MANY_BANDS), tmp_path / "m")
    first = Path(doc.dir_name, "espresso.pwo.attempt1").read_text()
    assert "S matrix not positive definite" in first  # pw.x's own words, under mpirun
    assert doc.recovery[0].error == "diagonalization failed" and doc.converged


def test_a_killed_run_is_not_taken_for_a_diagonalization_failure(
    tmp_path, monkeypatch, fake_executable
):
    # stand-in at the executable boundary: prints pw.x's SCF header, then dies of SIGKILL
    fake = fake_executable(
        "killed.sh",
        "echo '     Program PWSCF v.6.7MaX starts'\necho '     iteration #  1     ecut='\n"
        "kill -9 $$\n",
    )
    monkeypatch.setenv("PEROVFLOW_QE__PW_CMD", str(fake))
    monkeypatch.setenv("PEROVFLOW_PARALLEL__MPI_PREFIX", "")
    with pytest.raises(EngineError) as err:
        _run(QEStaticMaker(protocol="fast", input_set_overrides=TOO_MANY_BANDS), tmp_path / "k")
    assert "killed by signal 9 during SCF iteration 1" in err.value.problem
    assert diagnose(tmp_path / "k").signal == 9


@pytest.mark.parametrize(
    ("text", "stage"),
    [
        ("srun: error: Unable to confirm allocation", "launch"),
        ("Program PWSCF v.6.7MaX\nStarting wfcs are 9 randomized", "setup"),
        ("Program PWSCF\niteration #  1\n iteration #  2", "scf"),
        (
            "Program PWSCF\niteration #  1\nconvergence has been achieved\n!    total energy",
            "ionic",
        ),
        (
            "Program PWSCF\nEnd of self-consistent calculation\n!    total energy\niteration #  4",
            "scf",
        ),
        ("Program PWSCF\nBand Structure Calculation\n Davidson diagonalization", "bands"),
        (
            "Program PWSCF\nBand Structure Calculation\nEnd of band structure calculation\nJOB DONE.",
            "done",
        ),
    ],
)
def test_last_stage_reached(text, stage):
    assert last_stage(text)[0] == stage
