"""pw.x output of a spin-polarised odd-electron cell, replayed: per-spin occupations and edges."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from perovflow.engines.qe.run import band_edges, parse_pw_output

DATA = Path(__file__).resolve().parents[1] / "data" / "engines" / "qe" / "cspbbr2_lsda"


def test_lsda_run_gives_n_up_and_n_down_occupied_bands(tmp_path):
    for name in ("espresso.pwi", "espresso.pwo"):
        shutil.copy(DATA / name, tmp_path / name)
    res = parse_pw_output(tmp_path)
    assert res.eigenvalues.shape[0] == 2  # [spin][k][band]
    # as printed by pw.x: "the spin up/dw Fermi energies are 4.3327 1.1675 ev"
    assert res.fermi_levels_eV == pytest.approx([4.3327, 1.1675])
    assert res.total_magnetization == pytest.approx(1.0)
    # 27 electrons with one unpaired: 14 spin-up and 13 spin-down bands occupied
    occ = res.occupations
    assert occ[0].sum() == 14 and occ[1].sum() == 13
    edges = band_edges(res.eigenvalues, occ)
    assert edges["spin"]["up"]["n_occupied"] == 14 and edges["vbm_spin"] == "up"
    assert edges["spin"]["up"]["vbm_eV"] <= 4.3327 < edges["spin"]["up"]["cbm_eV"]
    assert edges["spin"]["down"]["vbm_eV"] <= 1.1675 < edges["spin"]["down"]["cbm_eV"]
    # without the input file the moment comes from the printed total magnetisation
    (tmp_path / "espresso.pwi").unlink()
    assert parse_pw_output(tmp_path).occupations[1].sum() == 13


def test_lsda_projections_keep_both_spin_channels():
    from perovflow.analysis.ipr import analyze_ipr
    from perovflow.analysis.pdos import compute_pdos
    from perovflow.engines.qe.projwfc import parse_projwfc

    proj = parse_projwfc(DATA / "dos")
    # projwfc.x lists the 21 bands of Γ twice (nkstot = 2): spin up, then spin down
    assert proj.spins.tolist() == [0] * 21 + [1] * 21
    # pw.x: "the spin up/dw Fermi energies are ..." -> 14 up and 13 down states filled
    occ = proj.occupations
    assert occ[:21].sum() == 14 and occ[21:].sum() == 13
    res = analyze_ipr(proj)
    edges = res.summary()["spin_edges"]
    assert edges["up"]["n_occupied"] == 14 and edges["down"]["n_occupied"] == 13
    pdos = compute_pdos(proj, sigma=0.05, window=(-26, 5))
    counts = pdos.summary()["spin_integrals"]
    # one state per band and spin: 21 states in each channel inside the window
    assert counts["up"]["total"] == pytest.approx(21, abs=0.05)
    assert counts["down"]["total"] == pytest.approx(21, abs=0.05)
