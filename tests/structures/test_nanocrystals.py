"""CsBr-terminated CsPbBr3 cubes and the CsPbBr3–Pb4S3Br2 heterostructure (seed 002)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist, pdist

from perovflow.errors import InputError
from perovflow.structures import nanocrystals as nc

FORMAL = {"Cs": 1, "Pb": 2, "Br": -1, "S": -2}


def _charge(molecule) -> int:
    return sum(FORMAL[s.specie.symbol] for s in molecule)


@pytest.fixture(scope="module")
def cube():
    return nc.csbr_cube(edge_nm=3.2)


def test_seed_cube_is_cs200pb125br450_and_neutral(cube):
    assert cube.composition.formula.replace(" ", "") == "Cs200Pb125Br450"
    assert _charge(cube) == 0
    assert nc.csbr_cube(edge_cells=5).composition == cube.composition  # 3.2 nm <-> 5 Pb per edge


@pytest.mark.parametrize("n", [2, 3, 4, 6])
def test_cube_rule_holds_for_other_sizes(n):
    cube = nc.csbr_cube(edge_cells=n)
    comp = cube.composition
    assert comp["Pb"] == n**3
    assert comp["Br"] == 3 * n**2 * (n + 1)  # complete PbBr6 octahedra around every Pb
    assert comp["Cs"] == n**3 + 3 * n**2  # neutral: Cs = Br - 2 Pb
    assert _charge(cube) == 0


def test_cube_is_csbr_terminated_and_has_no_dipole(cube):
    coords = cube.cart_coords
    species = np.array([s.specie.symbol for s in cube])
    outer = np.abs(coords).max(axis=1) > np.abs(coords).max() - 0.5
    assert set(species[outer]) == {"Cs", "Br"}  # outermost layers hold only Cs and Br
    q = np.array([FORMAL[s] for s in species])
    assert np.linalg.norm(q @ coords) < 1e-6
    assert set(cube.site_properties["domain"]) == {"CsPbBr3"}
    d = pdist(coords)
    assert d.min() > 2.5  # Pb–Br ~2.94 Å is the shortest contact


def test_half_sphere_heterostructure(cube):
    het = nc.place_half_sphere(cube, "Pb4S3Br2", radius=10.0, face="+z")
    domains = np.array(het.site_properties["domain"])
    assert set(domains) == {"CsPbBr3", "Pb4S3Br2"}
    assert (domains == "CsPbBr3").sum() == len(cube)
    assert _charge(het) == 0
    dome = np.array([s.coords for s, d in zip(het, domains, strict=True) if d == "Pb4S3Br2"])
    core = np.array([s.coords for s, d in zip(het, domains, strict=True) if d == "CsPbBr3"])
    assert dome[:, 2].min() > core[:, 2].max()  # sits on the +z face
    assert cdist(dome, core).min() > 2.5  # no overlapping atoms across the interface
    info = nc.describe(het)
    assert info["net_charge"] == 0 and info["natoms"] == len(het)


def test_half_sphere_on_other_face(cube):
    het = nc.place_half_sphere(cube, "Pb4S3Br2", radius=8.0, face="-x")
    dome = np.array([s.coords for s in het if s.properties["domain"] == "Pb4S3Br2"])
    assert dome[:, 0].max() < cube.cart_coords[:, 0].min()


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({}, "exactly one"),
        ({"edge_cells": 0}, "out of range"),
        ({"edge_cells": 2, "edge_nm": 3.0}, "exactly one"),
    ],
)
def test_bad_cube_requests(kwargs, words):
    with pytest.raises(InputError, match=words):
        nc.csbr_cube(**kwargs)


def test_bad_face_is_refused(cube):
    with pytest.raises(InputError, match="unknown cube face"):
        nc.place_half_sphere(cube, radius=8.0, face="+w")


def test_half_sphere_builds_its_own_cube():
    het = nc.place_half_sphere(3, radius=6.0)  # a 3-Pb-edge cube, as a study file would ask
    domains = het.site_properties["domain"]
    assert domains.count("CsPbBr3") == 27 + 54 + 108  # Pb27 Cs54 Br108
    assert _charge(het) == 0
