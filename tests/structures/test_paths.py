"""Migration hops, NEB end points and interpolation (seed 004: Cs2Na0.875Ag0.125BiCl6)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from perovflow.errors import InputError
from perovflow.structures import paths


@pytest.fixture(scope="module")
def host():
    """Pure Cs2NaBiCl6, conventional cell (Fm-3m, 40 atoms)."""
    from perovflow.structures.prototypes import build_prototype

    return build_prototype("Cs2NaBiCl6", cell="conventional")


@pytest.fixture(scope="module")
def cell80(host):
    """Seed 004's 80-atom 2x1x1 cell with one Na replaced by Ag."""
    from perovflow.structures.supercells import make_supercell
    from perovflow.structures.variants import substitute

    structure = substitute(make_supercell(host, "2x1x1"), "Na", "Ag", 1).structure
    assert len(structure) == 80
    return structure


def _bond(structure, index: int, element: str) -> float:
    """Shortest distance from site ``index`` to an ``element`` ion."""
    return min(
        n.nn_distance
        for n in structure.get_neighbors(structure[index], 4.0)
        if n.specie.symbol == element
    )


def test_seed_hops_are_the_four_paths_of_seed_004(cell80, host):
    hops = paths.seed_hops(cell80)
    assert [h.moving_element for h in hops] == ["Na", "Ag", "Cl", "Cl"]
    assert hops[0].environment_left == "Na" and hops[1].environment_left == "Ag"
    assert hops[2].environment_left == "Cl from Na–Cl octahedron"
    assert hops[3].environment_left == "Cl from Ag–Cl octahedron"
    # paths 1/2 share one V_Na, paths 3/4 one V_Cl, and that V_Cl sits in a Na–Cl octahedron
    assert hops[0].vacancy_index == hops[1].vacancy_index
    assert hops[2].vacancy_index == hops[3].vacancy_index
    assert cell80[hops[2].vacancy_index].specie.symbol == "Cl"
    assert _bond(cell80, hops[2].vacancy_index, "Na") < 3.2
    # B' sites form an fcc lattice: nearest-neighbour distance a/sqrt(2) of the conventional cell
    a = host.lattice.a
    for h in hops[:2]:
        assert h.length == pytest.approx(a / math.sqrt(2), abs=0.02)
    # Cl -> V_Cl follows an octahedron edge: sqrt(2) x the metal–Cl bond of a shared octahedron
    v = hops[2].vacancy_index
    edges = [math.sqrt(2) * _bond(cell80, v, el) for el in ("Na", "Bi")]
    for h in hops[2:]:
        assert min(abs(h.length - e) for e in edges) < 0.05


def test_enumeration_covers_all_hop_kinds_and_shells(cell80):
    b_hops = paths.enumerate_hops(cell80, "Na", species=["Na", "Ag"])
    x_hops = paths.enumerate_hops(cell80, "Cl")
    kinds = {h.environment_left for h in b_hops} | {h.environment_left for h in x_hops}
    assert {"Na", "Ag", "Cl from Na–Cl octahedron", "Cl from Ag–Cl octahedron"} <= kinds
    # every vacancy's hops add up to its full first shell: 12 fcc B' neighbours, 8 octahedron edges
    for hops, shell in ((b_hops, 12), (x_hops, 8)):
        per_site: dict[int, int] = {}
        for h in hops:
            per_site[h.vacancy_index] = per_site.get(h.vacancy_index, 0) + h.multiplicity
        assert set(per_site.values()) == {shell}
    # one representative per symmetry-distinct Na site: 7 Na in the cell, fewer orbits
    assert 1 < len({h.vacancy_index for h in b_hops}) < 7


def test_distinct_hops_agree_with_distinct_path_finder(host):
    from pymatgen.analysis.diffusion.neb.pathfinder import DistinctPathFinder

    prim = host.get_primitive_structure()
    for element, cutoff in (("Cl", 4.2), ("Na", 8.0)):
        hops = paths.enumerate_hops(prim, element, cutoff=cutoff)
        reference = DistinctPathFinder(
            prim, element, max_path_length=cutoff, symprec=0.01
        ).get_paths()
        assert sorted(round(h.length, 2) for h in hops) == sorted(
            round(p.length, 2) for p in reference
        )


def test_cubic_perovskite_has_one_halide_hop():
    from perovflow.structures.prototypes import build_prototype

    cubic = build_prototype("CsPbBr3-cubic", cell="primitive")
    (hop,) = paths.enumerate_hops(cubic, "Br")
    assert hop.multiplicity == 8  # the 8 edges of the PbBr6 octahedron meeting at one Br
    assert hop.length == pytest.approx(cubic.lattice.a / math.sqrt(2), abs=1e-3)


def test_endpoints_share_order_and_differ_by_one_atom(cell80):
    for hop in paths.seed_hops(cell80):
        initial, final = paths.hop_endpoints(cell80, hop)
        assert len(initial) == len(final) == 79
        assert [s.specie for s in initial] == [s.specie for s in final]
        cart = initial.lattice.get_cartesian_coords(final.frac_coords - initial.frac_coords)
        moved = np.nonzero(np.linalg.norm(cart, axis=1) > 1e-6)[0]
        assert list(moved) == [hop.moving_index]
        assert initial[moved[0]].specie.symbol == hop.moving_element
        assert np.linalg.norm(cart[moved[0]]) == pytest.approx(hop.length, abs=1e-3)


def test_interpolation_counts_and_no_overlaps(cell80):
    hop = paths.seed_hops(cell80)[3]
    initial, final = paths.hop_endpoints(cell80, hop)
    linear = paths.interpolate(initial, final, method="linear")
    assert len(linear) == 11  # default 9 intermediate images + 2 end points
    mid = initial.lattice.get_cartesian_coords((initial.frac_coords + final.frac_coords) / 2)
    assert np.allclose(linear[5].cart_coords, mid, atol=1e-6)
    idpp = paths.interpolate(initial, final, nimages=5, idpp_steps=100)
    assert len(idpp) == 7
    assert paths.min_distance_ratio(idpp) > 0.7  # no pair closer than 0.7 x covalent sum
    assert np.allclose(idpp[0].cart_coords, initial.cart_coords, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"vacancy_element": "Xx"}, "unknown element"),
        ({"vacancy_element": "Pb"}, "not in the structure"),
        ({"vacancy_element": "Cl", "cutoff": 1.0}, "no Cl ion within"),
        ({"vacancy_element": "Cl", "vacancy_site": 0}, "is not a Cl site"),
    ],
)
def test_bad_hop_requests_raise_input_error(host, kwargs, words):
    with pytest.raises(InputError, match=words) as err:
        paths.enumerate_hops(host, **kwargs)
    assert "fix:" in str(err.value)


def test_interpolate_rejects_mismatched_end_points(host):
    other = host.copy()
    other.replace_species({"Na": "K"})
    with pytest.raises(InputError, match="species or atom order"):
        paths.interpolate(host, other)
    with pytest.raises(InputError, match="at least 1"):
        paths.interpolate(host, host, nimages=0)


def test_seed_hops_need_the_dopant(host):
    with pytest.raises(InputError, match="not in the structure"):
        paths.seed_hops(host)  # pure Cs2NaBiCl6 has no Ag
