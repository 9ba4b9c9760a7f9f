"""Distinct defect sites, environments, charge states and defect builders."""

from __future__ import annotations

import pytest

from perovflow.errors import InputError
from perovflow.structures.defects import (
    build_defect,
    enumerate_substitutions,
    enumerate_vacancies,
    suggest_charge_states,
    validate_charge,
)
from perovflow.structures.prototypes import build_prototype
from perovflow.structures.supercells import make_supercell
from perovflow.structures.variants import substitute


@pytest.fixture(scope="module")
def doped():
    """Cs2Na0.875Ag0.125BiCl6: one Ag on Na in the 80-atom 2x1x1 conventional cell."""
    host = make_supercell(build_prototype("Cs2NaBiCl6"), "2x1x1")
    return substitute(host, "Na", "Ag", 1).structure


def test_cs4pbbr6_has_exactly_one_br_vacancy():
    sites = enumerate_vacancies(build_prototype("Cs4PbBr6"), "Br")
    assert len(sites) == 1
    (site,) = sites
    assert (site.multiplicity, site.wyckoff, site.label) == (36, "36f", "V_Br")
    assert site.neighbours == {"Pb": 1}  # each Br belongs to one isolated PbBr6 octahedron
    assert {0, 1} <= set(site.charge_states)


def test_cl_environments_in_doped_cell(doped):
    sites = enumerate_vacancies(doped, "Cl")
    assert sum(s.multiplicity for s in sites) == 48
    envs = {s.environment for s in sites}
    assert any("Na" in e and "Ag" not in e for e in envs)  # Cl bonded to Na (and Bi)
    assert any("Ag" in e for e in envs)  # Cl bonded to Ag (and Bi)
    next_to_ag = [s for s in sites if "Ag" in s.neighbours]
    assert sum(s.multiplicity for s in next_to_ag) == 6  # the AgCl6 octahedron
    assert len({s.label for s in sites}) == len(sites)


def test_na_sites_next_to_and_far_from_ag(doped):
    sites = enumerate_vacancies(doped, "Na")
    assert sum(s.multiplicity for s in sites) == 7
    near = [s for s in sites if "next to Ag" in s.environment]
    far = [s for s in sites if "far from Ag" in s.environment]
    assert near and far and len(near) + len(far) == len(sites)
    # B'-sublattice (fcc) geometry of the 2x1x1 cell: 5 Na at a/sqrt(2) from Ag, 2 farther
    assert sum(s.multiplicity for s in near) == 5


def test_ag_vacancy_in_doped_cell(doped):
    (site,) = enumerate_vacancies(doped, "Ag")
    assert site.neighbours == {"Cl": 6}
    defect = build_defect(doped, site, charge=-1)
    assert len(defect) == 79 and defect.composition["Ag"] == 0
    assert defect.properties["defect"] == "V_Ag" and defect.properties["charge"] == -1


def test_vacancy_keeps_atom_order(doped):
    site = enumerate_vacancies(doped, "Cl")[0]
    defect = build_defect(doped, site)
    expected = [s.specie.symbol for i, s in enumerate(doped) if i != site.index]
    assert [s.specie.symbol for s in defect] == expected


def test_charge_states_follow_oxidation_states():
    cubic = build_prototype("CsPbBr3-cubic")
    (v_br,) = enumerate_vacancies(cubic, "Br")
    (v_pb,) = enumerate_vacancies(cubic, "Pb")
    # Br- removed: 0..+1 plus one on each side; Pb2+ removed: -2..0 plus one
    assert suggest_charge_states(cubic, v_br) == [-1, 0, 1, 2]
    assert suggest_charge_states(cubic, v_pb) == [-3, -2, -1, 0, 1]
    (bi_pb,) = enumerate_substitutions(cubic, "Pb", "Bi")  # Bi3+ on Pb2+: donor
    assert bi_pb.label == "Bi_Pb" and 1 in bi_pb.charge_states


@pytest.mark.parametrize("q", [5, -3, 3])
def test_impossible_charge_rejected(q):
    cubic = build_prototype("CsPbBr3-cubic")
    (v_br,) = enumerate_vacancies(cubic, "Br")
    with pytest.raises(InputError, match="not plausible"):
        validate_charge(cubic, v_br, q)


def test_substitution_defect_build():
    cubic = make_supercell(build_prototype("CsPbBr3-cubic"), "2")
    (sn_pb,) = enumerate_substitutions(cubic, "Pb", "Sn")
    defect = build_defect(cubic, sn_pb, charge=0)
    assert defect.composition["Sn"] == 1 and len(defect) == len(cubic)


def test_absent_element():
    with pytest.raises(InputError, match="not in the structure"):
        enumerate_vacancies(build_prototype("CsPbBr3-cubic"), "Cl")
