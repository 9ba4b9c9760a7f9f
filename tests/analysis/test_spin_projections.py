"""PDOS and IPR of spin-polarised projections: channels kept apart, edges per spin."""

from __future__ import annotations

import numpy as np
import pytest

from perovflow.analysis.ipr import analyze_ipr
from perovflow.analysis.pdos import compute_pdos, plot_pdos
from perovflow.projections import StateProjections


def open_shell() -> StateProjections:
    # per spin: a VB state on Br (both occupied), a level on Pb (up occupied, down empty)
    return StateProjections(
        energies=[0.0, 1.0, 0.0, 1.5],
        weights=[[0.0, 1.0], [0.9, 0.1], [0.0, 1.0], [0.9, 0.1]],
        species=["Pb", "Br"],
        spins=[0, 0, 1, 1],
        occupations=[1.0, 1.0, 1.0, 0.0],
    )


def test_pdos_per_spin_counts_one_state_per_channel(tmp_path):
    res = compute_pdos(open_shell(), sigma=0.05, window=(-2, 2), step=0.005)  # from the VBM, 1 eV
    up, down = res.summary()["spin_integrals"]["up"], res.summary()["spin_integrals"]["down"]
    # one electron per spin state: 2 states per channel, no factor 2 for spin degeneracy
    assert up["total"] == pytest.approx(2.0, abs=1e-3)
    assert down["total"] == pytest.approx(2.0, abs=1e-3)
    assert up["Pb"] == pytest.approx(0.9, abs=1e-3) and down["Br"] == pytest.approx(1.1, abs=1e-3)
    assert np.allclose(res.total, res.spin["up"]["total"] + res.spin["down"]["total"])
    near = np.abs(res.energies - 0.5) < 0.01  # the empty partner exists only in spin down
    assert res.spin["up"]["total"][near].max() < 1e-6 < res.spin["down"]["total"][near].max()
    assert plot_pdos(res, tmp_path / "pdos.png").stat().st_size > 0


def test_ipr_edges_per_spin_and_cell_gap():
    res = analyze_ipr(open_shell())
    summary = res.summary()
    assert summary["vbm_eV"] == 1.0 and summary["cbm_eV"] == 1.5  # up level, down partner
    assert summary["cell_gap_eV"] == pytest.approx(0.5)
    assert summary["spin_edges"]["down"]["vbm_eV"] == 0.0
    # p = (0.9, 0.1): IPR 0.82, 1.22 atoms
    assert res.states[1]["ipr"] == pytest.approx(0.82)
    assert res.states[1]["participation"] == pytest.approx(1 / 0.82)
    assert [s["spin"] for s in res.states] == [0, 0, 1, 1]
