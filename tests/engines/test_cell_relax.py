"""Cell relaxations: QE vc-relax (input, the final-scf/basis handler, a real run) and CP2K CELL_OPT."""

from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from perovflow.engines.qe.handlers import VCRelaxHandler, final_stress_kbar

DATA = Path(__file__).parents[1] / "data" / "engines" / "qe" / "vc_relax_final_scf"
KBAR_PER_GPA = 10.0
CUTOFF = {"ecutwfc": 80, "ecutrho": 320}  # Ry: P(6.00 Å) within 0.1 kbar of 120 Ry (4x4x4 k)
KPTS = [4, 4, 4]  # P(6.00 Å) within 0.9 kbar of 8x8x8 (80 Ry); 2x2x2 is 10.7 kbar off
PBE_A = (5.99, 6.01)  # published PBE lattice of cubic CsPbBr3 (Å), see the test's docstring
START_A = 5.93  # between experiment (5.87 Å) and PBE: fewer BFGS steps than from 5.87 Å
PRESS_CONV_KBAR = 0.3  # tighter than fast's 1 kbar (±0.012 Å in a): the user's value wins


def cspbbr3(a: float) -> Structure:
    return Structure(
        Lattice.cubic(a),
        ["Cs", "Pb", "Br", "Br", "Br"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )


def test_vc_relax_input_takes_the_protocol_thresholds_and_the_user_wins():
    from perovflow.engines.qe.inputs import cell_relax_settings

    base = {"input_data": {"control": {"calculation": "relax"}, "ions": {}}, "kpts": [2, 2, 2]}
    params = cell_relax_settings(base, "standard")
    cell = params["input_data"]["cell"]
    assert params["input_data"]["control"]["calculation"] == "vc-relax"
    # the standard protocol's stress criterion is 0.5 kbar (issue #12), at zero pressure
    assert cell == {"cell_dynamics": "bfgs", "press": 0.0, "press_conv_thr": 0.5,
                    "cell_dofree": "all"}  # fmt: skip
    user = cell_relax_settings(
        base, "standard", {"cell.press_conv_thr": 0.1, "cell_dofree": "ibrav"}
    )
    assert user["input_data"]["cell"]["press_conv_thr"] == 0.1
    assert user["input_data"]["cell"]["cell_dofree"] == "ibrav"
    assert base["input_data"]["control"]["calculation"] == "relax"  # input not modified
    fixed = cell_relax_settings(base, "standard", {"calculation": "relax"})  # the user wins
    assert fixed["input_data"]["control"]["calculation"] == "relax"
    assert "cell" not in fixed["input_data"]


def test_final_scf_mismatch_restarts_vc_relax_from_the_final_cell(tmp_path):
    """Replay of a real pw.x 6.7 vc-relax of cubic CsPbBr3 at 25 Ry (GTH), started at 5.87 Å.

    Read by hand in the output: BFGS converged on a 5.705275241 Å cell at P = -0.00 kbar,
    but the final scf with the G-vectors of that cell prints P = -9.23 kbar (threshold
    1.0 kbar), and the volume went from 1364.9317 to 1253.21737 bohr³ (-8.2 %).
    """
    with (
        gzip.open(DATA / "espresso.pwo.gz", "rb") as fin,
        open(tmp_path / "espresso.pwo", "wb") as f,
    ):
        shutil.copyfileobj(fin, f)
    shutil.copy(DATA / "espresso.pwi", tmp_path)
    stress = final_stress_kbar((tmp_path / "espresso.pwo").read_text())
    assert np.allclose(np.diag(stress), -9.23) and stress[0, 1] == 0.0
    handler = VCRelaxHandler()
    assert handler.check(tmp_path)
    fix = handler.correct(tmp_path, {"input_data": {"control": {"calculation": "vc-relax"}}})
    assert any("9.23 kbar" in e for e in fix["errors"])
    assert any("-8.2 %" in e for e in fix["errors"])
    from perovflow.engines.runner import apply_actions

    params = apply_actions({}, fix["actions"], tmp_path)
    restart = json.loads((tmp_path / params["_restart_structure"]).read_text())
    assert np.allclose(restart["cell"], np.eye(3) * 5.705275241)


def test_a_converged_vc_relax_is_left_alone(tmp_path):
    (tmp_path / "espresso.pwo").write_text("     JOB DONE.\n")
    assert not VCRelaxHandler().check(tmp_path)


@pytest.mark.qe
@pytest.mark.cp2k
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_qe_vc_relax_of_cubic_cspbbr3_lands_in_the_pbe_range(tmp_path):
    """vc-relax from 5.93 Å, above the experimental lattice (5.87 Å, Stoumpos et al., Cryst.
    Growth Des. 13, 2722 (2013)), towards the PBE one: PBE overestimates halide-perovskite lattices, and
    published PBE values for cubic CsPbBr3 lie at a = 5.99-6.01 Å (range of issue #12; e.g.
    Ghaithan et al., Crystals 10, 342 (2020), PBE-GGA).

    Settings measured here (scf pressure at a = 6.00 Å, shipped GTH family, fixed
    occupations): 80 Ry with k = 2x2x2 / 4x4x4 / 6x6x6 / 8x8x8 gives +9.86 / -0.03 / -0.75 /
    -0.85 kbar, and 4x4x4 with 60 / 80 / 120 Ry gives -1.51 / -0.03 / +0.06 kbar; with
    dP/da = -81 kbar/Å (6x6x6, 6.00-6.10 Å) the converged lattice is 5.99 Å. (An earlier
    version of this test ran 2x2x2 k, whose +10 kbar put the lattice at ~6.10 Å.) The stress
    criterion is the user's 0.3 kbar (a to ±0.004 Å), which wins over fast's 1 kbar.
    """
    from perovflow.engines.qe.jobs import QERelaxMaker, run_qe_task

    # the cheapest scf steps: occupied bands only (fixed occupations, 34 electrons), pw.x's
    # default mixing (not the protocol's cautious 0.4) for a 5-atom insulator, and conv_thr
    # kept at 1e-7 Ry in every BFGS step (pw.x would tighten it up to 100x near convergence:
    # the scf cycles grew from 7 to 12 iterations; the stress needs no more here)
    settings = {**CUTOFF, "kpts": KPTS, "conv_thr": 1e-7, "nbnd": 17, "mixing_beta": 0.7,
                "upscale": 1.0, "press_conv_thr": PRESS_CONV_KBAR}  # fmt: skip
    maker = QERelaxMaker(protocol="fast", relax_cell=True, input_set_overrides=settings)
    (tmp_path / "run").mkdir()
    doc = run_qe_task(maker, cspbbr3(START_A), None, tmp_path / "run")
    lattice = Structure.from_dict(doc.structure).lattice
    print(f"a = {lattice.a:.4f} Å, recovery: {[r.error for r in doc.recovery]}")
    assert doc.converged
    assert np.allclose(lattice.abc, lattice.a, atol=1e-4)  # stays cubic
    assert np.allclose(lattice.angles, 90.0, atol=1e-3)
    assert PBE_A[0] <= lattice.a <= PBE_A[1]
    # pw.x's own first stress (at 5.93 Å) is far above the threshold, the final one below it
    run = tmp_path / "run"
    first = run / "espresso.pwo.attempt1"
    start = (first if first.is_file() else run / "espresso.pwo").read_text()
    assert abs(float(re.search(r"P=\s*(\S+)", start).group(1))) > 3.0
    assert np.abs(np.array(doc.stress_GPa)).max() * KBAR_PER_GPA < PRESS_CONV_KBAR
    written = re.search(r"press_conv_thr\s*=\s*(\S+)", (run / "espresso.pwi").read_text())
    assert float(written.group(1)) == PRESS_CONV_KBAR


@pytest.mark.cp2k
@pytest.mark.slow
def test_cp2k_cell_opt_expands_compressed_csbr_to_zero_pressure(tmp_path):
    """CELL_OPT of CsBr (CsCl type, 2 atoms) from 4.20 Å, below experiment (4.286 Å, Wyckoff):
    CP2K's own pressure starts far above the 1 kbar threshold (the cell is compressed) and
    ends below it; PBE puts the lattice above experiment; the cell stays cubic."""
    from perovflow.engines.cp2k.jobs import CP2KRelaxMaker, run_cp2k_task

    start = Structure(Lattice.cubic(4.20), ["Cs", "Br"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    maker = CP2KRelaxMaker(
        protocol="fast", relax_cell=True, input_set_overrides={"kpoints": [2, 2, 2]}
    )
    (tmp_path / "run").mkdir()
    doc = run_cp2k_task(maker, start, None, tmp_path / "run")
    out = (tmp_path / "run" / "cp2k.out").read_text()
    pressures = [float(p) for p in re.findall(r"Internal Pressure \[bar\]\s+=\s+(\S+)", out)]
    assert pressures[0] > 1000.0 and abs(pressures[-1]) < 1000.0  # bar; threshold 1 kbar
    lattice = Structure.from_dict(doc.structure).lattice
    assert 4.286 < lattice.a < 4.286 * 1.06
    assert np.allclose(lattice.abc, lattice.a, atol=1e-3)
    assert np.abs(np.array(doc.stress_GPa)).max() * KBAR_PER_GPA < 1.0
    assert doc.converged and doc.energy_eV < doc.trajectory[0]["energy_eV"]


@pytest.mark.mlip
def test_calc_relax_cell_from_the_cli_gives_the_relaxed_lattice(cli):
    """``calc relax --cell`` with CHGNet (fit to Materials Project PBE data): the cubic
    prototype (experimental 5.87 Å) expands towards the PBE lattice (5.99-6.01 Å) and stays
    cubic; ``--cell`` on an scf is refused on one line."""
    code, out, err = cli("calc", "relax", "CsPbBr3-cubic", "--code", "mlip", "--cell", "--json")
    assert code == 0, err
    data = json.loads(out)
    lat = data["lattice"]
    assert 5.87 < lat["a"] < 6.15 and lat["a"] == pytest.approx(lat["c"], abs=1e-3)
    assert lat["alpha"] == pytest.approx(90.0, abs=0.1)
    assert lat["volume"] == pytest.approx(lat["a"] * lat["b"] * lat["c"], rel=1e-3)
    code, _, err = cli("calc", "scf", "CsPbBr3-cubic", "--code", "mlip", "--cell")
    assert code == 2 and err.startswith("error: --cell applies to relax")


@pytest.mark.cp2k
def test_cp2k_cell_opt_input_reads_back_with_pymatgen():
    """CELL_OPT with the standard protocol's 0.5 kbar (= 500 bar, CP2K's unit) tolerance."""
    from pymatgen.io.cp2k.inputs import Cp2kInput

    from perovflow.engines.cp2k.inputs import cp2k_input_set
    from perovflow.engines.cp2k.writer import render
    from perovflow.engines.pseudos import get_pseudos
    from perovflow.structures.io import to_atoms

    atoms = to_atoms(cspbbr3(5.87))
    pots = get_pseudos(["Br", "Cs", "Pb"], "cp2k")
    params, _, _ = cp2k_input_set(atoms, "relax", "standard", pots, relax_cell=True)
    ci = Cp2kInput.from_str(render(params))
    assert ci["GLOBAL"]["RUN_TYPE"].values[0].upper() == "CELL_OPT"
    opt = ci["MOTION"]["CELL_OPT"]
    assert opt["PRESSURE_TOLERANCE"].values[0] == pytest.approx(500.0)
    assert opt["EXTERNAL_PRESSURE"].values[0] == pytest.approx(0.0)
    assert ci["FORCE_EVAL"]["STRESS_TENSOR"].values[0].upper() == "ANALYTICAL"
    user, _, _ = cp2k_input_set(atoms, "relax", "standard", pots, relax_cell=True,
                                overrides={"press_conv_kbar": 0.1})  # fmt: skip
    assert user["MOTION"]["CELL_OPT"]["PRESSURE_TOLERANCE"] == pytest.approx(100.0)  # user wins
