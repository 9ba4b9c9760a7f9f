"""The one band-edge rule (perovflow.electronic) on hand-made spin-polarised cases."""

from __future__ import annotations

import numpy as np
import pytest

from perovflow.electronic import (
    band_edges,
    band_edges_grid,
    magnetization,
    occupations_from_count,
    occupations_from_fermi,
)

# An open-shell defect cell: 3 electrons, n_up = 2, n_down = 1 (one unpaired electron).
# spin up: VB at -1, the occupied level at 0.5, CB at 2; spin down: VB -1, empty partner 1.2
EIG = np.array([[[-1.0, 0.5, 2.0]], [[-1.0, 1.2, 2.0]]])


def test_count_fills_n_up_and_n_down_bands():
    occ = occupations_from_count(EIG, 3)  # odd count: magnetisation 1 by default
    assert occ.tolist() == [[[1, 1, 0]], [[1, 0, 0]]]
    assert magnetization(occ.ravel(), np.repeat([0, 1], 3), np.ones(6)) == 1.0
    assert occupations_from_count(EIG, 3, magnetization=3).tolist() == [[[1, 1, 1]], [[0, 0, 0]]]
    assert occupations_from_count(EIG, 3.5) is None  # fractional: no integer filling
    assert occupations_from_count(EIG[:1], 3) is None  # 1.5 bands per spin-degenerate channel


def test_edges_per_spin_and_over_both_channels():
    edges = band_edges_grid(EIG, occupations_from_count(EIG, 3))
    # defect-cell gap: occupied up level (0.5) to the empty down partner (1.2)
    assert edges["vbm_eV"] == 0.5 and edges["cbm_eV"] == 1.2
    assert edges["band_gap_eV"] == pytest.approx(0.7)
    assert edges["vbm_spin"] == "up" and edges["cbm_spin"] == "down"
    assert edges["spin"]["up"]["band_gap_eV"] == pytest.approx(1.5)
    assert edges["spin"]["down"]["band_gap_eV"] == pytest.approx(2.2)


def test_fermi_levels_per_spin_and_partly_filled_states():
    occ = occupations_from_fermi(EIG, [0.6, 0.0])  # two Fermi levels (fixed moment)
    assert occ.tolist() == [[[1, 1, 0]], [[1, 0, 0]]]
    # a state half filled (smeared across E_F): no gap, no CBM
    half = band_edges([0.0, 1.0, 2.0], [1.0, 0.5, 0.0])
    assert half["band_gap_eV"] is None and half["cbm_eV"] is None and half["vbm_eV"] == 0.0
    # closed shell, CP2K-style occupations divided by 2: the same rule
    closed = band_edges([0.0, 1.0, 2.0], [1.0, 1.0, 0.0])
    assert closed["vbm_eV"] == 1.0 and closed["cbm_eV"] == 2.0 and "spin" not in closed


def test_direct_and_indirect_gaps():
    eig = np.array([[[0.0, 1.0, 3.0], [0.5, 1.5, 2.5]]])  # 4 electrons, 2 bands occupied
    direct = band_edges_grid(eig, occupations_from_count(eig, 4))
    assert direct["vbm_eV"] == 1.5 and direct["cbm_eV"] == 2.5 and direct["is_direct"]
    eig2 = np.array([[[0.0, 1.0, 2.4], [0.5, 1.5, 2.5]]])
    indirect = band_edges_grid(eig2, occupations_from_count(eig2, 4))
    assert indirect["band_gap_eV"] == pytest.approx(0.9) and indirect["is_direct"] is False
