"""Restart from an earlier run (prev_dir), SLURM-derived max_seconds, truncated pw.x output.

Real pw.x on cubic CsPbBr3 (5 atoms, 20 Ry, Gamma only): a relax with Pb pushed off centre is
stopped by pw.x after 2 ionic steps (nstep=2, pw.x exits with status 3: a fizzled job), and
the restart must begin at the geometry pw.x printed last.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import time
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from perovflow.engines.qe.jobs import QERelaxMaker, QEStaticMaker, run_qe_task
from perovflow.engines.qe.restart import prepare_restart
from perovflow.engines.qe.run import parse_pw_output
from perovflow.engines.runner import parse_slurm_time, slurm_remaining_s, slurm_stop_after_s
from perovflow.errors import EngineError, InputError

RY_EV = 13.605693122994
TINY = {"ecutwfc": 20, "ecutrho": 80, "kpts": [1, 1, 1], "conv_thr": 1e-6}
LOOSE = {"forc_conv_thr": 1e-2, "etot_conv_thr": 1e-3}  # Ry/bohr, Ry: a few BFGS steps


def cspbbr3(pb_shift: float = 0.0, a: float = 5.87) -> Structure:
    return Structure(
        Lattice.cubic(a),
        ["Cs", "Pb", "Br", "Br", "Br"],
        [[0, 0, 0], [0.5 + pb_shift, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )


def energies_Ry(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"^!\s+total energy\s+=\s+(\S+) Ry", text, re.M)]


def total_forces(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"Total force =\s+(\S+)", text)]


def scf_accuracy(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"estimated scf accuracy\s+<\s+(\S+) Ry", text)]


def last_positions_block(text: str) -> np.ndarray:
    """The last ATOMIC_POSITIONS (angstrom) block, read independently of the code under test."""
    block = text[text.rindex("ATOMIC_POSITIONS (angstrom)") :].splitlines()[1:6]
    return np.array([[float(v) for v in line.split()[1:4]] for line in block])


@pytest.fixture(scope="module")
def fizzled(tmp_path_factory) -> Path:
    """A relax that pw.x stopped after 2 ionic steps (exit status 3): the job failed."""
    directory = tmp_path_factory.mktemp("fizzled")
    maker = QERelaxMaker(
        protocol="fast", input_set_overrides=TINY | LOOSE | {"nstep": 2}, max_attempts=1
    )
    with pytest.raises(EngineError):
        run_qe_task(maker, cspbbr3(0.03), None, directory)
    return directory


@pytest.mark.qe
@pytest.mark.cp2k
def test_relax_restarts_from_last_geometry_and_density(fizzled, tmp_path):
    old = (fizzled / "espresso.pwo").read_text()
    assert "maximum number of steps has been reached" in old and len(energies_Ry(old)) == 2
    maker = QERelaxMaker(protocol="fast", input_set_overrides=TINY | LOOSE)
    doc = run_qe_task(maker, cspbbr3(0.03), str(fizzled), tmp_path)
    new = (tmp_path / "espresso.pwo").read_text()
    # the first geometry of the restart is the last one the killed run printed
    assert np.allclose(doc.trajectory[0]["positions"], last_positions_block(old), atol=1e-6)
    # ... which is further down the energy surface than where the first run started
    assert energies_Ry(new)[0] < energies_Ry(old)[0] and energies_Ry(new)[0] < energies_Ry(old)[1]
    assert total_forces(new)[0] < total_forces(old)[0]
    assert doc.converged and max(total_forces(new)[-1:]) < 1e-2
    assert "The initial density is read from file" in new  # startingpot='file'
    rec = doc.recovery[0]
    assert rec.handler == "PrevDirRestart" and rec.attempt == 0 and "ionic steps" in rec.error
    assert doc.input_parameters["input_data"]["electrons"]["startingpot"] == "file"
    pb_in = doc.input_structure["sites"][1]["abc"][0]  # provenance: the structure given
    assert pb_in == pytest.approx(0.53)


@pytest.mark.qe
@pytest.mark.cp2k
def test_static_restart_reuses_density_only(fizzled, tmp_path):
    # an scf of the geometry the killed relax reached: its saved density belongs to it
    old = (fizzled / "espresso.pwo").read_text()
    structure = cspbbr3()
    for i, xyz in enumerate(last_positions_block(old)):
        structure.replace(i, structure[i].species, xyz, coords_are_cartesian=True)
    doc = run_qe_task(
        QEStaticMaker(protocol="fast", input_set_overrides=TINY), structure, str(fizzled), tmp_path
    )
    assert not any("_restart_structure" in str(a) for a in doc.recovery[0].actions)
    assert np.allclose(doc.structure["sites"][1]["xyz"], last_positions_block(old)[1])
    out = (tmp_path / "espresso.pwo").read_text()
    assert "The initial density is read from file" in out
    # a converged density starts the SCF far closer than the superposition of atomic charges
    assert scf_accuracy(out)[0] < 0.1 * scf_accuracy(old)[0]


@pytest.mark.qe
@pytest.mark.cp2k
def test_user_startingpot_wins_and_other_cell_is_refused(fizzled, tmp_path):
    params = {
        "input_data": {"control": {"calculation": "scf"}, "electrons": {"startingpot": "atomic"}}
    }
    from ase.io import read

    atoms = read(fizzled / "espresso.pwi", format="espresso-in")
    new, _ = prepare_restart(fizzled, tmp_path / "a", atoms, params)
    assert new["input_data"]["electrons"]["startingpot"] == "atomic"
    assert prepare_restart(tmp_path / "gone", tmp_path / "c", atoms, params) == (params, None)
    assert (tmp_path / "a" / "pwscf.save" / "charge-density.dat").is_file()
    with pytest.raises(InputError) as err:
        run_qe_task(QERelaxMaker(protocol="fast", input_set_overrides=TINY),
                    cspbbr3(0.03, a=6.0), str(fizzled), tmp_path / "b")  # fmt: skip
    assert "another cell" in err.value.problem and "\n" not in err.value.problem


@pytest.mark.qe
@pytest.mark.cp2k
def test_killed_mid_block_and_empty_latest_output(fizzled, tmp_path):
    from ase.io import read

    old = (fizzled / "espresso.pwo").read_text()
    atoms = read(fizzled / "espresso.pwi", format="espresso-in")
    params = {"input_data": {"control": {"calculation": "relax"}, "electrons": {}}}
    prev = tmp_path / "prev"
    prev.mkdir()
    # killed while writing the 2nd ATOMIC_POSITIONS block: 3 of 5 lines, the last cut mid-number
    last = old.rindex("ATOMIC_POSITIONS (angstrom)")
    cut = old.index("\n", old.index("\n", old.index("\n", last) + 1) + 1) + 20
    (prev / "espresso.pwo.attempt1").write_text(old[:cut])
    (prev / "espresso.pwo").write_text(old[:2000])  # newest attempt died in the header
    new, record = prepare_restart(prev, tmp_path / "run", atoms, params)
    first = old.index("ATOMIC_POSITIONS (angstrom)")
    expected = last_positions_block(old[: first + 600])  # the first, complete block
    geometry = (tmp_path / "run" / new["_restart_structure"]).read_text()
    assert np.allclose(json.loads(geometry)["positions"], expected, atol=1e-6)
    assert "attempt1" in record["error"] and "killed" in record["error"]
    assert "startingpot" not in new["input_data"]["electrons"]  # no density there


@pytest.mark.qe
@pytest.mark.cp2k
def test_truncated_output_is_a_one_line_engine_error(fizzled, tmp_path):
    text = (fizzled / "espresso.pwo").read_text()
    (tmp_path / "espresso.pwo").write_text(text[: text.index("iteration #  3")])  # killed in SCF 1
    with pytest.raises(EngineError) as err:
        parse_pw_output(tmp_path, "relax")
    assert "truncated" in err.value.problem and str(tmp_path / "espresso.pwo") in err.value.problem
    assert "\n" not in err.value.problem and "rerun" in err.value.fix
    # a Fortran overflow (********) in the forces: corrupt, not a bare ValueError
    (tmp_path / "espresso.pwo").write_text(re.sub(r"(force =\s+)\S+", r"\1********", text, count=1))
    with pytest.raises(EngineError) as err:
        parse_pw_output(tmp_path, "relax")
    assert "corrupt" in err.value.problem and "\n" not in err.value.problem
    (tmp_path / "espresso.pwo").unlink()
    with pytest.raises(EngineError):
        parse_pw_output(tmp_path)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1:02:03", 3723),
        ("2-00:00:00", 172800),
        ("45:10", 2710),
        ("1-02:03:04", 93784),
        ("3-12", 3 * 86400 + 12 * 3600),
        ("UNLIMITED", None),
        ("NOT_SET", None),
        ("INVALID", None),
    ],
)
def test_parse_slurm_time(text, seconds):
    assert parse_slurm_time(text) == seconds


def _fake_squeue(folder: Path, left: str) -> Path:
    script = folder / "squeue"
    script.write_text(f'#!/bin/sh\necho "$@" > "{folder}/squeue.args"\necho "{left}"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder


def test_slurm_remaining_time_sources(tmp_path, monkeypatch):
    assert slurm_remaining_s({}) is None  # not under SLURM
    end = str(int(time.time()) + 3600)
    assert slurm_remaining_s({"SLURM_JOB_ID": "7", "SLURM_JOB_END_TIME": end}) == pytest.approx(
        3600, abs=5
    )
    monkeypatch.setenv("PATH", f"{_fake_squeue(tmp_path, '45:10')}:/usr/bin:/bin")
    assert slurm_remaining_s({"SLURM_JOB_ID": "42"}) == 2710
    assert (tmp_path / "squeue.args").read_text().split() == ["-h", "-j", "42", "-o", "%L"]
    stop = slurm_stop_after_s({"SLURM_JOB_ID": "42"})
    assert stop == pytest.approx(2710 - max(120, 0.05 * 2710))


@pytest.mark.qe
@pytest.mark.cp2k
def test_max_seconds_from_slurm_and_user_wins(tmp_path, monkeypatch):
    pw = shutil.which("pw.x")
    monkeypatch.setenv("PATH", f"{_fake_squeue(tmp_path, '1:02:03')}:{Path(pw).parent}:/bin")
    monkeypatch.setenv("SLURM_JOB_ID", "42")  # a pretend job: no srun into it
    monkeypatch.setenv("PEROVFLOW_PARALLEL__MPI_PREFIX", "")
    monkeypatch.delenv("SLURM_JOB_END_TIME", raising=False)
    auto = run_qe_task(
        QEStaticMaker(protocol="fast", input_set_overrides=TINY), cspbbr3(), None, tmp_path / "auto"
    )
    assert auto.input_parameters["input_data"]["control"]["max_seconds"] == int(3723 - 186.15)
    assert "max_seconds" in (tmp_path / "auto" / "espresso.pwi").read_text()
    user = run_qe_task(
        QEStaticMaker(protocol="fast", input_set_overrides=TINY | {"max_seconds": 500}),
        cspbbr3(), None, tmp_path / "user",
    )  # fmt: skip
    assert user.input_parameters["input_data"]["control"]["max_seconds"] == 500
    monkeypatch.setenv("SLURM_JOB_END_TIME", str(int(time.time()) + 100))  # 100 s left
    with pytest.raises(EngineError) as err:
        run_qe_task(
            QEStaticMaker(protocol="fast", input_set_overrides=TINY),
            cspbbr3(),
            None,
            tmp_path / "late",
        )
    assert "SLURM job 42 has under 60 s left" in err.value.problem
    assert not (tmp_path / "late" / "espresso.pwo").exists()  # pw.x never started
