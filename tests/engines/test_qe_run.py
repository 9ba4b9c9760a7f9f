"""Real pw.x / projwfc.x runs on cubic CsPbBr3 (5 atoms, 20 Ry, tiny k grids; seconds each)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from qe_run import run  # helper next to this file

from perovflow.engines.pseudos import get_pseudos, md5_file
from perovflow.engines.qe.jobs import (
    SAVE_FILES,
    QEBandsMaker,
    QEDosMaker,
    QERelaxMaker,
    QEStaticMaker,
    link_charge_density,
)
from perovflow.errors import EngineError

pytestmark = [pytest.mark.qe, pytest.mark.cp2k]
TINY = {"ecutwfc": 20, "ecutrho": 80, "kpts": [1, 1, 1], "conv_thr": 1e-6}
NO_K = {k: v for k, v in TINY.items() if k != "kpts"}


def cspbbr3(pb_shift: float = 0.0) -> Structure:
    return Structure(
        Lattice.cubic(5.87),
        ["Cs", "Pb", "Br", "Br", "Br"],
        [[0, 0, 0], [0.5 + pb_shift, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )


def test_scf_bands_dos_chain(tmp_path):
    # standard protocol (80 Ry, D3) with user cutoffs and grid: the user values must be used
    scf = run(
        QEStaticMaker(protocol="standard", input_set_overrides={**TINY, "kpts": [2, 2, 2]}),
        cspbbr3(), tmp_path, "scf",
    )  # fmt: skip
    out = Path(scf.dir_name, "espresso.pwo").read_text()
    assert "kinetic-energy cutoff     =      20.0000  Ry" in out
    assert "DFT-D3 Dispersion" in out  # QE 6.7 runs Grimme D3 for vdw_corr='dft-d3'
    assert scf.code_version.startswith("6.7") and scf.converged
    # PBE without SOC: direct gap at R, ~1.3-1.8 eV (GTH Pb q4 at a = 5.87 Å: ~1.35 eV)
    gap = scf.electronic.band_gap_eV
    assert 1.0 < gap < 2.5 and scf.electronic.is_direct
    k_r = np.argmin(np.linalg.norm(np.abs(scf.kpoints["fractional"]) - 0.5, axis=1))  # R
    eig = np.array(scf.eigenvalues)[0]
    assert eig[k_r, 16] == pytest.approx(scf.electronic.vbm_eV)  # 34 e- -> band 17 is the VBM
    used = get_pseudos(["Cs", "Pb", "Br"], "qe")
    for p in scf.pseudopotentials:
        assert p.md5 == md5_file(used[p.element].path) and p.name in out  # the file pw.x read
    assert scf.walltime_s > 0 and np.allclose(scf.forces_eV_per_A, 0, atol=1e-3)  # symmetric

    bands = run(
        QEBandsMaker(
            protocol="fast",
            input_set_overrides=TINY | {"kpts": None}
            if False
            else {k: v for k, v in TINY.items() if k != "kpts"},
            line_density=4,
        ),
        cspbbr3(),
        tmp_path,
        "bands",
        scf.dir_name,
    )
    labels = set(bands.bandstructure["labels"].values())
    assert {"\\Gamma", "X", "M", "R"} <= labels  # Setyawan–Curtarolo path of a cubic cell
    link_charge_density(scf.dir_name, tmp_path / "probe")  # what bands/dos start from
    assert sorted(p.name for p in (tmp_path / "probe" / "pwscf.save").iterdir()) == sorted(
        SAVE_FILES
    )
    assert bands.electronic.band_gap_eV == pytest.approx(gap, abs=0.05)

    dos = run(
        QEDosMaker(protocol="fast", input_set_overrides=NO_K | {"kspacing": 1.0}),
        cspbbr3(),
        tmp_path,
        "dos",
        scf.dir_name,
    )
    files = {p.name for p in Path(dos.dir_name).iterdir()}
    assert "pwscf.pdos_tot" in files and "projwfc.out" in files
    assert any(f.startswith("pwscf.pdos_atm#2(Pb)") for f in files)
    assert len(dos.dos["energies_eV"]) == len(dos.dos["total"]) > 10
    # CsPbBr3 band edges (independent fact): VBM mostly Br 4p, CBM mostly Pb 6p
    proj = dos.projections
    w, e = np.array(proj["weights"]), np.array(proj["energies"])
    vbm, cbm = np.argmin(abs(e - scf.electronic.vbm_eV)), np.argmin(abs(e - scf.electronic.cbm_eV))
    assert w[vbm, 2:].sum() > 0.5 * w[vbm].sum() and np.argmax(w[cbm]) == 1


def test_relax_moves_off_centre_pb_back_and_lowers_forces(tmp_path):
    doc = run(
        QERelaxMaker(protocol="fast", input_set_overrides=TINY), cspbbr3(0.02), tmp_path, "relax"
    )
    assert doc.converged and doc.max_force_eV_per_A < 0.1  # fast protocol fmax_bulk
    energies = [f["energy_eV"] for f in doc.trajectory]
    assert energies[-1] < energies[0]
    pb = np.array(doc.structure["sites"][1]["abc"])
    assert abs(pb[0] - 0.5) < 0.02 * 0.5  # back towards the centrosymmetric site


@pytest.mark.parametrize(
    ("override", "handler", "key", "check"),
    [
        (
            {"electron_maxstep": 2},
            "SCFConvergenceHandler",
            "electrons",
            lambda e: e["mixing_beta"] < 0.4,
        ),
        ({"nbnd": 10}, "TooFewBandsHandler", "system", lambda s: s["nbnd"] >= 17),
    ],
)
def test_static_failures_are_recovered(tmp_path, override, handler, key, check):
    doc = run(
        QEStaticMaker(protocol="fast", input_set_overrides=TINY | override),
        cspbbr3(),
        tmp_path,
        "x",
    )
    assert [r.handler for r in doc.recovery] == [handler] and doc.converged
    assert check(doc.input_parameters["input_data"][key])
    assert Path(doc.dir_name, "espresso.pwo.attempt1").is_file()  # the failed output is kept


def test_bfgs_failure_restarts_from_last_geometry(tmp_path):
    trap = {"trust_radius_ini": 0.8, "trust_radius_min": 0.79, "trust_radius_max": 0.8}
    doc = run(
        QERelaxMaker(protocol="fast", input_set_overrides=TINY | trap),
        cspbbr3(0.02),
        tmp_path,
        "bfgs",
    )
    assert "BFGSHandler" in [r.handler for r in doc.recovery] and doc.converged
    assert Path(doc.dir_name, "restart_geometry.json").is_file()


def test_walltime_restart_continues_relaxation(tmp_path):
    doc = run(
        QERelaxMaker(protocol="fast", input_set_overrides=TINY | {"max_seconds": 2}, max_attempts=8),
        cspbbr3(0.02), tmp_path, "wall",
    )  # fmt: skip
    assert "WalltimeHandler" in [r.handler for r in doc.recovery] and doc.converged
    assert doc.input_parameters["input_data"]["control"]["max_seconds"] > 2


def test_killed_run_gives_engine_error_after_max_attempts(tmp_path):
    with pytest.raises(EngineError) as err:
        run(
            QEStaticMaker(
                protocol="fast", input_set_overrides=TINY, walltime_s=0.3, max_attempts=2
            ),
            cspbbr3(),
            tmp_path,
            "kill",
        )
    assert "still failing after 2 attempts" in err.value.problem


def test_crashed_executable_reports_output_tail(tmp_path, monkeypatch, fake_executable):
    fake = fake_executable(
        "crash.sh",
        "echo 'Program PWSCF v.6.7MaX starts'\necho 'segmentation fault somewhere'\nexit 1\n",
    )
    monkeypatch.setenv("PEROVFLOW_QE__PW_CMD", str(fake))
    with pytest.raises(EngineError) as err:
        run(QEStaticMaker(protocol="fast", input_set_overrides=TINY), cspbbr3(), tmp_path, "crash")
    assert "exited with status 1" in err.value.problem and "segmentation fault" in err.value.problem


def test_cli_calc_json_and_missing_pseudo(cli, tmp_path, monkeypatch):
    cif = tmp_path / "CsPbBr3.cif"
    cspbbr3().to(filename=str(cif))
    code, out, err = cli("calc", "scf", cif, "--protocol", "fast", "--set", "ecutwfc=20",
                         "--set", "ecutrho=80", "--set", "kpts=[1,1,1]", "--dir", tmp_path / "c", "--json")  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert data["code"] == "qe" and data["energy_eV"] < 0 and data["band_gap_eV"] > 0.5
    assert data["walltime_s"] > 0 and Path(data["dir"], "espresso.pwo").is_file()
    folder = tmp_path / "upf"
    folder.mkdir()
    (folder / "Cs.upf").write_text('<PP_HEADER z_valence="9.0"/>')
    monkeypatch.setenv("PEROVFLOW_QE__PSEUDO_DIR", str(folder))
    code, out, err = cli("calc", "scf", cif, "--protocol", "fast")
    assert code == 2 and err.count("\n") == 1 and "no pseudopotential for Br" in err
    assert os.environ["PEROVFLOW_QE__PSEUDO_DIR"] in err


def test_relaxation_out_of_ionic_steps_continues_from_last_geometry(tmp_path):
    """pw.x exits with status 3 when ``nstep`` runs out; the next attempt goes on from there."""
    doc = run(
        QERelaxMaker(protocol="fast", input_set_overrides=TINY | {"nstep": 4}),
        cspbbr3(0.02), tmp_path, "nstep",
    )  # fmt: skip
    assert "MaxStepsHandler" in [r.handler for r in doc.recovery] and doc.converged
    first = Path(doc.dir_name, "espresso.pwo.attempt1").read_text()
    assert "The maximum number of steps has been reached" in first  # pw.x's own words
    assert doc.max_force_eV_per_A < 0.1  # fast protocol fmax_bulk
