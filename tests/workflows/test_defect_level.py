"""Vacancy levels from hand-made state lists: spin-polarised and closed-shell defect cells."""

from __future__ import annotations

import pytest

from perovflow.workflows.vacancy import defect_level


def _state(e, spin, occ, ipr=0.5):
    atoms = [{"element": "Pb", "index": 3, "fraction": 0.7}]
    return {"energy_eV": e, "spin": spin, "occupation": occ, "ipr": ipr,
            "participation": 1 / ipr, "top_atoms": atoms}  # fmt: skip


def test_open_shell_level_partner_and_named_gaps():
    # host VB top at 0 (both spins), host CB at 4 (both spins); the unpaired electron's
    # level at 1.5 (spin up, occupied), its partner at 2.3 (spin down, empty)
    states = [_state(-0.2, 0, 1), _state(0.0, 0, 1), _state(-0.2, 1, 1), _state(0.0, 1, 1),
              _state(1.5, 0, 1, 0.4), _state(2.3, 1, 0, 0.45),
              _state(4.0, 0, 0), _state(4.0, 1, 0)]  # fmt: skip
    level = defect_level(states)
    assert level["midgap_level"] and level["level_spin"] == "up"
    assert level["level_above_vbm_eV"] == pytest.approx(1.5)
    assert level["level_below_cbm_eV"] == pytest.approx(2.5)  # CB of the level's own spin
    assert level["host_gap_eV"] == pytest.approx(4.0)
    assert level["defect_cell_gap_eV"] == pytest.approx(0.8)  # level to its empty partner
    assert level["partner_above_vbm_eV"] == pytest.approx(2.3)
    assert level["level_occupation"] == 1 and level["partner_occupation"] == 0
    assert level["level_participation"] == pytest.approx(2.5)


def test_closed_shell_level():
    states = [_state(-0.1, 0, 1), _state(0.0, 0, 1), _state(1.0, 0, 1), _state(3.0, 0, 0)]
    level = defect_level(states)
    assert level["midgap_level"] and level["level_spin"] is None
    assert level["host_gap_eV"] == pytest.approx(3.0)
    assert level["defect_cell_gap_eV"] == pytest.approx(2.0)
    assert "partner_above_vbm_eV" not in level
