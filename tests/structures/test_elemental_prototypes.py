"""Elemental references (chemical-potential limits): bonds and neighbour shells from the literature."""

from __future__ import annotations

import pytest

from perovflow.structures.prototypes import build_prototype

# halogen: (bond of the molecule in the solid, shortest intermolecular contact), Å.
# Solid-state values: Cl2 1.99 / 3.32, Br2 2.28-2.30 / 3.31, I2 2.715 / 3.50.
HALOGENS = {"Cl2": (1.99, 3.32), "Br2": (2.29, 3.31), "I2": (2.715, 3.50)}


def _shells(name: str, cutoff: float = 4.5) -> list[float]:
    s = build_prototype(name, cell="primitive")
    return sorted(n.nn_distance for n in s.get_neighbors(s[0], cutoff))


@pytest.mark.parametrize("name", sorted(HALOGENS))
def test_halogen_solids_are_molecular(name):
    bond, contact = HALOGENS[name]
    d = _shells(name)
    assert d[0] == pytest.approx(bond, abs=0.03)  # one covalent partner ...
    assert d[1] > d[0] + 0.7  # ... and a clear gap to the next molecule
    assert d[1] == pytest.approx(contact, abs=0.1)


@pytest.mark.parametrize(
    ("name", "n_first", "first"),
    [
        ("Cs", 8, 6.141 * 3**0.5 / 2),  # bcc: 8 neighbours at a*sqrt(3)/2
        ("Na", 8, 4.235 * 3**0.5 / 2),
        ("Pb", 12, 4.9502 / 2**0.5),  # fcc: 12 at a/sqrt(2)
        ("Ag", 12, 4.0862 / 2**0.5),
        ("Bi", 3, 3.07),  # A7: 3 + 3 (3.07 and 3.53 Å)
        ("Sn", 4, 3.02),  # beta-Sn: 4 + 2 (3.02 and 3.18 Å)
    ],
)
def test_metal_first_shells(name, n_first, first):
    d = _shells(name, cutoff=first + 0.05)
    assert len(d) == n_first
    assert d[0] == pytest.approx(first, abs=0.02)
