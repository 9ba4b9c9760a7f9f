"""Supercell matrices and minimum-image-distance supercells."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from perovflow.errors import InputError
from perovflow.structures.prototypes import build_prototype
from perovflow.structures.supercells import (
    image_distance,
    make_supercell,
    min_length_supercell,
    parse_matrix,
)


def _brute_force_image_distance(lattice_matrix, n=4):
    vecs = [
        np.dot(c, lattice_matrix) for c in itertools.product(range(-n, n + 1), repeat=3) if any(c)
    ]
    return min(np.linalg.norm(v) for v in vecs)


def test_parse_matrix_forms():
    assert parse_matrix("2x1x1").tolist() == [[2, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert parse_matrix("2").tolist() == np.diag([2, 2, 2]).tolist()
    assert parse_matrix([1, 2, 3]).tolist() == np.diag([1, 2, 3]).tolist()
    assert parse_matrix("0 1 1 1 0 1 1 1 0").tolist() == [[0, 1, 1], [1, 0, 1], [1, 1, 0]]


@pytest.mark.parametrize("bad", ["2x0x1", "2x1", "axbxc", "-1x1x1", "1.5x1x1"])
def test_parse_matrix_rejects(bad):
    with pytest.raises(InputError):
        parse_matrix(bad)


def test_make_supercell_counts_and_volume():
    s = build_prototype("Cs2NaBiCl6")
    sc = make_supercell(s, "2x1x1")
    assert len(sc) == 80
    assert sc.volume == pytest.approx(2 * s.volume)
    assert sc.composition.reduced_formula == "Cs2NaBiCl6"


@pytest.mark.parametrize("name", ["CsPbBr3-cubic", "Cs4PbBr6", "Cs2NaBiCl6", "Pb4S3Br2"])
def test_image_distance_matches_brute_force(name):
    s = build_prototype(name, cell="primitive")
    assert image_distance(s) == pytest.approx(_brute_force_image_distance(s.lattice.matrix))


@pytest.mark.parametrize(
    ("name", "cell", "length"),
    [
        ("CsPbBr3-cubic", "primitive", 12.0),
        ("Cs4PbBr6", "primitive", 15.0),
        ("Cs2NaBiCl6", "primitive", 15.0),
    ],
)
def test_min_length_supercell(name, cell, length):
    s = build_prototype(name, cell=cell)
    result = min_length_supercell(s, length)
    assert result.image_distance >= length
    assert result.image_distance == pytest.approx(
        _brute_force_image_distance(result.structure.lattice.matrix)
    )
    n_cells = round(abs(np.linalg.det(result.matrix)))
    assert result.natoms == len(result.structure) == n_cells * len(s)
    # no smaller cell can reach the length: fcc packing bound V >= L^3 / sqrt(2)
    assert result.structure.volume >= length**3 / np.sqrt(2) - 1e-6


def test_fcc_double_perovskite_80_atoms_for_15_angstrom():
    # The 2x2x2 primitive (fcc) cell of Cs2NaBiCl6 has images a*sqrt(2) = 15.33 Å apart:
    # 80 atoms, a quarter of the 2x2x2 conventional cell.
    result = min_length_supercell(build_prototype("Cs2NaBiCl6", cell="primitive"), 15.0)
    assert result.natoms == 80
    assert result.image_distance == pytest.approx(10.84 * np.sqrt(2), rel=1e-3)


def test_min_length_impossible():
    with pytest.raises(InputError, match="atoms"):
        min_length_supercell(build_prototype("CsPbBr3-cubic"), 60.0, max_atoms=500)
    with pytest.raises(InputError):
        min_length_supercell(build_prototype("CsPbBr3-cubic"), -1.0)
