"""Substitutions and mixed halides: counts, formulas and symmetry-distinct arrangements."""

from __future__ import annotations

import math

import pytest
from pymatgen.core import Composition

from perovflow.errors import InputError
from perovflow.structures.prototypes import build_prototype
from perovflow.structures.supercells import make_supercell
from perovflow.structures.variants import mix_halides, substitute


@pytest.fixture(scope="module")
def double_2x1x1():
    return make_supercell(build_prototype("Cs2NaBiCl6"), "2x1x1")


def test_one_ag_on_na_in_80_atom_cell(double_2x1x1):
    result = substitute(double_2x1x1, "Na", "Ag", 1)
    assert len(result.structure) == 80
    assert result.structure.composition == Composition("Cs16Na7AgBi8Cl48")
    assert result.n_distinct == 1  # all Na are equivalent in the host
    assert result.multiplicities == [8]
    # only the species changed: same order, same positions
    changed = [i for i, (a, b) in enumerate(zip(double_2x1x1, result.structure, strict=True))
               if a.specie != b.specie]  # fmt: skip
    assert changed == result.indices and len(changed) == 1


def test_two_ag_arrangements_partition_all_pairs(double_2x1x1):
    result = substitute(double_2x1x1, "Na", "Ag", 2)
    assert sum(result.multiplicities) == math.comb(8, 2)
    assert result.n_distinct > 1
    # arrangements are ordered most frequent first and each builds a distinct structure
    assert result.multiplicities == sorted(result.multiplicities, reverse=True)


def test_pick_selects_a_different_arrangement(double_2x1x1):
    a = substitute(double_2x1x1, "Na", "Ag", 2, pick=0)
    b = substitute(double_2x1x1, "Na", "Ag", 2, pick=1)
    dist = lambda r: r.structure.get_distance(*r.indices)  # noqa: E731
    assert dist(a) != pytest.approx(dist(b))


def test_equivalent_sites_in_cubic_perovskite():
    # Pm-3m: the three Br (3d) are equivalent; 2 of 3 replaced is also one class
    cubic = build_prototype("CsPbBr3-cubic")
    assert substitute(cubic, "Br", "I", 1).n_distinct == 1
    assert substitute(cubic, "Br", "I", 2).n_distinct == 1


@pytest.mark.parametrize(
    ("z", "formula", "natoms", "supercell"),
    [(0, "CH5N2SnI3", 12, None), (0.5, "C2H10N4Sn2I5Br", 24, "2x1x1"),
     (1, "CH5N2SnI2Br", 12, None), (3, "CH5N2SnBr3", 12, None)],
)  # fmt: skip
def test_fasni3_bromide_series(z, formula, natoms, supercell):
    result = mix_halides(build_prototype("FASnI3"), "I", "Br", z / 3)
    assert result.structure.composition == Composition(formula)
    assert len(result.structure) == natoms
    assert result.supercell == supercell


def test_fasni2br_has_three_distinct_sites():
    # the ordered FA+ (Pmm2) makes the three iodides inequivalent: Br along a, b or c
    assert mix_halides(build_prototype("FASnI3"), "I", "Br", 1 / 3).n_distinct == 3


@pytest.mark.parametrize("x", [0.5, 1, 1.5, 2, 3])
def test_cspbbr3_iodide_series(x):
    result = mix_halides(build_prototype("CsPbBr3-cubic"), "Br", "I", x / 3)
    comp = result.structure.composition.reduced_composition
    n_fu = result.structure.composition["Pb"]
    assert result.structure.composition["I"] / n_fu == pytest.approx(x)
    assert comp["Cs"] == comp["Pb"]


@pytest.mark.parametrize(
    ("old", "new", "count"), [("K", "Ag", 1), ("Na", "Ag", 9), ("Na", "Ag", 0), ("Na", "Xx", 1)]
)
def test_bad_substitutions(double_2x1x1, old, new, count):
    with pytest.raises(InputError) as err:
        substitute(double_2x1x1, old, new, count)
    assert err.value.fix
