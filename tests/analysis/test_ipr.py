"""IPR: the card's formula on hand-computed examples, chunking, bounds, bad input.

The weights are probabilities p_a = |P_a|^2 (projwfc.x, CP2K &LDOS), so
IPR = sum |P|^4 / (sum |P|^2)^2 = sum p^2 / (sum p)^2.
"""

from __future__ import annotations

import numpy as np
import pytest

from perovflow.analysis.ipr import analyze_ipr, ipr_values, top_atoms
from perovflow.errors import InputError
from perovflow.projections import StateProjections


def two_atom() -> StateProjections:
    # state 0: all weight on atom 0; state 1: evenly shared; state 2: 0.75/0.25
    w = np.array([[1.0, 0.0], [0.5, 0.5], [0.75, 0.25]])
    return StateProjections(
        energies=np.array([-1.0, 0.0, 2.0]),
        weights=w,
        species=["Pb", "Br"],
        occupations=np.array([1.0, 1.0, 0.0]),
    )


def test_two_atom_hand_computed():
    values = ipr_values(two_atom().weights)
    # sum p^2 / (sum p)^2 by hand: 1/1 = 1 ; (0.25+0.25)/1 = 0.5 ; (0.5625+0.0625)/1 = 0.625
    assert values == pytest.approx([1.0, 0.5, 0.625])
    res = analyze_ipr(two_atom())
    assert [s["participation"] for s in res.states] == pytest.approx([1.0, 2.0, 1.6])


def test_three_atom_hand_computed_unnormalised():
    # p = (2, 1, 1): sum p^2 = 6, (sum p)^2 = 16 -> 0.375, 1/IPR = 2.667 atoms
    assert ipr_values(np.array([[2.0, 1.0, 1.0]])) == pytest.approx([0.375])


def test_bounds_hold_for_random_states():
    # max_a(p/sum p)^2 <= IPR <= max_a p/sum p for every state (any N, sparse or dense)
    rng = np.random.default_rng(7)
    for natoms in (2, 5, 21, 300):
        w = rng.random((200, natoms)) ** rng.uniform(0.5, 8.0, size=(200, 1))
        w[rng.random(w.shape) < 0.3] = 0.0
        w[:, 0] += 1e-12
        frac = w / w.sum(axis=1, keepdims=True)
        top = frac.max(axis=1)
        values = ipr_values(w)
        assert np.all(top**2 <= values * (1 + 1e-12))
        assert np.all(values <= top * (1 + 1e-12))
        assert np.all(values >= 1.0 / natoms * (1 - 1e-12))


def test_bounds_one_over_n_and_one():
    n = 40
    w = np.vstack([np.full(n, 1.0 / n), np.eye(n)[3]])
    values = ipr_values(w)
    assert values[0] == pytest.approx(1.0 / n)
    assert values[1] == pytest.approx(1.0)


def test_scale_invariant_and_float32_chunked_equal():
    rng = np.random.default_rng(1)
    w = rng.random((257, 33))
    ref = ipr_values(w)
    assert ipr_values(3.7 * w) == pytest.approx(ref)
    small_chunks = ipr_values(w.astype(np.float32), chunk_elements=100)
    assert small_chunks == pytest.approx(ref, rel=1e-5)
    naive = [np.sum(r**2) / np.sum(r) ** 2 for r in w]
    assert ref == pytest.approx(naive)


def test_top_atoms_and_fractions():
    idx, frac = top_atoms(np.array([[0.1, 0.6, 0.3], [0.2, 0.2, 0.6]]), n=2)
    assert idx.tolist() == [[1, 2], [2, 0]] or idx.tolist() == [[1, 2], [2, 1]]
    assert frac[0].tolist() == pytest.approx([0.6, 0.3])


def test_analyze_flags_and_edges():
    res = analyze_ipr(two_atom(), threshold=0.6)
    assert res.localized.tolist() == [True, False, True]
    assert res.vbm_eV == 0.0 and res.cbm_eV == 2.0
    state = res.states[2]
    assert state["top_atoms"][0] == {"index": 0, "element": "Pb", "fraction": 0.75}
    assert state["e_minus_vbm_eV"] == pytest.approx(2.0)
    assert res.states[0]["shares"] == {"Pb": 1.0, "Br": 0.0}
    assert res.edges_delocalized == {"vbm_eV": 0.0, "cbm_eV": None}


def test_empty_window_and_bad_threshold_are_one_line_errors():
    with pytest.raises(InputError, match="no state in the energy window"):
        analyze_ipr(two_atom(), energy_window=(10.0, 20.0))
    with pytest.raises(InputError, match="outside"):
        analyze_ipr(two_atom(), threshold=0.0)


def test_unknown_grouping_is_an_error():
    with pytest.raises(InputError, match="unknown atom grouping"):
        analyze_ipr(two_atom(), groups="planets")


def test_default_threshold_is_size_aware_and_user_value_wins():
    # 21 atoms: a state spread evenly has IPR 1/21 = 0.048 > 0.03, so the seed's absolute
    # 0.03 (chosen for >2,000-atom models) would call it localized. A state on the 2 Pb of
    # Cs4PbBr6's cell with its 12 Br (a host band of the 0D crystal, 1/0.17 of the atoms)
    # must stay delocalized too; one on 2 atoms (the vacancy level) is localized.
    n = 21
    host_band = np.r_[np.full(4, 0.25), np.zeros(n - 4)]  # 4 atoms: IPR 0.25
    weights = np.vstack([np.full(n, 1.0 / n), host_band, np.r_[0.8, 0.2, np.zeros(n - 2)]])
    proj = StateProjections(energies=[0.0, 1.0, 2.0], weights=weights, species=["Br"] * n,
                            occupations=[1.0, 0.0, 0.0])  # fmt: skip
    auto = analyze_ipr(proj)
    assert auto.threshold == pytest.approx(8 / n)
    assert auto.localized.tolist() == [False, False, True]
    user = analyze_ipr(proj, threshold=0.03)  # an explicit threshold is used as given
    assert user.threshold == 0.03 and user.localized.tolist() == [True, True, True]
    big = StateProjections(
        energies=[0.0], weights=np.full((1, 2000), 1 / 2000), species=["Br"] * 2000
    )
    assert analyze_ipr(big).threshold == 0.03  # the seed's value on a seed-sized model
