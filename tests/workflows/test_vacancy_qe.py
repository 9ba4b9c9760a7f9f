"""Vacancy study end to end with pw.x: the F centre of CsBr is a level deep in the gap."""

from __future__ import annotations

import pytest

STUDY = """
study: vacancy
name: csbr-fcentre
protocol: fast
code: qe
prerelax: null
relax: false
structure: {prototype: CsBr}
settings:
  static: {kpts: [1, 1, 1]}
  dos: {kpts: [1, 1, 1]}
vacancy:
  elements: [Br]
  supercell: 2x2x2
  charge_states: {Br: [0]}
"""


@pytest.mark.qe
@pytest.mark.slow
def test_br_vacancy_state_is_localized_in_the_gap(run_study):
    report, _ = run_study(STUDY)
    bulk, (vac,) = report["bulk"], report["vacancies"]
    assert bulk["host_gap_eV"] > 2.0  # CsBr is a wide-gap insulator (exp. 7.3 eV; PBE ~5 eV)
    # the F centre (an electron trapped in the Br vacancy): an occupied level deep in the gap,
    # carried by the Cs cations around the vacancy. (In a 16-atom cell it fills the cell, so
    # its IPR is no larger than that of the bulk edges; in 0D Cs4PbBr6 it sits on one Pb.)
    assert vac["midgap_level"]
    assert vac["level_above_vbm_eV"] > 1.0 and vac["level_below_cbm_eV"] > 0.05
    assert all(atom.startswith("Cs") for atom in vac["level_atoms"])
    assert vac["level_ipr"] > 0.5 * bulk["edge_ipr"]
