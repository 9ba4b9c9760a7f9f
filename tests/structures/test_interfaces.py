"""Coherent interfaces: Pb4S3Br2 on CsPbBr3 (seed 002) through pymatgen's ZSL search."""

from __future__ import annotations

import math

import numpy as np
import pytest

from perovflow.errors import InputError
from perovflow.structures.interfaces import build_interfaces


@pytest.fixture(scope="module")
def bulk():
    from perovflow.structures.prototypes import build_prototype

    return build_prototype("Pb4S3Br2"), build_prototype("CsPbBr3-cubic")


@pytest.fixture(scope="module")
def candidates(bulk):
    film, substrate = bulk
    return build_interfaces(film, substrate, "0,1,0", "0,0,1", max_strain=0.03, max_candidates=2)


def test_strain_within_bound_and_matches_lattice_mismatch(bulk, candidates):
    film, substrate = bulk
    assert candidates
    # Pb4S3Br2 (010) = a x c (8.20 x 8.17 Å) matches the sqrt2 x sqrt2 R45° CsPbBr3 (001) net
    target = math.sqrt(2) * substrate.lattice.a
    expected = max(abs((target / x) ** 2 - 1) / 2 for x in (film.lattice.a, film.lattice.c))
    for cand in candidates:
        assert cand.strain <= 0.03
        assert cand.strain == pytest.approx(expected, abs=2e-3)
        lat = cand.structure.lattice.matrix
        assert np.linalg.norm(np.cross(lat[0], lat[1])) == pytest.approx(
            2 * substrate.lattice.a**2, rel=0.01
        )
        assert cand.natoms == len(cand.structure)


def test_terminations_and_domains(candidates):
    # a cubic perovskite (001) face ends either in CsBr or in PbBr2: both are enumerated
    substrate_terms = {c.termination[1].split("_")[1] for c in candidates}
    assert substrate_terms == {"CsBr", "PbBr2"}
    for cand in candidates:
        roles = cand.structure.site_properties["interface_label"]
        domains = cand.structure.site_properties["domain"]
        assert {(r, d) for r, d in zip(roles, domains, strict=True)} == {
            ("film", "Pb4S3Br2"),
            ("substrate", "CsPbBr3"),
        }
        sub_species = {
            s.specie.symbol for s, d in zip(cand.structure, domains, strict=True) if d == "CsPbBr3"
        }
        assert sub_species <= {"Cs", "Pb", "Br"}


def test_impossible_strain_is_refused(bulk):
    film, substrate = bulk
    with pytest.raises(InputError, match="no coherent") as err:
        build_interfaces(film, substrate, "0,1,0", "0,0,1", max_strain=0.01)  # mismatch is 1.7 %
    assert "max-strain" in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [({"film_miller": "1,0"}, "bad Miller"), ({"max_strain": 0.0}, "out of range")],
)
def test_bad_interface_requests(bulk, kwargs, words):
    film, substrate = bulk
    with pytest.raises(InputError, match=words):
        build_interfaces(film, substrate, **kwargs)
