"""A hybrid restart whose wavefunctions on file have fewer bands: pw.x's abort and the rerun.

Replayed: the stored real pw.x outputs of that abort (tests/data/engines/qe/wfc_band_mismatch,
rock-salt NaCl, PBE with 10 bands -> PBE0 with 14). Real: the same restart run end to end.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure

from perovflow.engines.qe.handlers import WavefunctionRestartHandler, default_handlers
from perovflow.engines.qe.jobs import QEStaticMaker, run_qe_task

DATA = Path(__file__).parents[1] / "data" / "engines" / "qe" / "wfc_band_mismatch"
GAMMA = {"ecutwfc": 20, "ecutrho": 80, "kpts": [1, 1, 1], "conv_thr": 1e-8}
# pw.x's words in the 22-atom Cs4PbBr6 V_Br HSE06 restart (the case of issue 15)
SEED_ABORT = (
    "Error in routine pw_restart - read_collected_wfc (1):\n"
    "     The number of bands for this run is   229, but only   205 bands were read from file"
)
PARAMS = {"input_data": {"control": {"prefix": "pwscf", "outdir": "./"},
                         "electrons": {"startingwfc": "file", "startingpot": "file"}}}  # fmt: skip


def _failed_run(tmp_path: Path, output: str, density: bool = True) -> Path:
    """A folder as the aborted hybrid left it: its output and the PBE run's save folder."""
    save = tmp_path / "pwscf.save"
    save.mkdir(parents=True)
    shutil.copy(DATA / output, tmp_path / "espresso.pwo")
    shutil.copy(DATA / "pbe-data-file-schema.xml", save / "data-file-schema.xml")
    if density:  # the handler only asks whether the density file is there
        (save / "charge-density.dat").write_bytes(b"")
    return tmp_path


def _sets(fix: dict) -> dict:
    return {k.split("->")[-1]: v for a in fix["actions"] for k, v in a["action"]["_set"].items()}


def test_band_count_abort_reruns_from_atomic_wavefunctions_and_the_saved_density(tmp_path):
    directory = _failed_run(tmp_path, "pbe0.pwo")
    handler = WavefunctionRestartHandler()
    assert handler.check(directory)
    assert type(default_handlers()[0]) is WavefunctionRestartHandler  # before all others
    fix = handler.correct(directory, PARAMS)
    # pw.x: 14 bands asked, 10 on file; NaCl with GTH Na q9 + Cl q7 = 16 electrons in both runs
    assert fix["errors"] == ["wavefunctions on file do not fit this run (14 bands, 10 on file)"]
    assert _sets(fix) == {"startingwfc": "atomic+random", "startingpot": "file"}


def test_other_electron_count_also_restarts_the_potential_from_atoms(tmp_path):
    # the +2 cell has 16 - 2 = 14 electrons, the PBE density on file 16: not reusable
    fix = WavefunctionRestartHandler().correct(_failed_run(tmp_path, "pbe0_cation.pwo"), PARAMS)
    assert _sets(fix) == {"startingwfc": "atomic+random", "startingpot": "atomic"}
    assert "density on file has 16 electrons, this run 14" in fix["errors"][0]
    bare = tmp_path / "no-density"
    fix = WavefunctionRestartHandler().correct(_failed_run(bare, "pbe0.pwo", False), PARAMS)
    assert _sets(fix)["startingpot"] == "atomic"  # nothing on file to start from


def test_seed_message_in_the_crash_file_is_recognised(tmp_path):
    (tmp_path / "espresso.pwo").write_text("     Starting wfcs from file\n")
    (tmp_path / "CRASH").write_text(f" %%%%%%%%\n     {SEED_ABORT}\n %%%%%%%%\n")
    handler = WavefunctionRestartHandler()
    assert handler.check(tmp_path)
    fix = handler.correct(tmp_path, PARAMS)
    assert "(229 bands, 205 on file)" in fix["errors"][0]
    assert not (tmp_path / "CRASH").exists()  # the rerun writes its own
    assert not handler.check(tmp_path)  # the output alone holds no such message


def nacl() -> Structure:
    return Structure(
        Lattice.from_parameters(3.96, 3.96, 3.96, 60, 60, 60), ["Na", "Cl"], [[0] * 3, [0.5] * 3]
    )


def _energies_ry(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"^!!?\s+total energy\s+=\s+(\S+) Ry", text, re.M)]


@pytest.mark.qe
def test_pbe0_restart_from_pbe_with_other_band_count_recovers(tmp_path):
    pbe = run_qe_task(QEStaticMaker(protocol="fast", input_set_overrides=GAMMA | {"nbnd": 10}),
                      nacl(), None, tmp_path / "pbe")  # fmt: skip
    maker = QEStaticMaker(protocol="fast", xc="pbe0", input_set_overrides=GAMMA | {"nbnd": 14})
    hyb = run_qe_task(maker, nacl(), pbe.dir_name, tmp_path / "pbe0")
    first = (tmp_path / "pbe0" / "espresso.pwo.attempt1").read_text()
    assert re.search(r"this run is\s+14, but only\s+10 bands were read from file", first)
    assert [r.handler for r in hyb.recovery] == ["PrevDirRestart", "WavefunctionRestartHandler"]
    out = (tmp_path / "pbe0" / "espresso.pwo").read_text()
    assert "randomized atomic wfcs" in out and "The initial density is read from file" in out
    assert "EXX self-consistency reached" in out or "JOB DONE" in out
    # the recovered run lands on the same PBE0 energy as a PBE0 run started from scratch
    fresh = run_qe_task(maker, nacl(), None, tmp_path / "fresh")
    assert fresh.recovery == []
    e_rec = _energies_ry(out)[-1]
    e_new = _energies_ry((tmp_path / "fresh" / "espresso.pwo").read_text())[-1]
    assert e_rec == pytest.approx(e_new, abs=2e-5)
