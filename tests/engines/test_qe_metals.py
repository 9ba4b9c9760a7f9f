"""Metallic 1-atom cells (elemental references) get smearing and dense k grids; the user still wins."""

from __future__ import annotations

import pytest
from pymatgen.io.ase import AseAtomsAdaptor

from perovflow.engines.pseudos import Pseudo
from perovflow.engines.qe.inputs import RY_EV, qe_input_set
from perovflow.structures.prototypes import build_prototype

PSEUDOS = {
    el: Pseudo(el, f"{el}.upf", f"/x/{el}.upf", "0" * 32, "gth-pbe", q)  # type: ignore[arg-type]
    for el, q in (("Cs", 9), ("Pb", 4), ("Br", 7), ("Bi", 5))
}


def atoms(name: str):
    return AseAtomsAdaptor.get_atoms(build_prototype(name, cell="primitive"))


@pytest.mark.parametrize("name", ["Pb", "Cs", "Bi"])
def test_metals_are_smeared_and_densely_sampled(name):
    # Pb (4 e, even) would get fixed occupations by electron count alone: a metal has no gap
    p = qe_input_set(atoms(name), "static", "fast", {name: PSEUDOS[name]})
    system = p["input_data"]["system"]
    assert system["occupations"] == "smearing" and system["smearing"] == "mv"
    assert system["degauss"] * RY_EV >= 0.1  # a metal needs ~0.1-0.3 eV, not the 10 meV of defects
    # at least 4 points along each direction of a 1-2 atom cell (fast spacing 0.6 Å^-1 alone
    # gives 2-3 for Cs, whose reciprocal vectors are 1.45 Å^-1 long)
    assert min(p["kpts"]) >= 4


def test_insulators_and_molecular_solids_are_not_smeared():
    p = qe_input_set(atoms("Br2"), "static", "fast", {"Br": PSEUDOS["Br"]})
    assert p["input_data"]["system"]["occupations"] == "fixed"
    p = qe_input_set(atoms("CsBr"), "static", "fast", PSEUDOS)
    assert p["input_data"]["system"]["occupations"] == "fixed"


def test_user_settings_win_for_metals():
    user = {"kpts": [2, 2, 2], "occupations": "smearing", "smearing": "gaussian", "degauss": 0.001}
    p = qe_input_set(atoms("Pb"), "static", "fast", {"Pb": PSEUDOS["Pb"]}, overrides=user)
    system = p["input_data"]["system"]
    assert (system["smearing"], system["degauss"], p["kpts"]) == ("gaussian", 0.001, [2, 2, 2])
    p = qe_input_set(
        atoms("Pb"), "static", "fast", {"Pb": PSEUDOS["Pb"]}, overrides={"kspacing": 0.6}
    )
    dense = qe_input_set(atoms("Pb"), "static", "fast", {"Pb": PSEUDOS["Pb"]})
    assert sum(p["kpts"]) < sum(dense["kpts"])  # the user's spacing is used as given
